"""A real `mlflow server` on 127.0.0.1, started once per test session (mlflow is test-only)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class MlflowServer:
    """A server process; `stop()` and `start()` let fault tests kill and restart it."""

    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    # `mlflow ui`/`server` options after the address; default: a sqlite database in
    # `root` and artifacts proxied to `root/artifacts`.
    options: list[str] | None = None
    command: str = "server"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        exe = shutil.which("mlflow") or sys.executable
        cmd = [exe] if exe != sys.executable else [sys.executable, "-m", "mlflow"]
        options = self.options or [
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
        ]
        cmd += [
            self.command, "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            *options,
        ]
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root,
            # The job runner (seven queue consumers that poll all the time, for MLflow's
            # GenAI jobs) is off: tracking does not use it, and on 2 cores its polling
            # took most of a core away from the tests and the benchmarks.
            env={**os.environ, "MLFLOW_TRACKING_URI": "",
                 "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: see {self.root / 'server.log'}")
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer within {timeout}s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL)  # the whole group: uvicorn workers too
        self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), free_port())
    server.start()
    yield server
    server.stop()
