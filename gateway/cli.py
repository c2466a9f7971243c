"""The `songsmith` command: serve a component, start a local stack, make songs, manage jobs and models.

Stage commands (`lyrics`, `style`, `latents`) are added by the stages' own `cli.register`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from tqdm import tqdm

from gateway.audio import CONTAINERS, format_for_path
from gateway.client import AudioFile, SongClient, consume
from services.runtime.cancellation import CancellationToken
from services.runtime.cli import USAGE_ERROR, report_error
from services.runtime.errors import InvalidArgumentError, ServiceError
from services.runtime.interceptor import error_from_call
from songsmith.v1 import song_pb2

COMPONENTS = ("gateway", "tokenizer", "style", "diffusion", "vocoder", "chart")
STAGE_CLIS = (
    "services.tokenizer.cli",
    "services.style.cli",
    "services.diffusion.cli",
    "services.vocoder.cli",
    "services.chart.cli",
)
DEFAULT_SERVER_ENV = "SONGSMITH_SERVER"
TOKEN_ENV = "SONGSMITH_TOKEN"
# A batch line's lyrics or style ending like this names a file; a missing one is an error, not text.
LYRICS_SUFFIXES = (".txt", ".lrc")
AUDIO_SUFFIXES = tuple(f".{container.extension}" for container in CONTAINERS.values())


class CommandError(Exception):
    """A failure to report as one line, with the exit code to leave with."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _CommandGroups:
    """Lets several stages add subcommands to one group (`latents generate` comes from the diffusion
    stage, `latents decode` from the vocoder), which plain argparse refuses."""

    def __init__(self, subparsers: argparse._SubParsersAction) -> None:
        self._subparsers = subparsers
        self._groups: dict[str, _Group] = {}

    def add_parser(self, name: str, **kwargs: Any) -> _Group:
        if name not in self._groups:
            self._groups[name] = _Group(self._subparsers.add_parser(name, **kwargs))
        return self._groups[name]


class _Group:
    """A command group parser whose subcommand list is created once and then shared."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self._commands: argparse._SubParsersAction | None = None

    def add_subparsers(self, **kwargs: Any) -> argparse._SubParsersAction:
        if self._commands is None:
            self._commands = self.parser.add_subparsers(**kwargs)
        return self._commands

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)


# ---- songsmith serve / up ---------------------------------------------------------------------


def run_serve(args: argparse.Namespace) -> int:
    """Run one component until SIGTERM; its own flags follow the component name.

    OpenMP threads sleep between parallel regions unless `OMP_WAIT_POLICY` says otherwise: spinning
    threads of stages that share a machine starve each other. It must be set before torch loads.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    module = "gateway.server" if args.component == "gateway" else f"services.{args.component}.server"
    importlib.import_module(module).main(args.flags)
    return 0


def run_up(args: argparse.Namespace) -> int:
    """Start the stack, print the addresses, and stop everything on Ctrl-C."""
    from gateway.launcher import LocalStack, plan
    from gateway.local_stages import ModelPaths

    paths = ModelPaths.under(args.model_root)
    missing = [str(p) for p in (paths.diffrhythm2, paths.mulan) if not p.is_dir()]
    if missing:
        raise CommandError(
            f"no model at {', '.join(missing)}: "
            "run `songsmith models demo` or `songsmith models pull diffrhythm2`"
        )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stack = LocalStack(plan(args.port, args.metrics_port), paths, Path(args.var_dir))
    print("starting tokenizer, style, diffusion, vocoder and gateway ...", file=sys.stderr)
    stack.start()
    try:
        problems = stack.wait_healthy(args.timeout)
        if problems:
            raise CommandError(
                f"the stack did not come up: {'; '.join(problems)} (logs in {args.var_dir}/logs)"
            )
        for service in stack.services:
            metrics = f", metrics :{service.metrics_port}" if service.metrics_port else ""
            print(f"{service.name:<10} {service.address}{metrics}")
        print(
            f"ready: songsmith generate --server {stack.services[0].address} ...  (Ctrl-C stops)", flush=True
        )
        while not stop.wait(0.5):
            if any(process.poll() is not None for process in stack.processes.values()):
                raise CommandError(f"a service exited; see {args.var_dir}/logs")
    finally:
        print("stopping ...", file=sys.stderr)
        stack.stop()
    return 0


# ---- songsmith generate / batch ---------------------------------------------------------------


@dataclass
class Song:
    """One song to make from the command line."""

    name: str
    request: song_pb2.SongRequest
    output: Path


