"""The local store across processes: concurrent writers, SIGKILL, and how open runs end."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import mltrail
from mltrail import RunStatus, TrackingClient
from mltrail.stores.journal import JOURNAL
from mltrail.stores.local import LocalStore

RUNS_PER_WORKER = 200

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _log_many(root: str, experiment: str, worker: str, barrier: object) -> None:
    """A worker process: join the others at the barrier, then log its runs."""
    mltrail.set_tracking_uri(root)
    barrier.wait()  # type: ignore[attr-defined]
    # Every worker creates the experiment by name at the same moment.
    experiment_id = mltrail.set_experiment(experiment).experiment_id
    for i in range(RUNS_PER_WORKER):
        with mltrail.start_run(run_name=f"{worker}-{i}", experiment_id=experiment_id):
            mltrail.log_params({"worker": worker, "i": i})
            mltrail.log_metric("value", i, step=0)
            mltrail.log_metric("value", i + 0.5, step=1)
            mltrail.set_tag("worker", worker)


def test_two_processes_log_into_one_experiment(tmp_path: Path) -> None:
    root = str(tmp_path / "runs")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2, timeout=60)
    workers = [
        context.Process(target=_log_many, args=(root, "shared", name, barrier))
        for name in ("w1", "w2")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]

    client = TrackingClient(root)
    experiments = [e for e in client.search_experiments() if e.name == "shared"]
    assert len(experiments) == 1  # one experiment, whoever created it
    runs = client.search_runs([experiments[0].experiment_id], max_results=1000)
    assert runs.token is None
    assert len(runs) == 2 * RUNS_PER_WORKER
    expected = {f"{w}-{i}" for w in ("w1", "w2") for i in range(RUNS_PER_WORKER)}
    assert {r.info.run_name for r in runs} == expected
    for run in runs:
        worker, i = run.info.run_name.split("-")
        assert run.info.status == RunStatus.FINISHED
        assert run.data.params == {"worker": worker, "i": i}
        assert run.data.tags["worker"] == worker
        assert run.data.metrics == {"value": int(i) + 0.5}
    history = client.get_metric_history(runs[0].info.run_id, "value")
    assert sorted(m.step for m in history) == [0, 1]


def _python(code: str, tmp_path: Path, **kwargs: object) -> subprocess.Popen[str]:
    """A child interpreter running `code`, tracking into tmp_path/runs."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("TRACKING_URI")}
    env["MLTRAIL_TRACKING_URI"] = str(tmp_path / "runs")
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


def _wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text().strip()
        if process.poll() is not None:
            raise AssertionError(f"child exited early: {process.communicate()}")
        time.sleep(0.02)
    process.kill()
    raise AssertionError("child never became ready")


LOG_THEN_SLEEP = """
    import sys, time, mltrail
    from pathlib import Path
    with mltrail.start_run(run_name="doomed") as run:
        mltrail.log_param("lr", 0.1)
        mltrail.set_tag("phase", "train")
        for step in range({n}):
            mltrail.log_metric("loss", 1.0 / (step + 1), step=step)
        Path("ready.tmp").write_text(run.info.run_id + "\\n")
        Path("ready.tmp").rename("ready")
        time.sleep(120)
"""


def test_sigkill_loses_nothing_logged(tmp_path: Path) -> None:
    steps = 60
    child = _python(LOG_THEN_SLEEP.format(n=steps), tmp_path)
    run_id = _wait_for(tmp_path / "ready", child)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    client = TrackingClient(str(tmp_path / "runs"))
    run = client.get_run(run_id)
    assert run.info.status == RunStatus.RUNNING  # unfinished, not corrupt
    assert run.info.end_time is None
    assert run.data.params == {"lr": "0.1"}
    assert run.data.tags["phase"] == "train"
    assert run.data.metrics == {"loss": 1.0 / steps}
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == list(range(steps))
    assert [r.info.run_id for r in client.search_runs([run.info.experiment_id])] == [run_id]


def test_torn_last_line_is_tolerated_and_the_run_resumes(tmp_path: Path) -> None:
    child = _python(LOG_THEN_SLEEP.format(n=5), tmp_path)
    run_id = _wait_for(tmp_path / "ready", child)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)

    root = tmp_path / "runs"
    journal = LocalStore(root).run_dir(run_id) / JOURNAL
    with open(journal, "ab") as handle:  # what a crash mid-write leaves behind
        handle.write(b'{"k":"b","m":[["loss",99.0,17')

    fresh = LocalStore(root)  # a new reader, as another process would be
    run = fresh.get_run(run_id)
    assert run.data.metrics == {"loss": 1.0 / 5}
    assert len(fresh.get_metric_history(run_id, "loss")) == 5

    mltrail.set_tracking_uri(str(root))
    with mltrail.start_run(run_id=run_id):
        mltrail.log_metric("loss", 0.01, step=5)
        mltrail.log_param("resumed", True)
    again = LocalStore(root)
    run = again.get_run(run_id)
    assert run.info.status == RunStatus.FINISHED
    assert run.data.metrics == {"loss": 0.01}
    assert run.data.params == {"lr": "0.1", "resumed": "True"}
    steps = [m.step for m in again.get_metric_history(run_id, "loss")]
    assert steps == [0, 1, 2, 3, 4, 5]  # the torn fragment is not a point


OPEN_RUN = """
    import sys, time, mltrail
    from pathlib import Path
    run = mltrail.start_run(run_name="left-open")
    mltrail.log_metric("m", 1.0)
    Path("ready.tmp").write_text(run.info.run_id + "\\n")
    Path("ready.tmp").rename("ready")
    {ending}
"""


@pytest.mark.parametrize(
    ("ending", "status", "returncode"),
    [
        ("pass", RunStatus.FINISHED, 0),
        ("raise RuntimeError('crash')", RunStatus.FAILED, 1),
        ("time.sleep(120)", RunStatus.KILLED, -signal.SIGTERM),
    ],
    ids=["normal-exit", "uncaught-exception", "sigterm"],
)
def test_runs_left_open_at_exit(tmp_path: Path, ending: str, status: str, returncode: int) -> None:
    child = _python(OPEN_RUN.format(ending=ending), tmp_path)
    run_id = _wait_for(tmp_path / "ready", child)
    if returncode == -signal.SIGTERM:
        child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == returncode, stderr
    run = TrackingClient(str(tmp_path / "runs")).get_run(run_id)
    assert run.info.status == status
    assert run.info.end_time is not None
    assert run.data.metrics == {"m": 1.0}
