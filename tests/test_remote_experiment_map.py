"""A spool's experiment mapping outlives the server's database; it must not be trusted.

The spool of a tracking URI remembers which server experiment id each spool experiment
is. After ``rm mlflow.db`` (or a server restarted on a fresh database) that id is
missing, or names another experiment. Each test replays one user trial against real
parts (a sqlite database written by MLflow through the bridge; a real ``mlflow server``
stopped and started again on a new database) and reads back, with MLflow's own client,
which experiment every run landed in: none refused, none doubled, none misfiled.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faulty_proxy import FaultyProxy
from mlflow_server import MlflowServer, free_port
from remote_helpers import RemoteFactory, server_runs

import mltrail
from mltrail import runtime
from mltrail.stores.bridge import database_uri


@pytest.fixture(scope="module")
def mlflow_client_cls() -> Any:
    import mlflow

    return mlflow.MlflowClient


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory, mlflow_client_cls: Any) -> Path:
    """A new MLflow database, migrated once: each copy is a fresh ``mlflow.db`` (MLflow's
    migrations of a new sqlite file take seconds)."""
    path = tmp_path_factory.mktemp("empty-db") / "mlflow.db"
    mlflow_client_cls(f"sqlite:///{path}").search_experiments()
    return path


def _runs_by_experiment(client: Any) -> dict[str, list[str]]:
    """Experiment name -> names of its runs (deleted ones too), as MLflow reads them."""
    return {
        exp.name: sorted(r.info.run_name for r in server_runs(client, exp.experiment_id))
        for exp in client.search_experiments()
    }


# sqlite: rm mlflow.db, run the script again ------------------------------------------


def _sqlite_trial(uri: str, run_name: str) -> None:
    """What `python t.py` does, as one process: log a run to experiment "X", deliver it,
    and stop the store (the next trial gets a new store, as a new process would)."""
    mltrail.set_tracking_uri(uri)
    mltrail.set_experiment("X")
    with mltrail.start_run(run_name=run_name):
        mltrail.log_param("trial", run_name)
        mltrail.log_metric("loss", 0.5, step=0)
    runtime.process.clients.pop(uri)  # the next trial builds its own client and store
    store = runtime.process.stores.pop(database_uri(uri))
    try:
        assert store.flush(60), store.unsent_summary()
        assert not store.sender.broken
    finally:
        store.close()
        store._exit_reported = True  # a failed trial's leftovers are not the session's


def test_a_new_sqlite_database_at_the_same_path_gets_the_next_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_db: Path, mlflow_client_cls: Any
) -> None:
    monkeypatch.setenv("MLTRAIL_SPOOL_DIR", str(tmp_path / "spool"))
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    shutil.copy(empty_db, db)
    _sqlite_trial(uri, "first")
    db.unlink()
    shutil.copy(empty_db, db)  # `rm mlflow.db`: the next run finds a new database
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the notice that experiment 1 is no longer "X"
        _sqlite_trial(uri, "second")
    _sqlite_trial(uri, "third")
    client = mlflow_client_cls(uri)
    assert _runs_by_experiment(client) == {"X": ["second", "third"], "Default": []}
    for run in client.search_runs([client.get_experiment_by_name("X").experiment_id]):
        assert run.info.status == "FINISHED"
        assert run.data.params == {"trial": run.info.run_name}
        assert run.data.metrics == {"loss": 0.5}


# a server restarted on a fresh database --------------------------------------------


def _offline_script(url: str, experiment: str) -> None:
    """Set the experiment and log two runs while the server does not answer."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the offline notices
        mltrail.set_tracking_uri(url)
        mltrail.set_experiment(experiment)
        for name in ("off-0", "off-1"):
            with mltrail.start_run(run_name=name):
                mltrail.log_param("name", name)


@pytest.fixture
def restartable(tmp_path: Path, empty_db: Path) -> Iterator[MlflowServer]:
    root = tmp_path / "server"
    root.mkdir()
    shutil.copy(empty_db, root / "mlflow.db")
    server = MlflowServer(root, free_port())
    server.start()
    yield server
    server.stop()