def build_request(
    lyrics: str,
    style_text: str | None,
    style_audio: Path | None,
    output: Path,
    seed: int | None,
    steps: int | None,
    cfg: float | None,
    max_secs: float | None,
    stereo: bool = False,
    normalize: bool = False,
) -> song_pb2.SongRequest:
    """A SongRequest from command-line values (the style audio is read here, on the client)."""
    try:
        audio_format = format_for_path(output.name)
    except ValueError as exc:
        raise CommandError(str(exc), 2) from exc
    request = song_pb2.SongRequest(
        job_id=uuid.uuid4().hex,
        lyrics=lyrics,
        steps=steps or 0,
        max_seconds=max_secs or 0.0,
        format=audio_format,
        stereo=stereo,
        normalize_loudness=normalize,
    )
    if style_audio is not None:
        request.style_audio = _read_bytes(style_audio)
    else:
        request.style_prompt = style_text or ""
    if seed is not None:
        request.seed = seed
    if cfg is not None:
        request.cfg_strength = cfg
    return request


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}", 2) from exc


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc}", 2) from exc


class _Progress:
    """A progress bar over a song's diffusion blocks, fed by SongEvents."""

    def __init__(self, name: str, quiet: bool) -> None:
        self._bar = tqdm(desc=name, unit="block", disable=quiet, leave=False, file=sys.stderr)

    def __call__(self, event: song_pb2.SongEvent) -> None:
        if event.HasField("progress") and event.progress.stage == "diffusion":
            self._bar.total = event.progress.max_blocks
            self._bar.n = event.progress.blocks_done
            self._bar.set_postfix_str(f"{event.progress.seconds_generated:.0f} s of audio", refresh=False)
            self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


class LocalRunner:
    """Makes songs in this process (the embedded default): no servers needed."""

    def __init__(self, model_root: str) -> None:
        from gateway.local_stages import LocalStages, ModelPaths
        from gateway.pipeline import Pipeline

        self._pipeline = Pipeline(LocalStages(ModelPaths.under(model_root)))

    def make(self, song: Song, on_event: Callable[[song_pb2.SongEvent], None]) -> song_pb2.SongSummary:
        from gateway.validation import RequestLimits, draw_seed, song_spec, validate_request

        validate_request(song.request, RequestLimits())
        seed = song.request.seed if song.request.HasField("seed") else draw_seed()
        spec = song_spec(song.request, song.request.job_id, seed)
        audio = AudioFile(song.output)

        def emit(event: song_pb2.SongEvent) -> None:
            on_event(event)
            if event.HasField("audio"):
                audio.write(event.audio)

        try:
            return self._pipeline.run(spec, CancellationToken(), emit).summary
        finally:
            audio.close()


class RemoteRunner:
    """Makes songs through a gateway's SongService."""

    def __init__(self, server: str, token: str) -> None:
        self._client = SongClient(server, token)

    def make(self, song: Song, on_event: Callable[[song_pb2.SongEvent], None]) -> song_pb2.SongSummary:
        try:
            summary = consume(self._client.generate(song.request), song.output, on_event)
        except grpc.RpcError as exc:
            raise error_from_call(exc, "gateway") from exc
        if summary is None:
            raise CommandError("the gateway ended the song without a result")
        return summary


def _runner(args: argparse.Namespace) -> LocalRunner | RemoteRunner:
    if args.server:
        return RemoteRunner(args.server, args.token)
    return LocalRunner(args.model_root)


def _make(runner: LocalRunner | RemoteRunner, song: Song, quiet: bool) -> song_pb2.SongSummary:
    progress = _Progress(song.name, quiet)
    try:
        return runner.make(song, progress)
    finally:
        progress.close()


def _report(song: Song, summary: song_pb2.SongSummary) -> None:
    print(
        f"{song.output}: {summary.duration_seconds:.1f} s, {summary.sample_rate} Hz, "
        f"{summary.channels} ch, seed {summary.seed}, {summary.stage_seconds['total']:.1f} s to make"
    )


def run_generate(args: argparse.Namespace) -> int:
    """Make one song."""
    output = Path(args.output)
    request = build_request(
        _read_text(Path(args.lyrics)),
        args.style,
        args.style_audio,
        output,
        args.seed,
        args.steps,
        args.cfg,
        args.max_secs,
        args.stereo,
        args.normalize,
    )
    song = Song(output.stem, request, output)
    _report(song, _make(_runner(args), song, args.quiet))
    return 0


