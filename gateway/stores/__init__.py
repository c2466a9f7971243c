"""The job store backends, one file each (`sqlite.py`, `postgresql.py`), behind the interface in
`gateway.job_store`; `open_job_store` picks one from the configured location."""

from __future__ import annotations

from gateway.job_store import JobStore
from gateway.stores.postgresql import PostgresJobStore
from gateway.stores.sqlite import SqliteJobStore

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_job_store(location: str, retry_s: float = 30.0, pool_size: int = 8) -> JobStore:
    """The store at `location`: a `postgresql://` URL (several gateways), else a SQLite file path
    (one gateway). Pending schema migrations are applied before it is returned."""
    if location.startswith(POSTGRES_SCHEMES):
        return PostgresJobStore(location, retry_s=retry_s, pool_size=pool_size)
    return SqliteJobStore(location, busy_timeout_s=retry_s)
