"""MusicGen songs through the gateway: the demo model's three stages as real gRPC servers behind a real
gateway (all on 127.0.0.1, in this process so the test can see when the generation stage samples),
against the same song made in process, streamed before the last code is sampled, continuing a
recording, and every bad input with its status code and field."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile
import yaml

from gateway.client import SongClient
from gateway.model_store import MUSICGEN_DEMO, write_musicgen_demo
from gateway.models import discover
from gateway.pipeline import Pipeline
from gateway.router import Router
from gateway.server import GatewayConfig
from gateway.server import build_spec as gateway_spec
from gateway.validation import song_spec
from services.diffusion.engine import GenerationRequest
from services.diffusion.musicgen.engine import MusicgenEngine
from services.diffusion.server import DiffusionConfig
from services.diffusion.server import build_spec as diffusion_spec
from services.runtime.cancellation import CancellationToken
from services.runtime.interceptor import field_violations
from services.runtime.server import StageSpec
from services.style.musicgen.engine import MusicgenStyleEngine
from services.style.server import StyleConfig
from services.style.server import build_spec as style_spec
from services.vocoder.musicgen.engine import MusicgenVocoderEngine
from services.vocoder.server import VocoderConfig
from services.vocoder.server import build_spec as vocoder_spec
from songsmith.v1 import diffrhythm1_pb2, musicgen_pb2, song_pb2
from tests.gateway.songs import assemble
from tests.helpers import running_stage

PROMPT = "lofi hip hop, mellow piano, vinyl crackle"
SAMPLE_RATE = 32000


def song(job_id: str, seconds: float = 3.0, seed: int = 5, **fields: object) -> song_pb2.SongRequest:
    """A WAV MusicGen song request (WAV so that equal audio means equal bytes)."""
    message = song_pb2.SongRequest(
        job_id=job_id,
        model=MUSICGEN_DEMO,
        style_prompt=PROMPT,
        seed=seed,
        format=song_pb2.AUDIO_FORMAT_WAV,
    )
    message.max_duration.FromNanoseconds(round(seconds * 1e9))
    for name, value in fields.items():
        if isinstance(value, musicgen_pb2.MusicGenOptions):
            message.musicgen.CopyFrom(value)
        elif isinstance(value, diffrhythm1_pb2.DiffRhythm1Options):
            message.diffrhythm1.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def recording(seconds: float, rate: int = 44100, channels: int = 2) -> bytes:
    """A 16-bit WAV of two tones (a rate and channel count the vocoder must convert)."""
    t = np.arange(round(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 330 * t)
    samples = np.stack([tone * (0.5 + 0.5 * c) for c in range(channels)], axis=1)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


class SamplerClock:
    """When the generation stage's sampler yielded each block of each song: a block leaves the
    sampler right after its last code is sampled, and the codes after it are sampled later."""

    def __init__(self) -> None:
        self.songs: list[list[float]] = []

    def spec(self, spec: StageSpec) -> StageSpec:
        """The stage spec whose loaded engine's sampler records the times."""

        def load() -> MusicgenEngine:
            engine = spec.load()
            sample = engine.sampler.sample

            def timed(*args, **kwargs) -> Iterator:
                times: list[float] = []
                self.songs.append(times)
                for block in sample(*args, **kwargs):
                    times.append(time.monotonic())
                    yield block

            engine.sampler.sample = timed
            return engine

        return replace(spec, load=load)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model root holding the MusicGen demo model only."""
    root = tmp_path_factory.mktemp("musicgen-models")
    write_musicgen_demo(root)
    return root


@pytest.fixture(scope="module")
def clock() -> SamplerClock:
    return SamplerClock()


@pytest.fixture(scope="module")
def gateway(models: Path, clock: SamplerClock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a gateway routing musicgen-demo to its style, generation and vocoder stages."""
    folder = str(models / MUSICGEN_DEMO)
    style = StyleConfig(port=0, drain_delay_s=0, metrics_port=0, model_dir=folder)
    diffusion = DiffusionConfig(port=0, drain_delay_s=0, metrics_port=0, model_dir=folder)
    vocoder = VocoderConfig(port=0, drain_delay_s=0, metrics_port=0, model_dir=folder)
    var = tmp_path_factory.mktemp("var")
    with (
        running_stage(style_spec(style), style) as style_server,
        running_stage(clock.spec(diffusion_spec(diffusion)), diffusion) as diffusion_server,
        running_stage(vocoder_spec(vocoder), vocoder) as vocoder_server,
    ):
        routes = {
            MUSICGEN_DEMO: {
                "style": f"127.0.0.1:{style_server.port}",
                "diffusion": f"127.0.0.1:{diffusion_server.port}",
                "vocoder": f"127.0.0.1:{vocoder_server.port}",
            }
        }
        config = GatewayConfig(
            port=0,
            drain_delay_s=0,
            metrics_port=0,
            models=yaml.safe_dump(routes),
            jobs_db=str(var / "jobs.sqlite3"),
            results_dir=str(var / "results"),
        )
        with running_stage(gateway_spec(config), config) as server:
            yield f"127.0.0.1:{server.port}"


