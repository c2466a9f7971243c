"""Fixtures for the gateway tests: the demo model, an in-process pipeline, job managers, and a real
PostgreSQL server (from the dev dependencies' server wheel) with a fresh database per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.jobs import JobManager, JobSettings
from gateway.model_store import write_demo
from gateway.models import discover
from gateway.pipeline import Pipeline
from gateway.results import FolderResults
from gateway.router import Router
from gateway.stores.sqlite import SqliteJobStore
from tests.postgres import PostgresServer


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight demo model in the published layouts."""
    root = tmp_path_factory.mktemp("models")
    write_demo(root)
    return root


@pytest.fixture(scope="session")
def local_pipeline(demo_models: Path) -> Pipeline:
    """A pipeline over engines loaded in this process."""
    return Pipeline(Router(discover(demo_models)))


@pytest.fixture
def make_manager(local_pipeline: Pipeline, tmp_path: Path):
    """Build started job managers over one SQLite file and results folder (a second one is 'after
    a restart'); `start=False` leaves the starting to the test."""
    managers: list[JobManager] = []

    def build(settings: JobSettings | None = None, start: bool = True) -> JobManager:
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        manager = JobManager(store, local_pipeline, FolderResults(tmp_path / "results"), settings)
        managers.append(manager)
        if start:
            manager.start()
        return manager

    yield build
    for manager in managers:
        manager.close()


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """One PostgreSQL server for the session's tests (each takes its own database)."""
    server = PostgresServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    return postgres.create_database()
