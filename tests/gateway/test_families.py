"""A second family, registered by the tests only ("chime", tests/families/chime.py), runs end to end
beside DiffRhythm 2: its stages as real gRPC processes, the gateway routing both models by name."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile
import yaml

from gateway.client import SongClient
from gateway.launcher import LocalStack, plan
from gateway.models import ModelRoute, RoutesError, discover, parse_routes
from gateway.pipeline import Pipeline
from gateway.results import MemoryResults
from gateway.router import Router
from gateway.server import GatewayConfig, build_spec
from gateway.validation import song_spec
from services.runtime.cancellation import CancellationToken
from services.runtime.families import PLUGINS_ENV, load_plugins
from services.runtime.interceptor import field_violations
from songsmith.v1 import model_pb2, model_pb2_grpc, song_pb2
from tests.families import chime
from tests.gateway.songs import assemble, request
from tests.helpers import free_port_block, running_stage

PLUGIN = "tests.families.chime"


@pytest.fixture(scope="module")
def chime_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chime model folder, with the plugin in this process's and the stage processes' environment."""
    previous = os.environ.get(PLUGINS_ENV)
    os.environ[PLUGINS_ENV] = PLUGIN
    load_plugins()
    yield chime.write_model(tmp_path_factory.mktemp("models") / "chime")
    if previous is None:
        del os.environ[PLUGINS_ENV]
    else:
        os.environ[PLUGINS_ENV] = previous


