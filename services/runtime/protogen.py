"""Generate the Python gRPC stubs from `protos/songsmith/v1/*.proto` (what `make protos` runs).

The stubs are committed next to their .proto files; `tests/test_protos.py` regenerates them into a
temporary folder and fails when the committed ones are stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parents[2] / "protos"
PROTO_PACKAGE = Path("songsmith") / "v1"


def proto_files() -> list[Path]:
    """The contract's .proto files, relative to the proto root, in a stable order."""
    return sorted(p.relative_to(PROTO_ROOT) for p in (PROTO_ROOT / PROTO_PACKAGE).glob("*.proto"))


def generate(out_dir: Path = PROTO_ROOT) -> None:
    """Run protoc (from grpcio-tools) over every .proto, writing _pb2, _pb2_grpc and .pyi files."""
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))


if __name__ == "__main__":
    generate()
    sys.exit(0)
