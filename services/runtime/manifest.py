"""Writing the model folder manifest (`songsmith-model.json`) beside a model's files.

Several writers may fill one folder (a family's generation files and its decoder files are written
by their own stages' code); each records its files, and the manifest ends up listing every one of
them with its sha256 and size. The vocoder reads it to decide whether a TorchScript archive may be
opened at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from services.runtime.model_info import MANIFEST_FILE, read_manifest, sha256_file


def record_files(model_dir: Path, files: Iterable[str], *, name: str, family: str, source: dict) -> Path:
    """Add `files` of `model_dir` (their sha256 and size) to its manifest, setting its name, family
    and source; files already listed stay listed. Returns the manifest's path."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    listed = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    for file in files:
        path = model_dir / file
        listed[file] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    manifest.update(name=name, family=family, source=source, files=dict(sorted(listed.items())))
    target = model_dir / MANIFEST_FILE
    target.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return target


def record_folder(model_dir: Path, *, name: str, family: str, source: dict) -> Path:
    """Record every file directly in `model_dir` (but the manifest) in its manifest, as
    `record_files` does; for folders written whole by our own code (the demo models)."""
    model_dir = Path(model_dir)
    files = [
        path.name for path in sorted(model_dir.iterdir()) if path.is_file() and path.name != MANIFEST_FILE
    ]
    return record_files(model_dir, files, name=name, family=family, source=source)