def test_a_server_on_a_new_database_gets_offline_runs_by_experiment_name(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    restartable: MlflowServer,
    empty_db: Path,
    mlflow_client_cls: Any,
) -> None:
    factory = RemoteFactory(tmp_path / "spool", monkeypatch)

    def remote(url: str, **overrides: Any) -> Any:
        """A new store for `url`, used by the fluent calls from now on: a new process."""
        runtime.process.clients.pop(url, None)
        return factory(url, **overrides)

    try:
        with FaultyProxy(restartable.url) as proxy:
            # 1. online: Test-Exp1 is experiment 1 of the first database, and mapped so.
            client = remote(proxy.url)
            mltrail.set_tracking_uri(proxy.url)
            mltrail.set_experiment("Test-Exp1")
            with mltrail.start_run(run_name="old-db"):
                mltrail.log_param("name", "old-db")
            assert client.store.flush(60)
            client.store.close()

            # 2. the server is restarted on a new database; meanwhile runs go offline
            restartable.stop()
            shutil.copy(empty_db, restartable.root / "mlflow.db")
            proxy.down = True
            offline = remote(proxy.url, timeout=1.0)
            _offline_script(proxy.url, "Test-Exp1")
            assert not offline.store.flush(0.5)
            offline.store.close()

            # 3. up again, where someone creates another experiment first: id 1 now
            restartable.start()
            proxy.down = False
            server = mlflow_client_cls(tracking_uri=restartable.url)
            assert server.create_experiment("zzz-first") == "1"

            # 4. a process that got the old id offline, then finds the server up
            foreground = remote(proxy.url, timeout=5.0)
            proxy.down = True
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mltrail.set_tracking_uri(proxy.url)
                experiment_id = mltrail.set_experiment("Test-Exp1").experiment_id
            proxy.down = False
            foreground.store.sender.mark_up()  # the server answers again
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with mltrail.start_run(experiment_id=experiment_id, run_name="fg") as run:
                    mltrail.log_param("name", "fg")
            assert foreground.store.flush(60)
            foreground.store.close()
            assert any("no longer experiment 'Test-Exp1'" in str(w.message) for w in caught)

            # 5. `mltrail sync` ships the offline runs: each id checked once, not per run
            proxy.reset_counts()
            env = {**os.environ, "MLTRAIL_SPOOL_DIR": str(tmp_path / "spool")}
            done = subprocess.run(
                [sys.executable, "-m", "mltrail.cli", "sync", "--uri", proxy.url],
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert "2 shipped, 0 refused" in done.stdout, done.stdout + done.stderr
            checks = sum(n for p, n in proxy.counts.items() if p.endswith("/experiments/get"))
            assert checks == 2  # the runs' old id and the mapped one, once each (not 4)

            by_experiment = _runs_by_experiment(server)
            assert by_experiment == {
                "Test-Exp1": ["fg", "off-0", "off-1"],
                "zzz-first": [],
                "Default": [],
            }
            moved = server.get_experiment_by_name("Test-Exp1").experiment_id
            assert moved != "1"
            assert server.get_run(run.info.run_id).info.experiment_id == moved
            for found in server_runs(server, moved):
                assert found.data.params == {"name": found.info.run_name}
                assert found.info.status == "FINISHED"

            # 6. a process whose checked id goes missing under it (another new database):
            # its run, created while the server was away, is refused 'no such experiment'
            # when shipped, and goes to the experiment found again by name
            late = remote(proxy.url, timeout=1.0)
            mltrail.set_tracking_uri(proxy.url)
            assert mltrail.set_experiment("Test-Exp1").experiment_id == moved
            restartable.stop()
            shutil.copy(empty_db, restartable.root / "mlflow.db")
            proxy.down = True
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with mltrail.start_run(run_name="late"):
                    mltrail.log_param("name", "late")
            restartable.start()
            proxy.down = False
            late.store.sender.mark_up()
            assert late.store.flush(60), late.store.unsent_summary()
            late.store.close()
    finally:
        runtime.process.clients.pop(proxy.url, None)
        factory.close()

    assert _runs_by_experiment(server) == {"Test-Exp1": ["late"], "Default": []}
