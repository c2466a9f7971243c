"""`songsmith latents generate` end to end on the demo checkpoint, and its one-line errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from gateway.cli import main as songsmith_main
from services.diffusion import cli
from services.diffusion.diffrhythm2.engine import DiffusionEngine

TOKENS = [500, 511, 503, 511, 40, 41, 42, 511]


def _main(argv: list[str]) -> int:
    return songsmith_main(argv)


def test_register_adds_the_latents_group_to_any_parser(capsys) -> None:
    parser = argparse.ArgumentParser(prog="songsmith")
    cli.register(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit):
        parser.parse_args(["latents", "generate", "--help"])
    assert "--max-frames" in capsys.readouterr().out


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    style = np.random.default_rng(3).standard_normal(512).astype(np.float32)
    np.save(tmp_path / "style.npy", style / np.linalg.norm(style))
    (tmp_path / "tokens.json").write_text(json.dumps(TOKENS))
    (tmp_path / "tokenized.json").write_text(json.dumps({"tokens": TOKENS, "lines": [], "warnings": []}))
    return {
        "style": tmp_path / "style.npy",
        "list": tmp_path / "tokens.json",
        "object": tmp_path / "tokenized.json",
    }


def _argv(model_dir: Path, tokens: Path, style: Path, out: Path, *extra: str) -> list[str]:
    return [
        "latents",
        "generate",
        "--model-dir",
        str(model_dir),
        "--tokens",
        str(tokens),
        "--style",
        str(style),
        "--seed",
        "11",
        "--steps",
        "4",
        "--cfg",
        "2.0",
        "--max-frames",
        "25",
        "-o",
        str(out),
        *extra,
    ]


@pytest.mark.parametrize("form", ["list", "object"])
def test_generate_writes_the_engines_latents(
    demo_model_dir: Path, demo_engine: DiffusionEngine, inputs, tmp_path: Path, capsys, form: str
) -> None:
    out = tmp_path / "out" / "latents.npy"
    assert _main(_argv(demo_model_dir, inputs[form], inputs["style"], out)) == 0
    latents = np.load(out)
    assert latents.dtype == np.float32 and latents.shape == (25, 64)
    blocks = demo_engine.sample(
        np.array(TOKENS), np.load(inputs["style"]), seed=11, steps=4, cfg_strength=2.0, max_frames=25
    )
    assert np.array_equal(latents, np.concatenate([b.latents for b in blocks]))
    captured = capsys.readouterr()
    assert "3/3" in captured.err and "block" in captured.err  # tqdm progress, one tick per block
    assert "[25, 64]" in captured.out


@pytest.mark.parametrize(
    ("tokens_text", "message"),
    [
        ("[1, 2,", "is not valid JSON"),
        ('{"lines": []}', 'an object with a "tokens" list'),
        ("[1, 1001]", "token_ids: ids must be in 0..1000"),
    ],
)
def test_bad_tokens_give_one_line(demo_model_dir, inputs, tmp_path, capsys, tokens_text, message) -> None:
    tokens = tmp_path / "bad.json"
    tokens.write_text(tokens_text)
    assert _main(_argv(demo_model_dir, tokens, inputs["style"], tmp_path / "o.npy")) == 2
    err = capsys.readouterr().err
    assert err.startswith("songsmith: error: ") and message in err and "Traceback" not in err


def test_bad_style_and_settings_give_one_line(demo_model_dir, inputs, tmp_path, capsys) -> None:
    short = tmp_path / "short.npy"
    np.save(short, np.zeros(100, np.float32))
    assert _main(_argv(demo_model_dir, inputs["list"], short, tmp_path / "o.npy")) == 2
    assert "style: must be a float [512] vector" in capsys.readouterr().err
    one_step = _argv(demo_model_dir, inputs["list"], inputs["style"], tmp_path / "o.npy", "--steps", "1")
    assert _main(one_step) == 2
    assert "steps: must be in 2..200" in capsys.readouterr().err
    assert _main(_argv(demo_model_dir, inputs["list"], tmp_path / "none.npy", tmp_path / "o.npy")) == 2
    assert "cannot read" in capsys.readouterr().err


def test_missing_model_gives_one_line(inputs, tmp_path, capsys) -> None:
    assert _main(_argv(tmp_path, inputs["list"], inputs["style"], tmp_path / "o.npy")) == 2
    err = capsys.readouterr().err
    assert err.startswith("songsmith: error: no diffusion model") and "model.safetensors" in err
