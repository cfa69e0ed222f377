"""The remote store against a real `mlflow server`: what it ships, reads, and survives.

Everything is read back through MLflow's own client, so "the server has it" means
what the MLflow UI would show. Faults come from tests/faulty_proxy.py, a proxy
on 127.0.0.1 in front of the session's server; scenarios that kill the server
itself are in test_remote_faults.py.
"""

from __future__ import annotations

import base64
import math
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from faulty_proxy import FaultyProxy
from remote_helpers import RemoteFactory, history, server_runs, unique

import mltrail
from mltrail import cli
from mltrail.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mltrail.exceptions import AuthError
from mltrail.stores.remote import store as rest
from mltrail.stores.remote.doctor import doctor
from mltrail.stores.remote.spool import CLIENT_RUN_ID_TAG

BASE_TS = 1_700_000_000_000


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RemoteFactory]:
    factory = RemoteFactory(tmp_path / "spool", monkeypatch)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def mlflow_module() -> Any:
    import mlflow

    return mlflow


def test_logged_run_reads_back_identically_through_mlflow(
    mlflow_server: Any, remote: RemoteFactory, mlflow_module: Any, tmp_path: Path
) -> None:
    client = remote(mlflow_server.url)
    mltrail.set_tracking_uri(mlflow_server.url)
    experiment = mltrail.set_experiment(unique())
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    payload = os.urandom(50_000) + b"\x00\r\n\xff"
    (tmp_path / "weights.bin").write_bytes(payload)
    (tmp_path / "bundle" / "nested").mkdir(parents=True)
    (tmp_path / "bundle" / "nested" / "notes.txt").write_text("hello\n")

    with mltrail.start_run(run_name="parent") as parent:
        mltrail.log_params({"alpha": 0.5, "solver": "lbfgs"})
        mltrail.set_tags({"team": "vision"})
        for step in range(60):
            mltrail.log_metric("loss", 1 / (step + 1), step=step, timestamp=BASE_TS + step)
        mltrail.log_metric("diverged", math.nan, step=0, timestamp=BASE_TS)
        mltrail.log_input(frame, context="training", name="toy")
        mltrail.log_artifact(str(tmp_path / "weights.bin"))
        mltrail.log_artifacts(str(tmp_path / "bundle"), "bundle")
        with mltrail.start_run(run_name="child", nested=True) as child:
            mltrail.log_metric("c", 2.0, step=3, timestamp=BASE_TS + 7)
    assert client.store.flush(60)

    server = mlflow_module.MlflowClient(tracking_uri=mlflow_server.url)
    got = server.get_run(parent.info.run_id)  # the server's own id, given at start
    assert got.info.experiment_id == experiment.experiment_id
    assert got.info.status == "FINISHED" and got.info.end_time
    assert got.info.run_name == "parent"
    assert got.data.params == {"alpha": "0.5", "solver": "lbfgs"}
    ours = client.store.spool.store.get_run(parent.info.run_id)  # what mltrail recorded
    assert got.data.tags == ours.data.tags
    assert got.data.tags["team"] == "vision"
    assert got.data.tags["mlflow.user"] == got.info.user_id
    assert got.data.tags["mlflow.source.type"] == "LOCAL"
    assert history(server, parent.info.run_id, "loss") == [
        (step, BASE_TS + step, 1 / (step + 1)) for step in range(60)
    ]
    assert math.isnan(server.get_metric_history(parent.info.run_id, "diverged")[0].value)

    child_run = server.get_run(child.info.run_id)
    assert child_run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert history(server, child.info.run_id, "c") == [(3, BASE_TS + 7, 2.0)]

    [dataset_input] = got.inputs.dataset_inputs
    [ours_input] = ours.inputs.dataset_inputs
    assert dataset_input.dataset.name == "toy"
    assert dataset_input.dataset.digest == ours_input.dataset.digest
    assert dataset_input.dataset.schema == ours_input.dataset.schema
    assert {t.key: t.value for t in dataset_input.tags} == {"mlflow.data.context": "training"}

    out = tmp_path / "out"
    weights = server.download_artifacts(parent.info.run_id, "weights.bin", str(out))
    assert Path(weights).read_bytes() == payload
    notes = server.download_artifacts(parent.info.run_id, "bundle/nested/notes.txt", str(out))
    assert Path(notes).read_text() == "hello\n"
    # what is uploaded leaves the spool; the journal stays
    run_dir = client.store.spool.store.run_dir(parent.info.run_id)
    assert not [p for p in (run_dir / "artifacts").rglob("*") if p.is_file()]


