"""The versioned schema of the job stores: `migrations/<backend>/NNNN_name.sql`, applied in order.

Both backends carry the same versions (version N means the same tables and columns in SQLite and
in PostgreSQL). Each store records the versions it applied in `schema_migrations` and applies the
missing ones at start-up, under a lock, so gateways starting together apply each version once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from services.runtime.errors import FailedPreconditionError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One schema version: its number, name and SQL."""

    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The SQL statements of the file (each ends with `;` at the end of a line)."""
        parts = re.split(r";\s*$", self.sql, flags=re.MULTILINE)
        return [part.strip() for part in parts if _has_code(part)]


def _has_code(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())


def migrations(backend: str) -> list[Migration]:
    """The migrations of `backend` (`sqlite` or `postgresql`), oldest first."""
    found = []
    for path in sorted((MIGRATIONS_DIR / backend).iterdir()):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path}: a migration file is named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"{MIGRATIONS_DIR / backend}: versions {versions} do not count up from 1")
    return found


def latest_version(backend: str) -> int:
    """The schema version the code expects."""
    return migrations(backend)[-1].version


def pending(backend: str, applied: set[int]) -> list[Migration]:
    """The migrations of `backend` a database that recorded `applied` still needs, oldest first;
    FAILED_PRECONDITION when it has a version this code does not know (a newer gateway migrated it)."""
    known = migrations(backend)
    newer = sorted(applied - {migration.version for migration in known})
    if newer:
        raise FailedPreconditionError(
            f"the jobs database has schema version {newer[-1]}; this gateway knows up to"
            f" {known[-1].version}: upgrade the gateway"
        )
    return [migration for migration in known if migration.version not in applied]
