"""Artifacts wherever a tracking server says a run's artifacts live.

Seed 004's recipe, ``mlflow ui --backend-store-uri sqlite:///mlflow.db
--default-artifact-root ./mlruns``, gives runs a plain-folder artifact location: mltrail
writes there directly, as MLflow's client does (it used to raise and stop the script).
A root only MLflow's artifact repositories reach goes through the bridge; without
mlflow installed, the files wait in the spool, a warning says so once, and the script
goes on. Every case runs against a real ``mlflow ui``/``mlflow server`` process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
from mlflow_server import MlflowServer, free_port
from remote_helpers import RemoteFactory
from test_database_uris import NO_MLFLOW, SRC

import mltrail
from mltrail.stores.remote.doctor import doctor


def unique(prefix: str = "art") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def seed004_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """Seed 004's server, started in its own folder as the seed does."""
    root = tmp_path_factory.mktemp("seed004")
    server = MlflowServer(
        root, free_port(), command="ui",
        options=["--backend-store-uri", "sqlite:///mlflow.db", "--default-artifact-root",
                 "./mlruns"],
    )
    # The operator allows http(s) artifact locations (the bridge test's stand-in for
    # s3://; MLflow refuses host-addressed locations a client names unless told so).
    with mock.patch.dict(os.environ, {"MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES": "http"}):
        server.start(timeout=180)
    yield server
    server.stop()


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RemoteFactory]:
    factory = RemoteFactory(tmp_path / "spool", monkeypatch)
    yield factory
    factory.close()


def test_seed004_server_plain_folder_root_gets_artifacts_and_the_autologged_model(
    seed004_server: MlflowServer, remote: RemoteFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier

    # The notebook runs in the server's folder, as in the seed: `./mlruns` is the same
    # folder for both (a relative root is relative to the writer, for MLflow's client too).
    monkeypatch.chdir(seed004_server.root)
    remote(seed004_server.url)
    mltrail.set_tracking_uri(seed004_server.url)
    mltrail.set_experiment(unique("seed004"))
    mltrail.autolog()
    (seed004_server.root / "notes.txt").write_text("seed 004")
    with mltrail.start_run() as run:
        mltrail.log_param("alpha", 0.01)
        mltrail.log_artifact("notes.txt", artifact_path="docs")  # raised RemoteError before
    x, y = load_wine(return_X_y=True)
    RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    fit_run = mltrail.last_active_run()
    assert fit_run is not None and fit_run.info.run_id != run.info.run_id
    assert mltrail.flush(120)

    client = mlflow.MlflowClient(seed004_server.url)
    info = client.get_run(run.info.run_id).info
    assert not info.artifact_uri.startswith("mlflow-artifacts:")  # a plain folder
    assert [a.path for a in client.list_artifacts(run.info.run_id, "docs")] == ["docs/notes.txt"]
    got = client.download_artifacts(run.info.run_id, "docs/notes.txt", str(seed004_server.root))
    assert Path(got).read_text() == "seed 004"
    model_files = {a.path for a in client.list_artifacts(fit_run.info.run_id, "model")}
    assert "model/MLmodel" in model_files
    # mltrail reads them back from the same folder.
    listed = [f.path for f in mltrail.MlflowClient().list_artifacts(fit_run.info.run_id, "model")]
    assert "model/MLmodel" in listed

    checks = {c.name: c for c in doctor(seed004_server.url)}
    assert checks["artifacts"].outcome == "ok"
    assert "written directly" in checks["artifacts"].detail


def test_a_root_only_mlflow_reaches_goes_through_the_bridge(
    seed004_server: MlflowServer, mlflow_server: Any, remote: RemoteFactory, tmp_path: Path
) -> None:
    """An ``http://`` artifact location (MLflow's HTTP artifact repository, here the
    proxied artifact API of a second real server) stands for ``s3://``-like roots: a
    scheme mltrail does not write itself, so MLflow's repository code writes it."""
    import mlflow

    client = remote(seed004_server.url)
    where = f"{mlflow_server.url}/api/2.0/mlflow-artifacts/artifacts/bridged-{uuid.uuid4().hex}"
    experiment_id = client.create_experiment(unique("bridged"), artifact_location=where)
    run_id = client.create_run(experiment_id).info.run_id
    (tmp_path / "weights.bin").write_bytes(b"\x01\x02" * 1000)
    client.log_artifact(run_id, tmp_path / "weights.bin", artifact_path="model")
    client.set_terminated(run_id)
    assert client.store.flush(120)

    artifact_uri = mlflow.MlflowClient(seed004_server.url).get_run(run_id).info.artifact_uri
    assert artifact_uri.startswith(where)
    got = requests.get(f"{artifact_uri}/model/weights.bin", timeout=30)
    assert got.status_code == 200 and got.content == b"\x01\x02" * 1000
    assert [f.path for f in client.list_artifacts(run_id, "model")] == ["model/weights.bin"]


def test_without_mlflow_an_s3_root_keeps_files_in_the_spool_and_the_script_goes_on(
    seed004_server: MlflowServer, tmp_path: Path
) -> None:
    import mlflow

    experiment = unique("s3")
    mlflow.MlflowClient(seed004_server.url).create_experiment(
        experiment, artifact_location="s3://mltrail-test-bucket/never-contacted"
    )
    # mlflow is blocked in the child (see NO_MLFLOW): nothing can write to s3 there.
    script = NO_MLFLOW + textwrap.dedent(
        f"""
        import mltrail
        mltrail.set_tracking_uri({seed004_server.url!r})
        mltrail.set_experiment({experiment!r})
        open("a.txt", "w").write("a"); open("b.txt", "w").write("b")
        with mltrail.start_run() as run:
            mltrail.log_param("alpha", 1)
            mltrail.log_artifact("a.txt")
            mltrail.log_artifact("b.txt")
        with mltrail.start_run():
            mltrail.log_artifact("a.txt")
        print("SCRIPT GOES ON", run.info.run_id)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(SRC),
           "MLTRAIL_SPOOL_DIR": str(tmp_path / "spool"), "MLTRAIL_FLUSH_TIMEOUT": "5"}
    env.pop("MLTRAIL_STRICT", None)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env,
        timeout=180, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.split("SCRIPT GOES ON ")[1].strip()
    hint = 'pip install "mltrail[mlflow]"'
    lines = done.stderr.splitlines()
    assert sum("UserWarning" in line and hint in line for line in lines) == 1  # warned once
    exit_line = next(line for line in lines if line.startswith("mltrail: 2 runs"))
    assert "3 artifact files" in exit_line and "mltrail sync" in exit_line
    # The records went; the files wait in the spool for `mltrail sync`.
    assert mlflow.MlflowClient(seed004_server.url).get_run(run_id).data.params == {"alpha": "1"}
    waiting = [p.name for p in (tmp_path / "spool").rglob("*.txt")]
    assert sorted(waiting) == ["a.txt", "a.txt", "b.txt"]
