"""`songsmith models import mug PATH` (the published files, a folder or the released zip bundle,
checked strictly) and `songsmith models demo` writing the demo chart model."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from gateway.cli import main
from gateway.model_store import CHART_DEMO_FOLDER
from gateway.models import find_chart_model
from services.chart.families import CHART_FAMILIES
from services.runtime.model_info import MANIFEST_FILE, sha256_file

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mug-tiny"
FEATURES = "configs/mug/mania_beatmap_features.yaml"


def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))


def _imports(source: Path, root: Path, *extra: str) -> int:
    return main(["models", "import", "mug", str(source), "--model-root", str(root), *extra])


def test_import_from_a_folder(tmp_path: Path, capsys) -> None:
    assert _imports(FIXTURE, tmp_path / "models", "--name", "mug-tiny") == 0
    folder = tmp_path / "models" / "mug-tiny"
    assert f"mug model imported into {folder}" in capsys.readouterr().out
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        FEATURES,
        "model.ckpt",
        "model.yaml",
        MANIFEST_FILE,
    ]
    manifest = _manifest(folder)
    assert (manifest["name"], manifest["family"]) == ("mug-tiny", "mug")
    assert manifest["files"]["model.ckpt"]["sha256"] == sha256_file(FIXTURE / "model.ckpt")
    assert CHART_FAMILIES.detect(folder).name == "mug"
    assert find_chart_model(tmp_path / "models") == folder


def test_import_from_the_released_zip_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "MuG Diffusion.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        for name in ("model.ckpt", "model.yaml"):
            archive.write(FIXTURE / name, f"MuG Diffusion/models/ckpt/{name}")
        archive.write(FIXTURE / FEATURES, f"MuG Diffusion/{FEATURES}")
        archive.writestr("MuG Diffusion/webui.py", "print('the app')\n")
    assert _imports(bundle, tmp_path / "models") == 0
    folder = tmp_path / "models" / "mug"
    manifest = _manifest(folder)
    assert manifest["source"]["feature_list"] == f"zip:MuG Diffusion/{FEATURES}"
    assert (folder / "model.ckpt").read_bytes() == (FIXTURE / "model.ckpt").read_bytes()
    assert not (folder / "webui.py").exists()


def test_a_checkpoint_missing_a_tensor_is_refused_and_nothing_is_left(tmp_path: Path, capsys) -> None:
    source = tmp_path / "broken"
    source.mkdir()
    shutil.copyfile(FIXTURE / "model.yaml", source / "model.yaml")
    checkpoint = torch.load(FIXTURE / "model.ckpt", weights_only=True)
    missing = next(name for name in checkpoint["state_dict"] if name.startswith("model.unet_model."))
    del checkpoint["state_dict"][missing]
    torch.save(checkpoint, source / "model.ckpt")
    assert _imports(source, tmp_path / "models") == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("songsmith: error: cannot import") and missing in error and "\n" not in error
    assert not (tmp_path / "models" / "mug").exists()


@pytest.mark.parametrize("content", [None, b"not a zip and not a model"])
def test_a_source_without_the_model_files_is_refused(tmp_path: Path, capsys, content: bytes | None) -> None:
    source = tmp_path / "source"
    if content is None:
        source.mkdir()
    else:
        source.write_bytes(content)
    assert _imports(source, tmp_path / "models") == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("songsmith: error: cannot import") and "\n" not in error


def test_an_imported_model_is_not_overwritten(tmp_path: Path, capsys) -> None:
    assert _imports(FIXTURE, tmp_path) == 0
    assert _imports(FIXTURE, tmp_path) == 1
    assert "already holds a model" in capsys.readouterr().err


def test_models_demo_writes_the_untrained_chart_model(tmp_path: Path, capsys) -> None:
    assert main(["models", "demo", "--model-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"demo chart model written: {tmp_path / CHART_DEMO_FOLDER}" in out
    assert "untrained" in out and "charts are noise" in out
    assert find_chart_model(tmp_path) == tmp_path / CHART_DEMO_FOLDER
    assert _manifest(tmp_path / CHART_DEMO_FOLDER)["source"] == {"kind": "demo", "untrained": True}
