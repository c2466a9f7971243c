"""`songsmith generate` and `songsmith batch`: songs made in this process or through a gateway."""

from __future__ import annotations

import argparse
import json
import math
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.commands.common import CommandError, add_connection_options, add_model_root, connect
from songsmith.v1 import song_pb2

if TYPE_CHECKING:
    from gateway.client import SongClient

MB = 1e6
# How long an interrupted `generate --server` waits for the gateway to cancel its song.
CANCEL_TIMEOUT_S = 5.0
# A batch line's lyrics or style ending like this names a file; a missing one is an error, not text.
LYRICS_SUFFIXES = (".txt", ".lrc")
AUDIO_SUFFIXES = (".mp3", ".wav", ".flac", ".ogg")
FORMATS = {
    "mp3": song_pb2.AUDIO_FORMAT_MP3,
    "wav": song_pb2.AUDIO_FORMAT_WAV,
    "flac": song_pb2.AUDIO_FORMAT_FLAC,
    "ogg": song_pb2.AUDIO_FORMAT_OGG,
}


@dataclass
class Song:
    """One song to make from the command line."""

    name: str
    request: song_pb2.SongRequest
    output: Path

    @property
    def osz_output(self) -> Path | None:
        """Where the song's `.osz` goes (beside the song, `<name>.osz`) when it asks for charts."""
        return self.output.with_suffix(".osz") if self.request.HasField("charts") else None


@dataclass(frozen=True)
class SongSettings:
    """What a command line says about a song beyond its lyrics and style (`candidates`,
    `keep_raw_level` and `edit_spans` are DiffRhythm v1 options: setting any sends its `diffrhythm1`
    options)."""

    model: str = ""
    seed: int | None = None
    steps: int | None = None
    cfg: float | None = None
    max_secs: float | None = None
    stereo: bool = False
    normalize: bool = False
    charts: song_pb2.ChartRequest | None = None
    candidates: int = 1
    keep_raw_level: bool = False
    edit_spans: tuple[tuple[float, float], ...] = ()


def format_for_output(output: Path) -> int:
    """The AudioFormat an output file name asks for; a usage error for another extension."""
    suffix = output.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise CommandError(f"unknown audio extension {suffix!r}: use .mp3, .wav, .flac or .ogg", 2)
    return FORMATS[suffix]


def build_request(
    lyrics: str, style_text: str | None, style_audio: Path | None, output: Path, settings: SongSettings
) -> song_pb2.SongRequest:
    """A SongRequest from command-line values (the style audio is read here, on the client)."""
    request = song_pb2.SongRequest(
        job_id=uuid.uuid4().hex,
        model=settings.model,
        lyrics=lyrics,
        steps=settings.steps or 0,
        format=format_for_output(output),
        stereo=settings.stereo,
        normalize_loudness=settings.normalize,
    )
    if style_audio is not None:
        request.style_audio = read_recording(style_audio)
    if style_text is not None:
        request.style_prompt = style_text
    if settings.seed is not None:
        request.seed = settings.seed
    if settings.cfg is not None:
        request.cfg_strength = settings.cfg
    if settings.max_secs:
        request.max_duration.FromNanoseconds(round(settings.max_secs * 1e9))
    if settings.charts is not None:
        request.charts.CopyFrom(settings.charts)
    if settings.candidates != 1 or settings.keep_raw_level or settings.edit_spans:
        request.diffrhythm1.candidates = settings.candidates
        request.diffrhythm1.keep_raw_level = settings.keep_raw_level
        for start, end in settings.edit_spans:
            request.diffrhythm1.edit_spans.add(start_seconds=start, end_seconds=end)
    return request


def edit_span(text: str) -> tuple[float, float]:
    """`START:END` in seconds as a span to regenerate, an empty side (or -1) meaning the song's start
    or end (`:20`, `60:`); a usage error (argparse's) for anything else."""
    start, colon, end = text.partition(":")
    try:
        span = (float(start or -1), float(end or -1))
    except ValueError:
        span = None
    if not colon or span is None or not all(math.isfinite(value) for value in span):
        raise argparse.ArgumentTypeError(f"{text!r} is not START:END in seconds (e.g. 20:40, :20 or 60:)")
    return span


