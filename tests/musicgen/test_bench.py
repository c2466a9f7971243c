"""The GPU figures of bench/musicgen.py run end to end (here on the CPU, with tiny shapes), so the
function bench/gpu.py calls on a GPU machine is exercised before a GPU is at hand."""

from __future__ import annotations

from bench.musicgen import gpu_figures

TINY_LM = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "ffn_dim": 64}
TINY_T5 = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 4, "vocab_size": 64}
TINY_CODEC = {"num_filters": 4, "hidden_size": 16, "codebook_dim": 16}


def test_gpu_figures_run_on_tiny_shapes():
    rows = gpu_figures(
        "cpu",
        "float32",
        sizes=("tiny",),
        seconds=1.2,
        concurrent=2,
        shapes={"tiny": TINY_LM},
        text_shape=TINY_T5,
        codec_shape=TINY_CODEC,
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["size"] == "tiny" and row["frames"] == 60 and row["concurrent"] == 2
    assert row["frames_per_s"] > 0 and row["songs_per_hour"] > 0
    assert 0 < row["first_audio_s"] < row["song_s"]
