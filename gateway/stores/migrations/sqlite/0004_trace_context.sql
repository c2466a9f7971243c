-- The W3C trace context (JSON: traceparent, tracestate) of the call that submitted each job, so
-- its song continues that trace on whichever gateway runs it.
ALTER TABLE jobs ADD COLUMN trace_context TEXT NOT NULL DEFAULT '';
