"""Client side of SongService: bearer metadata, song event streams, and writing streamed audio to a file."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

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


class EventStream:
    """The SongEvents of a Generate or WatchJob call; `cancel` ends the call."""

    def __init__(self, call: Any) -> None:
        """Wrap the streaming call."""
        self._call = call

    def __iter__(self) -> Iterator[song_pb2.SongEvent]:
        for response in self._call:
            yield response.event

    def cancel(self) -> None:
        """Cancel the call; the song goes on (CancelJob stops it)."""
        self._call.cancel()


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

    def __init__(
        self, target: str, token: str = "", credentials: grpc.ChannelCredentials | None = None
    ) -> None:
        """Connect to the gateway at `target` (e.g. `127.0.0.1:50050`), over TLS with `credentials`."""
        self.channel = create_channel(target, credentials=credentials)
        self.stub = song_pb2_grpc.SongServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def generate(self, song: song_pb2.SongRequest, timeout: float | None = None) -> EventStream:
        """The Generate events of `song` (iterate them, or cancel the call)."""
        request = song_pb2.GenerateRequest(song=song)
        return EventStream(self.stub.Generate(request, timeout=timeout, metadata=self.metadata))

    def watch(self, job_id: str, timeout: float | None = None) -> EventStream:
        """A job's events, replayed then live."""
        request = song_pb2.WatchJobRequest(job_id=job_id)
        return EventStream(self.stub.WatchJob(request, timeout=timeout, metadata=self.metadata))

    def submit(self, song: song_pb2.SongRequest, timeout: float | None = 30) -> song_pb2.Job:
        """Start `song` in the background; the job (new, or the existing one with its id)."""
        request = song_pb2.SubmitJobRequest(song=song)
        return self.stub.SubmitJob(request, timeout=timeout, metadata=self.metadata).job

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()
