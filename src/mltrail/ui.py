"""`mltrail ui`: MLflow's own UI over the local runs.

MLflow 3's `mlflow ui` does not read folder stores, so the local runs are copied into
a database MLflow reads, and `mlflow ui` is started on it:

    mltrail ui                                   # ./mltrail-runs -> ./mltrail-runs-ui/mlflow.db
    mltrail ui --port 5001 --backend-store-uri sqlite:///copy.db

How the copy is made, and why this way. The copy is written with mltrail's own client on
the database URI (`TrackingClient("sqlite:///...")`), that is through the MLflow bridge
(`mltrail.stores.bridge`), which writes with MLflow's store code: no SQL schema of
ours, and nothing here imports mlflow. It reads the local store through the same public
client API, so no folder layout is read behind the store's back. `mltrail sync` is not
the seam: it ships a server's spool (records a process already addressed to a server),
whereas local runs were never addressed anywhere.

The copy is stateless and incremental. Each copied run carries the tag
`mltrail.localRunId`; at start the map local id -> database id is read back from the
database, so a second `mltrail ui` on the same database continues rather than duplicates.
Every `--interval` seconds the local runs are listed again: a new run is created (its
parent tag pointed at the parent's copy), and each copy that is not finished yet gets
what its local run has gained since: params, tags, the metric points beyond those
already copied (histories are append-only). When the local run has ended, its artifacts
are copied and the copy is ended with the same status and end time; a finished copy is
never read again. So runs logged while the UI is open appear within an interval, and
runs still going show their metrics as they grow. Not copied: deleted runs, dataset
inputs, logged models as entities (their files are run artifacts and are copied).

`mlflow ui` runs as a child process on 127.0.0.1, in a session of its own, with the
artifacts as plain files beside the database (`--default-artifact-root`, no artifact
proxying), its output in `mlflow-ui.log` there. Ctrl-C (SIGINT) or SIGTERM stops the
copying, ends that process group by the child's pid, and exits. Needs the `mlflow` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .client import TrackingClient
from .entities import Metric, Param, Run, RunStatus, RunTag, ViewType
from .exceptions import MltrailError
from .stores.bridge import INSTALL_HINT, is_database_uri, mlflow_installed

LOCAL_ID_TAG = "mltrail.localRunId"
PARENT_TAG = "mlflow.parentRunId"
_FINISHED = (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)
_START_TIMEOUT = 180.0  # seconds for `mlflow ui` to answer (a new database migrates first)


def _all_runs(client: TrackingClient, experiment_ids: list[str], query: str = "") -> list[Run]:
    found: list[Run] = []
    token: str | None = None
    while True:
        page = client.search_runs(experiment_ids, query, ViewType.ACTIVE_ONLY, 1000,
                                  ["attributes.start_time ASC"], token)
        found.extend(page)
        token = page.token
        if not token:
            return found


class Mirror:
    """Copies a local store's runs into another store (see the module for how).

    Args:
        source: the local store's client.
        target: the database's client (writes go through the bridge).
        artifact_root: folder under which each copied experiment keeps its artifacts.
    """

    def __init__(self, source: TrackingClient, target: TrackingClient,
                 artifact_root: Path) -> None:
        self.source, self.target, self.artifact_root = source, target, artifact_root
        self.experiments: dict[str, str] = {}  # local experiment id -> database's
        self.runs: dict[str, str] = {}  # local run id -> database's
        self.finished: set[str] = set()  # local run ids whose copy is complete
        self._read_back()

    def _read_back(self) -> None:
        """The copies an earlier `mltrail ui` made into this database."""
        experiments = [e.experiment_id for e in self.target.search_experiments()]
        if not experiments:
            return
        for run in _all_runs(self.target, experiments, f"tags.`{LOCAL_ID_TAG}` != ''"):
            local = run.data.tags[LOCAL_ID_TAG]
            self.runs[local] = run.info.run_id
            if run.info.status in _FINISHED and run.info.end_time:
                self.finished.add(local)

    def _experiment(self, local_id: str) -> str:
        if local_id not in self.experiments:
            name = self.source.get_experiment(local_id).name
            found = self.target.get_experiment_by_name(name)
            if found is None:
                location = (self.artifact_root / local_id).resolve().as_uri()
                self.experiments[local_id] = self.target.create_experiment(name, location)
            else:
                self.experiments[local_id] = found.experiment_id
        return self.experiments[local_id]

    def sync(self, stopping: threading.Event | None = None) -> int:
        """Copy what is new; returns how many runs were created or updated. Once
        `stopping` is set, no further run is started (the next sync goes on from there)."""
        experiment_ids = [e.experiment_id for e in self.source.search_experiments()]
        if not experiment_ids:
            return 0
        listed = {r.info.run_id: r for r in _all_runs(self.source, experiment_ids)}
        touched = 0
        for run_id in listed:
            if stopping is not None and stopping.is_set():
                break
            if run_id not in self.finished:
                touched += self._sync_run(listed[run_id], listed)
        self.target.flush()
        return touched

    def _sync_run(self, run: Run, listed: dict[str, Run]) -> int:
        local_id = run.info.run_id
        parent = run.data.tags.get(PARENT_TAG)
        if parent and parent != local_id and parent in listed and parent not in self.runs:
            self._sync_run(listed[parent], listed)  # the parent's copy first, for its id
        tags = {k: v for k, v in run.data.tags.items() if k != PARENT_TAG}
        if parent in self.runs:
            tags[PARENT_TAG] = self.runs[parent]
        copy_id = self.runs.get(local_id)
        if copy_id is None:
            created = self.target.create_run(
                self._experiment(run.info.experiment_id), start_time=run.info.start_time,
                tags={**tags, LOCAL_ID_TAG: local_id}, run_name=run.info.run_name or None)
            # the database's own id (the bridge may hand out a spool id first): the one
            # the parent tag of a child's copy must hold for MLflow's UI to nest it
            copy_id = self.target.shared_run_id(created.info.run_id) or created.info.run_id
            self.runs[local_id] = copy_id
        copy = self.target.get_run(copy_id)
        params = [Param(k, v) for k, v in run.data.params.items()
                  if k not in copy.data.params]
        new_tags = [RunTag(k, v) for k, v in tags.items() if copy.data.tags.get(k) != v]
        metrics: list[Metric] = []
        for key in run.data.metrics:
            have = len(self.target.get_metric_history(copy_id, key)) if key in copy.data.metrics \
                else 0
            metrics += self.source.get_metric_history(local_id, key)[have:]
        if params or new_tags or metrics:
            self.target.log_batch(copy_id, metrics=metrics, params=params, tags=new_tags)
        if run.info.status in _FINISHED:
            self._copy_artifacts(local_id, copy_id)
            self.target.set_terminated(copy_id, run.info.status, run.info.end_time)
            self.finished.add(local_id)
        return 1

    def _copy_artifacts(self, local_id: str, copy_id: str) -> None:
        if not self.source.list_artifacts(local_id):
            return
        folder = Path(tempfile.mkdtemp(prefix="mltrail-ui-"))
        try:
            got = self.source.download_artifacts(local_id, "", str(folder))
            self.target.log_artifacts(copy_id, got)  # the run's artifact root, copied
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def local_folder(uri: str) -> Path:
    """The folder of a local store's URI (a path or a file: URI).

    Raises:
        MltrailError: the URI names a server or a database, which `mltrail ui` does not copy.
    """
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme and len(parts.scheme) > 1:  # not a Windows drive letter
        raise MltrailError(
            f"`mltrail ui` shows a local store; {uri!r} is not one. A tracking server has its "
            "own UI; for a database, run `mlflow ui --backend-store-uri` on it.")
    return Path(uri)


def default_database(root: Path) -> str:
    return f"sqlite:///{(root.parent / f'{root.name}-ui' / 'mlflow.db').resolve().as_posix()}"


def artifact_folder(database: str, root: Path) -> Path:
    """Where copied artifacts go: beside a sqlite file, else beside the local store."""
    if database.startswith("sqlite:///"):
        return Path(database[len("sqlite:///"):].split("?", 1)[0]).resolve().parent / "artifacts"
    return (root.parent / f"{root.name}-ui" / "artifacts").resolve()


def start_mlflow_ui(database: str, artifacts: Path, port: int,
                    log: Path) -> subprocess.Popen[bytes]:
    """`mlflow ui` on 127.0.0.1:port over `database`, in its own session (so that the
    whole group it forks can be ended through its pid), its output into `log`."""
    command = [sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port",
               str(port), "--workers", "1", "--backend-store-uri", database,
               "--default-artifact-root", artifacts.as_uri(), "--no-serve-artifacts"]
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float,
                  log: Path, stopping: threading.Event) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping.is_set():
        if process.poll() is not None:
            raise MltrailError(f"`mlflow ui` exited with code {process.returncode}; its "
                               f"output is in {log}")
        with (contextlib.suppress(OSError, urllib.error.URLError),
              urllib.request.urlopen(f"{url}/health", timeout=5) as answer):
            if answer.status == 200:
                return
        stopping.wait(0.5)
    if stopping.is_set():
        return
    raise MltrailError(f"`mlflow ui` did not answer at {url} within {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """End the child's process group (the child and the workers it forked), by its pid."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)
    with contextlib.suppress(ProcessLookupError):  # workers left after the leader ended
        os.killpg(process.pid, signal.SIGKILL)


