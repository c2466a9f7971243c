"""Client side of SongService: bearer metadata, and writing streamed audio into a file."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import grpc

from services.runtime.channels import create_channel
from songsmith.v1 import song_pb2, song_pb2_grpc


class AudioFile:
    """Writes AudioChunk pieces at their offsets, so late header rewrites land where they belong."""

    def __init__(self, path: Path) -> None:
        """Create (or truncate) `path` and its folder."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle = path.open("wb")

    def write(self, chunk: song_pb2.AudioChunk) -> None:
        """Put `chunk.data` at `chunk.offset`."""
        self._handle.seek(chunk.offset)
        self._handle.write(chunk.data)

    def close(self) -> None:
        """Flush and close the file."""
        self._handle.close()


def consume(
    events: Iterable[song_pb2.SongEvent],
    output: Path | None,
    on_event: Callable[[song_pb2.SongEvent], None] = lambda event: None,
) -> song_pb2.SongSummary | None:
    """Follow a SongEvent stream: audio into `output` (when given); returns the `done` summary."""
    audio = AudioFile(output) if output is not None else None
    summary = None
    try:
        for event in events:
            on_event(event)
            if event.HasField("audio") and audio is not None:
                audio.write(event.audio)
            elif event.HasField("done"):
                summary = event.done
    finally:
        if audio is not None:
            audio.close()
    return summary


class SongClient:
    """A SongService stub with the bearer token attached to every call."""

    def __init__(self, target: str, token: str = "") -> None:
        """Connect to the gateway at `target` (e.g. `127.0.0.1:50050`)."""
        self.channel = create_channel(target)
        self.stub = song_pb2_grpc.SongServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def generate(self, request: song_pb2.SongRequest, timeout: float | None = None) -> grpc.Call:
        """The Generate event stream (a call object: iterate it, or cancel it)."""
        return self.stub.Generate(request, timeout=timeout, metadata=self.metadata)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()
