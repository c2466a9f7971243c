"""The committed Python stubs are exactly what `make protos` generates from the .proto files."""

from __future__ import annotations

from pathlib import Path

from services.runtime.protogen import PROTO_PACKAGE, PROTO_ROOT, generate, proto_files


def _same_file(committed: Path, fresh: Path) -> bool:
    return committed.exists() and committed.read_bytes() == fresh.read_bytes()


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    generate(tmp_path)
    generated = sorted(p.relative_to(tmp_path) for p in (tmp_path / PROTO_PACKAGE).iterdir())
    assert generated, "protoc produced nothing"
    stale = [str(name) for name in generated if not _same_file(PROTO_ROOT / name, tmp_path / name)]
    assert not stale, f"stale generated stubs (run `make protos`): {stale}"
    assert len(generated) == 3 * len(proto_files())


def test_every_field_and_message_is_documented() -> None:
    undocumented = []
    for relative in proto_files():
        lines = (PROTO_ROOT / relative).read_text().splitlines()
        for number, line in enumerate(lines):
            stripped = line.strip()
            declares = stripped.startswith(("message ", "enum ", "service ", "rpc ")) or (
                "=" in stripped and stripped.endswith(";") and not stripped.startswith(("syntax", "option"))
            )
            if declares:
                previous = lines[number - 1].strip()
                if not previous.startswith(("//", "oneof")):
                    undocumented.append(f"{relative}:{number + 1}: {stripped}")
    assert not undocumented, "undocumented declarations:\n" + "\n".join(undocumented)
