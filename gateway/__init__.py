"""The public face of Songsmith: SongService, the pipeline over the stages, jobs and the CLI."""
