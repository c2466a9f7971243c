"""Every bad request field is refused before sampling, with the proto field named."""

from __future__ import annotations

import numpy as np
import pytest

from services.diffusion.diffrhythm2.engine import DiffusionEngine
from services.runtime.errors import InvalidArgumentError

TOKENS = np.array([500, 511, 40, 41, 511], dtype=np.int64)
STYLE = np.full(512, 0.044, np.float32)


ZERO_BLOCK = np.zeros((10, 64), np.float32)


def _nan_style() -> np.ndarray:
    style = STYLE.copy()
    style[3] = np.nan
    return style


def _ending_block() -> np.ndarray:
    block = np.zeros((10, 64), np.float32)
    block[-1] = 1.0
    return block


CASES = {
    "token above 1000": ("token_ids", {"tokens": np.array([1, 1001])}),
    "negative token": ("token_ids", {"tokens": np.array([-1, 5])}),
    "no tokens": ("token_ids", {"tokens": np.zeros(0, np.int64)}),
    "float tokens": ("token_ids", {"tokens": np.array([1.0, 2.0])}),
    "2-D tokens": ("token_ids", {"tokens": np.ones((2, 2), np.int64)}),
    "style too short": ("style", {"style": np.zeros(511, np.float32)}),
    "style with NaN": ("style", {"style": _nan_style()}),
    "one step": ("steps", {"steps": 1}),
    "too many steps": ("steps", {"steps": 201}),
    "negative guidance": ("cfg_strength", {"cfg_strength": -0.5}),
    "guidance above 20": ("cfg_strength", {"cfg_strength": 20.5}),
    "NaN guidance": ("cfg_strength", {"cfg_strength": float("nan")}),
    "zero frames": ("max_frames", {"max_frames": 0}),
    "frames over the cap": ("max_frames", {"max_frames": 3001}),
    "prefix as long as the song": ("prefix", {"max_frames": 20, "prefix": [ZERO_BLOCK] * 2}),
    "prefix block of 9 frames": ("prefix[0].frames", {"prefix": [np.zeros((9, 64), np.float32)]}),
    "prefix block with NaN": ("prefix[0].frames", {"prefix": [np.full((10, 64), np.nan, np.float32)]}),
    "prefix block that ends the song": ("prefix[0].frames", {"prefix": [_ending_block()]}),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_field_is_named(demo_engine: DiffusionEngine, name: str) -> None:
    field, change = CASES[name]
    request = {"tokens": TOKENS, "style": STYLE, "seed": 1, "steps": 4, "cfg_strength": 2.0, "max_frames": 50}
    request.update(change)
    tokens, style = request.pop("tokens"), request.pop("style")
    with pytest.raises(InvalidArgumentError) as caught:
        demo_engine.sample(tokens, style, **request)  # fails at the call, before any block is sampled
    assert [v.field for v in caught.value.violations] == [field]


def test_every_bad_field_is_reported_at_once(demo_engine: DiffusionEngine) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        demo_engine.sample(TOKENS, STYLE[:3], seed=1, steps=0, cfg_strength=99.0, max_frames=0)
    assert [v.field for v in caught.value.violations] == ["style", "steps", "cfg_strength", "max_frames"]


def test_the_cap_is_configurable(demo_model_dir) -> None:
    engine = DiffusionEngine.load(demo_model_dir, max_frames_cap=40)
    with pytest.raises(InvalidArgumentError, match=r"max_frames: must be in 1\.\.40"):
        engine.sample(TOKENS, STYLE, seed=1, max_frames=41)
    assert len(list(engine.sample(TOKENS, STYLE, seed=1, steps=2, max_frames=40))) == 4


def test_cpu_refuses_half_precision(demo_model_dir) -> None:
    with pytest.raises(ValueError, match="float32"):
        DiffusionEngine.load(demo_model_dir, dtype="float16")
