"""Small helpers for tests that make songs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from gateway.stages import LatentBlock, LatentRequest
from services.runtime.cancellation import CancellationToken
from services.runtime.errors import UnavailableError
from songsmith.v1 import song_pb2

LYRICS = "[verse]\nMorning light on the harbor wall\n晨光照亮回家的路\n[chorus]\nHold on to the light"


def request(job_id: str = "", seconds: float = 4.0, seed: int = 11, **fields: object) -> song_pb2.SongRequest:
    """A short WAV song request (WAV so that equal audio means equal bytes)."""
    message = song_pb2.SongRequest(
        job_id=job_id,
        lyrics=LYRICS,
        style_prompt="warm indie folk",
        seed=seed,
        steps=4,
        max_seconds=seconds,
        format=song_pb2.AUDIO_FORMAT_WAV,
    )
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


class FlakyDiffusion:
    """Real stages whose diffusion stream breaks (UNAVAILABLE) after some blocks, a set number of times;
    `prefixes` records how many kept blocks each diffusion stream started after."""

    def __init__(self, stages, break_after: int, times: int) -> None:
        self._stages = stages
        self._break_after = break_after
        self._left = times
        self.prefixes: list[int] = []
        self.model_name, self.sample_rate = stages.model_name, stages.sample_rate

    def __getattr__(self, name: str):
        return getattr(self._stages, name)

    def generate_latents(
        self, latent_request: LatentRequest, token: CancellationToken
    ) -> Iterator[LatentBlock]:
        self.prefixes.append(len(latent_request.prefix))
        for sent, block in enumerate(self._stages.generate_latents(latent_request, token)):
            if self._left and sent == self._break_after:
                self._left -= 1
                raise UnavailableError("diffusion: connection reset")
            yield block
