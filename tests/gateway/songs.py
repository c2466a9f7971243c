"""Small helpers for tests that make songs."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from gateway.launcher import LocalStack, plan
from gateway.models import discover
from gateway.pipeline import Pipeline, RetryPolicy
from gateway.router import Router
from gateway.stages import Block, GenerationClient, GenerationEvent, SongGeneration
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import UnavailableError
from songsmith.v1 import song_pb2
from tests.helpers import free_port_block

LYRICS = "[verse]\nMorning light on the harbor wall\n晨光照亮回家的路\n[chorus]\nHold on to the light"


def request(job_id: str = "", seconds: float = 4.0, seed: int = 11, **fields: object) -> song_pb2.SongRequest:
    """A short WAV song request (WAV so that equal audio means equal bytes)."""
    message = song_pb2.SongRequest(
        job_id=job_id,
        lyrics=LYRICS,
        style_prompt="warm indie folk",
        seed=seed,
        steps=4,
        format=song_pb2.AUDIO_FORMAT_WAV,
    )
    message.max_duration.FromNanoseconds(round(seconds * 1e9))
    for name, value in fields.items():
        setattr(message, name, value)
    return message


def assemble(events: Iterable[song_pb2.SongEvent]) -> tuple[bytes, list[song_pb2.SongEvent]]:
    """The audio file the events carry (pieces written at their offsets) and all the events."""
    file = bytearray()
    seen = []
    for event in events:
        seen.append(event)
        if event.HasField("audio"):
            offset, data = event.audio.offset, event.audio.data
            if offset > len(file):
                file.extend(bytes(offset - len(file)))
            file[offset : offset + len(data)] = data
    return bytes(file), seen


class FlakyGeneration:
    """A real generation client whose stream breaks (UNAVAILABLE) after some blocks, a set number of
    times; `prefixes` records how many kept blocks each stream started after."""

    def __init__(self, inner: GenerationClient, break_after: int, times: int) -> None:
        self._inner = inner
        self._break_after = break_after
        self._left = times
        self.prefixes: list[int] = []

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def generate(self, song: SongGeneration, token: CancellationToken) -> Iterator[GenerationEvent]:
        self.prefixes.append(len(song.request.prefix))
        sent = 0
        for event in self._inner.generate(song, token):
            if isinstance(event, Block):
                if self._left and sent == self._break_after:
                    self._left -= 1
                    raise UnavailableError("diffusion: connection reset")
                sent += 1
            yield event


def with_generation(
    router: Router, wrap: Callable[[GenerationClient], GenerationClient], retry: RetryPolicy | None = None
) -> Pipeline:
    """A pipeline over `router` whose default model's generation client is `wrap(the real one)`."""
    clone = copy.copy(router)
    model = copy.copy(router.default)
    model.generation = wrap(model.generation)
    clone.models = [model]
    return Pipeline(clone, retry)


@contextlib.contextmanager
def healthy_stack(
    models: Path, var_dir: Path, flags: dict[str, list[str]] | None = None
) -> Iterator[LocalStack]:
    """The local stack (`songsmith up`'s processes) on the models under `models`, each process given
    its `flags`, once every process is healthy; stopped on exit."""
    base = free_port_block(10)
    local = LocalStack(plan(discover(models), base, base + 5), var_dir, flags)
    local.start()
    try:
        problems = local.wait_healthy(240)
        assert not problems, problems
        yield local
    finally:
        local.stop()
