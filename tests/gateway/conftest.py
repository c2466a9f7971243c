"""Fixtures for the gateway tests: the demo model, an in-process pipeline, a job manager."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.job_store import JobStore
from gateway.jobs import JobManager, JobSettings
from gateway.model_store import write_demo
from gateway.models import discover
from gateway.pipeline import Pipeline
from gateway.router import Router


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
    """Build job managers over one database and results folder (a second one is 'after a restart')."""
    managers: list[JobManager] = []

    def build(settings: JobSettings | None = None) -> JobManager:
        manager = JobManager(
            JobStore(tmp_path / "jobs.sqlite3"), local_pipeline, tmp_path / "results", settings
        )
        managers.append(manager)
        return manager

    yield build
    for manager in managers:
        manager.shutdown()