def test_thousand_point_history_ships_in_a_handful_of_requests(
    mlflow_server: Any, remote: RemoteFactory, mlflow_module: Any
) -> None:
    with FaultyProxy(mlflow_server.url) as proxy:
        # A long gathering window makes the count independent of this machine's speed;
        # ending the run cuts it short.
        client = remote(proxy.url, send_interval=5.0)
        experiment_id = client.create_experiment(unique())
        run_id = client.create_run(experiment_id).info.run_id
        proxy.reset_counts()
        for step in range(1000):
            client.log_metric(run_id, "loss", float(step), timestamp=BASE_TS + step, step=step)
        client.set_terminated(run_id)
        assert client.store.flush(60)
        writes = proxy.count("/api/2.0/mlflow/runs/", method="POST")
        assert proxy.count("runs/log-batch") >= 1
        assert writes <= 5, proxy.counts

    server = mlflow_module.MlflowClient(tracking_uri=mlflow_server.url)
    assert history(server, run_id, "loss") == [
        (step, BASE_TS + step, float(step)) for step in range(1000)
    ]


def test_faults_at_the_proxy_lose_and_double_nothing(
    mlflow_server: Any, remote: RemoteFactory, mlflow_module: Any
) -> None:
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url, timeout=3.0)
        experiment_id = client.create_experiment(unique())
        proxy.add("runs/create", "drop_after")  # the server makes the run; the answer is lost
        proxy.add("runs/log-batch", ("status", 503, 1))  # with Retry-After: 1
        proxy.add("runs/log-batch", "drop")  # connection dropped before the server sees it
        proxy.add("runs/log-batch", ("delay", 6.0))  # handled, but answered after the timeout
        proxy.add("runs/log-batch", ("status", 429, None))
        proxy.add("runs/update", ("status", 500, None))

        with pytest.warns(UserWarning, match="Training goes on"):
            run = client.create_run(experiment_id, run_name="faulty")
            local_id = run.info.run_id
            for step in range(300):
                client.log_metric(local_id, "loss", float(step), BASE_TS + step, step)
            client.log_batch(
                local_id,
                params=[Param(f"p{i:03d}", i) for i in range(150)],
                tags=[RunTag("stage", "draft"), RunTag("stage", "final")],
            )
            client.set_terminated(local_id)
            assert client.store.flush(120)

        assert proxy.count("runs/create") == 1  # found by its tag, never created twice
        assert proxy.count("runs/search") >= 1
        batches = [s for s in proxy.seen if s.path.endswith("runs/log-batch")]
        assert [b.action for b in batches[:4]] == ["status", "drop", "delay", "status"]
        assert batches[1].at - batches[0].at >= 0.9  # Retry-After honoured

    server = mlflow_module.MlflowClient(tracking_uri=mlflow_server.url)
    [found] = server_runs(server, experiment_id)
    assert found.data.tags[CLIENT_RUN_ID_TAG] == local_id
    assert found.info.status == "FINISHED"
    assert history(server, found.info.run_id, "loss") == [
        (step, BASE_TS + step, float(step)) for step in range(300)
    ]
    assert found.data.params == {f"p{i:03d}": str(i) for i in range(150)}
    assert found.data.tags["stage"] == "final"
    # the local id keeps resolving to the server run
    assert client.get_run(local_id).info.run_id == found.info.run_id


def test_runs_shipped_together_all_get_their_shared_dataset(
    mlflow_server: Any, remote: RemoteFactory, mlflow_module: Any
) -> None:
    # The server inserts a new dataset under a unique key, so two runs linking the same
    # new dataset at once can have one refused; runs shipped side by side take turns, and
    # a refusal (another process's race gives one) is tried once more.
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url)
        experiment_id = client.create_experiment(unique())
        proxy.add("runs/log-inputs", ("status", 400, None))
        dataset = Dataset(name="shared", digest="d1e2f3a4", source_type="code", source="{}")
        context = (InputTag("mlflow.data.context", "train"),)
        run_ids = []
        for _ in range(6):
            run_id = client.create_run(experiment_id).info.run_id
            client.log_inputs(run_id, [DatasetInput(dataset, context)])
            client.set_terminated(run_id)
            run_ids.append(run_id)
        assert client.store.flush(60)
        assert proxy.count("runs/log-inputs") == 7  # six, and the refused one again

    server = mlflow_module.MlflowClient(tracking_uri=mlflow_server.url)
    for run_id in run_ids:
        (linked,) = server.get_run(run_id).inputs.dataset_inputs
        assert (linked.dataset.name, linked.dataset.digest) == ("shared", "d1e2f3a4")


