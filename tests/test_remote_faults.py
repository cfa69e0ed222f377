"""The remote store when the server itself is down, or dies mid-run: nothing lost, nothing doubled.

These scenarios start and kill their own `mlflow server` (each start costs seconds
on a small machine), so they share one server object and put it in the state each
needs: not started, or running.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow_server import MlflowServer, free_port
from remote_helpers import RemoteFactory, history, server_runs, unique

from mltrail.stores.remote.spool import CLIENT_RUN_ID_TAG

BASE_TS = 1_700_000_000_000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("own-server"), free_port())
    yield server  # not started: each test starts it when it needs it
    server.stop()


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RemoteFactory]:
    factory = RemoteFactory(tmp_path / "spool", monkeypatch)
    yield factory
    factory.close()


def _running(server: MlflowServer) -> bool:
    return server.process is not None and server.process.poll() is None


def _training_script(url: str, experiment: str, artifact: Path) -> str:
    return f"""
import mltrail
mltrail.set_tracking_uri({url!r})
mltrail.set_experiment({experiment!r})
with mltrail.start_run(run_name="offline") as run:
    mltrail.log_params({{"alpha": 0.5, "depth": 3}})
    for step in range(200):
        mltrail.log_metric("loss", float(step), step=step, timestamp={BASE_TS} + step)
    mltrail.log_artifact({str(artifact)!r})
print(run.info.run_id)
"""


def test_server_down_at_start_then_started_then_mltrail_sync(
    own_server: MlflowServer, remote: RemoteFactory, tmp_path: Path
) -> None:
    import mlflow

    own_server.stop()
    env = {
        **os.environ,
        "MLTRAIL_SPOOL_DIR": str(tmp_path / "spool"),
        "MLTRAIL_FLUSH_TIMEOUT": "1",
        "MLTRAIL_HTTP_BACKOFF": "0.05",
        "MLTRAIL_HTTP_BACKOFF_MAX": "0.5",
        "MLTRAIL_HTTP_RETRIES": "1",
    }
    experiment = unique("offline")
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(os.urandom(30_000))
    trained = subprocess.run(
        [sys.executable, "-c", _training_script(own_server.url, experiment, artifact)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr  # training went on without a server
    local_id = trained.stdout.strip()
    # one message at exit, naming the count and the command
    assert trained.stderr.count("send them with: mltrail sync") == 1, trained.stderr
    assert "1 run (" in trained.stderr and "1 artifact file)" in trained.stderr

    own_server.start()

    def sync() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mltrail.cli", "sync"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    first = sync()
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"shipped {local_id}" in first.stdout

    server = mlflow.MlflowClient(tracking_uri=own_server.url)
    on_server = server.get_experiment_by_name(experiment)
    [run] = server_runs(server, on_server.experiment_id)
    assert run.data.tags[CLIENT_RUN_ID_TAG] == local_id
    assert run.info.status == "FINISHED"
    assert run.data.params == {"alpha": "0.5", "depth": "3"}
    assert history(server, run.info.run_id, "loss") == [
        (step, BASE_TS + step, float(step)) for step in range(200)
    ]
    got = server.download_artifacts(run.info.run_id, "model.bin", str(tmp_path / "out"))
    assert Path(got).read_bytes() == artifact.read_bytes()

    second = sync()  # run twice: the server state does not change
    assert second.returncode == 0 and "nothing to send" in second.stdout
    [again] = server_runs(server, on_server.experiment_id)
    assert again.info.run_id == run.info.run_id
    assert len(server.get_metric_history(run.info.run_id, "loss")) == 200

    # The local id still resolves, in a new process reading the same spool.
    client = remote(own_server.url)
    assert client.get_run(local_id).info.run_id == run.info.run_id


def test_server_killed_mid_run_and_restarted(
    own_server: MlflowServer, remote: RemoteFactory
) -> None:
    import mlflow

    if not _running(own_server):
        own_server.start()
    client = remote(own_server.url)
    experiment_id = client.create_experiment(unique("killed"))
    run_id = client.create_run(experiment_id, run_name="survivor").info.run_id
    for step in range(100):
        client.log_metric(run_id, "loss", float(step), BASE_TS + step, step)
    client.log_param(run_id, "alpha", 1)
    assert client.store.flush(60)

    own_server.stop()
    with pytest.warns(UserWarning, match="Training goes on"):
        for step in range(100, 200):
            client.log_metric(run_id, "loss", float(step), BASE_TS + step, step)
        client.log_param(run_id, "beta", 2)
        client.set_tag(run_id, "phase", "after-crash")
        client.set_terminated(run_id)
        assert not client.store.flush(2)

    own_server.start()
    assert client.store.flush(120)

    server = mlflow.MlflowClient(tracking_uri=own_server.url)
    [run] = server_runs(server, experiment_id)
    assert run.info.run_id == run_id
    assert run.info.status == "FINISHED"
    assert run.data.params == {"alpha": "1", "beta": "2"}
    assert run.data.tags["phase"] == "after-crash"
    assert history(server, run_id, "loss") == [
        (step, BASE_TS + step, float(step)) for step in range(200)
    ]
