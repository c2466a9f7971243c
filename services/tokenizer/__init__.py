"""The lyric tokenizer stage: lyrics to DiffRhythm 2 phoneme and structure tokens (engine, servicer, CLI)."""
