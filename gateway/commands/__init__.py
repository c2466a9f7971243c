"""The `songsmith` commands, one module per group; each imports what it needs only when it runs."""
