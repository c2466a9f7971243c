"""Client side of SongService: bearer metadata, song event streams, and writing streamed audio to a file."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc

from services.runtime.channels import create_channel
from songsmith.v1 import song_pb2, song_pb2_grpc


class AudioFile:
    """Writes AudioChunk (or OszChunk) pieces at their offsets, so late header rewrites land where they
    belong."""

    def __init__(self, path: Path) -> None:
        """Create (or truncate) `path` and its folder."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle = path.open("wb")

    def write(self, chunk: song_pb2.AudioChunk | song_pb2.OszChunk) -> None:
        """Put `chunk.data` at `chunk.offset`."""
        self._handle.seek(chunk.offset)
        self._handle.write(chunk.data)

    def close(self) -> None:
        """Flush and close the file."""
        self._handle.close()


def candidate_output(output: Path, candidate: int, candidates: int) -> Path:
    """Where candidate `candidate` (from 0) of a request for `candidates` songs is written: `output`
    itself for a single song, else `<stem>-<candidate + 1><suffix>` beside it (song.mp3 ->
    song-1.mp3, song-2.mp3, ...)."""
    if candidates <= 1:
        return output
    return output.with_name(f"{output.stem}-{candidate + 1}{output.suffix}")


class SongFiles:
    """The files of one request's songs: each AudioChunk goes to its candidate's file, named as
    `candidate_output` says. Candidate 0 is written to `output` until another candidate shows up;
    at `close` it is renamed to its numbered name when there were several."""

    def __init__(self, output: Path) -> None:
        """Write into `output` (or, for several candidates, the files named after it)."""
        self.output = output
        self.files: dict[int, AudioFile] = {}

    def write(self, chunk: song_pb2.AudioChunk) -> None:
        """Put `chunk.data` at `chunk.offset` of its candidate's file."""
        if chunk.candidate not in self.files:
            path = self.output if chunk.candidate == 0 else candidate_output(self.output, chunk.candidate, 2)
            self.files[chunk.candidate] = AudioFile(path)
        self.files[chunk.candidate].write(chunk)

    def close(self) -> list[Path]:
        """Close every file; return their paths, candidate 0 first."""
        for file in self.files.values():
            file.close()
        first = self.files.get(0)
        if first is not None and len(self.files) > 1:
            first.path = first.path.replace(candidate_output(self.output, 0, len(self.files)))
        return [self.files[candidate].path for candidate in sorted(self.files)]


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
    osz_output: Path | None = None,
) -> song_pb2.SongSummary | None:
    """Follow a SongEvent stream: audio into `output` (several candidates each into its own file, see
    `SongFiles`) and the `.osz` of a song with charts into `osz_output` (each when given; the `.osz`
    file is created by its first piece); returns the `done` summary."""
    audio = SongFiles(output) if output is not None else None
    osz: AudioFile | None = None
    summary = None
    try:
        for event in events:
            on_event(event)
            if event.HasField("audio") and audio is not None:
                audio.write(event.audio)
            elif event.HasField("osz") and osz_output is not None:
                osz = osz or AudioFile(osz_output)
                osz.write(event.osz)
            elif event.HasField("done"):
                summary = event.done
    finally:
        for file in (audio, osz):
            if file is not None:
                file.close()
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
