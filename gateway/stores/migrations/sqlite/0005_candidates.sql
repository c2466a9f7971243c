-- Kept blocks of a request that samples several songs at once (DiffRhythm v1's candidates): which
-- song each block belongs to (0 for a single song).
ALTER TABLE blocks ADD COLUMN candidate INTEGER NOT NULL DEFAULT 0;
