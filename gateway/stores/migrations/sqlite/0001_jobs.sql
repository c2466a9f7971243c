-- Jobs and the kept latent blocks of running jobs: the schema of the first release, which created
-- these tables without a version (IF NOT EXISTS adopts such a database as version 1).
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    request BLOB NOT NULL,
    seed TEXT NOT NULL,
    state INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    blocks_done INTEGER NOT NULL DEFAULT 0,
    max_blocks INTEGER NOT NULL DEFAULT 0,
    seconds_generated REAL NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    result BLOB
);
CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (created_at);
CREATE TABLE IF NOT EXISTS blocks (
    job_id TEXT NOT NULL,
    block_index INTEGER NOT NULL,
    final INTEGER NOT NULL,
    max_blocks INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    latents BLOB NOT NULL,
    PRIMARY KEY (job_id, block_index)
);
