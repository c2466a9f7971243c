"""What a stage says about the model it hosts: name, family, revision, rates and the inputs it reads.

Every stage engine carries a `ModelInfo`; the stages answer `GetModelInfo` with it and the gateway
routes songs, validates requests and checks resumes against it. The revision is the sha256 of the
weight files the engine actually loaded, so two replicas (or a replica before and after an upgrade)
that report the same revision compute the same numbers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# The song inputs a model may read (ModelInfo.inputs); the gateway refuses the others.
LYRICS = "lyrics"
STYLE_TEXT = "style_text"
STYLE_AUDIO = "style_audio"
MELODY_AUDIO = "melody_audio"
REFERENCE_AUDIO = "reference_audio"
SONG_INPUTS = (LYRICS, STYLE_TEXT, STYLE_AUDIO, MELODY_AUDIO, REFERENCE_AUDIO)

# Written beside a model's files by `songsmith models pull|demo|import`: name, family, source and
# the sha256 of every file.
MANIFEST_FILE = "songsmith-model.json"


@dataclass(frozen=True)
class ModelInfo:
    """A loaded model's identity and what it consumes and produces.

    `families` lists every family a shared stage serves (the lyric tokenizer serves DiffRhythm 2
    and v1, MuQ-MuLan both DiffRhythm versions); a model-specific stage lists its own family.
    `sample_rate` and `channels` describe the song's audio, `frame_rate` the generated frames
    (latent frames or codebook frames per second); 0 where a stage has none. `peak_normalize` (a
    vocoder's) says the family's reference writes its songs peak-normalised, so the gateway does.
    """

    name: str
    family: str
    revision: str
    families: tuple[str, ...] = ()
    sample_rate: int = 0
    frame_rate: float = 0.0
    channels: int = 0
    inputs: tuple[str, ...] = ()
    peak_normalize: bool = False


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_revision(files: Sequence[Path]) -> str:
    """The revision of a model made of `files`: a single file's sha256, or for several the sha256 of
    their `name sha256` lines in the given order (a change to any file changes the revision)."""
    if len(files) == 1:
        return sha256_file(files[0])
    lines = "".join(f"{path.name} {sha256_file(path)}\n" for path in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def read_manifest(model_dir: Path) -> dict:
    """The model folder's manifest (empty when there is none or it is not a JSON object)."""
    path = model_dir / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def model_name(model_dir: Path, override: str = "") -> str:
    """The name a model is served under: `override`, else the manifest's name, else the folder's."""
    if override:
        return override
    name = read_manifest(model_dir).get("name")
    return name if isinstance(name, str) and name else model_dir.resolve().name
