"""Where finished songs are kept, so that every gateway can replay any job's audio.

`FolderResults` is a folder: local for one gateway, a shared (ReadWriteMany) volume for several.
Every backend uses the same layout: one object per job named `<job_id>.<extension>`; for a
request with several candidates one more per candidate i > 0, `<job_id>~<i>.<extension>`; and
`<job_id>.osz` beside them for a song with charts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from services.runtime.errors import NotFoundError


class ResultStore(Protocol):
    """Finished songs by name."""

    def put(self, name: str, data: bytes) -> None:
        """Keep `data` as `name`, replacing any earlier object; readers never see a partial file."""
        ...

    def get(self, name: str) -> bytes:
        """The object `name`; NOT_FOUND when it is missing."""
        ...

    def delete(self, name: str) -> None:
        """Remove `name` (nothing happens when it is missing)."""
        ...


class FolderResults:
    """Songs as files in one folder."""

    def __init__(self, folder: str | Path) -> None:
        """Keep songs in `folder` (created if needed)."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes) -> None:
        """Write beside the final name, then rename (atomic on one filesystem)."""
        path = self.folder / name
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)

    def get(self, name: str) -> bytes:
        """The file's bytes."""
        try:
            return (self.folder / name).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"the result {name} is missing") from None

    def delete(self, name: str) -> None:
        """Remove the file if it is there."""
        (self.folder / name).unlink(missing_ok=True)