def test_search_child_runs_are_created_in_the_background(
    mlflow_server: Any, remote: RemoteFactory, mlflow_module: Any
) -> None:
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV
    from sklearn.tree import DecisionTreeClassifier

    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url)
        mltrail.set_tracking_uri(proxy.url)
        experiment = mltrail.set_experiment(unique("grid"))
        proxy.add("runs/create", "forward")  # the search's own run
        # Each candidate's create is answered only when the test releases it (or after
        # 60 s): a fit that waited for a candidate's id could not return before then.
        proxy.add("runs/create", ("hold", 60), times=3)
        mltrail.sklearn.autolog(log_models=False)
        try:
            X, y = load_iris(return_X_y=True)
            grid = {"max_depth": [1, 2, 3]}
            GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=2).fit(X, y)
            answered_when_fit_returned = sum(
                n for path, n in proxy.answered.items() if path.endswith("runs/create"))
        finally:
            mltrail.sklearn.autolog(disable=True)
            proxy.release_hung()
        assert answered_when_fit_returned == 1  # only the search's own run
        assert client.store.flush(60)
        creates = [s.at for s in proxy.seen if s.path.endswith("runs/create")]
        assert len(creates) == 4  # the search's run and three candidates
        assert proxy.count("runs/search") == 0  # never offered before: nothing to look up

    server = mlflow_module.MlflowClient(tracking_uri=mlflow_server.url)
    runs = server_runs(server, experiment.experiment_id)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.params["max_depth"] for c in children) == ["1", "2", "3"]
    assert all(c.info.status == "FINISHED" for c in children)
    assert all("mean_test_score" in c.data.metrics for c in children)


def test_wrong_token_is_an_auth_error_and_is_written_nowhere(
    mlflow_server: Any,
    remote: RemoteFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    token = f"wrong-{unique('secret')}"
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    # A plain `mlflow server` has no auth: the proxy stands in for one that checks tokens.
    with FaultyProxy(mlflow_server.url, bearer_token="the-right-token") as proxy:
        client = remote(proxy.url)
        with pytest.raises(AuthError) as created:
            client.create_run("0")
        with pytest.raises(AuthError) as named:
            client.create_experiment(unique())
        assert proxy.count("runs/create") == 1  # refused once, not retried
        mltrail.set_tracking_uri(proxy.url)
        with pytest.raises(AuthError):
            mltrail.start_run()
        checks = {c.name: c for c in doctor(proxy.url)}
        assert checks["auth"].outcome == "FAIL"

        # A run spooled while the server was away: the sender stops at the first 401.
        proxy.down = True
        with pytest.warns(UserWarning):
            offline = client.create_experiment(unique())
            run_id = client.create_run(offline).info.run_id
            client.log_param(run_id, "alpha", 1)
            proxy.down = False
            proxy.reset_counts()
            assert not client.store.flush(10)
        assert client.store.sender.auth_error is not None
        assert proxy.count() <= 2
        summary = client.store.unsent_summary()
        assert summary is not None and "mltrail sync" in summary

    texts = [
        str(created.value),
        repr(created.value),
        str(named.value),
        summary,
        *(c.line() for c in checks.values()),
        str(client.store.sender.auth_error),
    ]
    encoded = base64.b64encode(token.encode()).decode()
    for text in texts:
        assert token not in text and encoded not in text
    assert "MLFLOW_TRACKING_TOKEN" in str(created.value)
    files = [p for p in (tmp_path / "spool").rglob("*") if p.is_file()]
    assert files  # the spool was written, and none of it holds the token
    for path in files:
        data = path.read_bytes()
        assert token.encode() not in data and encoded.encode() not in data, path


def test_metric_history_is_read_in_pages(
    mlflow_server: Any, remote: RemoteFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rest, "_HISTORY_PAGE", 100)
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url)
        run_id = client.create_run(client.create_experiment(unique())).info.run_id
        client.log_batch(run_id, metrics=[Metric("m", float(i), BASE_TS, i) for i in range(250)])
        client.set_terminated(run_id)
        assert client.store.flush(30)
        proxy.reset_counts()
        points = client.get_metric_history(run_id, "m")
        assert sorted(p.step for p in points) == list(range(250))
        assert proxy.count("metrics/get-history") == 3


