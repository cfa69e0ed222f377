"""Attaching to a run another process owns: `start_run(run_id, end_on_exit=False)`, and
`TrackingClient.shared_run_id`, the id under which another process finds a run.

A Spark executor records a search trial's objective into the run the driver started;
these are the two hooks it needs, tested here in one process (a local store, a real
`mlflow server`) and across processes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import mltrail
import mltrail.autologging as autologging
from mltrail import fluent
from mltrail.entities import RunStatus
from mltrail.exceptions import InvalidParameterError, NotFoundError

ROOT = Path(__file__).resolve().parents[1]


def test_attached_run_is_logged_into_and_left_open(tracking_dir: Path) -> None:
    client = mltrail.TrackingClient()
    owner = client.create_run("0", run_name="owned-elsewhere")
    run_id = owner.info.run_id
    with mltrail.start_run(run_id=run_id, end_on_exit=False) as handle:
        assert mltrail.active_run() is handle
        mltrail.log_param("alpha", 1)
        with mltrail.start_run(nested=True) as child:  # an ordinary child still nests
            assert child.info.run_id != run_id
    assert mltrail.active_run() is None
    run = client.get_run(run_id)
    assert run.info.status == RunStatus.RUNNING and run.info.end_time is None
    assert run.data.params == {"alpha": "1"}
    assert client.get_run(child.info.run_id).data.tags[fluent.PARENT_RUN_ID_TAG] == run_id
    fluent.end_open_runs(RunStatus.KILLED)  # what exit and SIGTERM do: not this run
    assert client.get_run(run_id).info.status == RunStatus.RUNNING


def test_attached_run_is_adopted_by_a_course_notes_objective(tracking_dir: Path) -> None:
    client = mltrail.TrackingClient()
    run_id = client.create_run("0").info.run_id
    handle = mltrail.start_run(run_id=run_id, end_on_exit=False)
    with autologging.isolated(), autologging.adoptable(handle):
        with mltrail.start_run(nested=True) as inner:  # the notes' `with` block
            mltrail.log_metric("m", 2.0)
        mltrail.start_run(nested=True, run_name="left-open")  # a run the objective forgot
    autologging.end_child_run(handle, None, RunStatus.FAILED)
    assert inner.info.run_id == run_id and mltrail.active_run() is None
    runs = {r.info.run_name: r for r in mltrail.search_runs(output_format="list")}
    assert runs["left-open"].info.status == RunStatus.FAILED  # ended: the objective's own
    assert client.get_run(run_id).info.status == RunStatus.RUNNING  # its owner ends it
    assert client.get_run(run_id).data.metrics == {"m": 2.0}


def test_attach_needs_a_run_that_is_there(tracking_dir: Path) -> None:
    with pytest.raises(NotFoundError):
        mltrail.start_run(run_id="0" * 32, end_on_exit=False)
    with pytest.raises(InvalidParameterError, match="end_on_exit"):
        mltrail.start_run(end_on_exit=False)
    assert mltrail.active_run() is None


def test_local_run_is_shared_under_its_own_id(tracking_dir: Path) -> None:
    client = mltrail.TrackingClient()
    run_id = client.create_run("0").info.run_id
    assert client.shared_run_id(run_id) == run_id
    assert client.spool_folder() is None


def test_deferred_server_run_is_attached_from_another_process(
    mlflow_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run created in the background (`defer=True`) has a local id at first; its shared
    id is the server's, under which another process attaches, logs, and leaves it open."""
    from remote_helpers import RemoteFactory, unique

    factory = RemoteFactory(tmp_path / "spool", monkeypatch)
    client = factory(mlflow_server.url)
    try:
        experiment_id = client.create_experiment(unique("attach"))
        run_id = client.create_run(experiment_id, defer=True).info.run_id
        shared = client.shared_run_id(run_id, timeout=30)
        assert shared is not None
        assert client.spool_folder() is not None
        script = textwrap.dedent(f"""
            import mltrail
            mltrail.set_tracking_uri({mlflow_server.url!r})
            mltrail.start_run(run_id={shared!r}, end_on_exit=False)
            mltrail.log_metric("from_elsewhere", 3.0)
            assert mltrail.flush(30)
        """)
        env = {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'integrations'}",
               "MLTRAIL_SPOOL_DIR": str(tmp_path / "other-spool"), "PATH": "/usr/bin:/bin"}
        subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
        client.set_terminated(run_id, RunStatus.FINISHED)
        assert client.flush(30)
    finally:
        factory.close()
    import mlflow

    server_run = mlflow.MlflowClient(tracking_uri=mlflow_server.url).get_run(shared)
    assert server_run.data.metrics == {"from_elsewhere": 3.0}
    assert server_run.info.status == "FINISHED"  # the other process never touched it