@pytest.fixture(scope="module")
def chime_stages(chime_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """The chime model's three stages as `songsmith serve` processes; their routing."""
    (route,) = discover(chime_model.parent)
    stack = plan([route], free_port_block(4), 0)
    processes = LocalStack(stack, tmp_path_factory.mktemp("var"))
    stages = stack.services[1:]
    for service in stages:
        processes.launch(service.name)
    processes.services = stages
    try:
        assert not processes.wait_healthy(240)
        yield stack.routes["chime"], {service.component: service.address for service in stages}
    finally:
        processes.stop()


@pytest.fixture(scope="module")
def gateway(demo_models: Path, chime_stages, tmp_path_factory: pytest.TempPathFactory):
    """A gateway routing DiffRhythm 2 (its stages in process) first and chime (remote) second."""
    routing, _ = chime_stages
    (diffrhythm2,) = discover(demo_models)
    models = yaml.safe_dump({"diffrhythm2": diffrhythm2.stages, "chime": routing}, sort_keys=False)
    var = tmp_path_factory.mktemp("gateway")
    config = GatewayConfig(
        port=0,
        drain_delay_s=0,
        models=models,
        jobs_db=str(var / "jobs.sqlite3"),
        results_dir=str(var / "results"),
        max_running_jobs=2,
    )
    with running_stage(build_spec(config), config) as server:
        client = SongClient(f"127.0.0.1:{server.port}")
        yield client
        client.close()


def _chime_song(job_id: str, **fields: object) -> song_pb2.SongRequest:
    song = song_pb2.SongRequest(
        job_id=job_id, model="chime", style_prompt="bright bells", seed=3, format=song_pb2.AUDIO_FORMAT_WAV
    )
    song.max_duration.FromNanoseconds(1_000_000_000)
    for name, value in fields.items():
        setattr(song, name, value)
    return song


def test_a_stage_shared_by_two_models_runs_once() -> None:
    routes = parse_routes(
        "a: {tokenizer: local, style: local:m/mulan, diffusion: local:m/a, vocoder: local:m/a}\n"
        "b: {tokenizer: local, style: local:m/mulan, diffusion: local:m/b, vocoder: local:m/b}\n"
    )
    stack = plan(routes, 40000, 0)
    names = [service.name for service in stack.services]
    assert names == ["gateway", "tokenizer", "style", "diffusion", "vocoder", "diffusion-b", "vocoder-b"]
    assert stack.routes["a"]["style"] == stack.routes["b"]["style"] == "127.0.0.1:40002"
    assert stack.routes["b"]["diffusion"] == "127.0.0.1:40005"


def test_every_chime_stage_says_what_it_hosts(chime_model: Path, chime_stages) -> None:
    _, addresses = chime_stages
    revision = hashlib.sha256((chime_model / chime.CONFIG).read_bytes()).hexdigest()
    for stage, address in addresses.items():
        with grpc.insecure_channel(address) as channel:
            stub = model_pb2_grpc.ModelInfoServiceStub(channel)
            reply = stub.GetModelInfo(model_pb2.GetModelInfoRequest(), timeout=10)
        assert (reply.model.name, reply.model.family, reply.model.revision) == ("chime", "chime", revision), (
            stage
        )


def test_list_models_shows_both_models_and_their_stages(gateway: SongClient, chime_stages) -> None:
    _, addresses = chime_stages
    reply = gateway.stub.ListModels(song_pb2.ListModelsRequest(), timeout=30)
    assert [(m.name, m.default, m.model.family) for m in reply.models] == [
        ("diffrhythm2", True, "diffrhythm2"),
        ("chime", False, "chime"),
    ]
    diffrhythm2, chime_model = reply.models
    assert [s.stage for s in diffrhythm2.stages] == ["tokenizer", "style", "diffusion", "vocoder"]
    assert {s.target for s in diffrhythm2.stages} == {"in-process"}
    assert {s.stage: s.target for s in chime_model.stages} == addresses
    assert all(s.model.family == "chime" and not s.error for s in chime_model.stages)
    assert list(chime_model.model.inputs) == [
        model_pb2.MODEL_INPUT_STYLE_TEXT,
        model_pb2.MODEL_INPUT_REFERENCE_AUDIO,
    ]


def test_a_chime_song_through_the_stack_equals_the_in_process_one(
    gateway: SongClient, chime_model: Path
) -> None:
    audio, events = assemble(gateway.generate(_chime_song("chime-1"), timeout=120))
    assert events[0].accepted.model == "chime" and events[-1].done.model == "chime"
    steps = [e.progress.step for e in events if e.HasField("progress") and e.progress.total_steps]
    assert steps == [0, 1]
    pipeline = Pipeline(Router(discover(chime_model.parent)))
    local: list[song_pb2.SongEvent] = []
    song = _chime_song("chime-local")
    outputs = MemoryResults()
    pipeline.run(song_spec(song, "chime-local", 3), CancellationToken(), local.append, outputs=outputs)
    assert audio == outputs.files[0]
    samples, rate = soundfile.read(io.BytesIO(audio))
    assert rate == chime.SAMPLE_RATE and len(samples) == 10 * chime.SAMPLES_PER_FRAME
    assert np.abs(samples).max() > 0.01


def _steady_recording(level: float, frames: int) -> bytes:
    buffer = io.BytesIO()
    samples = np.full(frames * chime.SAMPLES_PER_FRAME, level, np.float32)
    soundfile.write(buffer, samples, chime.SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def test_a_recording_to_continue_is_encoded_by_the_vocoder_stage(
    gateway: SongClient, chime_model: Path
) -> None:
    song = _chime_song("chime-continue", reference_audio=_steady_recording(0.8, 4))
    audio, events = assemble(gateway.generate(song, timeout=120))
    assert "vocoder" in {e.progress.stage for e in events if e.HasField("progress")}
    pipeline = Pipeline(Router(discover(chime_model.parent)))
    outputs = MemoryResults()
    pipeline.run(
        song_spec(song, "chime-continue", 3), CancellationToken(), lambda event: None, outputs=outputs
    )
    assert audio == outputs.files[0]
    samples, _ = soundfile.read(io.BytesIO(audio))
    continued = samples[: 4 * chime.SAMPLES_PER_FRAME]
    assert np.abs(continued).max() == pytest.approx(0.5 * np.tanh(0.8), abs=2e-3)
    assert np.abs(samples[4 * chime.SAMPLES_PER_FRAME :]).max() < 0.5 * np.tanh(0.5)


def test_an_undecodable_recording_fails_the_song_naming_reference_audio(gateway: SongClient) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        assemble(gateway.generate(_chime_song("chime-garbage", reference_audio=b"RIFF...."), timeout=120))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [violation] = field_violations(caught.value)
    assert violation.field == "reference_audio"
    assert violation.description.startswith("not decodable as WAV, FLAC, MP3 or OGG audio")
    assert "object at 0x" not in violation.description and "BytesIO" not in violation.description


def test_a_model_without_an_encoder_refuses_a_recording(gateway: SongClient) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        gateway.submit(request("dr2-edit", seconds=2, reference_audio=_steady_recording(0.5, 4)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(caught.value)] == ["reference_audio"]


def test_the_default_model_still_makes_diffrhythm2_songs(gateway: SongClient) -> None:
    audio, events = assemble(gateway.generate(request("dr2-1", seconds=2), timeout=300))
    assert events[-1].done.model == "diffrhythm2" and events[-1].done.sample_rate == 48000 and audio


def test_an_unknown_model_is_not_found(gateway: SongClient) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        gateway.submit(_chime_song("nope-1", model="no-such-model"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "diffrhythm2, chime" in caught.value.details()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"lyrics": "[verse]\nla la"}, "lyrics"),
        ({"style_audio": b"RIFF"}, "style_audio"),
    ],
)
def test_inputs_chime_cannot_use_are_invalid(gateway: SongClient, fields: dict, field: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        gateway.submit(_chime_song("bad-chime", **fields))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(caught.value)] == [field]


def test_routes_name_every_stage_they_use() -> None:
    (route,) = parse_routes("m: {vocoder: 'dns:///v:2', diffusion: 'dns:///d:1'}")
    assert route == ModelRoute("m", {"diffusion": "dns:///d:1", "vocoder": "dns:///v:2"})
    for text, problem in (
        ("m: {diffusion: a:1}", "no vocoder stage"),
        ("m: {diffusion: a:1, vocoder: b:2, mixer: c:3}", "unknown stage 'mixer'"),
        ("[not, a, mapping]", "map each model name"),
        ("m: {diffusion: a:1, vocoder: 7}", "map each stage"),
    ):
        with pytest.raises(RoutesError, match=problem):
            parse_routes(text)
