"""What every `songsmith` subcommand shares: how a failure is reported on the terminal."""

from __future__ import annotations

import sys

USAGE_ERROR = 2


def report_error(message: str, exit_code: int = USAGE_ERROR) -> int:
    """Print one `songsmith: error:` line on stderr and return `exit_code` for the handler to return."""
    print(f"songsmith: error: {message}", file=sys.stderr)
    return exit_code
