"""`songsmith models`: the published weights from the Hugging Face Hub, or a tiny demo model.

A model name maps to the Hub repositories and files it needs (`MODELS`, data only: a family adds an
entry). `pull` follows each repository's file list at one revision: it reads the listing once, pins
the commit it names, checks that every file is listed (where a file was renamed upstream, whichever
name the listing holds: DiffRhythm 2's `config.json` was `model.json`) before downloading anything,
downloads each file at that commit, verifies its size and hash against the listing, and writes a
manifest beside the files (`songsmith-model.json`, read by `services.runtime.model_info`).

Some files are not on the Hub: DiffRhythm v1's config and negative style vector live in its GitHub
repository, so they ship inside our package (`PackageFiles`: copied into the folder and listed in its
manifest with their sha256).

Layout under the model root (what the stages and the gateway look for):
`diffrhythm2/` (model.safetensors, config.json or model.json, decoder.bin, decoder.json),
`diffrhythm1/` or `diffrhythm1-full/` (cfm_model.pt, vae_model.pt, config.json, negative_style.npy),
`muq-mulan/` with the MuQ-MuLan checkpoint folder and, beside it, the sub-models its config names,
and one folder per MusicGen checkpoint (`musicgen-small/`, ...: config.json, generation_config.json,
preprocessor_config.json, the weights as model.safetensors, pytorch_model.bin or shards with their
index, whichever the repository holds, and the T5 tokenizer files).

An interrupted download is resumed: a connection that drops mid-file is picked up where it stopped
(huggingface_hub asks for the rest with an HTTP range), and a pull that is stopped and run again
fetches only the files not yet complete, since each finished file is kept with the commit it came
from.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.musicgen_hub import HUB_MODELS, select_weight_files
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


@dataclass(frozen=True)
class PackageFiles:
    """Files a model folder takes from this package instead of the Hub.

    `install` names the function, as "module:function", that copies them into a folder and returns
    their paths (imported only when pulling, so listing the models loads nothing). `name` and
    `family` go into the folder's manifest like a HubRepo's.
    """

    folder: str
    install: str
    name: str
    family: str

    @property
    def module(self) -> str:
        """The module the files come from (recorded in the manifest)."""
        return self.install.split(":")[0]


# The MuLan checkpoint holds every weight of the style encoder, including its MuQ and XLM-R towers;
# of the sub-model repositories only the configs (and XLM-R's tokenizer) are read.
MODELS: dict[str, tuple[HubRepo | PackageFiles, ...]] = {
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


def _diffrhythm1(checkpoint_repo: str, folder: str) -> tuple[HubRepo | PackageFiles, ...]:
    """A DiffRhythm v1 model: its DiT checkpoint, the VAE, the config and negative style from our
    package, all in `folder`, and the MuQ-MuLan style encoder it shares with DiffRhythm 2."""
    own = (
        HubRepo(checkpoint_repo, folder, ("cfm_model.pt",), name=folder, family="diffrhythm1"),
        HubRepo("ASLP-lab/DiffRhythm-vae", folder, ("vae_model.pt",), name=folder, family="diffrhythm1"),
        PackageFiles(
            folder,
            "services.diffusion.diffrhythm1.models:install_package_files",
            name=folder,
            family="diffrhythm1",
        ),
    )
    return own + tuple(entry for entry in MODELS["diffrhythm2"] if entry.family == "muq-mulan")


# DiffRhythm v1.2, as the reference loads it: the base model (95 s songs) and the full model (96..285 s).
MODELS["diffrhythm1"] = _diffrhythm1("ASLP-lab/DiffRhythm-1_2", "diffrhythm1")
MODELS["diffrhythm1-full"] = _diffrhythm1("ASLP-lab/DiffRhythm-1_2-full", "diffrhythm1-full")


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


@dataclass(frozen=True)
class _Installed:
    """One file copied from our package into its folder."""

    package: PackageFiles
    path: Path
    sha256: str
    size: int


def _install(package: PackageFiles, model_root: Path) -> list[_Installed]:
    """Copy a PackageFiles entry's files into its folder under `model_root`."""
    module, function = package.install.split(":")
    install = getattr(importlib.import_module(module), function)
    installed = []
    for path in install(model_root / package.folder):
        sha256, _ = _hashes(Path(path))
        installed.append(_Installed(package, Path(path), sha256, Path(path).stat().st_size))
    return installed


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


def _manifest(pulled: Sequence[_Pulled], installed: Sequence[_Installed] = ()) -> dict:
    """The manifest of one folder's files; a folder filled from several repositories names each
    file's repository and revision, and lists every source; files from our package name it."""
    first = pulled[0].planned.repo if pulled else installed[0].package
    sources = {(p.planned.repo.repo_id, p.planned.revision) for p in pulled}
    files = {}
    for item in pulled:
        entry: dict[str, Any] = {"sha256": item.sha256, "size": item.size}
        if len(sources) > 1:
            entry.update(repo=item.planned.repo.repo_id, revision=item.planned.revision)
        files[item.planned.filename] = entry
    for copied in installed:
        package = copied.package.module
        files[copied.path.name] = {"sha256": copied.sha256, "size": copied.size, "package": package}
    source: dict[str, Any] = {}
    if len(sources) == 1:
        ((repo_id, revision),) = sources
        source = {"repo": repo_id, "revision": revision}
    elif sources:
        source = {"repos": [{"repo": repo_id, "revision": revision} for repo_id, revision in sorted(sources)]}
    if installed:
        source["package"] = installed[0].package.module
    return {"name": first.name, "family": first.family, "source": source, "files": files}


