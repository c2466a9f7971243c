"""`songsmith serve` (one component) and `songsmith up` (every stage the models need, and the gateway)."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from pathlib import Path

from gateway.commands.common import CommandError, add_model_root

COMPONENTS = ("gateway", "tokenizer", "style", "diffusion", "vocoder", "chart")


def run_serve(args: argparse.Namespace) -> int:
    """Run one component until SIGTERM; its own flags follow the component name."""
    module = "gateway.server" if args.component == "gateway" else f"services.{args.component}.server"
    importlib.import_module(module).main(args.flags)
    return 0


def run_up(args: argparse.Namespace) -> int:
    """Start the stack, print the addresses, and stop everything on Ctrl-C."""
    from gateway.launcher import LocalStack, plan
    from gateway.models import discover, find_chart_model
    from services.runtime.errors import FailedPreconditionError

    try:
        routes = discover(Path(args.model_root))
    except FailedPreconditionError as exc:
        raise CommandError(exc.message) from exc
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    chart_model = find_chart_model(Path(args.model_root))
    stack = LocalStack(plan(routes, args.port, args.metrics_port, chart_model), Path(args.var_dir))
    names = ", ".join(service.name for service in stack.services)
    print(f"starting {names} for {', '.join(route.name for route in routes)} ...", file=sys.stderr)
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
            f"ready: songsmith generate --server {stack.plan.gateway.address} ...  (Ctrl-C stops)", flush=True
        )
        while not stop.wait(0.5):
            if any(process.poll() is not None for process in stack.processes.values()):
                raise CommandError(f"a service exited; see {args.var_dir}/logs")
    finally:
        print("stopping ...", file=sys.stderr)
        stack.stop()
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add `serve` and `up`."""
    serve = commands.add_parser(
        "serve", help="run one service (flags after the name: see `serve NAME --help`)"
    )
    serve.add_argument("component", choices=COMPONENTS)
    serve.add_argument("flags", nargs=argparse.REMAINDER, help="the component's own flags")
    serve.set_defaults(func=run_serve)

    up = commands.add_parser(
        "up",
        help="start the stages every model under the model root needs (the chart stage too when a chart "
        "model is there), and the gateway",
    )
    add_model_root(up)
    up.add_argument("--port", type=int, default=50050, help="gateway port; the stages take the next ones")
    up.add_argument("--metrics-port", type=int, default=9400, help="first metrics port; 0 disables metrics")
    up.add_argument("--var-dir", default="var", help="jobs database, results and logs")
    up.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for every service")
    up.set_defaults(func=run_up)


def passive_openmp() -> None:
    """Let idle OpenMP threads sleep unless `OMP_WAIT_POLICY` says otherwise: spinning threads of
    processes that share a machine starve each other. Must run before torch loads."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
