"""Bringing a user's Mug-Diffusion model into a model folder, checked, with its manifest.

The weights are on no model hub: users have the released Windows bundle (a zip holding the app, with
`models/ckpt/model.ckpt`, `models/ckpt/model.yaml` and the feature list at the path model.yaml
names, relative to the app's folder) or the two files copied out of it. `import_model` takes either
(the zip, a folder, or the path of one of the two files), copies the files unchanged into the
destination folder, checks that they load strictly, and writes `songsmith-model.json`. When the
feature list is not found next to the files, the published list (shipped with this package, identical
to the repository's file) is written and the manifest says so.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path, PurePosixPath

import yaml

from services.chart.mug import NAME
from services.chart.mug.checkpoint import build_networks, read_state_dict
from services.chart.mug.config import CONFIG_FILE, WEIGHTS_FILE, MugConfig
from services.chart.mug.features import PUBLISHED_FEATURES, FeaturePrompt
from services.runtime.errors import FailedPreconditionError
from services.runtime.manifest import record_files

BUNDLE_FOLDER = PurePosixPath("models/ckpt")


class ModelImportError(FailedPreconditionError):
    """The source does not hold a usable Mug-Diffusion model."""


def _feature_path(config_file: Path) -> str:
    try:
        return MugConfig.from_dict(yaml.safe_load(config_file.read_text(encoding="utf-8"))).feature_yaml
    except (OSError, yaml.YAMLError) as exc:
        raise ModelImportError(f"cannot read {config_file}: {exc}") from exc


def _from_zip(bundle: Path, destination: Path) -> str:
    """Extract the model files of the released bundle; returns where the feature list came from."""
    try:
        archive = zipfile.ZipFile(bundle)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelImportError(f"{bundle} is not a readable zip file: {exc}") from exc
    with archive:
        names = archive.namelist()
        weights = [n for n in names if PurePosixPath(n).parent.as_posix().endswith(BUNDLE_FOLDER.as_posix())]
        ckpt = next((n for n in weights if PurePosixPath(n).name == WEIGHTS_FILE), None)
        config = next((n for n in weights if PurePosixPath(n).name == CONFIG_FILE), None)
        if ckpt is None or config is None:
            raise ModelImportError(
                f"{bundle} has no {BUNDLE_FOLDER}/{WEIGHTS_FILE} and {BUNDLE_FOLDER}/{CONFIG_FILE}"
            )
        for member, target in ((ckpt, WEIGHTS_FILE), (config, CONFIG_FILE)):
            with archive.open(member) as source, (destination / target).open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
        feature_yaml = _feature_path(destination / CONFIG_FILE)
        app_root = PurePosixPath(config).parent.parent.parent
        member = (app_root / feature_yaml).as_posix().removeprefix("./")
        if member in names:
            target = destination / feature_yaml
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, target.open("wb") as out:
                shutil.copyfileobj(source, out)
            return f"zip:{member}"
    return ""


def _from_files(folder: Path, destination: Path) -> str:
    """Copy model.ckpt and model.yaml (and the feature list when found); returns where it came from."""
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (folder / name).is_file():
            raise ModelImportError(f"no {name} in {folder}")
    if folder.resolve() != destination.resolve():
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            shutil.copyfile(folder / name, destination / name)
    feature_yaml = _feature_path(destination / CONFIG_FILE)
    # Beside the files, or at the app's root when they sit in the bundle's models/ckpt folder.
    for root in (folder, folder.parent.parent):
        found = root / feature_yaml
        if found.is_file():
            target = destination / feature_yaml
            if found.resolve() != target.resolve():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(found, target)
            return str(found)
    return ""


def write_manifest(folder: Path, name: str, source: dict) -> Path:
    """Write `songsmith-model.json` for a Mug-Diffusion folder: name, family, source and every file's
    sha256 and size."""
    folder = Path(folder)
    files = [WEIGHTS_FILE, CONFIG_FILE, _feature_path(folder / CONFIG_FILE)]
    return record_files(folder, files, name=name, family=NAME, source=source)


def check_model(folder: Path) -> MugConfig:
    """Load the folder's config, feature list and checkpoint strictly (FailedPreconditionError naming
    what does not match); returns the config."""
    folder = Path(folder)
    config = MugConfig.load(folder)
    prompt = FeaturePrompt.load(folder / config.feature_yaml)
    build_networks(config, prompt.rows).load_state(read_state_dict(folder / WEIGHTS_FILE))
    return config


def import_model(source: Path, destination: Path, name: str = "") -> Path:
    """Copy a Mug-Diffusion model (the released zip bundle, a folder, or the path of model.ckpt or
    model.yaml) into `destination`, check it, and write its manifest; returns `destination`.

    FailedPreconditionError when the source lacks a file or the files do not load strictly (the
    destination is then removed if this call created it).
    """
    source, destination = Path(source), Path(destination)
    created = not destination.exists()
    destination.mkdir(parents=True, exist_ok=True)
    try:
        if source.is_file() and source.name in (WEIGHTS_FILE, CONFIG_FILE):
            # Checked first: model.ckpt is itself a zip file (torch's format).
            features_from = _from_files(source.parent, destination)
        elif source.is_dir():
            features_from = _from_files(source, destination)
        elif source.is_file() and zipfile.is_zipfile(source):
            features_from = _from_zip(source, destination)
        else:
            raise ModelImportError(
                f"{source} is not the Mug-Diffusion zip bundle or a folder with {WEIGHTS_FILE}"
            )
        feature_yaml = destination / _feature_path(destination / CONFIG_FILE)
        if not features_from:
            feature_yaml.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(PUBLISHED_FEATURES, feature_yaml)
            features_from = "packaged copy of the published feature list"
        check_model(destination)
    except BaseException:
        if created:
            shutil.rmtree(destination, ignore_errors=True)
        raise
    write_manifest(
        destination,
        name or destination.resolve().name,
        {"kind": "import", "path": str(source.resolve()), "feature_list": features_from},
    )
    return destination
