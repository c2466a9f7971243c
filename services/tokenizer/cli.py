"""`songsmith lyrics tokenize FILE`: how lyrics will be read, line by line, or as JSON.

For a person checking a song before generating it: each line beside the phonemes it will be sung
with, tags with their ids, and the warnings (unknown tags, characters that will not be sung).
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from pathlib import Path

from services.runtime.cli import report_error
from services.runtime.errors import InvalidArgumentError, ServiceError
from services.tokenizer.engine import DEFAULT_FAMILY, TokenizedLyrics, TokenizerEngine

TEXT_COLUMN_WIDTH = 44


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `lyrics tokenize` to the songsmith CLI (its `lyrics` group is listed by gateway/cli.py)."""
    lyrics = subparsers.add_parser("lyrics")
    commands = lyrics.add_subparsers(dest="lyrics_command", required=True)
    tokenize = commands.add_parser(
        "tokenize",
        help="show how a lyrics file will be read and sung (phonemes and token ids)",
        description="Read a lyrics file (UTF-8; `-` for standard input) as the lyric tokenizer stage "
        "does for a model family and show each line beside its phonemes, or print the whole result "
        "as one JSON object.",
    )
    tokenize.add_argument("file", help="lyrics file, or - for standard input")
    tokenize.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    tokenize.add_argument(
        "--family",
        default=DEFAULT_FAMILY,
        help=f"the family reading them (default {DEFAULT_FAMILY})",
    )
    tokenize.add_argument(
        "--seconds", type=float, default=0.0, help="song length, for families that align lyrics to time"
    )
    tokenize.add_argument(
        "--data-dir",
        default="",
        help="front end data folder (default: the installed diffrhythm2-fork package)",
    )
    tokenize.set_defaults(func=run_tokenize)


def _read_lyrics(name: str) -> str:
    raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    return raw.decode("utf-8")


def run_tokenize(args: argparse.Namespace) -> int:
    """Tokenize the file and print the table or the JSON object; 2 with one line on error."""
    try:
        lyrics = _read_lyrics(args.file)
    except OSError as exc:
        return report_error(f"cannot read {args.file}: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        return report_error(f"{args.file} is not UTF-8 text (byte {exc.start})")
    try:
        engine = TokenizerEngine.load(data_dir=args.data_dir)
        result = engine.tokenize(lyrics, family=args.family, seconds=args.seconds)
    except InvalidArgumentError as exc:
        return report_error("; ".join(violation.description for violation in exc.violations))
    except ServiceError as exc:
        return report_error(exc.message)
    print(json.dumps(as_json(result), ensure_ascii=False) if args.json else as_table(result))
    return 0


def as_json(result: TokenizedLyrics) -> dict:
    """The result as the `--json` object: tokens, lines (number, text, kind, phonemes, tokens), warnings.

    A line read from LRC also carries `timestamp_seconds`.
    """
    lines = []
    for line in result.lines:
        entry: dict = {
            "number": line.number,
            "text": line.text,
            "kind": line.kind,
            "phonemes": line.phonemes,
            "tokens": line.tokens,
        }
        if line.timestamp is not None:
            entry["timestamp_seconds"] = line.timestamp
        lines.append(entry)
    return {"tokens": result.tokens, "lines": lines, "warnings": result.warnings}


def display_width(text: str) -> int:
    """Terminal columns `text` takes (wide CJK characters count two)."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _timestamp(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"[{int(minutes):02d}:{rest:05.2f}] "


def as_table(result: TokenizedLyrics) -> str:
    """Each kept line beside its phonemes (symbols separated by spaces, `_` between words), then notes."""
    rows = []
    for line in result.lines:
        text = (_timestamp(line.timestamp) if line.timestamp is not None else "") + line.text
        padding = " " * max(1, TEXT_COLUMN_WIDTH - display_width(text))
        sung = f"tag {line.tokens[0]}" if line.kind == "tag" else line.phonemes.replace("|", " ")
        rows.append(f"{line.number:>4}  {text}{padding}{sung}")
    if not result.lines:
        rows.append("      (no lines)")
    rows.append("")
    rows.append(f"{len(result.lines)} lines, {len(result.tokens)} tokens")
    rows.extend(f"warning: {warning}" for warning in result.warnings)
    return "\n".join(rows)
