"""A style vector that comes out NaN fails the call instead of being returned (issue 18, item 8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.runtime.errors import InternalError
from services.style.muq_mulan.engine import StyleEngine
from tests.style.conftest import CHECKPOINT


def test_a_model_that_makes_nan_fails_instead_of_returning_it() -> None:
    engine = StyleEngine.load(CHECKPOINT, text_cache_size=0)
    with torch.no_grad():
        engine.model.get_parameter("mulan.audio_to_latents.bias")[0] = float("nan")
    one_second = np.random.default_rng(0).uniform(-0.5, 0.5, engine.sample_rate).astype(np.float32)
    with pytest.raises(InternalError, match="NaN or infinite style vector"):
        engine.embed_waveform(one_second)
