-- Owners, deadlines, leases, cancellation requests, retention, the model that made each kept
-- block, and the events of running jobs (relayed to watchers on other gateways). Lease times are
-- the database's clock, so the gateways' clocks need not agree.
ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN deadline_at DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN finished_at DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN lease_holder TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN lease_expires DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN cancel_reason TEXT NOT NULL DEFAULT '';
UPDATE jobs SET finished_at = updated_at WHERE state IN (3, 4, 5);
CREATE INDEX jobs_waiting ON jobs (created_at) WHERE state IN (1, 2);
CREATE INDEX jobs_by_owner ON jobs (owner, created_at);
CREATE INDEX jobs_by_finish ON jobs (finished_at) WHERE state IN (3, 4, 5);
ALTER TABLE blocks ADD COLUMN model TEXT NOT NULL DEFAULT '';
ALTER TABLE blocks ADD COLUMN revision TEXT NOT NULL DEFAULT '';
CREATE TABLE events (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    event BYTEA NOT NULL,
    PRIMARY KEY (job_id, attempt, seq)
);
