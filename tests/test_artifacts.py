"""`mltrail.artifacts` (MLflow's `mlflow.artifacts` calls) and `mltrail.tracking` as an
attribute, as seed code written for MLflow uses them after `import mltrail as mlflow`."""

from __future__ import annotations

from pathlib import Path

import pytest

import mltrail as mlflow
from mltrail.exceptions import InvalidParameterError


def test_tracking_is_reachable_as_an_attribute(tracking_dir: Path) -> None:
    client = mlflow.tracking.MlflowClient()
    assert client.search_experiments()[0].name == "Default"


def test_download_list_and_load_by_runs_uri(tracking_dir: Path) -> None:
    with mlflow.start_run() as run:
        mlflow.log_text("hello", "notes/hello.txt")
        mlflow.log_dict({"alpha": 0.5, "layers": [1, 2]}, "config.json")
    run_id = run.info.run_id
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes/hello.txt") == "hello"
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/config.json") == {
        "alpha": 0.5, "layers": [1, 2]}
    listed = mlflow.artifacts.list_artifacts(f"runs:/{run_id}/notes")
    assert [f.path for f in listed] == ["notes/hello.txt"]
    by_id = {f.path for f in mlflow.artifacts.list_artifacts(run_id=run_id)}
    assert by_id == {"notes", "config.json"}
    folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="notes",
                                                      dst_path=str(tracking_dir.parent / "d")))
    assert (folder / "hello.txt").read_text() == "hello"


@pytest.mark.parametrize(
    ("call", "key"),
    [
        (lambda: mlflow.artifacts.load_text("s3://bucket/file.txt"), "artifact_uri"),
        (lambda: mlflow.artifacts.load_text("runs:/"), "artifact_uri"),
        (lambda: mlflow.artifacts.download_artifacts(), "artifact_uri"),
        (lambda: mlflow.artifacts.download_artifacts("runs:/abc/x", run_id="abc"),
         "artifact_uri"),
        (lambda: mlflow.artifacts.download_artifacts("runs:/abc/x", artifact_path="x"),
         "artifact_path"),
    ],
)
def test_bad_artifact_locations_name_the_argument(tracking_dir: Path, call, key: str) -> None:
    with pytest.raises(InvalidParameterError) as raised:
        call()
    assert raised.value.key == key


def test_load_dict_refuses_what_is_not_a_json_object(tracking_dir: Path) -> None:
    with mlflow.start_run() as run:
        mlflow.log_text("[1, 2]", "list.json")
        mlflow.log_text("not json", "text.json")
    with pytest.raises(InvalidParameterError, match="not an object"):
        mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/list.json")
    with pytest.raises(InvalidParameterError, match="not JSON"):
        mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/text.json")
