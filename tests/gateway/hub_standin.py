"""A local stand-in of the Hugging Face Hub's HTTP API, enough for huggingface_hub to list and
download model files from it (`HfApi(endpoint=...)`, `hf_hub_download(endpoint=...)`).

It answers `GET /api/models/<repo>` with the repository's commit and file listing (sizes, git blob
ids, LFS sha256), and `HEAD`/`GET /<repo>/resolve/<main or commit>/<file>` with the Hub's headers
(X-Repo-Commit, ETag, Content-Length) and the bytes, honouring `Range: bytes=N-`. A test can make a
file's bytes differ from its listing, drop the connection halfway through a file's first download,
or stall halfway until released; every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LISTING = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<revision>[^/]+))?$")
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)$")


@dataclass
class HubFile:
    """A file as listed (`data`) and as served (`served`, when a test makes them differ)."""

    data: bytes
    lfs: bool = False
    served: bytes | None = None

    @property
    def body(self) -> bytes:
        return self.data if self.served is None else self.served

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def blob_id(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


@dataclass
class HubRepo:
    """A repository at one commit."""

    commit: str
    files: dict[str, HubFile]


@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class StandInHub:
    """The stand-in server; use as a context manager, its `url` as the endpoint."""

    repos: dict[str, HubRepo]
    drop_once: set[str] = field(default_factory=set)  # "<repo>/<file>": first GET stops halfway
    stall: set[str] = field(default_factory=set)  # "<repo>/<file>": GETs stop halfway until `release`
    requests: list[Request] = field(default_factory=list)
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> StandInHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                hub._answer(self, with_body=True)

            def do_HEAD(self) -> None:
                hub._answer(self, with_body=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def downloads(self) -> list[str]:
        """`<repo>/<file>` of every file GET, in order."""
        found = [RESOLVE.match(r.path) for r in self.requests if r.method == "GET"]
        return [f"{m['repo']}/{m['file']}" for m in found if m]

    def _answer(self, handler: BaseHTTPRequestHandler, with_body: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        self.requests.append(Request(handler.command, path, handler.headers.get("Range")))
        if listing := LISTING.match(path):
            self._listing(handler, listing["repo"], listing["revision"])
        elif resolve := RESOLVE.match(path):
            self._file(handler, resolve["repo"], resolve["revision"], resolve["file"], with_body)
        else:
            self._error(handler, 404, "RepoNotFound")

    def _listing(self, handler: BaseHTTPRequestHandler, repo_id: str, revision: str | None) -> None:
        repo = self.repos.get(repo_id)
        if repo is None or revision not in (None, "main", repo.commit):
            self._error(handler, 404, "RepoNotFound" if repo is None else "RevisionNotFound")
            return
        siblings = []
        for name, file in repo.files.items():
            sibling = {"rfilename": name, "size": len(file.data), "blobId": file.blob_id}
            if file.lfs:
                sibling["lfs"] = {"sha256": file.sha256, "size": len(file.data), "pointerSize": 134}
            siblings.append(sibling)
        body = json.dumps({"id": repo_id, "sha": repo.commit, "siblings": siblings}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _file(self, handler, repo_id: str, revision: str, name: str, with_body: bool) -> None:
        repo = self.repos.get(repo_id)
        if repo is None or revision not in ("main", repo.commit):
            self._error(handler, 404, "RevisionNotFound")
            return
        file = repo.files.get(name)
        if file is None:
            self._error(handler, 404, "EntryNotFound", repo.commit)
            return
        body, start = file.body, 0
        wanted = handler.headers.get("Range")
        if with_body and wanted and (match := re.fullmatch(r"bytes=(\d+)-", wanted)):
            start = int(match[1])
        handler.send_response(206 if start else 200)
        handler.send_header("X-Repo-Commit", repo.commit)
        handler.send_header("ETag", f'"{file.sha256 if file.lfs else file.blob_id}"')
        handler.send_header("Content-Length", str(len(body) - start))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        handler.end_headers()
        if not with_body:
            return
        key = f"{repo_id}/{name}"
        if key in self.drop_once or key in self.stall:
            handler.wfile.write(body[start : start + (len(body) - start) // 2])
            handler.wfile.flush()
            if key in self.stall:
                self.stalled.set()
                self.release.wait(120)
            self.drop_once.discard(key)
            handler.close_connection = True
            return
        handler.wfile.write(body[start:])

    @staticmethod
    def _error(handler: BaseHTTPRequestHandler, status: int, code: str, commit: str | None = None) -> None:
        body = json.dumps({"error": code}).encode()
        handler.send_response(status)
        handler.send_header("X-Error-Code", code)
        if commit:
            handler.send_header("X-Repo-Commit", commit)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
