"""The contract: the committed Python stubs are exactly what `make protos` generates, `buf lint` is
clean under buf's STANDARD and COMMENTS rules, and times travel as Timestamp or Duration."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor

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


BUF = Path(sys.executable).with_name("buf")
# A field that holds a time or a length of time is a google.protobuf.Timestamp or Duration, never a
# number; these stage-internal numbers are the exceptions, each with its reason.
TIME_NUMBER_EXCEPTIONS = {
    "songsmith.v1.EditSpan.start_seconds": "a place in a recording where -1 stands for its start, as "
    "DiffRhythm v1's edit spans are written; a Duration cannot say 'the start'",
    "songsmith.v1.EditSpan.end_seconds": "a place in a recording where -1 stands for its end",
    "songsmith.v1.TokenizedLine.timestamp_seconds": "the LRC time tag of a lyrics line as the text "
    "wrote it, echoed back for display",
    "songsmith.v1.TokenizeRequest.seconds": "stage-internal: the song length the family's lyric front "
    "end aligns tokens to, as its reference reads it (the public API's max_duration is a Duration)",
    "songsmith.v1.GenerateLatentsRequest.seconds": "stage-internal: the song length the family's "
    "sampler reads, as its reference does (the public API's max_duration is a Duration)",
    "songsmith.v1.EmbedAudioResponse.audio_seconds": "stage-internal: the decoded recording's length, "
    "reported for logs and the style command",
    "songsmith.v1.HitObject.start_ms": "a note's place in the song in whole milliseconds, as the .osu "
    "chart format writes it (a chart holds hundreds of notes)",
    "songsmith.v1.HitObject.end_ms": "a held note's end, in the .osu format's whole milliseconds",
    "songsmith.v1.GeneratedChart.offset_ms": "the beat grid's first beat, as the .osu format's timing "
    "point writes it (fractional milliseconds)",
}
# A field comment the lint test removes (COMMENT_FIELD).
UNDOCUMENTED_LINE = (
    "  // Client-chosen job id: 1..64 characters of [A-Za-z0-9._-]. Empty: the gateway picks a UUID.\n"
)
_TIME_WORDS = ("seconds", "secs", "_ms", "time", "_at", "duration")


def _buf(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "BUF_CACHE_DIR": str(cache), "HOME": str(cache)}
    return subprocess.run(
        [str(BUF), *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=120
    )


def test_buf_lint_is_clean(tmp_path: Path) -> None:
    """`buf lint` with protos/buf.yaml (STANDARD and COMMENTS, no exception) finds nothing."""
    result = _buf("lint", cwd=PROTO_ROOT, cache=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_buf_lint_enforces_the_rules_we_rely_on(tmp_path: Path) -> None:
    """A copy of the contract with one breach per rule: buf reports each by its rule id, so the
    config in buf.yaml really holds them."""
    copy = tmp_path / "protos"
    shutil.copytree(PROTO_ROOT, copy, ignore=shutil.ignore_patterns("*.py", "*.pyi", "__pycache__"))
    song = copy / PROTO_PACKAGE / "song.proto"
    text = song.read_text()
    for old, new in (
        ("AUDIO_FORMAT_UNSPECIFIED = 0;", "AUDIO_FORMAT_DEFAULT = 0;"),
        ("service SongService {", "service Songs {"),
        ("rpc GetJob(GetJobRequest) returns (GetJobResponse);", "rpc GetJob(GetJobRequest) returns (Job);"),
        ("rpc CancelJob(CancelJobRequest)", "rpc CancelJob(GetJobRequest)"),
        (UNDOCUMENTED_LINE, ""),
        (
            'import "songsmith/v1/model.proto";',
            'import "songsmith/v1/model.proto";\nimport "songsmith/v1/tensor.proto";',
        ),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    song.write_text(text)
    result = _buf("lint", "--error-format=json", cwd=copy, cache=tmp_path / "cache")
    assert result.returncode != 0
    found = {json.loads(line)["type"] for line in result.stdout.splitlines()}
    assert {
        "ENUM_ZERO_VALUE_SUFFIX",
        "SERVICE_SUFFIX",
        "RPC_RESPONSE_STANDARD_NAME",
        "RPC_REQUEST_STANDARD_NAME",
        "RPC_REQUEST_RESPONSE_UNIQUE",
        "IMPORT_USED",
        "COMMENT_FIELD",
    } <= found, result.stdout


def _messages(descriptors) -> Iterator:
    for message in descriptors:
        yield message
        yield from _messages(message.nested_types)


def test_times_are_timestamps_or_durations() -> None:
    numbers = set()
    for relative in proto_files():
        module = importlib.import_module(f"songsmith.v1.{relative.stem}_pb2")
        for message in _messages(module.DESCRIPTOR.message_types_by_name.values()):
            for field in message.fields:
                if field.type != FieldDescriptor.TYPE_MESSAGE and any(w in field.name for w in _TIME_WORDS):
                    numbers.add(f"{message.full_name}.{field.name}")
    assert numbers == set(TIME_NUMBER_EXCEPTIONS), "times must be Timestamp or Duration"


def test_every_file_names_its_package_for_go_java_and_csharp() -> None:
    for relative in proto_files():
        options = importlib.import_module(f"songsmith.v1.{relative.stem}_pb2").DESCRIPTOR.GetOptions()
        assert options.go_package == "github.com/songsmith/songsmith/gen/go/songsmith/v1;songsmithv1"
        assert options.java_package == "ai.songsmith.v1" and options.java_multiple_files
        assert options.csharp_namespace == "Songsmith.V1"