def cmd_ui(args: argparse.Namespace) -> int:
    if not mlflow_installed():
        print(f"`mltrail ui` runs MLflow's UI, and mlflow is not installed here. Install it "
              f"with: {INSTALL_HINT}\nWithout it, `mltrail report` writes one HTML file with "
              "the runs and charts.", file=sys.stderr)
        return 2
    source = TrackingClient(args.tracking_uri)
    root = local_folder(source.tracking_uri)
    database = args.backend_store_uri or default_database(root)
    if not is_database_uri(database):
        raise MltrailError(f"--backend-store-uri must be a database URI (sqlite:///...), "
                           f"got {database!r}")
    artifacts = artifact_folder(database, root)
    artifacts.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{args.port}"
    log = artifacts.parent / "mlflow-ui.log"
    process = start_mlflow_ui(database, artifacts, args.port, log)

    # Ctrl-C and SIGTERM set a flag that the loop reads between runs: an exception
    # raised in the middle of a copy would leave a request to the database half made,
    # and the exit path would then wait out its flush timeout for it.
    stopping = threading.Event()

    def end(signum: int, frame: Any) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, end) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        wait_until_up(url, process, _START_TIMEOUT, log, stopping)  # it creates the database
        if not stopping.is_set():
            mirror = Mirror(source, TrackingClient(database), artifacts)
            copied = mirror.sync(stopping)
            print(f"MLflow UI over {root} at {url} ({copied} run(s) copied or updated in "
                  f"{database}; new runs follow every {args.interval:g} s; its log: {log}). "
                  "Ctrl-C stops it.", flush=True)
        while process.poll() is None and not stopping.wait(args.interval):
            mirror.sync(stopping)
        if stopping.is_set():
            print("mltrail: stopping the UI", file=sys.stderr)
            return 0
        print(f"mltrail: `mlflow ui` exited with code {process.returncode}; see {log}",
              file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop(process)


def add_ui_command(subparsers: Any) -> None:
    cmd = subparsers.add_parser(
        "ui",
        help="MLflow's UI over the local runs (needs the mlflow extra)",
        description="Copy the local runs into a database MLflow reads, keep copying new ones, "
        "and run `mlflow ui` on it at 127.0.0.1. Ctrl-C stops both. Needs "
        f"`{INSTALL_HINT}`; without it, `mltrail report` writes an HTML file.",
    )
    cmd.add_argument("--port", type=int, default=5000, help="the UI's port (default 5000)")
    cmd.add_argument("--backend-store-uri", metavar="URI",
                     help="the database to copy into (default: sqlite:///<store>-ui/mlflow.db "
                          "beside the local store)")
    cmd.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                     help="how often new local runs are copied (default 2)")
    cmd.set_defaults(handler=cmd_ui)
