"""The hooks MusicGen gives the stage commands: its sampling flags, and the [codebooks, frames] file
layout of `latents generate` / `latents decode`, detected from the model folder."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest

from services.diffusion.families import GENERATION_FAMILIES
from services.diffusion.musicgen.options import MusicgenOptions
from services.runtime.errors import InvalidArgumentError
from services.style.families import STYLE_FAMILIES
from services.vocoder.families import VOCODER_FAMILIES
from tests.musicgen.conftest import FIXTURES, NAMES, case_request, find_case, song_codes


def generate_parser() -> argparse.ArgumentParser:
    """`latents generate`'s family part, as the stage command builds it from the detected family."""
    parser = argparse.ArgumentParser()
    GENERATION_FAMILIES.detect(FIXTURES / "musicgen-tiny").cli.add_arguments(parser)
    return parser


def options_of(argv: list[str]) -> MusicgenOptions:
    family = GENERATION_FAMILIES.detect(FIXTURES / "musicgen-tiny")
    return family.cli.options(generate_parser().parse_args(argv))


def test_sampling_flags_become_options():
    assert options_of([]) == MusicgenOptions()
    assert options_of(["--greedy"]) == MusicgenOptions(greedy=True)
    assert options_of(["--top-k", "50", "--temperature", "0.7", "--top-p", "0.9"]) == MusicgenOptions(
        top_k=50, top_p=0.9, temperature=0.7
    )


def test_prompt_codes_flag_reads_a_codes_file(tmp_path):
    codes = np.arange(12, dtype=np.int64).reshape(4, 3)
    np.save(tmp_path / "prompt.npy", codes)
    options = options_of(["--prompt-codes", str(tmp_path / "prompt.npy")])
    np.testing.assert_array_equal(options.prompt_codes, codes.T)
    with pytest.raises(InvalidArgumentError, match=r"musicgen\.prompt_codes"):
        options_of(["--prompt-codes", str(tmp_path / "missing.npy")])


def test_codes_file_layout_round_trips(fixtures, generation_engines):
    """`latents generate` writes int64 [codebooks, frames] (the reference's layout); `latents decode`
    reads it back into the engine's [frames, codebooks]."""
    fixture = fixtures["musicgen-stereo-tiny"]
    case = find_case(fixture, "greedy")
    frames = song_codes(generation_engines["musicgen-stereo-tiny"].generate(case_request(fixture, case)))
    written = GENERATION_FAMILIES.detect(fixture.folder).cli.to_file(frames)
    assert written.dtype == np.int64 and written.shape == (8, case["max_frames"])
    np.testing.assert_array_equal(written, fixture.array(case["expected_codes"]))
    read = VOCODER_FAMILIES.detect(fixture.folder).cli.from_file(written)
    np.testing.assert_array_equal(read, frames)


@pytest.mark.parametrize("name", NAMES)
def test_every_stage_detects_the_folder(name):
    folder = FIXTURES / name
    assert GENERATION_FAMILIES.detect(folder).name == "musicgen"
    assert VOCODER_FAMILIES.detect(folder).name == "musicgen"
    assert STYLE_FAMILIES.detect(folder).name == "musicgen"


def test_diffrhythm2_folders_are_not_taken_for_musicgen():
    assert GENERATION_FAMILIES.detect(FIXTURES / "diffrhythm2-tiny").name == "diffrhythm2"
    assert VOCODER_FAMILIES.detect(FIXTURES / "diffrhythm2-tiny").name == "diffrhythm2"
    assert STYLE_FAMILIES.detect(FIXTURES / "muq-mulan-tiny" / "MuQ-MuLan-tiny").name == "muq-mulan"


def test_family_entries_load_without_torch():
    """Detection runs in the gateway and the CLI, which must not pay for importing torch."""
    script = (
        "import sys; import services.diffusion.families, services.vocoder.families, services.style.families; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False"
