"""Lyric tokenizer benchmark: lines per second, English and Mandarin, song-batched vs line by line.

Generates 1,000 English and 1,000 Mandarin lyric lines (seeded, distinct), measures the engine's
load and warm-up time, then tokenizes the lines two ways in the same run: line by line (one
`tokenize` call per line, the way the reference front end is driven: the in-run baseline) and as
songs of `--song-lines` lines (one espeak call and one polyphone batch per song). Prints a markdown
table with the ratio. The reference front end's published figures on this kind of machine are given
for comparison only: about 2,200 English and 155 Mandarin lines/s after a 9.8 s import and warm-up.

    .venv/bin/python bench/tokenizer.py [--lines 1000] [--song-lines 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_ENGLISH_WORD_LIST = """
a about after again against all almost alone along always am an and angel another any anyone
are arms around as at away baby back bad be beautiful because been before behind believe best
better between big black blue body both bright broken burn but by call came can car cause change
city close cold come could crazy cry dance dark day dead deep did do does don't down dream drive
each easy end enough even ever every eyes face fall far fast feel feeling few find fine fire first
fly for forever forget found free friend from get girl give go gold gone good got hand hands happy
hard have he head heart heaven hello her here high him his hold home hope hot how i i'm if in inside
into is it it's just keep kiss knew know last late leave left let life light like line little live
long look lose lost love made make man me mean mind miss moment money moon more morning mother
move much music my name need never new next night no nothing now of off oh old on once one only
open or other our out over own paper party people place play please pretty pull rain read ready
real remember ride right river road rock room run said same say see shadow shine should show side
sing sky slow small smile so some someone something song soul stand star start stay still stop
street strong summer sun sweet take talk tell than that the their them then there these they thing
think this through time to together tonight too took touch town true try turn under until up us
very wait walk wall want was watch water way we well were what when where while white who why wild
will wind window with without woman words world would yeah year yes you young your
"""
ENGLISH_WORDS = tuple(_ENGLISH_WORD_LIST.split())
ENGLISH_EXTRAS = (
    "Dr. Brown",
    "Mr. Jones",
    "St. James",
    "$5.50",
    "£20",
    "3rd",
    "21st",
    "100%",
    "1984",
    "2,000",
    "7:30",
    "1/2",
    "3.14",
    "etc.",
)
ENGLISH_PUNCTUATION = ("", "", "", ",", ".", "!", "?", "...", ";")

MANDARIN_FILLERS = tuple("的了我你他她在是不一也都就和很")
MANDARIN_EXTRAS = ("2026年", "3个", "一个", "不要", "一起", "看一看", "女儿", "哪儿", "一月", "第一")
MANDARIN_PUNCTUATION = ("", "", "", "，", "。", "！", "？", "…")


def _jieba_words(limit: int = 6000) -> list[str]:
    """The most frequent Chinese words of jieba's dictionary: realistic material for lyric lines."""
    import jieba

    dictionary = Path(jieba.__file__).with_name("dict.txt")
    entries = []
    for line in dictionary.read_text(encoding="utf-8").splitlines():
        word, frequency, *_ = line.split(" ")
        if all("\u4e00" <= char <= "\u9fa5" for char in word):
            entries.append((int(frequency), word))
    entries.sort(reverse=True)
    return [word for _, word in entries[:limit]]


def english_lines(count: int, seed: int) -> list[str]:
    """`count` distinct English lyric lines with numbers, money, abbreviations and punctuation."""
    rng = random.Random(seed)
    lines: dict[str, None] = {}
    while len(lines) < count:
        words = rng.choices(ENGLISH_WORDS, k=rng.randint(4, 10))
        if rng.random() < 0.15:
            words.insert(rng.randrange(len(words) + 1), rng.choice(ENGLISH_EXTRAS))
        if rng.random() < 0.3:
            position = rng.randrange(1, len(words))
            words[position - 1] += ","
        line = " ".join(words)
        lines[line[0].upper() + line[1:] + rng.choice(ENGLISH_PUNCTUATION)] = None
    return list(lines)


def mandarin_lines(count: int, seed: int) -> list[str]:
    """`count` distinct Mandarin lyric lines from frequent words, with 一/不/儿, digits and punctuation."""
    rng = random.Random(seed)
    vocabulary = _jieba_words()
    lines: dict[str, None] = {}
    while len(lines) < count:
        pieces = []
        for _ in range(rng.randint(3, 7)):
            roll = rng.random()
            if roll < 0.25:
                pieces.append(rng.choice(MANDARIN_FILLERS))
            elif roll < 0.32:
                pieces.append(rng.choice(MANDARIN_EXTRAS))
            else:
                pieces.append(rng.choice(vocabulary))
        if rng.random() < 0.2:
            pieces.insert(rng.randrange(1, len(pieces)), rng.choice(("，", " ")))
        lines["".join(pieces) + rng.choice(MANDARIN_PUNCTUATION)] = None
    return list(lines)


def _lines_per_second(run: Callable[[], object], lines: int, repeats: int) -> tuple[float, float]:
    """Best-of-`repeats` rates: lines per wall-clock second and lines per CPU second of this process
    (the second is steadier when other processes share the cores)."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return lines / best_wall, lines / best_cpu


def _songs(lines: Sequence[str], size: int) -> list[str]:
    return ["\n".join(lines[start : start + size]) for start in range(0, len(lines), size)]


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1000, help="lines per language")
    parser.add_argument("--song-lines", type=int, default=40, help="lines per song in the batched path")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions, best kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started, started_cpu = time.perf_counter(), time.process_time()
    from services.tokenizer.engine import TokenizerEngine

    engine = TokenizerEngine.load()
    warm_up_s, warm_up_cpu_s = time.perf_counter() - started, time.process_time() - started_cpu

    rows = []
    load_before = os.getloadavg()[0]
    for language, lines in (
        ("English", english_lines(args.lines, args.seed)),
        ("Mandarin", mandarin_lines(args.lines, args.seed)),
    ):
        songs = _songs(lines, args.song_lines)
        by_line = [engine.tokenize(line).tokens[2:] for line in lines]
        by_song = [token for song in songs for token in engine.tokenize(song).tokens[2:]]
        if [token for tokens in by_line for token in tokens] != by_song:
            raise SystemExit(f"{language}: song-batched tokens differ from line-by-line tokens")
        line_rates = _lines_per_second(
            lambda lines=lines: [engine.tokenize(x) for x in lines], len(lines), args.repeats
        )
        song_rates = _lines_per_second(
            lambda songs=songs: [engine.tokenize(x) for x in songs], len(lines), args.repeats
        )
        rows.append((language, len(lines), line_rates, song_rates))
    load_after = os.getloadavg()[0]

    print(f"Lyric tokenizer, {args.lines} distinct lines per language, songs of {args.song_lines} lines, ")
    load = f"load average {load_before:.1f} before, {load_after:.1f} after"
    print(f"best of {args.repeats}; {os.cpu_count()} CPUs, {load}")
    print()
    print(
        "| language | lines | line by line (lines/s) | song-batched (lines/s) | ratio "
        "| line by line (lines/CPU-s) | song-batched (lines/CPU-s) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for language, count, (line_wall, line_cpu), (song_wall, song_cpu) in rows:
        print(
            f"| {language} | {count} | {line_wall:,.0f} | {song_wall:,.0f} | {song_wall / line_wall:.2f}x "
            f"| {line_cpu:,.0f} | {song_cpu:,.0f} |"
        )
    print()
    print(f"Import, load and warm-up: {warm_up_s:.2f} s ({warm_up_cpu_s:.2f} s of CPU)")


if __name__ == "__main__":
    main()
