"""The fluent API round trip on the local store: runs, nesting, logging, search, bad input."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import mltrail
from mltrail import RunStatus, TrackingClient, ViewType
from mltrail.exceptions import (
    InvalidParameterError,
    NotFoundError,
    RunStateError,
    UnsupportedUriError,
)
from mltrail.uri import DEFAULT_ROOT

PARENT = "mlflow.parentRunId"


def client() -> TrackingClient:
    return TrackingClient(mltrail.get_tracking_uri())


# run lifecycle -------------------------------------------------------------


def test_start_run_context_ends_finished(tracking_dir: Path) -> None:
    with mltrail.start_run(run_name="ok") as run:
        assert mltrail.active_run() is run
        assert mltrail.get_run(run.info.run_id).info.status == RunStatus.RUNNING
    assert mltrail.active_run() is None
    ended = mltrail.get_run(run.info.run_id)
    assert ended.info.status == RunStatus.FINISHED
    assert ended.info.run_name == "ok"
    assert ended.info.end_time is not None and ended.info.end_time >= ended.info.start_time


def test_exception_in_run_ends_failed_and_propagates(tracking_dir: Path) -> None:
    with pytest.raises(ValueError, match="boom"), mltrail.start_run() as run:
        raise ValueError("boom")
    assert mltrail.get_run(run.info.run_id).info.status == RunStatus.FAILED
    assert mltrail.active_run() is None


def test_keyboard_interrupt_ends_killed(tracking_dir: Path) -> None:
    with pytest.raises(KeyboardInterrupt), mltrail.start_run() as run:
        raise KeyboardInterrupt
    assert mltrail.get_run(run.info.run_id).info.status == RunStatus.KILLED


def test_end_run_with_status(tracking_dir: Path) -> None:
    run = mltrail.start_run()
    mltrail.end_run(RunStatus.FAILED)
    assert mltrail.get_run(run.info.run_id).info.status == RunStatus.FAILED
    with pytest.raises(InvalidParameterError):
        mltrail.end_run("DONE")


def test_nested_runs_carry_the_parent_tag(tracking_dir: Path) -> None:
    with mltrail.start_run(run_name="parent") as parent:
        with mltrail.start_run(run_name="child", nested=True) as child:
            assert mltrail.active_run() is child
            with mltrail.start_run(nested=True) as grandchild:
                pass
        assert mltrail.active_run() is parent
    tags = {r: mltrail.get_run(r.info.run_id).data.tags for r in (parent, child, grandchild)}
    assert PARENT not in tags[parent]
    assert tags[child][PARENT] == parent.info.run_id
    assert tags[grandchild][PARENT] == child.info.run_id
    statuses = {mltrail.get_run(r.info.run_id).info.status for r in (parent, child, grandchild)}
    assert statuses == {RunStatus.FINISHED}


def test_parent_run_id_links_to_an_ended_run(tracking_dir: Path) -> None:
    with mltrail.start_run() as parent:
        pass
    with mltrail.start_run(parent_run_id=parent.info.run_id) as child:
        pass
    assert mltrail.get_run(child.info.run_id).data.tags[PARENT] == parent.info.run_id
    with pytest.raises(NotFoundError):
        mltrail.start_run(parent_run_id="f" * 32)


def test_second_top_level_run_is_an_error(tracking_dir: Path) -> None:
    with mltrail.start_run() as first:
        with pytest.raises(RunStateError) as excinfo:
            mltrail.start_run()
        assert first.info.run_id in str(excinfo.value)
        assert "nested=True" in str(excinfo.value)
        assert mltrail.active_run() is first


def test_resume_a_run_by_id(tracking_dir: Path) -> None:
    with mltrail.start_run() as run:
        mltrail.log_param("alpha", 0.5)
        mltrail.log_metric("loss", 1.0, step=0)
    with mltrail.start_run(run_id=run.info.run_id) as resumed:
        assert resumed.info.run_id == run.info.run_id
        assert mltrail.get_run(run.info.run_id).info.status == RunStatus.RUNNING
        mltrail.log_metric("loss", 0.5, step=1)
    again = mltrail.get_run(run.info.run_id)
    assert again.info.status == RunStatus.FINISHED
    assert again.data.params == {"alpha": "0.5"}
    assert again.data.metrics == {"loss": 0.5}
    history = client().get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5)]


def test_last_active_run(tracking_dir: Path) -> None:
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(mltrail.last_active_run()))
    thread.start()
    thread.join()
    assert seen == [None]  # a fresh context has run nothing yet

    with mltrail.start_run() as run:
        current = mltrail.last_active_run()
        assert current is not None and current.info.run_id == run.info.run_id
        mltrail.log_metric("m", 2.0)
    last = mltrail.last_active_run()
    assert last is not None
    assert last.info.run_id == run.info.run_id
    assert last.info.status == RunStatus.FINISHED
    assert last.data.metrics == {"m": 2.0}


def test_logging_without_a_run_starts_one(tracking_dir: Path) -> None:
    assert mltrail.active_run() is None
    mltrail.log_metric("auto", 1.5)
    active = mltrail.active_run()
    assert active is not None
    mltrail.log_param("p", 1)
    mltrail.set_tag("t", "v")
    mltrail.end_run()
    run = mltrail.get_run(active.info.run_id)
    assert run.info.status == RunStatus.FINISHED
    assert run.data.metrics == {"auto": 1.5}
    assert run.data.params == {"p": "1"}
    assert run.data.tags["t"] == "v"


def test_log_params_metrics_tags_in_bulk(tracking_dir: Path) -> None:
    with mltrail.start_run() as run:
        mltrail.log_params({"a": 1, "b": "two", "c": None})
        mltrail.log_metrics({"x": 1.0, "y": 2}, step=4, timestamp=1_234)
        mltrail.set_tags({"k": "v", "n": 3})
        mltrail.set_tag("gone", "soon")
        mltrail.delete_tag("gone")
    data = mltrail.get_run(run.info.run_id).data
    assert data.params == {"a": "1", "b": "two", "c": "None"}
    assert data.metrics == {"x": 1.0, "y": 2.0}
    assert data.tags["k"] == "v" and data.tags["n"] == "3" and "gone" not in data.tags
    history = client().get_metric_history(run.info.run_id, "y")
    assert [(m.value, m.timestamp, m.step) for m in history] == [(2.0, 1_234, 4)]


# artifacts and datasets ----------------------------------------------------


def _download(run_id: str, path: str, dst: Path) -> Path:
    return Path(client().download_artifacts(run_id, path, str(dst)))


def test_log_dict_text_artifact_and_artifacts(tracking_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "sub").mkdir(parents=True)
    (data_dir / "a.csv").write_text("x,y\n1,2\n")
    (data_dir / "sub" / "b.bin").write_bytes(b"\x00\x01\x02")
    single = tmp_path / "model.pkl"
    single.write_bytes(b"pickle-bytes")
    config = {"alpha": 0.1, "layers": [1, 2], "name": "m"}

    with mltrail.start_run() as run:
        mltrail.log_dict(config, "config.json")
        mltrail.log_dict(config, "conf/config.yaml")
        mltrail.log_text("hello run", "notes/readme.md")
        mltrail.log_artifact(single)
        mltrail.log_artifact(single, artifact_path="models")
        mltrail.log_artifacts(data_dir, artifact_path="data")
        uri = mltrail.get_artifact_uri("models")
    run_id = run.info.run_id

    root = {(f.path, f.is_dir) for f in client().list_artifacts(run_id)}
    assert root == {
        ("config.json", False),
        ("conf", True),
        ("notes", True),
        ("model.pkl", False),
        ("models", True),
        ("data", True),
    }
    assert {f.path for f in client().list_artifacts(run_id, "data")} == {"data/a.csv", "data/sub"}
    out = tmp_path / "out"
    assert json.loads(_download(run_id, "config.json", out).read_text()) == config
    assert yaml.safe_load(_download(run_id, "conf/config.yaml", out).read_text()) == config
    assert _download(run_id, "notes/readme.md", out).read_text() == "hello run"
    assert _download(run_id, "models/model.pkl", out).read_bytes() == b"pickle-bytes"
    assert _download(run_id, "data/sub/b.bin", out).read_bytes() == b"\x00\x01\x02"
    assert uri.endswith("/models") and run_id in uri


def test_missing_local_file_is_not_found(tracking_dir: Path, tmp_path: Path) -> None:
    with mltrail.start_run(), pytest.raises(NotFoundError):
        mltrail.log_artifact(tmp_path / "nope.txt")


def test_log_input_dataframe(tracking_dir: Path) -> None:
    frame = pd.DataFrame({"age": [31, 45, 27], "income": [1.5, 2.25, 3.0], "city": ["a", "b", "c"]})
    with mltrail.start_run() as run:
        mltrail.log_input(frame, context="training", name="customers")
        mltrail.log_input(frame.iloc[:2], context="validation", name="customers-val")
    inputs = mltrail.get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 2
    train, val = inputs
    assert train.dataset.name == "customers"
    assert {t.key: t.value for t in train.tags} == {"mlflow.data.context": "training"}
    assert len(train.dataset.digest) >= 8 and train.dataset.digest != val.dataset.digest
    schema = json.loads(train.dataset.schema)["mlflow_colspec"]
    assert [(c["name"], c["type"]) for c in schema] == [
        ("age", "long"),
        ("income", "double"),
        ("city", "string"),
    ]
    assert json.loads(train.dataset.profile)["num_rows"] == 3
    assert json.loads(val.dataset.profile)["num_rows"] == 2

    with mltrail.start_run() as again:  # same data, same digest
        mltrail.log_input(frame.copy(), name="customers")
    same = mltrail.get_run(again.info.run_id).inputs.dataset_inputs[0]
    assert same.dataset.digest == train.dataset.digest


# search --------------------------------------------------------------------


def test_search_runs_dataframe(tracking_dir: Path) -> None:
    mltrail.set_experiment("frame")
    for alpha, rmse in ((0.1, 5.0), (0.2, 8.0), (0.3, 6.0)):
        with mltrail.start_run():
            mltrail.log_param("alpha", alpha)
            mltrail.log_metric("rmse", rmse)
            mltrail.set_tag("developer", "ana")
        time.sleep(0.002)  # distinct start times: runs of the same millisecond tie by run id
    frame = mltrail.search_runs()
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 3
    for column in (
        "run_id",
        "experiment_id",
        "status",
        "start_time",
        "end_time",
        "artifact_uri",
        "metrics.rmse",
        "params.alpha",
        "tags.developer",
        "tags.mlflow.runName",
    ):
        assert column in frame.columns
    assert set(frame["status"]) == {RunStatus.FINISHED}
    assert pd.api.types.is_datetime64_any_dtype(frame["start_time"])
    assert list(frame["params.alpha"]) == ["0.3", "0.2", "0.1"]  # newest first

    best = mltrail.search_runs(filter_string="metrics.rmse < 7", order_by=["metrics.rmse ASC"])
    assert list(best["metrics.rmse"]) == [5.0, 6.0]
    runs = mltrail.search_runs(output_format="list", max_results=2)
    assert isinstance(runs, list) and len(runs) == 2 and runs[0].info.run_id == frame.run_id[0]
    by_name = mltrail.search_runs(experiment_names=["frame"])
    assert len(by_name) == 3
    empty = mltrail.search_runs(filter_string="metrics.rmse > 100")
    assert len(empty) == 0 and "run_id" in empty.columns


# experiments and tracking URI ----------------------------------------------


def test_set_experiment_creates_when_missing(tracking_dir: Path) -> None:
    assert mltrail.get_experiment_by_name("fresh") is None
    created = mltrail.set_experiment("fresh")
    assert created.name == "fresh" and isinstance(created.experiment_id, str)
    assert mltrail.set_experiment("fresh").experiment_id == created.experiment_id
    with mltrail.start_run() as run:
        pass
    assert run.info.experiment_id == created.experiment_id
    assert mltrail.set_experiment(experiment_id=created.experiment_id).name == "fresh"
    with pytest.raises(InvalidParameterError):
        mltrail.set_experiment()
    with pytest.raises(NotFoundError) as excinfo:
        mltrail.set_experiment(experiment_id="424242")
    assert "424242" in str(excinfo.value)


def test_runs_without_experiment_go_to_default(tracking_dir: Path) -> None:
    with mltrail.start_run() as run:
        pass
    assert run.info.experiment_id == "0"
    assert mltrail.get_experiment("0").name == "Default"


def test_tracking_uri_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert mltrail.get_tracking_uri() == (tmp_path / DEFAULT_ROOT).as_uri()
    assert not mltrail.is_tracking_uri_set()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "from-mlflow"))
    assert mltrail.get_tracking_uri() == str(tmp_path / "from-mlflow")
    monkeypatch.setenv("MLTRAIL_TRACKING_URI", str(tmp_path / "from-mltrail"))
    assert mltrail.get_tracking_uri() == str(tmp_path / "from-mltrail")
    mltrail.set_tracking_uri(tmp_path / "explicit")
    assert mltrail.get_tracking_uri() == str(tmp_path / "explicit")
    with mltrail.start_run() as run:
        pass
    assert run.info.artifact_uri.startswith((tmp_path / "explicit").as_uri())
    mltrail.set_tracking_uri(None)
    assert mltrail.get_tracking_uri() == str(tmp_path / "from-mltrail")


def test_default_store_is_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with mltrail.start_run() as run:
        mltrail.log_metric("m", 1.0)
    assert (tmp_path / DEFAULT_ROOT).is_dir()
    assert TrackingClient(str(tmp_path / DEFAULT_ROOT)).get_run(run.info.run_id).data.metrics
    assert not (tmp_path / "mltrail").exists()  # must not shadow the package


def test_unknown_scheme_explains_how_to_reach_it(tracking_dir: Path) -> None:
    mltrail.set_tracking_uri("nosuch:///x.db")
    with pytest.raises(UnsupportedUriError) as excinfo:
        mltrail.start_run()
    assert "mltrail.stores" in str(excinfo.value)  # the entry-point group a plugin uses
    assert "nosuch:///x.db" in str(excinfo.value) and "sqlite://" in str(excinfo.value)
    with pytest.raises(UnsupportedUriError):
        TrackingClient("gopher://db/x")


# bad input -----------------------------------------------------------------


@pytest.mark.parametrize("key", ["a!b", "semi;colon", "new\nline", "a/../b", "..", "/abs", ""])
def test_forbidden_keys_are_rejected(tracking_dir: Path, key: str) -> None:
    with mltrail.start_run() as run:
        for call in (mltrail.log_param, mltrail.log_metric, mltrail.set_tag):
            with pytest.raises(InvalidParameterError) as excinfo:
                call(key, 1)
            assert excinfo.value.key == key
    data = mltrail.get_run(run.info.run_id).data
    assert data.params == {} and data.metrics == {}


def test_allowed_key_characters(tracking_dir: Path) -> None:
    with mltrail.start_run() as run:
        mltrail.log_param("train/lr-max:0 v1.2", 1)
    assert mltrail.get_run(run.info.run_id).data.params == {"train/lr-max:0 v1.2": "1"}


def test_long_param_value_is_truncated_with_a_warning(tracking_dir: Path) -> None:
    with mltrail.start_run() as run:
        with pytest.warns(UserWarning, match="long_value"):
            mltrail.log_param("long_value", "x" * 7000)
        with pytest.raises(InvalidParameterError):
            mltrail.log_param("k" * 251, 1)
    stored = mltrail.get_run(run.info.run_id).data.params["long_value"]
    assert len(stored) == 6000
    assert stored.startswith("xxxx") and "truncated" in stored


def test_non_numeric_metric_is_rejected(tracking_dir: Path) -> None:
    with mltrail.start_run() as run:
        for bad in ("abc", None, [1.0], {"v": 1}):
            with pytest.raises(InvalidParameterError) as excinfo:
                mltrail.log_metric("score", bad)  # type: ignore[arg-type]
            assert excinfo.value.key == "score"
        with pytest.raises(InvalidParameterError):
            mltrail.log_metric("score", 1.0, step=1.5)  # type: ignore[arg-type]
    assert mltrail.get_run(run.info.run_id).data.metrics == {}


def test_numpy_scalars_and_special_floats(tracking_dir: Path) -> None:
    with mltrail.start_run() as run:
        mltrail.log_metric("f32", np.float32(0.5), step=np.int64(2))
        mltrail.log_metric("i64", np.int64(3))
        mltrail.log_metric("zero_d", np.array(2.5))
        mltrail.log_metric("flag", True)
        mltrail.log_metric("nan", np.float64("nan"))
        mltrail.log_metric("inf", math.inf)
        mltrail.log_metric("ninf", -np.inf)
        mltrail.log_param("depth", np.int64(5))
        mltrail.log_param("rate", np.float64(0.25))
    data = mltrail.get_run(run.info.run_id).data
    assert data.metrics["f32"] == 0.5 and data.metrics["i64"] == 3.0
    assert data.metrics["zero_d"] == 2.5 and data.metrics["flag"] == 1.0
    assert math.isnan(data.metrics["nan"])
    assert data.metrics["inf"] == math.inf and data.metrics["ninf"] == -math.inf
    assert data.params == {"depth": "5", "rate": "0.25"}
    history = client().get_metric_history(run.info.run_id, "f32")
    assert [(m.step, type(m.step)) for m in history] == [(2, int)]


def test_unknown_ids_are_named(tracking_dir: Path) -> None:
    unknown = "f" * 32
    with pytest.raises(NotFoundError) as excinfo:
        mltrail.get_run(unknown)
    assert excinfo.value.resource_id == unknown and unknown in str(excinfo.value)
    with pytest.raises(NotFoundError) as excinfo:
        mltrail.start_run(run_id=unknown)
    assert unknown in str(excinfo.value)
    with pytest.raises(NotFoundError) as excinfo:
        mltrail.start_run(experiment_id="424242")
    assert "424242" in str(excinfo.value)
    assert mltrail.active_run() is None


def test_logging_to_a_deleted_run_is_an_error(tracking_dir: Path) -> None:
    with mltrail.start_run() as run:
        mltrail.log_param("before", 1)
        mltrail.delete_run(run.info.run_id)
        with pytest.raises(RunStateError) as excinfo:
            mltrail.log_param("after", 2)
        assert run.info.run_id in str(excinfo.value)
    gone = mltrail.get_run(run.info.run_id)
    assert gone.info.lifecycle_stage == "deleted"
    assert gone.data.params == {"before": "1"}
    with pytest.raises(RunStateError):
        mltrail.start_run(run_id=run.info.run_id)
    listed = mltrail.search_runs(experiment_ids=["0"], run_view_type=ViewType.DELETED_ONLY)
    assert list(listed["run_id"]) == [run.info.run_id]


def test_param_conflict_names_the_key(tracking_dir: Path) -> None:
    with mltrail.start_run():
        mltrail.log_param("alpha", 1)
        mltrail.log_param("alpha", 1)  # the same value again is fine
        with pytest.raises(InvalidParameterError) as excinfo:
            mltrail.log_param("alpha", 2)
    assert excinfo.value.key == "alpha"


# system tags ---------------------------------------------------------------


def test_system_tags(tracking_dir: Path) -> None:
    with mltrail.start_run() as run:
        pass
    tags = mltrail.get_run(run.info.run_id).data.tags
    assert tags["mlflow.user"] == run.info.user_id != ""
    assert tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.source.name"]
    assert tags["mlflow.runName"] == run.info.run_name


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
def test_git_tags_inside_a_checkout(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    script = repo / "train.py"
    script.write_text(
        "import sys, mltrail\n"
        "mltrail.set_tracking_uri(sys.argv[1])\n"
        "with mltrail.start_run() as run:\n"
        "    pass\n"
        "print(run.info.run_id)\n"
    )

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    git("checkout", "-q", "-b", "feature/tracking")
    git("add", "train.py")
    git("commit", "-q", "-m", "first")
    git("remote", "add", "origin", "https://someone:s3cret@example.com/team/repo.git")
    commit = git("rev-parse", "HEAD")

    store = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if not k.endswith("TRACKING_URI")}
    done = subprocess.run(
        [sys.executable, str(script), str(store)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    run_id = done.stdout.strip().splitlines()[-1]
    tags = TrackingClient(str(store)).get_run(run_id).data.tags
    assert tags["mlflow.source.git.commit"] == commit
    assert tags["mlflow.source.git.branch"] == "feature/tracking"
    assert tags["mlflow.source.git.repoURL"] == "https://example.com/team/repo.git"
    assert "s3cret" not in json.dumps(tags)
    assert tags["mlflow.source.name"] == str(script.resolve())
    assert tags["mlflow.source.type"] == "LOCAL"


# threads and imports -------------------------------------------------------


def test_threads_keep_their_own_runs(tracking_dir: Path) -> None:
    barrier = threading.Barrier(2, timeout=30)
    run_ids: dict[str, str] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            barrier.wait()
            with mltrail.start_run(run_name=name) as run:  # both top-level, at once
                run_ids[name] = run.info.run_id
                barrier.wait()
                for step in range(30):
                    mltrail.log_metric("step_of", step, step=step)
                    mltrail.log_param(f"p{step}", name)
                mltrail.set_tag("owner", name)
                assert mltrail.active_run() is run
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert mltrail.active_run() is None
    assert run_ids["left"] != run_ids["right"]
    for name, run_id in run_ids.items():
        run = mltrail.get_run(run_id)
        assert run.info.status == RunStatus.FINISHED
        assert run.data.tags["owner"] == name
        assert set(run.data.params.values()) == {name} and len(run.data.params) == 30
        history = client().get_metric_history(run_id, "step_of")
        assert sorted(m.step for m in history) == list(range(30))


def test_import_pulls_in_no_framework() -> None:
    code = (
        "import sys, mltrail, mltrail.tracking, mltrail.entities\n"
        "heavy = ('pandas', 'sklearn', 'xgboost', 'hyperopt')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""
