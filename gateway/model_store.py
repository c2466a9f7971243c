"""`songsmith models`: the published weights from the Hugging Face Hub, or a tiny demo model.

A model name maps to the Hub repositories and files it needs (`MODELS`, data only: a family adds an
entry). `pull` follows each repository's file list at one revision: it reads the listing once, pins
the commit it names, checks that every file is listed (where a file was renamed upstream, whichever
name the listing holds: DiffRhythm 2's `config.json` was `model.json`) before downloading anything,
downloads each file at that commit, verifies its size and hash against the listing, and writes a
manifest beside the files (`songsmith-model.json`, read by `services.runtime.model_info`).

Layout under the model root (what the stages and the gateway look for):
`diffrhythm2/` (model.safetensors, config.json or model.json, decoder.bin, decoder.json) and
`muq-mulan/` with the MuQ-MuLan checkpoint folder and, beside it, the sub-models its config names;
one folder per MusicGen checkpoint (`musicgen-small/`, ...: config.json, generation_config.json,
preprocessor_config.json, the weights as model.safetensors, pytorch_model.bin or shards with their
index, whichever the repository holds, and the T5 tokenizer files).

An interrupted download is resumed: a connection that drops mid-file is picked up where it stopped
(huggingface_hub asks for the rest with an HTTP range), and a pull that is stopped and run again
fetches only the files not yet complete, since each finished file is kept with the commit it came
from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.diffusion.musicgen.hub import HUB_MODELS, select_weight_files
from services.runtime.model_info import MANIFEST_FILE


@dataclass(frozen=True)
class HubRepo:
    """Files of one Hub repository and the folder (under the model root) they go to.

    Each entry of `files` is a file name, or a tuple of names a renamed file has had (the first the
    listing holds is pulled). `name` and `family` go into the folder's manifest. `weights`, when
    given, picks more files from the listing (weights that may be one file or shards with an index:
    MusicGen's `select_weight_files`), raising ValueError when the listing holds none.
    """

    repo_id: str
    folder: str
    files: tuple[str | tuple[str, ...], ...]
    name: str
    family: str
    weights: Callable[[Iterable[str]], tuple[str, ...]] | None = None


# The MuLan checkpoint holds every weight of the style encoder, including its MuQ and XLM-R towers;
# of the sub-model repositories only the configs (and XLM-R's tokenizer) are read.
MODELS: dict[str, tuple[HubRepo, ...]] = {
    "diffrhythm2": (
        HubRepo(
            "ASLP-lab/DiffRhythm2",
            "diffrhythm2",
            ("model.safetensors", ("config.json", "model.json"), "decoder.bin", "decoder.json"),
            name="diffrhythm2",
            family="diffrhythm2",
        ),
        HubRepo(
            "OpenMuQ/MuQ-MuLan-large",
            "muq-mulan/MuQ-MuLan-large",
            ("config.json", "pytorch_model.bin"),
            name="MuQ-MuLan-large",
            family="muq-mulan",
        ),
        HubRepo(
            "OpenMuQ/MuQ-large-msd-iter",
            "muq-mulan/OpenMuQ/MuQ-large-msd-iter",
            ("config.json",),
            name="MuQ-large-msd-iter",
            family="muq-mulan",
        ),
        HubRepo(
            "FacebookAI/xlm-roberta-base",
            "muq-mulan/xlm-roberta-base",
            ("config.json", "tokenizer.json"),
            name="xlm-roberta-base",
            family="muq-mulan",
        ),
    ),
    # MusicGen: one transformers-layout repository per checkpoint serves the style stage (T5 and its
    # tokenizer), the generation stage (the LM) and the vocoder (EnCodec).
    **{
        name: (
            HubRepo(
                model.repo_id, name, model.files, name=name, family="musicgen", weights=select_weight_files
            ),
        )
        for name, model in HUB_MODELS.items()
    },
}


class OfflineError(RuntimeError):
    """The Hub cannot be reached from here (or stopped answering mid-download)."""


class VerificationError(RuntimeError):
    """A file is not what the Hub lists: missing from the listing, or a wrong size or hash."""


@dataclass(frozen=True)
class _Planned:
    """One file to pull: where from (repository, pinned commit) and what the listing says it is."""

    repo: HubRepo
    revision: str
    filename: str
    size: int | None
    sha256: str | None
    blob_id: str | None


@dataclass(frozen=True)
class _Pulled:
    """One verified file in its folder."""

    planned: _Planned
    path: Path
    sha256: str
    size: int


def _is_network_error(exc: Exception) -> bool:
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    transport = type(exc).__module__.split(".")[0] in {"httpx", "httpx2", "requests", "urllib3"}
    return transport or isinstance(exc, (OSError, HfHubHTTPError, LocalEntryNotFoundError))


def _hashes(path: Path) -> tuple[str, str]:
    """The file's sha256 and its git blob id (sha1 of "blob <size>\\0" + content), in one read."""
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha256.update(block)
            blob.update(block)
    return sha256.hexdigest(), blob.hexdigest()


def _plan(api: Any, repo: HubRepo) -> list[_Planned]:
    """The repository's listing at its current commit, checked to hold every file `repo` needs."""
    try:
        info = api.model_info(repo.repo_id, files_metadata=True)
    except Exception as exc:
        if not _is_network_error(exc):
            raise
        raise OfflineError(
            f"cannot reach the Hugging Face Hub for {repo.repo_id} ({type(exc).__name__}); on a machine "
            f"without network, copy the published files into {repo.folder}/ under the model root by hand, "
            "or run `songsmith models demo` for an untrained demo model"
        ) from exc
    listed = {sibling.rfilename: sibling for sibling in info.siblings or []}
    entries = list(repo.files)
    if repo.weights is not None:
        try:
            entries += repo.weights(listed)
        except ValueError as exc:
            raise VerificationError(
                f"{repo.repo_id} at revision {info.sha}: {exc}; nothing was downloaded"
            ) from exc
    planned = []
    for entry in entries:
        names = (entry,) if isinstance(entry, str) else entry
        found = next((name for name in names if name in listed), None)
        if found is None:
            raise VerificationError(
                f"{repo.repo_id} at revision {info.sha} lists no {' or '.join(names)}; "
                "the repository's layout changed: nothing was downloaded"
            )
        sibling = listed[found]
        lfs = sibling.lfs
        planned.append(
            _Planned(
                repo,
                info.sha,
                found,
                lfs.size if lfs else sibling.size,
                lfs.sha256 if lfs else None,
                None if lfs else sibling.blob_id,
            )
        )
    return planned


def _download(planned: _Planned, target: Path, endpoint: str | None) -> _Pulled:
    """Download one file at its pinned commit (kept if already complete) and verify it."""
    from huggingface_hub import hf_hub_download

    try:
        path = Path(
            hf_hub_download(
                planned.repo.repo_id,
                planned.filename,
                revision=planned.revision,
                local_dir=target,
                endpoint=endpoint,
            )
        )
    except Exception as exc:
        if not _is_network_error(exc):
            raise
        raise OfflineError(
            f"downloading {planned.repo.repo_id}/{planned.filename} failed ({type(exc).__name__}: {exc}); "
            "run the command again: the files already complete are kept"
        ) from exc
    sha256, blob_id = _hashes(path)
    size = path.stat().st_size
    problem = None
    if planned.size is not None and size != planned.size:
        problem = f"{size} bytes, the Hub lists {planned.size}"
    elif planned.sha256 is not None and sha256 != planned.sha256:
        problem = f"sha256 {sha256} differs from the Hub's {planned.sha256}"
    elif planned.blob_id is not None and blob_id != planned.blob_id:
        problem = f"git blob id {blob_id} differs from the Hub's {planned.blob_id}"
    if problem is not None:
        path.unlink()
        raise VerificationError(f"{planned.repo.repo_id}/{planned.filename} at {planned.revision}: {problem}")
    return _Pulled(planned, path, sha256, size)


def _manifest(pulled: list[_Pulled]) -> dict:
    """The manifest of one folder's files; a folder filled from several repositories names each
    file's repository and revision, and lists every source."""
    first = pulled[0].planned.repo
    sources = {(p.planned.repo.repo_id, p.planned.revision) for p in pulled}
    files = {}
    for item in pulled:
        entry: dict[str, Any] = {"sha256": item.sha256, "size": item.size}
        if len(sources) > 1:
            entry.update(repo=item.planned.repo.repo_id, revision=item.planned.revision)
        files[item.planned.filename] = entry
    if len(sources) == 1:
        ((repo_id, revision),) = sources
        source: dict[str, Any] = {"repo": repo_id, "revision": revision}
    else:
        source = {"repos": [{"repo": repo_id, "revision": revision} for repo_id, revision in sorted(sources)]}
    return {"name": first.name, "family": first.family, "source": source, "files": files}


def _by_folder(pulled: Iterable[_Pulled]) -> dict[str, list[_Pulled]]:
    folders: dict[str, list[_Pulled]] = {}
    for item in pulled:
        folders.setdefault(item.planned.repo.folder, []).append(item)
    return folders


def pull(
    model: str, model_root: Path, report: Callable[[str], None] = print, endpoint: str | None = None
) -> list[Path]:
    """Download a model's published files into `model_root`, pinned, verified, with manifests.

    Every repository's listing is read and checked first, so a missing file stops the pull before
    any download. `endpoint` is a Hub mirror's URL (default: huggingface_hub's, i.e. $HF_ENDPOINT or
    the Hub). Returns the files and manifests written.

    Raises KeyError for an unknown model, OfflineError when the Hub cannot be reached or stops
    answering, and VerificationError for a file the listing lacks or one whose size or hash differs
    from it (that file is removed, so a new pull fetches it again).
    """
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint)
    planned = [item for repo in MODELS[model] for item in _plan(api, repo)]
    pulled = []
    for item in planned:
        target = model_root / item.repo.folder
        report(f"{item.repo.repo_id}/{item.filename} @ {item.revision[:12]} -> {target / item.filename}")
        pulled.append(_download(item, target, endpoint))
    written = [item.path for item in pulled]
    for folder, items in _by_folder(pulled).items():
        manifest = model_root / folder / MANIFEST_FILE
        manifest.write_text(json.dumps(_manifest(items), indent=2) + "\n", encoding="utf-8")
        written.append(manifest)
    return written


def write_demo(model_root: Path) -> tuple[Path, Path]:
    """Write the tiny random-weight demo models; return the DiffRhythm 2 and MuQ-MuLan folders."""
    from services.diffusion.diffrhythm2.demo import write_demo_checkpoint
    from services.style.muq_mulan.demo import write_demo_model
    from services.vocoder.diffrhythm2.demo import write_demo_decoder

    diffrhythm2 = model_root / "diffrhythm2"
    write_demo_checkpoint(diffrhythm2)
    write_demo_decoder(diffrhythm2)
    mulan = write_demo_model(model_root / "muq-mulan")
    return diffrhythm2, mulan


MUSICGEN_DEMO = "musicgen-demo"


def write_musicgen_demo(model_root: Path) -> Path:
    """Write the tiny random-weight MusicGen demo model (mono, in the Hub layout, named
    musicgen-demo) into `model_root/musicgen-demo`; return the folder."""
    from services.diffusion.musicgen.demo import write_demo_model

    return write_demo_model(model_root / MUSICGEN_DEMO, "mono", name=MUSICGEN_DEMO)