def test_offline_experiment_and_run_are_mapped_once_the_server_answers(
    mlflow_server: Any, remote: RemoteFactory, mlflow_module: Any
) -> None:
    name = unique("offline")
    with FaultyProxy(mlflow_server.url, down=True) as proxy:
        client = remote(proxy.url)
        mltrail.set_tracking_uri(proxy.url)
        with pytest.warns(UserWarning):
            experiment = mltrail.set_experiment(name)
            assert experiment.experiment_id.startswith("local-")
            with mltrail.start_run(run_name="offline-run") as run:
                mltrail.log_param("alpha", 0.1)
                mltrail.log_metric("loss", 0.5, step=1, timestamp=BASE_TS)
                # reads fall back to the spool, with a warning
                spooled = mltrail.get_run(run.info.run_id)
        assert spooled.data.params == {"alpha": "0.1"}
        assert spooled.info.experiment_id == experiment.experiment_id
        assert proxy.count("runs/create") == 0

        proxy.down = False
        assert client.store.flush(60)
        assert proxy.count("runs/create") == 1
        # the server is back: a new run gets the server's id at once again
        later = client.create_run(experiment.experiment_id).info.run_id
        client.set_terminated(later)

    server = mlflow_module.MlflowClient(tracking_uri=mlflow_server.url)
    on_server = server.get_experiment_by_name(name)
    [found] = [r for r in server_runs(server, on_server.experiment_id) if r.info.run_id != later]
    assert found.data.params == {"alpha": "0.1"}
    assert found.info.status == "FINISHED"
    assert history(server, found.info.run_id, "loss") == [(1, BASE_TS, 0.5)]
    assert server.get_run(later).info.experiment_id == on_server.experiment_id
    # both ids keep working in this process
    assert client.get_run(run.info.run_id).info.run_id == found.info.run_id
    assert client.store.server_run_id(run.info.run_id) == found.info.run_id
    assert client.get_experiment(experiment.experiment_id).experiment_id == on_server.experiment_id


def test_doctor_command(mlflow_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", mlflow_server.url]) == 0
    out = capsys.readouterr().out
    for name in ("reachable", "version", "auth", "artifacts"):
        assert any(line.startswith("ok") and name in line for line in out.splitlines()), out
    assert "spool" in out
    with FaultyProxy(mlflow_server.url, down=True) as proxy:
        assert cli.main(["doctor", proxy.url]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("FAIL reachable")


def _child_script(url: str) -> str:
    return f"""
import sys, mltrail
mltrail.set_tracking_uri({url!r})
mltrail.set_experiment({unique("killed")!r})
run = mltrail.start_run(run_name="killed")
mltrail.log_param("alpha", 0.5)
for step in range(50):
    mltrail.log_metric("loss", float(step), step=step, timestamp={BASE_TS} + step)
assert mltrail.MlflowClient().store.flush(60)
print("SHIPPED", run.info.run_id, run.info.experiment_id, flush=True)
sys.stdin.readline()
for step in range(50, 100):
    mltrail.log_metric("loss", float(step), step=step, timestamp={BASE_TS} + step)
mltrail.log_param("beta", 2)
mltrail.log_text("late", "notes/late.txt")
print("LOGGED", flush=True)
sys.stdin.readline()
"""


def test_sigkilled_training_then_mltrail_sync(
    mlflow_server: Any, mlflow_module: Any, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "MLTRAIL_SPOOL_DIR": str(tmp_path / "spool"),
        "MLTRAIL_HTTP_BACKOFF": "0.05",
        "MLTRAIL_HTTP_BACKOFF_MAX": "0.5",
        "MLTRAIL_HTTP_RETRIES": "1",
    }
    with FaultyProxy(mlflow_server.url) as proxy:
        child = subprocess.Popen(
            [sys.executable, "-c", _child_script(proxy.url)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        try:
            assert child.stdout is not None and child.stdin is not None
            shipped = child.stdout.readline().split()
            assert shipped[:1] == ["SHIPPED"], child.stderr.read() if child.stderr else ""
            run_id, experiment_id = shipped[1], shipped[2]
            proxy.down = True  # the rest is logged while the server is away
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "LOGGED"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=30)
        proxy.down = False

        def sync() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "mltrail.cli", "sync", "--uri", proxy.url],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )

        first = sync()
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"shipped {run_id}" in first.stdout
        state = _server_state(mlflow_module, mlflow_server.url, experiment_id)
        second = sync()  # idempotent: nothing left, nothing changes
        assert second.returncode == 0 and "nothing to send" in second.stdout
        assert _server_state(mlflow_module, mlflow_server.url, experiment_id) == state

    [(server_id, status, params, points, artifacts)] = state
    assert server_id == run_id
    assert status == "RUNNING"  # a killed process never ended its run, as with MLflow
    assert params == {"alpha": "0.5", "beta": "2"}
    assert points == [(step, BASE_TS + step, float(step)) for step in range(100)]
    assert artifacts == ["notes/late.txt"]


def _server_state(mlflow: Any, url: str, experiment_id: str) -> list[tuple[Any, ...]]:
    server = mlflow.MlflowClient(tracking_uri=url)
    state = []
    for run in server_runs(server, experiment_id):
        run_id = run.info.run_id
        files = [f.path for f in server.list_artifacts(run_id, "notes")]
        state.append(
            (run_id, run.info.status, run.data.params, history(server, run_id, "loss"), files)
        )
    return state


def test_unsent_records_are_reported_then_delivered(
    mlflow_server: Any, remote: RemoteFactory
) -> None:
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url)
        run_id = client.create_run(client.create_experiment(unique())).info.run_id
        proxy.down = True
        # The sender may warn as soon as the record is logged: watch from there on.
        with pytest.warns(UserWarning, match="Training goes on"):
            client.log_metric(run_id, "m", 1.0)
            assert not client.store.flush(1)
        summary = client.store.unsent_summary() or ""
        assert "1 run (1 record)" in summary and "mltrail sync" in summary
        assert str(client.store.spool.folder) in summary
        proxy.down = False
        assert client.store.flush(60)
        assert client.store.unsent_summary() is None