def chart_request(
    assignments: list[str], count: int | None, steps: int | None, title: str
) -> song_pb2.ChartRequest:
    """The `charts` of a song from `--feature NAME=VALUE`, `--chart-count` and `--chart-steps`, titled
    `title`; a usage error for an unknown feature or an unreadable value."""
    from gateway.charts import parse_features

    try:
        features = parse_features(assignments)
    except ValueError as exc:
        raise CommandError(str(exc), 2) from exc
    return song_pb2.ChartRequest(features=features, count=count or 0, steps=steps or 0, title=title)


def read_bytes(path: Path) -> bytes:
    """A file's bytes; a usage error naming the file when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}", 2) from exc


def read_recording(path: Path) -> bytes:
    """A style recording's bytes; a usage error, before anything is sent, for a file larger than a
    song request may carry (a gateway would refuse it, or gRPC would, with a bare size error)."""
    from gateway.validation import RequestLimits

    data = read_bytes(path)
    limit = RequestLimits().max_style_audio_bytes
    if len(data) > limit:
        raise CommandError(
            f"{path} is {len(data) / MB:.1f} MB; a song's style recording may be at most {limit / MB:.1f} MB"
            f" ({limit} bytes): send a shorter cut (the style encoder reads 10 s to a few minutes),"
            " e.g. ffmpeg -i IN -t 60 OUT.flac",
            2,
        )
    return data


def read_text(path: Path) -> str:
    """A UTF-8 file's text (a byte order mark dropped); a usage error when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc}", 2) from exc