@pytest.fixture
def client(gateway: str) -> Iterator[SongClient]:
    song_client = SongClient(gateway)
    yield song_client
    song_client.close()


@pytest.fixture(scope="module")
def in_process(models: Path) -> Pipeline:
    """The same model's stages loaded in this process, no gRPC."""
    return Pipeline(Router(discover(models)))


def make_in_process(pipeline: Pipeline, request: song_pb2.SongRequest) -> bytes:
    """The song's file as the in-process pipeline writes it."""
    events: list[song_pb2.SongEvent] = []
    pipeline.run(song_spec(request, request.job_id, request.seed), CancellationToken(), events.append)
    audio, _ = assemble(events)
    return audio


def test_a_song_through_grpc_equals_the_song_in_process(client: SongClient, in_process: Pipeline) -> None:
    request = song("equal-1", seconds=3.0, musicgen=musicgen_pb2.MusicGenOptions(top_k=50, temperature=0.8))
    audio, events = assemble(client.generate(request, timeout=300))
    assert events[0].accepted.model == MUSICGEN_DEMO
    done = events[-1].done
    assert (done.sample_rate, done.channels, done.model) == (SAMPLE_RATE, 1, MUSICGEN_DEMO)
    assert audio == make_in_process(in_process, request)
    samples, rate = soundfile.read(io.BytesIO(audio), dtype="float32")
    assert rate == SAMPLE_RATE and samples.shape == (3 * 50 * 640,)
    assert 0.0 < np.abs(samples).max() <= 1.0
    other_seed = make_in_process(in_process, song("equal-2", seconds=3.0, seed=6, musicgen=request.musicgen))
    assert other_seed != audio


def test_the_first_audio_reaches_the_client_before_the_last_code_is_sampled(
    client: SongClient, clock: SamplerClock
) -> None:
    seconds = 20
    first_audio = None
    before = len(clock.songs)
    events = []
    for event in client.generate(song("stream-1", seconds=seconds), timeout=300):
        if event.HasField("audio") and first_audio is None:
            first_audio = time.monotonic()
        events.append(event)
    assert events[-1].HasField("done")
    (blocks,) = clock.songs[before:]
    assert len(blocks) == seconds
    # Block 18 left the sampler before block 19's codes, the song's last, were sampled.
    assert first_audio < blocks[-2], (first_audio - blocks[0], blocks[-2] - blocks[0])
    kinds = [
        "audio" if e.HasField("audio") else f"progress {e.progress.blocks_done}"
        for e in events
        if e.HasField("audio") or (e.HasField("progress") and e.progress.stage == "diffusion")
    ]
    assert kinds.index("audio") < kinds.index(f"progress {seconds}")


