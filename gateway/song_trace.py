"""One song, one trace: the `song` span that every stage call of a song descends from.

The call that submits a song (`Generate` or `SubmitJob`) is the trace's root on the gateway; its W3C
context is kept with the job (`trace_carrier`), since the song runs later on a worker thread (or,
resumed, after a restart). The worker runs the song inside `song_span`: the first run's `song` span is
a child of the submitting call, so the tokenizer, style, generation and vocoder calls made under it
(the pipeline carries the context into its threads) are in the submitter's trace; a resumed run
starts a new trace whose `song` span links to the original one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.context import Context

from services.runtime.tracing import tracer

SONG_SPAN = "song"
JOB_ID = "songsmith.job.id"
MODEL = "songsmith.model"
SEED = "songsmith.seed"
SECONDS = "songsmith.seconds"
RESUMED = "songsmith.resumed"


def trace_carrier() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`, `tracestate`), to keep with a job."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def song_span(
    job_id: str, model: str, seed: int, seconds: float, submitted: dict[str, str], resumed: bool = False
) -> Iterator[trace.Span]:
    """The `song` span of one run of a job, current for the block (so the log lines of the song carry
    its trace id). `submitted` is the trace context kept when the job was submitted: a first run is
    its child; a resumed run (`resumed`) starts a new trace linked to it. `seconds` is the length
    the request asked for (0: the model's default)."""
    original = trace.get_current_span(propagate.extract(submitted)).get_span_context()
    attributes = {JOB_ID: job_id, MODEL: model, SEED: seed, SECONDS: seconds, RESUMED: resumed}
    if resumed:
        links = [trace.Link(original)] if original.is_valid else []
        span = tracer().start_span(SONG_SPAN, context=Context(), attributes=attributes, links=links)
    else:
        span = tracer().start_span(SONG_SPAN, context=propagate.extract(submitted), attributes=attributes)
    with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
        yield span


def song_failed(span: trace.Span, error: str) -> None:
    """Mark the song span failed with `error` (e.g. "UNAVAILABLE: diffusion stage down")."""
    span.set_status(trace.Status(trace.StatusCode.ERROR, error))
