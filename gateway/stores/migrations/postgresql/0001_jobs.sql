-- Jobs and the kept latent blocks of running jobs (version 1 of the schema, as in SQLite).
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    request BYTEA NOT NULL,
    seed TEXT NOT NULL,
    state SMALLINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    blocks_done INTEGER NOT NULL DEFAULT 0,
    max_blocks INTEGER NOT NULL DEFAULT 0,
    seconds_generated DOUBLE PRECISION NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    result BYTEA
);
CREATE INDEX jobs_by_time ON jobs (created_at);
CREATE TABLE blocks (
    job_id TEXT NOT NULL,
    block_index INTEGER NOT NULL,
    final BOOLEAN NOT NULL,
    max_blocks INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    latents BYTEA NOT NULL,
    PRIMARY KEY (job_id, block_index)
);
