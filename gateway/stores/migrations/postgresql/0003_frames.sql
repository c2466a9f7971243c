-- Kept blocks of any family: the frames' element type (float32 latents or int64 codes) and the
-- frames of the song generated up to the end of each block.
ALTER TABLE blocks ADD COLUMN dtype TEXT NOT NULL DEFAULT '<f4';
ALTER TABLE blocks ADD COLUMN frames_done INTEGER NOT NULL DEFAULT 0;
