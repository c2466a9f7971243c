"""Stages at capacity, down, and lost mid-song, as a client sees them (issue 18, items 1 to 3): four
stage processes and the gateway on 127.0.0.1, every stage serving one call at a time with no queue,
so that concurrent songs are turned away with RESOURCE_EXHAUSTED and a retry delay."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from prometheus_client.parser import text_string_to_metric_families

from gateway.client import SongClient
from gateway.launcher import LocalStack
from gateway.server import GatewayConfig, build_spec
from songsmith.v1 import song_pb2
from tests.gateway.refusing_proxy import RefusingProxy
from tests.gateway.songs import assemble, healthy_stack, request
from tests.helpers import health_status, running_stage

ONE_AT_A_TIME = ["--max-concurrent", "1", "--max-queue", "0", "--retry-after-s", "0.3"]
FLAGS = {
    "tokenizer": ONE_AT_A_TIME,
    "style": ONE_AT_A_TIME,
    "diffusion": [*ONE_AT_A_TIME, "--max-batch", "1"],
    "vocoder": ONE_AT_A_TIME,
    "gateway": ["--max-running-jobs", "4", "--log-format", "text"],
}
SUCCEEDED = song_pb2.JOB_STATE_SUCCEEDED
WORK_METHODS = {
    "tokenizer": "/songsmith.v1.LyricTokenizerService/Tokenize",
    "style": "/songsmith.v1.StyleEncoderService/EmbedText",
    "diffusion": "/songsmith.v1.DiffusionService/GenerateLatents",
    "vocoder": "/songsmith.v1.VocoderService/Decode",
}


@pytest.fixture(scope="module")
def stack(demo_models: Path, tmp_path_factory: pytest.TempPathFactory):
    """The local stack on the demo model, each stage one call at a time, the gateway four songs."""
    with healthy_stack(demo_models, tmp_path_factory.mktemp("var"), FLAGS) as local:
        yield local


@pytest.fixture
def client(stack: LocalStack):
    """A SongService client for the stack's gateway."""
    song_client = SongClient(stack.services[0].address)
    yield song_client
    song_client.close()


def _refusals(stack: LocalStack, stage: str) -> float:
    """How many calls `stage` has turned away with RESOURCE_EXHAUSTED."""
    service = next(s for s in stack.services if s.name == stage)
    with urllib.request.urlopen(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "songsmith_requests_total" and sample.labels["code"] == "RESOURCE_EXHAUSTED"
    )


def _restart(stack: LocalStack, names: list[str], down_s: float) -> None:
    """SIGKILL the stages `names`, leave them down `down_s` seconds, start them again and wait until
    each reports SERVING."""
    for name in names:
        stack.processes[name].kill()
        stack.processes[name].wait()
    time.sleep(down_s)
    for name in names:
        stack.launch(name)
    deadline = time.monotonic() + 180
    for name in names:
        address = next(s.address for s in stack.services if s.name == name)
        with grpc.insecure_channel(address) as channel:
            while health_status(channel) != health_pb2.HealthCheckResponse.SERVING:
                assert time.monotonic() < deadline, f"{name} did not come back"
                time.sleep(0.05)


def test_songs_beyond_the_stages_capacity_wait_and_all_succeed(stack: LocalStack, client: SongClient) -> None:
    """Four songs at once on stages that take one call each: every stage's refusal carries a retry
    delay, the gateway waits it out, and no song fails (today's code failed all but one)."""
    refused_before = {stage: _refusals(stack, stage) for stage in ("diffusion", "vocoder")}
    # 12 s songs (6 blocks): each generation call outlasts the tokenizer's and style stage's
    # retry delays that stagger the songs, so the later songs meet a busy generation stage
    # (with 4 s songs they sometimes arrived one after another and were never refused).
    songs = [request(f"crowd-{index}", seconds=12, seed=index) for index in range(4)]
    for song in songs:
        client.submit(song)
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda song: assemble(client.watch(song.job_id, timeout=300)), songs))
    assert all(events[-1].HasField("done") and audio for audio, events in outcomes)
    for song in songs:
        job = client.stub.GetJob(song_pb2.GetJobRequest(job_id=song.job_id), timeout=10).job
        assert job.state == SUCCEEDED, job
    for stage, before in refused_before.items():
        assert _refusals(stack, stage) > before, f"{stage} never turned a song away: the test proves nothing"


def test_every_stage_s_refusal_is_waited_out(stack: LocalStack, tmp_path: Path) -> None:
    """The tokenizer, style, generation and vocoder calls share one retry policy: a refusal with a
    retry delay from any of them is asked again after the delay."""
    addresses = {s.name: s.address for s in stack.services}
    proxies = {
        stage: RefusingProxy(addresses[stage], {method}, refusals=2) for stage, method in WORK_METHODS.items()
    }
    config = GatewayConfig(
        port=0,
        drain_delay_s=0,
        jobs_db=str(tmp_path / "jobs.sqlite3"),
        results_dir=str(tmp_path / "results"),
        **{f"{stage}_target": proxy.address for stage, proxy in proxies.items()},
    )
    try:
        with running_stage(build_spec(config), config) as gateway:
            client = SongClient(f"127.0.0.1:{gateway.port}")
            audio, events = assemble(client.generate(request("refused-everywhere", seconds=4), timeout=300))
            client.close()
    finally:
        for proxy in proxies.values():
            proxy.close()
    assert events[-1].HasField("done") and audio
    for stage, method in WORK_METHODS.items():
        assert proxies[stage].refused[method] == 2, stage
        assert proxies[stage].calls[method] >= 3, f"{stage}: refused twice, then answered"


def test_the_first_song_after_stages_recover_succeeds(stack: LocalStack, client: SongClient) -> None:
    """After a 12 s outage of the tokenizer and the vocoder, a song sent the moment both report
    SERVING again succeeds: the channels reconnect within a second and the calls wait for them."""
    _restart(stack, ["tokenizer", "vocoder"], down_s=12)
    recovered = time.monotonic()
    audio, events = assemble(client.generate(request("after-outage", seconds=4), timeout=120))
    assert events[-1].HasField("done") and audio
    assert time.monotonic() - recovered < 60


def test_a_killed_vocoder_is_resumed_and_the_song_is_identical(stack: LocalStack, client: SongClient) -> None:
    """SIGKILL the vocoder after the first audio of a song: the decode starts again on the restarted
    vocoder from the first sample the client lacks, and the song equals an uninterrupted one."""
    expected, _ = assemble(client.generate(request("vocoder-whole", seconds=20), timeout=300))
    killed = threading.Event()

    def kill_after_first_audio(events):
        for event in events:
            if event.HasField("audio") and not killed.is_set():
                killed.set()
                stack.processes["vocoder"].kill()
                stack.processes["vocoder"].wait()
                stack.launch("vocoder")
            yield event

    audio, events = assemble(
        kill_after_first_audio(client.generate(request("vocoder-killed", seconds=20), timeout=300))
    )
    assert killed.is_set()
    assert events[-1].HasField("done")
    assert audio == expected
    log = (stack.var_dir / "logs" / "gateway.log").read_text(errors="replace")
    resumed = [int(n) for n in re.findall(r"decoding again from sample (\d+)", log)]
    assert resumed and max(resumed) > 0, "the decode resumed where the client's audio ended"
    assert not stack.wait_healthy(120)
