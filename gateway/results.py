"""Where finished songs are kept, so that every gateway can replay any job's audio.

`FolderResults` is a folder: local for one gateway, a shared (ReadWriteMany) volume for several.
Every backend uses the same layout: one object per job named `<job_id>.<extension>`; for a
request with several candidates one more per candidate i > 0, `<job_id>~<i>.<extension>`; and
`<job_id>.osz` beside them for a song with charts.

A song's audio goes to its result while the song is made, piece by piece at each piece's offset
(`ResultWriter.write_at`), so no gateway holds a whole song in memory; readers see the object only
once it is complete (`commit`), and a song that fails leaves nothing behind (`abort`). A results
volume that is full answers RESOURCE_EXHAUSTED, one that cannot be written UNAVAILABLE; neither
message names a server path.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from services.runtime.errors import NotFoundError, ResourceExhaustedError, ServiceError, UnavailableError

log = logging.getLogger(__name__)
PARTIAL_SUFFIX = ".partial"
# A full volume is worth asking again about after this long.
FULL_RETRY_AFTER_S = 60.0
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class ResultSink(Protocol):
    """Where a song's encoded pieces are written as they are made."""

    def write_at(self, offset: int, data: bytes) -> None:
        """Put `data` at byte `offset` of the file (later pieces may rewrite earlier bytes)."""
        ...


class ResultWriter(ResultSink, Protocol):
    """A result being written: invisible to readers until `commit`."""

    def commit(self) -> None:
        """Make the complete file the result, replacing any earlier one."""
        ...

    def abort(self) -> None:
        """Drop what was written."""
        ...


class ResultStore(Protocol):
    """Finished songs by name."""

    def create(self, name: str) -> ResultWriter:
        """A new result `name` to write while the song is made."""
        ...

    def read_chunks(self, name: str, size: int) -> Iterator[tuple[int, bytes]]:
        """The object `name` in pieces of at most `size` bytes with their offsets; NOT_FOUND when it
        is missing."""
        ...

    def delete(self, name: str) -> None:
        """Remove `name` (nothing happens when it is missing)."""
        ...


class MemoryResult:
    """A song's file in memory (in-process callers and tests that want the bytes)."""

    def __init__(self) -> None:
        self._file = bytearray()

    def write_at(self, offset: int, data: bytes) -> None:
        """Put `data` at `offset`, growing the file as needed."""
        if offset > len(self._file):
            self._file.extend(bytes(offset - len(self._file)))
        self._file[offset : offset + len(data)] = data

    @property
    def data(self) -> bytes:
        """The file as written so far."""
        return bytes(self._file)


class MemoryResults:
    """Every candidate's file of one song in memory, for in-process callers and tests: pass it as
    the pipeline's `outputs`."""

    def __init__(self) -> None:
        self.results: list[MemoryResult] = []

    def __call__(self, candidate: int) -> MemoryResult:
        """A new file for `candidate` (candidates come in order: 0, 1, ...)."""
        if candidate != len(self.results):
            raise ValueError(f"candidate {candidate} after {len(self.results)} files")
        self.results.append(MemoryResult())
        return self.results[-1]

    @property
    def files(self) -> list[bytes]:
        """Every candidate's file, candidate 0 first."""
        return [result.data for result in self.results]


def storage_error(error: OSError) -> ServiceError:
    """The status a failed results write stands for, without the path the OS error names: a full
    volume is RESOURCE_EXHAUSTED (with a retry delay), anything else UNAVAILABLE."""
    reason = os.strerror(error.errno) if error.errno else type(error).__name__
    if error.errno in _FULL:
        return ResourceExhaustedError(
            f"the gateway's results volume is full ({reason}); the song could not be kept",
            retry_after_s=FULL_RETRY_AFTER_S,
        )
    return UnavailableError(f"the gateway cannot write its results volume ({reason})")


class _PartialFile:
    """A result being written beside its final name (a name of its own per writer, so two runs of
    one job never share a file), renamed into place when complete."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._partial = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}")
        self._handle: BinaryIO | None = None
        try:
            self._handle = self._partial.open("wb")
        except OSError as exc:
            raise storage_error(exc) from exc

    def write_at(self, offset: int, data: bytes) -> None:
        """Write `data` at `offset` of the partial file."""
        assert self._handle is not None, "the result was committed or aborted"
        try:
            self._handle.seek(offset)
            self._handle.write(data)
        except OSError as exc:
            raise storage_error(exc) from exc

    def commit(self) -> None:
        """Flush, close and rename into place (atomic on one filesystem)."""
        assert self._handle is not None, "the result was committed or aborted"
        handle, self._handle = self._handle, None
        try:
            handle.close()
            self._partial.replace(self._path)
        except OSError as exc:
            self._remove()
            raise storage_error(exc) from exc

    def abort(self) -> None:
        """Close and remove the partial file."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            with contextlib.suppress(OSError):  # a full volume fails the last flush: the file goes anyway
                handle.close()
        self._remove()

    def _remove(self) -> None:
        try:
            self._partial.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove a partial result (%s)", os.strerror(exc.errno or 0))


class FolderResults:
    """Songs as files in one folder."""

    def __init__(self, folder: str | Path) -> None:
        """Keep songs in `folder` (created if needed)."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def create(self, name: str) -> ResultWriter:
        """A partial file beside the final name; UNAVAILABLE or RESOURCE_EXHAUSTED when the folder
        cannot take it."""
        return _PartialFile(self.folder / name)

    def read_chunks(self, name: str, size: int) -> Iterator[tuple[int, bytes]]:
        """The file in pieces of `size` bytes, read as they are sent."""
        try:
            handle = (self.folder / name).open("rb")
        except FileNotFoundError:
            raise NotFoundError(f"the result {name} is missing") from None
        except OSError as exc:
            raise storage_error(exc) from exc
        with handle:
            offset = 0
            while piece := handle.read(size):
                yield offset, piece
                offset += len(piece)

    def delete(self, name: str) -> None:
        """Remove the file if it is there."""
        (self.folder / name).unlink(missing_ok=True)