class ProgressBar:
    """A progress bar over a song's generation (blocks, or steps between them), fed by SongEvents."""

    def __init__(self, name: str, quiet: bool) -> None:
        """A bar on stderr labelled `name` (nothing at all when `quiet`)."""
        from tqdm import tqdm

        self._bar = tqdm(desc=name, unit="block", disable=quiet, leave=False, file=sys.stderr)

    def __call__(self, event: song_pb2.SongEvent) -> None:
        """Advance on a generation progress event, show the chart sampler's steps; print a notice above
        the bar."""
        if event.HasField("notice"):
            self._bar.write(f"note: {event.notice.message}", file=sys.stderr)
        if event.HasField("progress") and event.progress.stage == "chart":
            chart = event.progress
            self._bar.set_postfix_str(f"chart step {chart.step}/{chart.total_steps}", refresh=True)
            return
        if not (event.HasField("progress") and event.progress.stage == "diffusion"):
            return
        progress = event.progress
        if progress.max_blocks:
            self._bar.total, self._bar.n = progress.max_blocks, progress.blocks_done
            seconds = progress.generated.ToNanoseconds() / 1e9
            self._bar.set_postfix_str(f"{seconds:.0f} s of audio", refresh=False)
        else:
            self._bar.set_postfix_str(f"step {progress.step}/{progress.total_steps}", refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        """Remove the bar."""
        self._bar.close()


class LocalRunner:
    """Makes songs in this process (the embedded default): every model under the model root."""

    def __init__(self, model_root: str) -> None:
        """Load the models found under `model_root` (FailedPreconditionError when there is none) and
        the chart model there, if any."""
        from gateway.models import LOCAL, discover, find_chart_model
        from gateway.pipeline import Pipeline
        from gateway.router import Router

        chart = find_chart_model(Path(model_root))
        chart_target = f"{LOCAL}:{chart}" if chart is not None else ""
        self._pipeline = Pipeline(Router(discover(Path(model_root)), chart_target=chart_target))

    def make(self, song: Song, on_event: Callable[[song_pb2.SongEvent], None]) -> song_pb2.SongSummary:
        """Validate the request as the gateway would, then make the song into its output file."""
        from gateway.client import AudioFile, SongFiles
        from gateway.validation import RequestLimits, draw_seed, song_spec, validate_song
        from services.runtime.cancellation import CancellationToken

        router = self._pipeline.router
        model_info = lambda: router.get(song.request.model).info(CancellationToken())  # noqa: E731
        chart_info = (lambda: router.chart_info(CancellationToken())) if router.chart is not None else None
        validate_song(song.request, RequestLimits(), model_info, chart_info)
        seed = song.request.seed if song.request.HasField("seed") else draw_seed()
        spec = song_spec(song.request, song.request.job_id, seed)
        audio = SongFiles(song.output)
        osz: list[AudioFile] = []

        def emit(event: song_pb2.SongEvent) -> None:
            on_event(event)
            if event.HasField("audio"):
                audio.write(event.audio)
            elif event.HasField("osz") and song.osz_output is not None:
                if not osz:
                    osz.append(AudioFile(song.osz_output))
                osz[0].write(event.osz)

        try:
            return self._pipeline.run(spec, CancellationToken(), emit).summary
        finally:
            for file in [audio, *osz]:
                file.close()


class RemoteRunner:
    """Makes songs through a gateway's SongService."""

    def __init__(self, client: SongClient) -> None:
        """Make songs with `client`."""
        self._client = client

    def make(self, song: Song, on_event: Callable[[song_pb2.SongEvent], None]) -> song_pb2.SongSummary:
        """Stream the song from the gateway into its output file."""
        import grpc

        from gateway.client import consume
        from services.runtime.interceptor import error_from_call

        try:
            summary = consume(self._client.generate(song.request), song.output, on_event, song.osz_output)
        except grpc.RpcError as exc:
            raise error_from_call(exc, "gateway") from exc
        except KeyboardInterrupt:
            self._cancel(song.request.job_id)
            raise
        if summary is None:
            raise CommandError("the gateway ended the song without a result")
        return summary

    def _cancel(self, job_id: str) -> None:
        """Stop the song: it would go on without its stream (a Generate with its id would attach)."""
        import grpc

        from songsmith.v1 import song_pb2

        request = song_pb2.CancelJobRequest(job_id=job_id)
        try:
            self._client.stub.CancelJob(request, metadata=self._client.metadata, timeout=CANCEL_TIMEOUT_S)
        except grpc.RpcError as exc:
            print(f"songsmith: could not cancel job {job_id}: {exc.details()}", file=sys.stderr)


def make_runner(args: argparse.Namespace) -> LocalRunner | RemoteRunner:
    """A gateway runner when `--server` is set, else the in-process one."""
    if args.server:
        return RemoteRunner(connect(args))
    return LocalRunner(args.model_root)


def make_song(runner: LocalRunner | RemoteRunner, song: Song, quiet: bool) -> song_pb2.SongSummary:
    """Make one song with a progress bar."""
    progress = ProgressBar(song.name, quiet)
    try:
        return runner.make(song, progress)
    finally:
        progress.close()


def report_song(song: Song, summary: song_pb2.SongSummary) -> None:
    """One line on stdout about a finished song (one per candidate when there were several)."""
    from gateway.client import candidate_output

    seconds = summary.duration.ToNanoseconds() / 1e9
    took = summary.stage_durations["total"].ToNanoseconds() / 1e9
    made = [(song.output, summary.seed)]
    if summary.candidates:
        count = len(summary.candidates)
        made = [(candidate_output(song.output, c.candidate, count), c.seed) for c in summary.candidates]
    for output, seed in made:
        print(
            f"{output}: {seconds:.1f} s, {summary.sample_rate} Hz, {summary.channels} ch, "
            f"model {summary.model}, seed {seed}, {took:.1f} s to make"
        )
    if summary.HasField("charts"):
        charts = summary.charts
        notes = ", ".join(f"{chart.version} {chart.hit_objects} notes" for chart in charts.charts)
        plural = "" if len(charts.charts) == 1 else "s"
        print(
            f"{song.osz_output}: {len(charts.charts)} osu!mania chart{plural} ({notes}), model {charts.model}"
        )


def run_generate(args: argparse.Namespace) -> int:
    """Make one song."""
    output = Path(args.output)
    if args.style is None and args.style_audio is None:
        raise CommandError("give --style, --style-audio or both (a melody model takes both)", 2)
    charts = None
    if args.chart:
        charts = chart_request(args.feature, args.chart_count, args.chart_steps, output.stem)
    elif args.feature or args.chart_count or args.chart_steps:
        raise CommandError("--feature, --chart-count and --chart-steps need --chart", 2)
    settings = SongSettings(
        args.model,
        args.seed,
        args.steps,
        args.cfg,
        args.max_secs,
        args.stereo,
        args.normalize,
        charts,
        args.candidates,
        args.keep_raw_level,
        tuple(args.edit),
    )
    lyrics = read_text(Path(args.lyrics)) if args.lyrics else ""
    request = build_request(lyrics, args.style, args.style_audio, output, settings)
    if args.reference_audio is not None:
        request.reference_audio = read_bytes(args.reference_audio)
    add_musicgen_options(request, args)
    song = Song(output.stem, request, output)
    report_song(song, make_song(make_runner(args), song, args.quiet))
    return 0


def add_musicgen_options(request: song_pb2.SongRequest, args: argparse.Namespace) -> None:
    """Set the request's `musicgen` options from the MusicGen flags that were given (none given:
    the request carries no family options, and the model's defaults apply)."""
    given = {
        "greedy": args.greedy or None,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "temperature": args.temperature,
    }
    if all(value is None for value in given.values()):
        return
    if request.HasField("diffrhythm1"):
        raise CommandError(
            "MusicGen flags exclude DiffRhythm v1 flags (--candidates, --keep-raw-level, --edit)",
            2,
        )
    request.musicgen.SetInParent()
    for name, value in given.items():
        if value is not None:
            try:
                setattr(request.musicgen, name, value)
            except ValueError as exc:
                raise CommandError(f"--{name.replace('_', '-')} {value}: {exc}", 2) from exc


def batch_song(number: int, line: str, base: Path, out_dir: Path, extension: str, model: str) -> Song:
    """A Song from one JSONL line of the reference's batch format (ValueError when it is bad)."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from exc
    if not isinstance(entry, dict):
        raise ValueError("not a JSON object")
    for key in ("style_prompt", "lyrics"):
        if not isinstance(entry.get(key), str):
            raise ValueError(f"missing {key}")
    name = str(entry.get("song_name") or f"{number - 1:04d}")
    if "/" in name or name in (".", ".."):
        raise ValueError(f"song_name {name!r} is not a plain file name")
    lyrics_path = base / entry["lyrics"]
    lyrics = read_text(lyrics_path) if lyrics_path.is_file() else entry["lyrics"]
    style_path = base / entry["style_prompt"]
    is_audio = style_path.is_file()
    for key, path, suffixes in (
        ("lyrics", lyrics_path, LYRICS_SUFFIXES),
        ("style_prompt", style_path, AUDIO_SUFFIXES),
    ):
        if not path.is_file() and "\n" not in entry[key] and entry[key].lower().endswith(suffixes):
            raise ValueError(f"{key} names a file that does not exist: {path}")
    output = out_dir / f"{name}.{extension}"
    try:
        settings = SongSettings(
            model, entry.get("seed"), entry.get("steps"), entry.get("cfg_strength"), entry.get("max_secs")
        )
        style_text = None if is_audio else entry["style_prompt"]
        request = build_request(lyrics, style_text, style_path if is_audio else None, output, settings)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad setting: {exc}") from exc
    return Song(name, request, output)


def run_batch(args: argparse.Namespace) -> int:
    """Make every song of a JSONL file; a bad line is reported and the rest still run."""
    from services.runtime.errors import ServiceError

    source = Path(args.file)
    lines = read_text(source).splitlines()
    out_dir = Path(args.output)
    runner = make_runner(args)
    failed = made = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            song = batch_song(number, line, source.parent, out_dir, args.format, args.model)
            report_song(song, make_song(runner, song, args.quiet))
            made += 1
        except (ValueError, CommandError, ServiceError) as exc:
            failed += 1
            print(f"songsmith: {source}:{number}: {exc}", file=sys.stderr)
    print(f"{made} made, {failed} failed")
    return 1 if failed else 0


def _song_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    add_connection_options(parser, "", server_group=where)
    where.add_argument(
        "--local", action="store_const", const="", dest="server", help="make songs in this process"
    )
    parser.add_argument("--model", default="", help="the model to use (default: the first one routed)")
    add_model_root(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def register(commands: argparse._SubParsersAction) -> None:
    """Add `generate` and `batch`."""
    generate = commands.add_parser("generate", help="make one song")
    generate.add_argument(
        "--lyrics", help="lyrics text file (UTF-8; LRC for DiffRhythm v1); none: instrumental"
    )
    generate.add_argument("--style", help="style prompt, e.g. 'dreamy synth-pop, female vocal'")
    generate.add_argument(
        "--style-audio", type=Path, help="reference recording (style, or a melody model's melody)"
    )
    generate.add_argument("-o", "--output", default="song.mp3", help="output file; .mp3, .wav, .flac or .ogg")
    generate.add_argument("--seed", type=int, help="seed (default: random, printed at the end)")
    generate.add_argument("--steps", type=int, help="sampler steps, 2..200 (default: the model's)")
    generate.add_argument("--cfg", type=float, help="guidance strength, 0..20 (default: the model's)")
    generate.add_argument(
        "--max-secs",
        "--seconds",
        dest="max_secs",
        type=float,
        help="song length in seconds: DiffRhythm 2's cap, DiffRhythm v1's length (95 or 96..285), "
        "MusicGen's length (default: the model's)",
    )
    generate.add_argument("--reference-audio", type=Path, help="a recording to continue (MusicGen) or edit")
    generate.add_argument("--stereo", action="store_true", help="fake stereo for mono models")
    generate.add_argument("--normalize", action="store_true", help="normalize loudness to -14 LUFS")
    generate.add_argument(
        "--candidates",
        type=int,
        default=1,
        help="DiffRhythm v1: songs sampled together, 1..8; N > 1 writes OUT-1..OUT-N (seeds seed..seed+N-1)",
    )
    generate.add_argument(
        "--keep-raw-level",
        action="store_true",
        help="DiffRhythm v1: write the decoded level instead of peak-normalizing as the reference does",
    )
    generate.add_argument(
        "--edit",
        type=edit_span,
        action="append",
        default=[],
        metavar="START:END",
        help="DiffRhythm v1: regenerate this span of --reference-audio in seconds (20:40; :20 from the "
        "start, 60: to the end), keeping the rest; repeatable",
    )
    charts = generate.add_argument_group(
        "charts", "osu!mania charts of the song (a chart stage is needed), written to <output>.osz"
    )
    charts.add_argument("--chart", action="store_true", help="also make charts and write <output>.osz")
    charts.add_argument(
        "--feature",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a chart control, repeatable: sr, rank_status (ranked/loved/graveyard), ln_ratio, rc, hb, "
        "ln, ett, and <pattern> (true/false) and <pattern>_ett for stamina, stream, jumpstream, "
        "handstream, jackspeed, chordjack, technical",
    )
    charts.add_argument("--chart-count", type=int, help="charts to make, 1..8 (default 1)")
    charts.add_argument("--chart-steps", type=int, help="chart sampler steps (default 100)")
    musicgen = generate.add_argument_group("MusicGen sampling (MusicGen models only)")
    musicgen.add_argument("--greedy", action="store_true", help="take the most likely code (no sampling)")
    musicgen.add_argument(
        "--top-k", type=int, help="sample among the k likeliest codes, 1..2048 (default 250)"
    )
    musicgen.add_argument("--top-p", type=float, help="then keep the likeliest codes up to this probability")
    musicgen.add_argument("--temperature", type=float, help="sampling temperature, (0, 10] (default 1)")
    _song_options(generate)
    generate.set_defaults(func=run_generate)

    batch = commands.add_parser("batch", help="make every song of a JSONL file (the reference's format)")
    batch.add_argument(
        "file", help="JSONL: song_name, style_prompt (text or audio file), lyrics (file or text)"
    )
    batch.add_argument("-o", "--output", required=True, help="output folder")
    batch.add_argument("--format", default="mp3", choices=tuple(FORMATS))
    _song_options(batch)
    batch.set_defaults(func=run_batch)