def _batch_song(number: int, line: str, base: Path, out_dir: Path, extension: str) -> Song:
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
    lyrics = _read_text(lyrics_path) if lyrics_path.is_file() else entry["lyrics"]
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
        return Song(
            name,
            build_request(
                lyrics,
                None if is_audio else entry["style_prompt"],
                style_path if is_audio else None,
                output,
                entry.get("seed"),
                entry.get("steps"),
                entry.get("cfg_strength"),
                entry.get("max_secs"),
            ),
            output,
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad setting: {exc}") from exc


def run_batch(args: argparse.Namespace) -> int:
    """Make every song of a JSONL file; a bad line is reported and the rest still run."""
    source = Path(args.file)
    lines = _read_text(source).splitlines()
    out_dir = Path(args.output)
    runner = _runner(args)
    failed = made = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            song = _batch_song(number, line, source.parent, out_dir, args.format)
            _report(song, _make(runner, song, args.quiet))
            made += 1
        except (ValueError, CommandError, ServiceError) as exc:
            failed += 1
            print(f"songsmith: {source}:{number}: {exc}", file=sys.stderr)
    print(f"{made} made, {failed} failed")
    return 1 if failed else 0


# ---- songsmith jobs ---------------------------------------------------------------------------


def _job_line(job: song_pb2.Job) -> str:
    state = song_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()
    detail = job.error or (f"{job.result.duration_seconds:.1f} s" if job.HasField("result") else "")
    return f"{job.job_id}  {state:<9} {job.blocks_done}/{job.max_blocks} blocks  {detail}"


def run_jobs(args: argparse.Namespace) -> int:
    """List, show, watch or cancel jobs on a gateway."""
    client = SongClient(args.server, args.token)
    stub, metadata = client.stub, client.metadata
    try:
        if args.jobs_command == "list":
            reply = stub.ListJobs(song_pb2.ListJobsRequest(limit=args.limit), metadata=metadata, timeout=30)
            for job in reply.jobs:
                print(_job_line(job))
        elif args.jobs_command == "get":
            job = stub.GetJob(song_pb2.GetJobRequest(job_id=args.job_id), metadata=metadata, timeout=30)
            print(json.dumps(_job_json(job), indent=2))
        elif args.jobs_command == "cancel":
            job = stub.CancelJob(song_pb2.CancelJobRequest(job_id=args.job_id), metadata=metadata, timeout=60)
            print(_job_line(job))
        else:
            events = stub.WatchJob(song_pb2.WatchJobRequest(job_id=args.job_id), metadata=metadata)
            progress = _Progress(args.job_id, args.quiet)
            try:
                summary = consume(events, Path(args.output) if args.output else None, progress)
            finally:
                progress.close()
            if summary is not None:
                print(f"{args.job_id}: done, {summary.duration_seconds:.1f} s")
    except grpc.RpcError as exc:
        raise error_from_call(exc, "gateway") from exc
    finally:
        client.close()
    return 0


def _job_json(job: song_pb2.Job) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(job, preserving_proto_field_name=True)


# ---- songsmith models -------------------------------------------------------------------------


def run_models(args: argparse.Namespace) -> int:
    """Download the published weights, or write the demo model."""
    from gateway import model_store

    root = Path(args.model_root)
    if args.models_command == "demo":
        diffrhythm2, mulan = model_store.write_demo(root)
        print(f"demo model written: {diffrhythm2} and {mulan}")
        print(
            "it has random weights: songs made with it are noise; "
            "`songsmith models pull diffrhythm2` gets real ones"
        )
        return 0
    try:
        paths = model_store.pull(
            args.family, root, report=lambda line: print(line, file=sys.stderr), endpoint=args.endpoint
        )
    except model_store.OfflineError as exc:
        raise CommandError(str(exc)) from exc
    except model_store.VerificationError as exc:
        raise CommandError(f"download check failed: {exc}") from exc
    print(f"{len(paths)} files in {root}")
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    """The end-to-end demo: local stack, one example song, stack stopped."""
    from gateway.demo import run_demo

    return run_demo(Path(args.model_root), Path(args.output), Path(args.var_dir), args.max_secs, args.port)


# ---- the parser -------------------------------------------------------------------------------


def _song_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--server",
        default=os.environ.get(DEFAULT_SERVER_ENV, ""),
        help=f"gateway address (env {DEFAULT_SERVER_ENV}); without it, songs are made in this process",
    )
    where.add_argument(
        "--local", action="store_const", const="", dest="server", help="make songs in this process"
    )
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV, ""),
        help=f"bearer token for the gateway (env {TOKEN_ENV})",
    )
    parser.add_argument("--model-root", default=os.environ.get("SONGSMITH_MODEL_ROOT", "models"))
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The whole `songsmith` argument tree."""
    parser = argparse.ArgumentParser(prog="songsmith", description="Lyrics plus a style in, a song out.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve", help="run one service (flags after the name: see `serve NAME --help`)"
    )
    serve.add_argument("component", choices=COMPONENTS)
    serve.add_argument("flags", nargs=argparse.REMAINDER, help="the component's own flags")
    serve.set_defaults(func=run_serve)

    up = commands.add_parser("up", help="start the four stages and the gateway on 127.0.0.1")
    up.add_argument("--model-root", default=os.environ.get("SONGSMITH_MODEL_ROOT", "models"))
    up.add_argument("--port", type=int, default=50050, help="gateway port; the stages take the next four")
    up.add_argument("--metrics-port", type=int, default=9400, help="first metrics port; 0 disables metrics")
    up.add_argument("--var-dir", default="var", help="jobs database, results and logs")
    up.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every service")
    up.set_defaults(func=run_up)

    demo = commands.add_parser("demo", help="end to end on the demo model: local stack, one song, stop")
    demo.add_argument("--model-root", default=os.environ.get("SONGSMITH_MODEL_ROOT", "models"))
    demo.add_argument("-o", "--output", default="out/demo.mp3")
    demo.add_argument("--var-dir", default="out/var")
    demo.add_argument("--max-secs", type=float, default=30.0, help="song length cap (default 30 s)")
    demo.add_argument("--port", type=int, default=50050, help="gateway port; the stages take the next four")
    demo.set_defaults(func=run_demo_command)

    generate = commands.add_parser("generate", help="make one song")
    generate.add_argument("--lyrics", required=True, help="lyrics text file (UTF-8)")
    style = generate.add_mutually_exclusive_group(required=True)
    style.add_argument("--style", help="style prompt, e.g. 'dreamy synth-pop, female vocal'")
    style.add_argument("--style-audio", type=Path, help="reference recording (WAV, FLAC, MP3 or OGG)")
    generate.add_argument("-o", "--output", default="song.mp3", help="output file; .mp3, .wav, .flac or .ogg")
    generate.add_argument("--seed", type=int, help="seed (default: random, printed at the end)")
    generate.add_argument("--steps", type=int, help="Euler steps per block, 2..200 (default 16)")
    generate.add_argument("--cfg", type=float, help="guidance strength, 0..20 (default 2.0)")
    generate.add_argument("--max-secs", type=float, help="longest song in seconds (default 210)")
    generate.add_argument("--stereo", action="store_true", help="fake stereo as the reference makes it")
    generate.add_argument("--normalize", action="store_true", help="normalize loudness to -14 LUFS")
    _song_options(generate)
    generate.set_defaults(func=run_generate)

    batch = commands.add_parser("batch", help="make every song of a JSONL file (the reference's format)")
    batch.add_argument(
        "file", help="JSONL: song_name, style_prompt (text or audio file), lyrics (file or text)"
    )
    batch.add_argument("-o", "--output", required=True, help="output folder")
    batch.add_argument("--format", default="mp3", choices=("mp3", "wav", "flac", "ogg"))
    _song_options(batch)
    batch.set_defaults(func=run_batch)

    jobs = commands.add_parser("jobs", help="list, show, watch or cancel jobs on a gateway")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    for name, text in (
        ("list", "jobs, newest first"),
        ("get", "one job"),
        ("watch", "follow a job"),
        ("cancel", "cancel a job"),
    ):
        command = jobs_commands.add_parser(name, help=text)
        if name != "list":
            command.add_argument("job_id")
        command.add_argument("--server", default=os.environ.get(DEFAULT_SERVER_ENV, "127.0.0.1:50050"))
        command.add_argument("--token", default=os.environ.get(TOKEN_ENV, ""))
        if name == "list":
            command.add_argument("--limit", type=int, default=50)
        if name == "watch":
            command.add_argument("-o", "--output", help="write the song's audio here")
            command.add_argument("-q", "--quiet", action="store_true")
        command.set_defaults(func=run_jobs)

    models = commands.add_parser("models", help="get model weights")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    pull = models_commands.add_parser("pull", help="download published weights from the Hugging Face Hub")
    pull.add_argument("family", choices=("diffrhythm2",))
    pull.add_argument(
        "--endpoint", default=None, help="a Hub mirror's URL (default: $HF_ENDPOINT or the Hub)"
    )
    demo = models_commands.add_parser("demo", help="write a tiny random-weight model (its songs are noise)")
    for command in (pull, demo):
        command.add_argument("--model-root", default=os.environ.get("SONGSMITH_MODEL_ROOT", "models"))
        command.set_defaults(func=run_models)

    groups = _CommandGroups(commands)
    for module in STAGE_CLIS:
        importlib.import_module(module).register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `songsmith` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CommandError as exc:
        return report_error(str(exc), exc.exit_code)
    except ServiceError as exc:
        return report_error(exc.message, USAGE_ERROR if isinstance(exc, InvalidArgumentError) else 1)
    except KeyboardInterrupt:
        print("songsmith: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
