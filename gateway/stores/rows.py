"""Rows to records, the same for both stores: the job columns in order, jobs and kept blocks."""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np

from gateway.job_store import JobRecord, KeptBlocks, ModelIdentity
from gateway.stages import Block
from songsmith.v1 import song_pb2

JOB_COLUMNS = (
    "job_id, fingerprint, request, seed, state, created_at, updated_at, owner, deadline_at, blocks_done,"
    " max_blocks, seconds_generated, error, result, finished_at, attempt, lease_holder, cancel_reason,"
    " trace_context"
)
BLOCK_COLUMNS = (
    "block_index, final, max_blocks, frames, latents, model, revision, dtype, frames_done, candidate"
)


def record_from_row(row: tuple) -> JobRecord:
    """A JobRecord from a row of JOB_COLUMNS."""
    (
        job_id,
        digest,
        request,
        seed,
        state,
        created,
        updated,
        owner,
        deadline,
        blocks,
        max_blocks,
        seconds,
        error,
        result,
        finished,
        attempt,
        holder,
        cancel_reason,
        trace_context,
    ) = row
    return JobRecord(
        job_id=job_id,
        fingerprint=digest,
        request=song_pb2.SongRequest.FromString(bytes(request)),
        seed=int(seed),
        state=state,
        created_at=created,
        updated_at=updated,
        owner=owner,
        deadline_at=deadline,
        blocks_done=blocks,
        max_blocks=max_blocks,
        seconds_generated=seconds,
        error=error,
        result=None if result is None else song_pb2.SongSummary.FromString(bytes(result)),
        finished_at=finished,
        attempt=attempt,
        lease_holder=holder,
        cancel_reason=cancel_reason,
        trace_context=json.loads(trace_context) if trace_context else {},
    )


def block_values(block: Block) -> tuple:
    """A block's stored columns after its index, in BLOCK_COLUMNS order without the model: final,
    max_blocks, frames, the frames' little-endian bytes (C order, frames x channels); then the
    element type, the frames done and the candidate go last."""
    frames = np.ascontiguousarray(block.frames)
    stored = frames.astype(frames.dtype.newbyteorder("<"), copy=False)
    return (
        bool(block.final),
        block.max_blocks,
        len(frames),
        stored.tobytes(),
        stored.dtype.str,
        block.frames_done,
        block.candidate,
    )


def kept_blocks(rows: Iterable[tuple]) -> KeptBlocks:
    """The blocks of BLOCK_COLUMNS rows (ordered by index) from block 0 on, as far as they run
    without a gap and were made by the model of block 0."""
    kept: list[Block] = []
    model: ModelIdentity | None = None
    for index, final, max_blocks, frames, data, name, revision, dtype, frames_done, candidate in rows:
        identity = ModelIdentity(name, revision)
        if index != len(kept) or (model is not None and identity != model):
            break
        model = identity
        stored = np.frombuffer(bytes(data), dtype=np.dtype(dtype)).reshape(frames, -1)
        values = stored.astype(stored.dtype.newbyteorder("="))
        kept.append(Block(index, values, bool(final), max_blocks, frames_done, revision, candidate))
    return KeptBlocks(model, kept)
