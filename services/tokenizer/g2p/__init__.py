"""The grapheme-to-phoneme front end shared by the lyric families (English and Mandarin)."""
