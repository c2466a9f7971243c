"""Model folders: importing a user's files or the released zip bundle, and the demo model."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from services.chart.engine import Chart, ChartRequest, SongAudio
from services.chart.families import CHART_FAMILIES
from services.chart.mug.demo import write_demo_model
from services.chart.mug.model_files import import_model
from services.runtime.errors import FailedPreconditionError
from services.runtime.model_info import MANIFEST_FILE, model_name, sha256_file

FEATURES = "configs/mug/mania_beatmap_features.yaml"


def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST_FILE).read_text())


def _bundle(fixture_dir: Path, path: Path, with_features: bool = True) -> Path:
    """A zip laid out like the released Windows bundle (the app folder with models/ckpt inside)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(fixture_dir / "model.ckpt", "MugDiffusion/models/ckpt/model.ckpt")
        archive.write(fixture_dir / "model.yaml", "MugDiffusion/models/ckpt/model.yaml")
        archive.writestr("MugDiffusion/webui.py", "print('app')\n")
        if with_features:
            archive.write(fixture_dir / FEATURES, f"MugDiffusion/{FEATURES}")
    return path


def test_import_two_files_and_write_the_manifest(fixture_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "download"
    source.mkdir()
    for name in ("model.ckpt", "model.yaml"):
        shutil.copyfile(fixture_dir / name, source / name)
    target = import_model(source / "model.ckpt", tmp_path / "models" / "mug", name="mug-tiny")
    manifest = _manifest(target)
    assert manifest["name"] == "mug-tiny" and manifest["family"] == "mug"
    assert manifest["source"]["feature_list"] == "packaged copy of the published feature list"
    assert set(manifest["files"]) == {"model.ckpt", "model.yaml", FEATURES}
    assert manifest["files"]["model.ckpt"] == {
        "sha256": sha256_file(fixture_dir / "model.ckpt"),
        "size": (fixture_dir / "model.ckpt").stat().st_size,
    }
    assert (target / FEATURES).read_bytes() == (fixture_dir / FEATURES).read_bytes()
    assert model_name(target) == "mug-tiny" and CHART_FAMILIES.detect(target).name == "mug"


def test_import_the_zip_bundle(fixture_dir: Path, tmp_path: Path) -> None:
    target = import_model(_bundle(fixture_dir, tmp_path / "MugDiffusion.zip"), tmp_path / "mug")
    assert _manifest(target)["source"]["feature_list"] == f"zip:MugDiffusion/{FEATURES}"
    assert (target / "model.ckpt").read_bytes() == (fixture_dir / "model.ckpt").read_bytes()
    assert sorted(p.name for p in target.iterdir()) == ["configs", "model.ckpt", "model.yaml", MANIFEST_FILE]


def test_import_refuses_what_does_not_load(fixture_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "broken"
    shutil.copytree(fixture_dir, source)
    (source / "model.yaml").write_text(
        (source / "model.yaml").read_text().replace("model_channels: 32", "model_channels: 64")
    )
    with pytest.raises(FailedPreconditionError, match=r"does not match model\.yaml"):
        import_model(source, tmp_path / "target")
    assert not (tmp_path / "target").exists()
    with pytest.raises(FailedPreconditionError, match=r"no model\.ckpt"):
        import_model(tmp_path, tmp_path / "target")
    (tmp_path / "other.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    with pytest.raises(FailedPreconditionError, match="has no models/ckpt"):
        import_model(tmp_path / "other.zip", tmp_path / "target")


def test_demo_model_is_deterministic_and_makes_a_chart(tmp_path: Path) -> None:
    write_demo_model(tmp_path / "a")
    write_demo_model(tmp_path / "b")
    assert (tmp_path / "a" / "model.ckpt").read_bytes() == (tmp_path / "b" / "model.ckpt").read_bytes()
    manifest = _manifest(tmp_path / "a")
    assert manifest["name"] == "mug-demo" and manifest["source"] == {"kind": "demo", "untrained": True}
    engine = CHART_FAMILIES.load(tmp_path / "a", None)
    assert engine.info.family == "mug" and engine.info.revision == sha256_file(tmp_path / "a" / "model.ckpt")
    pcm = SongAudio(encoded=(Path(__file__).parents[1] / "fixtures" / "mug-tiny" / "song.wav").read_bytes())
    charts = [e for e in engine.generate(ChartRequest(audio=pcm, steps=2, count=2)) if isinstance(e, Chart)]
    assert len(charts) == 2 and all("[HitObjects]" in chart.osu for chart in charts)
