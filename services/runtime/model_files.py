"""Reading a model folder's config files without loading any weights (family detection)."""

from __future__ import annotations

import json
from pathlib import Path


def read_json(model_dir: Path, *names: str) -> dict | None:
    """The first of `names` in `model_dir` that holds a JSON object, or None."""
    for name in names:
        try:
            value = json.loads((model_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(value, dict):
            return value
    return None


def has_files(model_dir: Path, *names: str) -> bool:
    """True when every one of `names` is a file in `model_dir`."""
    return all((model_dir / name).is_file() for name in names)
