"""`songsmith models`: the published weights from the Hugging Face Hub, or a tiny demo model.

Layout under the model root (what the stages and the gateway look for):
`diffrhythm2/` (model.safetensors, config.json, decoder.bin, decoder.json) and `muq-mulan/` with the
MuQ-MuLan checkpoint folder and, beside it, the sub-models its config names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.diffusion.diffrhythm2.demo import write_demo_checkpoint
from services.style.muq_mulan.demo import write_demo_model
from services.vocoder.diffrhythm2.demo import write_demo_decoder


@dataclass(frozen=True)
class HubFiles:
    """Files of one Hub repository and the folder (under the model root) they go to."""

    repo_id: str
    folder: str
    files: tuple[str, ...]


# The MuLan checkpoint holds every weight of the style encoder, including its MuQ and XLM-R towers;
# of the sub-model repositories only the configs (and XLM-R's tokenizer) are read.
DIFFRHYTHM2 = (
    HubFiles(
        "ASLP-lab/DiffRhythm2",
        "diffrhythm2",
        ("model.safetensors", "config.json", "decoder.bin", "decoder.json"),
    ),
    HubFiles("OpenMuQ/MuQ-MuLan-large", "muq-mulan/MuQ-MuLan-large", ("config.json", "pytorch_model.bin")),
    HubFiles("OpenMuQ/MuQ-large-msd-iter", "muq-mulan/OpenMuQ/MuQ-large-msd-iter", ("config.json",)),
    HubFiles("FacebookAI/xlm-roberta-base", "muq-mulan/xlm-roberta-base", ("config.json", "tokenizer.json")),
)
FAMILIES = {"diffrhythm2": DIFFRHYTHM2}


class OfflineError(RuntimeError):
    """The Hub cannot be reached from here."""


class VerificationError(RuntimeError):
    """A downloaded file does not have the size or hash the Hub lists for it."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_network_error(exc: Exception) -> bool:
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    transport = type(exc).__module__.split(".")[0] in {"httpx", "httpx2", "requests", "urllib3"}
    return transport or isinstance(exc, (OSError, HfHubHTTPError, LocalEntryNotFoundError))


def pull(
    family: str, model_root: Path, report: Callable[[str], None] = print, endpoint: str | None = None
) -> list[Path]:
    """Download a model family's published files into `model_root`, checking sizes and hashes.

    `endpoint` is a Hub mirror's URL (default: huggingface_hub's, i.e. $HF_ENDPOINT or the Hub).

    Raises OfflineError when the Hub cannot be reached and VerificationError on a bad file.
    """
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi(endpoint=endpoint)
    written: list[Path] = []
    for repo in FAMILIES[family]:
        target = model_root / repo.folder
        try:
            info = api.model_info(repo.repo_id, files_metadata=True)
        except Exception as exc:
            if not _is_network_error(exc):
                raise
            raise OfflineError(
                f"cannot reach the Hugging Face Hub for {repo.repo_id} ({type(exc).__name__}); on a machine "
                f"without network, copy the published files into {target} by hand, or run "
                "`songsmith models demo` for an untrained demo model"
            ) from exc
        listed = {sibling.rfilename: sibling for sibling in info.siblings or []}
        for name in repo.files:
            report(f"{repo.repo_id}/{name} -> {target / name}")
            path = Path(hf_hub_download(repo.repo_id, name, local_dir=target, endpoint=endpoint))
            sibling = listed.get(name)
            if sibling is not None and sibling.size is not None and path.stat().st_size != sibling.size:
                raise VerificationError(f"{path}: {path.stat().st_size} bytes, the Hub lists {sibling.size}")
            expected = sibling.lfs.sha256 if sibling is not None and sibling.lfs else None
            if expected and _sha256(path) != expected:
                raise VerificationError(f"{path}: sha256 differs from the Hub's {expected}")
            written.append(path)
    return written


def write_demo(model_root: Path) -> tuple[Path, Path]:
    """Write the tiny random-weight demo models; return the DiffRhythm 2 and MuQ-MuLan folders."""
    diffrhythm2 = model_root / "diffrhythm2"
    write_demo_checkpoint(diffrhythm2)
    write_demo_decoder(diffrhythm2)
    mulan = write_demo_model(model_root / "muq-mulan")
    return diffrhythm2, mulan
