"""How bridge requests reach MLflow: a helper process (default) or a background thread.

Why a helper process by default. The training process must pay for tracking what it
pays with the local store: a few records appended to the spool. Whoever writes them to
a database runs `import mlflow` (about 1.5 s of Python, ~100 packages), MLflow's schema
migrations on a new sqlite file (seconds) and SQLAlchemy for every request: all pure
Python, so in a thread of the training process it holds the GIL against the training
loop, and on a 2-core machine the fits slow down while it runs. A helper process does
the same work on its own interpreter; the training process's sender thread only
writes a line to a pipe and waits (GIL released) for the answer line.
`benchmarks/bench_bridge.py` measures both against the local store side by side. On
a 2-core machine shared with other jobs (load average ~20), 10 RandomForest fits under
autolog, 4 trials x 3 rounds, a new sqlite file each trial: the training process's CPU
per round was 0.289 s local (0.230..0.353), 0.282 s with the helper process
(0.206..0.351; ratio 0.98), 0.670 s with the thread (0.474..0.925; ratio 2.32); wall
time per round 1.86 s / 2.26 s / 3.04 s (medians; the load made wall time spread
0.3..5.6 s). So the helper process, and the thread only where a process cannot be had.

``MLTRAIL_BRIDGE=thread`` picks the in-thread mode (no extra process: for
platforms where spawning one is costly or forbidden).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any, Protocol

from ...exceptions import RemoteError

PROCESS, THREAD = "process", "thread"


class Transport(Protocol):
    """Carries one request to the MLflow side and brings back its answer."""

    def request(self, op: str, args: dict[str, Any]) -> Any: ...

    def close(self) -> None: ...


def bridge_mode() -> str:
    return THREAD if os.environ.get("MLTRAIL_BRIDGE", "").lower() == THREAD else PROCESS


def open_transport(tracking_uri: str | None, mode: str | None = None) -> Transport:
    """A transport to MLflow for `tracking_uri` (None: artifacts only), started lazily."""
    if (mode or bridge_mode()) == THREAD:
        return InThread(tracking_uri)
    return HelperProcess(tracking_uri)


class BridgeFailure(RemoteError):
    """The MLflow side refused a request or could not carry it out."""

    def __init__(self, message: str, error_code: str, transient: bool) -> None:
        super().__init__(message, error_code=error_code)
        self.transient = transient
        self.sent = True


class InThread:
    """Requests answered in the calling thread (the sender's), mlflow imported there."""

    def __init__(self, tracking_uri: str | None) -> None:
        self.tracking_uri = tracking_uri
        self._side: Any = None
        self._lock = threading.Lock()

    def request(self, op: str, args: dict[str, Any]) -> Any:
        from .worker import BridgeError, MlflowSide

        with self._lock:
            if self._side is None:
                self._side = MlflowSide(self.tracking_uri)
        try:
            return self._side.handle(op, args)
        except BridgeError as exc:
            raise BridgeFailure(exc.message, exc.error_code, exc.transient) from None

    def close(self) -> None:
        pass


class HelperProcess:
    """Requests answered by ``python -m mltrail.stores.bridge.worker`` over its pipes.

    Started on the first request, in a session of its own so that a Ctrl-C meant for
    this process does not end it. It ends when its stdin closes: at `close`, or when
    this process exits (whatever request it is carrying out is finished first, and
    its record stays in the spool's "sent, not confirmed" state, so the next shipper
    looks the run up by its client id instead of creating it twice).
    """

    def __init__(self, tracking_uri: str | None) -> None:
        self.tracking_uri = tracking_uri
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _start(self) -> subprocess.Popen[str]:
        env = dict(os.environ)
        # The child imports mltrail from wherever this process did (a notebook may have
        # put a source folder on sys.path by hand).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        return subprocess.Popen(
            [sys.executable, "-m", "mltrail.stores.bridge.worker", self.tracking_uri or ""],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            bufsize=1,
            # A session of its own: a Ctrl-C at the terminal reaches the training process,
            # whose exit path still needs this helper to deliver what is pending.
            start_new_session=True,
        )

    def request(self, op: str, args: dict[str, Any]) -> Any:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's pipes are not ours
                self._proc, self._pid = None, os.getpid()
            if self._proc is None or self._proc.poll() is not None:
                try:
                    self._proc = self._start()
                except OSError as exc:
                    raise BridgeFailure(
                        f"the MLflow bridge process could not start: {exc}",
                        "TEMPORARILY_UNAVAILABLE",
                        True,
                    ) from exc
            proc = self._proc
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except (OSError, ValueError) as exc:
                line, error = "", exc
            else:
                error = None
            if not line:
                proc.kill()
                proc.wait()
                self._proc = None
                raise BridgeFailure(
                    f"the MLflow bridge process ended unexpectedly ({error or 'no answer'}); "
                    "see its messages above",
                    "TEMPORARILY_UNAVAILABLE",
                    True,
                )
        answer = json.loads(line)
        if "error" in answer:
            e = answer["error"]
            raise BridgeFailure(e["message"], e["error_code"], bool(e["transient"]))
        return answer["ok"]

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None and self._pid == os.getpid():
            assert proc.stdin is not None
            try:
                proc.stdin.close()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
