"""Where a stage keeps its engine once loaded, so servicers can tell "loading" from "failed"."""

from __future__ import annotations

from typing import Any

from services.runtime.errors import ServiceError, UnavailableError


class ModelSlot:
    """Holds a stage's engine once loaded; servicers fetch it per call."""

    def __init__(self) -> None:
        self._engine: Any = None
        self._failure: ServiceError | None = None

    def get(self) -> Any:
        """The loaded engine; UNAVAILABLE while loading, FAILED_PRECONDITION if loading failed."""
        if self._engine is not None:
            return self._engine
        if self._failure is not None:
            raise self._failure
        raise UnavailableError("the model is still loading; retry shortly")

    @property
    def loaded(self) -> bool:
        """True once an engine was loaded."""
        return self._engine is not None

    def fill(self, engine: Any) -> None:
        """Make `engine` available to calls."""
        self._engine = engine

    def fail(self, failure: ServiceError) -> None:
        """Record why the engine could not be loaded; every call reports it."""
        self._failure = failure