def test_basic_credentials_win_and_reach_the_server(
    mlflow_server: Any, remote: RemoteFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ana")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw-basic")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "a-token-that-must-not-be-used")
    expected = "Basic " + base64.b64encode(b"ana:pw-basic").decode()
    # The proxy stands in for a server with auth (a plain `mlflow server` has none).
    with FaultyProxy(mlflow_server.url, authorization=expected) as proxy:
        client = remote(proxy.url)
        run_id = client.create_run(client.create_experiment(unique())).info.run_id
        client.log_param(run_id, "alpha", 1)
        client.set_terminated(run_id)
        assert client.store.flush(30)
        assert client.get_run(run_id).data.params == {"alpha": "1"}
        assert proxy.count() > 0
        assert all(seen.action != "401" for seen in proxy.seen)


def test_sync_sets_a_refused_record_aside_and_ships_the_rest(
    mlflow_server: Any,
    remote: RemoteFactory,
    mlflow_module: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    name = unique("sync")
    with FaultyProxy(mlflow_server.url, down=True) as proxy:
        client = remote(proxy.url)
        with pytest.warns(UserWarning):
            experiment = client.create_experiment(name)
            good = client.create_run(experiment, run_name="good").info.run_id
            bad = client.create_run(experiment, run_name="bad").info.run_id
            for run_id in (good, bad):
                client.log_param(run_id, "alpha", 1)
        client.store.close()  # this process is gone; `mltrail sync` takes over
        # A record the server refuses (a param key over its 250-character limit),
        # as a damaged spool could hold, then the run's end behind it.
        spooled = client.store.spool.store
        journal = spooled.run_dir(bad) / "journal.jsonl"
        with open(journal, "a") as handle:
            handle.write('{"k":"b","p":{"%s":"x"}}\n' % ("k" * 300))
        for run_id in (good, bad):
            spooled.update_run_info(run_id, "FINISHED", BASE_TS)

        proxy.down = False
        monkeypatch.setenv("MLTRAIL_SPOOL_DIR", str(tmp_path / "spool"))
        with pytest.warns(UserWarning, match="refused 1 record"):
            assert cli.main(["sync", "--uri", proxy.url]) == 1  # something was refused
        out = capsys.readouterr().out
        assert f"shipped {good}" in out
        assert f"shipped {bad}" in out
        assert f"{bad}: 1 refusal(s) by the server, set aside in" in out
        assert "2 shipped, 0 refused, 0 left pending, 1 with records set aside" in out
        # run again: nothing is sent twice, nothing is left, the exit code is 0
        proxy.reset_counts()
        assert cli.main(["sync", "--uri", proxy.url]) == 0
        assert "nothing to send" in capsys.readouterr().out
        assert proxy.count("runs/create") == 0

    server = mlflow_module.MlflowClient(tracking_uri=mlflow_server.url)
    runs = {
        r.info.run_name: r
        for r in server_runs(server, server.get_experiment_by_name(name).experiment_id)
    }
    assert set(runs) == {"good", "bad"}
    for run in runs.values():
        assert run.data.params == {"alpha": "1"}
        assert run.info.status == "FINISHED"