def _by_folder(items: Iterable[_Pulled | _Installed]) -> dict[str, list[_Pulled | _Installed]]:
    folders: dict[str, list[_Pulled | _Installed]] = {}
    for item in items:
        folder = item.package.folder if isinstance(item, _Installed) else item.planned.repo.folder
        folders.setdefault(folder, []).append(item)
    return folders


def pull(
    model: str, model_root: Path, report: Callable[[str], None] = print, endpoint: str | None = None
) -> list[Path]:
    """Download a model's published files into `model_root`, pinned, verified, with manifests.

    Every repository's listing is read and checked first, so a missing file stops the pull before
    any download; files the model takes from our package are copied in after the downloads.
    `endpoint` is a Hub mirror's URL (default: huggingface_hub's, i.e. $HF_ENDPOINT or the Hub).
    Returns the files and manifests written.

    Raises KeyError for an unknown model, OfflineError when the Hub cannot be reached or stops
    answering, and VerificationError for a file the listing lacks or one whose size or hash differs
    from it (that file is removed, so a new pull fetches it again).
    """
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint)
    entries = MODELS[model]
    planned = [item for repo in entries if isinstance(repo, HubRepo) for item in _plan(api, repo)]
    pulled = []
    for item in planned:
        target = model_root / item.repo.folder
        report(f"{item.repo.repo_id}/{item.filename} @ {item.revision[:12]} -> {target / item.filename}")
        pulled.append(_download(item, target, endpoint))
    installed = []
    for package in (entry for entry in entries if isinstance(entry, PackageFiles)):
        report(f"{package.module} -> {model_root / package.folder}")
        installed += _install(package, model_root)
    written = [item.path for item in [*pulled, *installed]]
    for folder, items in _by_folder([*pulled, *installed]).items():
        from_hub = [item for item in items if isinstance(item, _Pulled)]
        copied = [item for item in items if isinstance(item, _Installed)]
        manifest = model_root / folder / MANIFEST_FILE
        manifest.write_text(json.dumps(_manifest(from_hub, copied), indent=2) + "\n", encoding="utf-8")
        written.append(manifest)
    return written


def write_demo_diffrhythm1(model_root: Path) -> Path:
    """Write the tiny random-weight DiffRhythm v1 demo (a full model: 96..285 s songs, with its VAE)
    into `model_root/diffrhythm1`; it uses the MuQ-MuLan demo that `write_demo` writes. Returns the
    folder."""
    from services.diffusion.diffrhythm1.models import write_demo_generator
    from services.vocoder.diffrhythm1.models import write_demo_vae

    folder = model_root / "diffrhythm1"
    write_demo_generator(folder, full=True, name="diffrhythm1")
    write_demo_vae(folder, name="diffrhythm1")
    return folder


def write_demo(model_root: Path) -> tuple[Path, Path]:
    """Write the tiny random-weight demo models; return the DiffRhythm 2 and MuQ-MuLan folders."""
    from services.diffusion.diffrhythm2.demo import write_demo_checkpoint
    from services.runtime.manifest import record_folder
    from services.style.muq_mulan.demo import write_demo_model
    from services.vocoder.diffrhythm2.demo import write_demo_decoder

    diffrhythm2 = model_root / "diffrhythm2"
    write_demo_checkpoint(diffrhythm2)
    write_demo_decoder(diffrhythm2)
    source = {"kind": "demo", "untrained": True}
    record_folder(diffrhythm2, name="diffrhythm2", family="diffrhythm2", source=source)
    mulan = write_demo_model(model_root / "muq-mulan")
    return diffrhythm2, mulan


CHART_DEMO_FOLDER = "mug-demo"


def write_chart_demo(model_root: Path) -> Path:
    """Write the tiny random-weight demo chart model (Mug-Diffusion layout; its charts are noise)
    into `model_root`; return its folder."""
    from services.chart.mug.demo import write_demo_model

    return write_demo_model(model_root / CHART_DEMO_FOLDER)


MUSICGEN_DEMO = "musicgen-demo"


def write_musicgen_demo(model_root: Path) -> Path:
    """Write the tiny random-weight MusicGen demo model (mono, in the Hub layout, named
    musicgen-demo) into `model_root/musicgen-demo`; return the folder."""
    from services.diffusion.musicgen.demo import write_demo_model

    return write_demo_model(model_root / MUSICGEN_DEMO, "mono", name=MUSICGEN_DEMO)