def test_a_recording_is_continued_through_the_gateway(client: SongClient, models: Path) -> None:
    """The gateway's song equals the engines run by hand: the vocoder encodes the recording, the LM
    continues its codes, the vocoder decodes the whole song at once (equal up to the 16-bit WAV's
    rounding). The song starts with the recording's codes."""
    reference = recording(1.5)
    request = song("continue-1", seconds=4.0, seed=9, reference_audio=reference)
    audio, events = assemble(client.generate(request, timeout=300))
    assert events[-1].HasField("done")
    folder = models / MUSICGEN_DEMO
    vocoder = MusicgenVocoderEngine.load(folder)
    codes = vocoder.encode_recording(reference)
    assert codes.shape == (75, 4)
    states = MusicgenStyleEngine.load(folder).embed_text(PROMPT).vector
    generation = MusicgenEngine.load(folder)
    blocks = generation.generate(GenerationRequest(style=states, seed=9, max_frames=200, reference=codes))
    continued = np.concatenate([block.frames for block in blocks])
    assert np.array_equal(continued[:75], codes)
    expected = vocoder.decode(continued)[0]
    samples, rate = soundfile.read(io.BytesIO(audio), dtype="float32")
    assert rate == SAMPLE_RATE and samples.shape == expected.shape
    assert np.abs(samples - np.clip(expected, -1, 1)).max() <= 2 / 32768
    without = generation.generate(GenerationRequest(style=states, seed=9, max_frames=200))
    assert not np.array_equal(np.concatenate([block.frames for block in without])[:75], codes)


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"lyrics": "[verse]\nla la la"}, grpc.StatusCode.INVALID_ARGUMENT, "lyrics"),
        ({"style_prompt": " "}, grpc.StatusCode.INVALID_ARGUMENT, "style_prompt"),
        ({"style_prompt": "x " * 300}, grpc.StatusCode.INVALID_ARGUMENT, "style_prompt"),
        ({"style_audio": recording(1.0)}, grpc.StatusCode.INVALID_ARGUMENT, "style_audio"),
        ({"reference_audio": b"RIFF not audio"}, grpc.StatusCode.INVALID_ARGUMENT, "reference_audio"),
        ({"reference_audio": recording(31.0, 8000, 1)}, grpc.StatusCode.INVALID_ARGUMENT, "reference_audio"),
        ({"reference_audio": recording(3.5)}, grpc.StatusCode.INVALID_ARGUMENT, "reference_audio"),
        (
            {"musicgen": musicgen_pb2.MusicGenOptions(top_k=4096)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "musicgen.top_k",
        ),
        (
            {"musicgen": musicgen_pb2.MusicGenOptions(top_p=1.5)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "musicgen.top_p",
        ),
        (
            {"musicgen": musicgen_pb2.MusicGenOptions(temperature=0.0)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "musicgen.temperature",
        ),
        (
            {"musicgen": musicgen_pb2.MusicGenOptions(temperature=11.0)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "musicgen.temperature",
        ),
        (
            {"diffrhythm1": diffrhythm1_pb2.DiffRhythm1Options()},
            grpc.StatusCode.INVALID_ARGUMENT,
            "diffrhythm1",
        ),
        ({"cfg_strength": 25.0}, grpc.StatusCode.INVALID_ARGUMENT, "cfg_strength"),
        ({"model": "musicgen-nope"}, grpc.StatusCode.NOT_FOUND, None),
    ],
    ids=[
        "lyrics",
        "empty-prompt",
        "prompt-too-long-for-t5",
        "melody-to-a-text-model",
        "undecodable-recording",
        "recording-over-30s",
        "recording-longer-than-the-song",
        "top-k",
        "top-p",
        "temperature-zero",
        "temperature-high",
        "other-family-options",
        "cfg",
        "unknown-model",
    ],
)
def test_bad_requests_fail_with_their_status_and_field(
    client: SongClient, fields: dict, code: grpc.StatusCode, field: str | None
) -> None:
    request = song("", seconds=3.0, **fields)
    with pytest.raises(grpc.RpcError) as caught:
        for _ in client.generate(request, timeout=120):
            pass
    assert caught.value.code() == code, caught.value.details()
    if field is not None:
        assert_names_field(caught.value, field)


def assert_names_field(error: grpc.RpcError, field: str) -> None:
    """The status names `field`: as a field violation when the song's stream saw the stage fail, and
    in the message when the job had already failed (a stored job error keeps only its text, so its
    violation is on "request", its message the stage's)."""
    fields = [violation.field for violation in field_violations(error)]
    assert fields in ([field], ["request"]), error.details()
    assert error.details().removeprefix("request: ").startswith(f"{field}: "), error.details()


@pytest.mark.parametrize(("seconds", "where"), [(700.0, "gateway"), (301.0, "generation stage")])
def test_a_length_out_of_range_names_max_duration(client: SongClient, seconds: float, where: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        for _ in client.generate(song(f"long-{seconds:g}", seconds=seconds), timeout=120):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, where
    assert_names_field(caught.value, "max_duration")


def test_song_options_reach_the_sampler(in_process: Pipeline) -> None:
    """Greedy ignores the seed; sampling with the same options is reproducible and differs from
    greedy; top-k 1 is greedy decoding."""
    greedy = musicgen_pb2.MusicGenOptions(greedy=True)
    first = make_in_process(in_process, song("opt-1", seconds=1.0, seed=1, musicgen=greedy))
    assert make_in_process(in_process, song("opt-2", seconds=1.0, seed=2, musicgen=greedy)) == first
    top1 = musicgen_pb2.MusicGenOptions(top_k=1)
    assert make_in_process(in_process, song("opt-3", seconds=1.0, seed=3, musicgen=top1)) == first
    sampled = make_in_process(in_process, song("opt-4", seconds=1.0, seed=3))
    assert sampled != first
    assert sampled == make_in_process(in_process, song("opt-5", seconds=1.0, seed=3))
