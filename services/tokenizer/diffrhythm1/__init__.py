"""DiffRhythm v1's lyric front end: timestamped LRC lines placed on the song's latent frames."""
