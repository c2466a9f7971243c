"""The gateway as a client sees it (issue 18, items 5 to 8): one `songsmith serve gateway` process on
127.0.0.1 with in-process stages on the demo model, four song streams and two control calls at
once (plus four waiting), one song at a time."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.cli import main
from gateway.client import SongClient
from gateway.validation import RequestLimits
from services.runtime.interceptor import field_violations, retry_delay
from songsmith.v1 import song_pb2
from tests.gateway.replicas import TOKENS, Gateways
from tests.gateway.songs import LYRICS, assemble, request

SERVING = health_pb2.HealthCheckResponse.SERVING
RUNNING, SUCCEEDED = song_pb2.JOB_STATE_RUNNING, song_pb2.JOB_STATE_SUCCEEDED
STREAMS = 4


@pytest.fixture(scope="module")
def gateway(demo_models: Path, tmp_path_factory: pytest.TempPathFactory):
    """One gateway process on a SQLite store."""
    folder = tmp_path_factory.mktemp("limits")
    single = Gateways(
        1,
        str(folder / "jobs.sqlite3"),
        demo_models,
        folder,
        max_running_jobs=1,
        max_concurrent=STREAMS,
        max_queue=0,
        control_max_concurrent=2,
        control_max_queue=4,
    )
    try:
        single.start()
        yield single
    finally:
        single.stop()


@pytest.fixture
def client(gateway: Gateways):
    """A client of the gateway."""
    song_client = gateway.client(0)
    yield song_client
    song_client.close()


def _job(client: SongClient, job_id: str) -> song_pb2.Job:
    return client.stub.GetJob(song_pb2.GetJobRequest(job_id=job_id), metadata=client.metadata, timeout=10).job


def _wait_for_state(client: SongClient, job_id: str, state: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while _job(client, job_id).state != state:
        assert time.monotonic() < deadline, f"{job_id} never reached {song_pb2.JobState.Name(state)}"
        time.sleep(0.1)


def _cancel(client: SongClient, job_id: str) -> song_pb2.Job:
    request = song_pb2.CancelJobRequest(job_id=job_id)
    return client.stub.CancelJob(request, metadata=client.metadata, timeout=30).job


def _refusal(call) -> grpc.RpcError | None:
    """The RESOURCE_EXHAUSTED error `call()` ended with, None when it succeeded."""
    try:
        call()
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
        return exc
    return None


def test_open_streams_never_starve_control_calls(gateway: Gateways, client: SongClient) -> None:
    """With every song stream taken (watchers of a queued job), job calls are still answered, a
    further stream is refused with a retry delay, every refusal of a burst carries one, and health
    checks in the burst are all answered."""
    client.submit(request("keeps-running", seconds=120))
    _wait_for_state(client, "keeps-running", RUNNING)
    client.submit(request("stays-queued"))
    watchers = [client.watch("stays-queued", timeout=120) for _ in range(STREAMS)]
    for watcher in watchers:
        assert next(iter(watcher)).HasField("accepted")
    refused = _refusal(lambda: next(iter(client.watch("stays-queued", timeout=10))))
    assert refused is not None and retry_delay(refused) > 0
    assert _job(client, "stays-queued").state == song_pb2.JOB_STATE_QUEUED
    listed = client.stub.ListJobs(song_pb2.ListJobsRequest(), metadata=client.metadata, timeout=10).jobs
    assert {"keeps-running", "stays-queued"} <= {job.job_id for job in listed}
    client.stub.ListModels(song_pb2.ListModelsRequest(), metadata=client.metadata, timeout=10)

    health = health_pb2_grpc.HealthStub(client.channel)
    start = threading.Barrier(100)

    def get_job() -> grpc.RpcError | None:
        start.wait()
        return _refusal(lambda: _job(client, "stays-queued"))

    def check_health() -> int:
        start.wait()
        return health.Check(health_pb2.HealthCheckRequest(), timeout=10).status

    with ThreadPoolExecutor(100) as pool:
        refusals = [pool.submit(get_job) for _ in range(80)]
        checks = [pool.submit(check_health) for _ in range(20)]
        refusals = [future.result() for future in refusals]
        checks = [future.result() for future in checks]
    turned_away = [error for error in refusals if error is not None]
    assert turned_away, "the burst never passed the control budget: the test proves nothing"
    assert all(retry_delay(error) for error in turned_away), "a refusal without a retry delay"
    assert checks == [SERVING] * 20

    assert _cancel(client, "stays-queued").state == song_pb2.JOB_STATE_CANCELLED
    assert _cancel(client, "keeps-running").state == song_pb2.JOB_STATE_CANCELLED
    for watcher in watchers:
        with pytest.raises(grpc.RpcError) as ended:
            list(watcher)
        assert ended.value.code() == grpc.StatusCode.CANCELLED


def test_a_dropped_generate_stream_leaves_its_song_running(gateway: Gateways, client: SongClient) -> None:
    """A Generate stream dropped mid-song does not cancel the job: a Generate with the same id
    attaches to it (replaying from `accepted`), a second watcher too, and later ones replay it."""
    song = request("dropped", seconds=10)
    first = client.generate(song, timeout=120)
    for event in first:
        if event.HasField("progress") and event.progress.stage == "diffusion":
            break
    first.cancel()
    time.sleep(1.0)
    assert _job(client, "dropped").state == RUNNING
    with ThreadPoolExecutor(2) as pool:
        again = pool.submit(lambda: assemble(client.generate(song, timeout=120)))
        watched = pool.submit(lambda: assemble(client.watch("dropped", timeout=120)))
        again, watched = again.result(), watched.result()
    audio, events = again
    assert events[0].HasField("accepted") and events[-1].HasField("done") and audio
    assert watched == again
    assert _job(client, "dropped").state == SUCCEEDED
    replayed, replayed_events = assemble(client.generate(song, timeout=60))
    assert replayed == audio and replayed_events[-1] == events[-1]


def test_the_song_goes_to_its_result_file_while_it_is_made(gateway: Gateways, client: SongClient) -> None:
    """The result is written as the audio is made: a partial file grows before the song ends, and
    the finished file is the streamed audio, with no partial file left."""
    results = gateway.folder / "results"
    sizes = []
    events = []
    for event in client.generate(request("written-as-made", seconds=20), timeout=120):
        events.append(event)
        if event.HasField("audio"):
            sizes += [p.stat().st_size for p in results.glob("written-as-made.wav.*.partial")]
    audio, _ = assemble(events)
    assert sizes and 0 < sizes[0] < len(audio), "the file was written before the song ended"
    assert (results / "written-as-made.wav").read_bytes() == audio
    assert not list(results.glob("*.partial"))


def test_an_undecodable_style_recording_names_its_field(gateway: Gateways, client: SongClient) -> None:
    song = request("bad-recording", style_prompt="")
    song.style_audio = b"definitely not a recording " * 50
    with pytest.raises(grpc.RpcError) as caught:
        list(client.generate(song, timeout=60))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [violation] = field_violations(caught.value)
    assert violation.field == "style_audio"
    assert violation.description == "not decodable as WAV, FLAC, MP3 or OGG audio (Format not recognised)"


def test_an_unwritable_results_folder_is_unavailable_without_paths(
    gateway: Gateways, client: SongClient
) -> None:
    results = gateway.folder / "results"
    kept = results.rename(gateway.folder / "results-kept")
    results.write_text("a file where the results folder was")
    try:
        with pytest.raises(grpc.RpcError) as caught:
            list(client.generate(request("nowhere-to-go"), timeout=60))
    finally:
        results.unlink()
        kept.rename(results)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "results volume" in caught.value.details() and str(gateway.folder) not in caught.value.details()
    assert not list(gateway.folder.rglob("*.partial"))


def test_the_cli_refuses_a_recording_too_large_for_a_request(
    gateway: Gateways, tmp_path: Path, capsys
) -> None:
    recording = tmp_path / "long-take.flac"
    recording.write_bytes(bytes(RequestLimits().max_style_audio_bytes + 1))
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_text(LYRICS, encoding="utf-8")
    flags = ["--server", gateway.address(0), "--token", TOKENS["alice"], "-q"]
    code = main(["generate", "--lyrics", str(lyrics), "--style-audio", str(recording), *flags])
    error = capsys.readouterr().err
    assert code == 2
    assert f"{recording} is 3.1 MB; a song's style recording may be at most 3.1 MB (3145728 bytes)" in error
    assert "grpc" not in error.lower() and "RESOURCE_EXHAUSTED" not in error
