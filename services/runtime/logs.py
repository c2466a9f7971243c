"""JSON log lines carrying the stage, the job and the current trace and span ids.

Every record gets `trace_id` and `span_id` from the active OpenTelemetry span, and `job_id` from
`job_scope`, so a song's lines can be found across services from its trace or its job id.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace

_JOB_ID: contextvars.ContextVar[str] = contextvars.ContextVar("songsmith_job_id", default="")


@contextmanager
def job_scope(job_id: str) -> Iterator[None]:
    """Tag every log record emitted inside the block (in this thread) with `job_id`."""
    reset = _JOB_ID.set(job_id)
    try:
        yield
    finally:
        _JOB_ID.reset(reset)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, stage, logger, message, trace and job ids."""

    def __init__(self, stage: str) -> None:
        """Every line names `stage`."""
        super().__init__()
        self._stage = stage

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as one JSON line."""
        span = trace.get_current_span().get_span_context()
        line = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "stage": self._stage,
            "logger": record.name,
            "message": record.getMessage(),
            "job_id": _JOB_ID.get(),
            "trace_id": format(span.trace_id, "032x") if span.is_valid else "",
            "span_id": format(span.span_id, "016x") if span.is_valid else "",
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def setup_logging(stage: str, level: str = "INFO", fmt: str = "json") -> None:
    """Send the process's logs to stderr as JSON lines (or plain text with fmt="text")."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(stage))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {stage} %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
