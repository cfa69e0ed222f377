"""A fault-injecting HTTP proxy on 127.0.0.1 for the remote-store tests.

It forwards each request to a real server and can be scripted, per path, to
drop the connection (before or after the server saw the request), answer an
error status with Retry-After, or hold the answer past the client's timeout.
It counts requests per path, keeps their arrival times, and can demand a
Bearer token (a plain `mlflow server` has no auth; this stands in for one).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

# Actions: "forward"; "drop" (close without answering, server never sees it);
# "drop_after" (the server handles it, the answer is lost); ("status", code, retry_after);
# ("delay", seconds) (the server handles it, the answer comes late);
# ("rewrite", fn) (fn(json body) -> json body, on the server's answer);
# ("delay_before", seconds) (held, then forwarded: the server sees it late);
# ("hang", seconds) (a blackhole: never forwarded, never answered; the connection is
# dropped after `seconds` or at `release_hung()`, whichever comes first);
# ("hold", seconds) (forwarded at once, answered after `seconds` or at `release_hung()`);
# "no_route" (never forwarded: Flask's HTML 404 page, as a server older than the
# endpoint answers, e.g. an MLflow 2 server asked for MLflow 3's logged models).
Action = Any


@dataclass
class Rule:
    path: str
    action: Action
    times: int | None = 1  # None: every matching request
    method: str | None = None


@dataclass
class Seen:
    method: str
    path: str
    at: float
    action: str


@dataclass
class FaultyProxy:
    """A proxy in front of `target` (e.g. ``http://127.0.0.1:5000``); use as a context manager."""

    target: str
    rules: list[Rule] = field(default_factory=list)
    down: bool = False  # drop every connection, as if the server were gone
    bearer_token: str | None = None
    authorization: str | None = None  # the exact Authorization header to demand, if set
    counts: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)  # answers sent back, by path
    forwarded: Counter[str] = field(default_factory=Counter)  # handled by the server, by path
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._unhang = threading.Event()
        parsed = urlparse(self.target)
        self._host, self._port = parsed.hostname or "127.0.0.1", parsed.port or 80
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the client's session expects

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultyProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._unhang.set()
        self._server.shutdown()
        self._server.server_close()

    def add(
        self, path: str, action: Action, times: int | None = 1, method: str | None = None
    ) -> None:
        with self._lock:
            self.rules.append(Rule(path, action, times, method))

    def count(self, path_part: str = "", method: str | None = None) -> int:
        """Requests seen whose path contains `path_part` (and with `method`)."""
        with self._lock:
            return sum(
                1
                for s in self.seen
                if path_part in s.path and (method is None or s.method == method)
            )

    def release_hung(self) -> None:
        """End every request held by a "hang" rule (their connections are dropped)."""
        self._unhang.set()

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.seen.clear()

    def _pick(self, method: str, path: str) -> Action:
        with self._lock:
            for rule in self.rules:
                if rule.path in path and (rule.method is None or rule.method == method):
                    if rule.times is not None:
                        if rule.times <= 0:
                            continue
                        rule.times -= 1
                    return rule.action
        return "forward"

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        path = req.path.split("?", 1)[0]
        if self.down:
            self._record(req.command, path, "down")
            self._drop(req)
            return
        expected = self.authorization or (
            f"Bearer {self.bearer_token}" if self.bearer_token is not None else None
        )
        if expected is not None and req.headers.get("Authorization") != expected:
            self._record(req.command, path, "401")
            self._reply(
                req,
                401,
                json.dumps(
                    {"error_code": "UNAUTHENTICATED", "message": "Bad or missing token"}
                ).encode(),
            )
            return
        action = self._pick(req.command, path)
        name = action if isinstance(action, str) else str(action[0])
        self._record(req.command, path, name)
        if action == "drop":
            self._drop(req)
            return
        if isinstance(action, tuple) and action[0] == "hang":
            self._unhang.wait(action[1])
            self._drop(req)
            return
        if isinstance(action, tuple) and action[0] == "status":
            _, code, retry_after = action
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            payload = {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "injected"}
            self._reply(req, code, json.dumps(payload).encode(), headers)
            return
        if action == "no_route":
            page = b"<!doctype html>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
            self._reply(req, 404, page, {"Content-Type": "text/html; charset=utf-8"})
            return
        if isinstance(action, tuple) and action[0] == "delay_before":
            time.sleep(action[1])
        status, content_type, data = self._forward(req, body)
        with self._lock:
            self.forwarded[path] += 1
        if action == "drop_after":
            self._drop(req)
            return
        if isinstance(action, tuple) and action[0] == "delay":
            time.sleep(action[1])
        if isinstance(action, tuple) and action[0] == "hold":
            self._unhang.wait(action[1])
        if isinstance(action, tuple) and action[0] == "rewrite":
            rewrite: Callable[[Any], Any] = action[1]
            data = json.dumps(rewrite(json.loads(data))).encode()
        with contextlib.suppress(OSError):  # the client gave up waiting (the delay case)
            self._reply(req, status, data, {"Content-Type": content_type})
            with self._lock:
                self.answered[path] += 1

    def _record(self, method: str, path: str, action: str) -> None:
        with self._lock:
            self.counts[path] += 1
            self.seen.append(Seen(method, path, time.monotonic(), action))

    def _forward(self, req: BaseHTTPRequestHandler, body: bytes) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=120)
        try:
            headers = {
                k: v
                for k, v in req.headers.items()
                if k.lower() not in ("host", "connection", "keep-alive", "authorization")
            }
            conn.request(req.command, req.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.getheader("Content-Type") or "", data
        finally:
            conn.close()

    @staticmethod
    def _reply(
        req: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        req.send_response(status)
        for key, value in (headers or {}).items():
            req.send_header(key, value)
        if not headers or "Content-Type" not in headers:
            req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)
        req.wfile.flush()

    @staticmethod
    def _drop(req: BaseHTTPRequestHandler) -> None:
        req.close_connection = True
        with contextlib.suppress(OSError):
            req.connection.shutdown(socket.SHUT_RDWR)
