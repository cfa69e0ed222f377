"""Models in MLflow's layout: logged and loaded by mltrail, and read by MLflow's own loaders."""

from __future__ import annotations

import json
import shutil
import threading
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import xgboost as xgb
import yaml
from mltrail_sklearn import model as sk_flavor
from mltrail_xgboost import model as xgb_flavor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import mltrail
import mltrail.pyfunc
from mltrail import models
from mltrail.entities import RunStatus
from mltrail.exceptions import AlreadyExistsError, InvalidParameterError, NotFoundError
from mltrail.models import ModelSaveError


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"trip_distance": rng.random(60) * 10, "passengers": rng.integers(1, 5, 60)})
    y = 3.0 * X["trip_distance"].to_numpy() + X["passengers"].to_numpy() + rng.random(60)
    return X, y


@pytest.fixture(scope="module")
def regressor(data: tuple[pd.DataFrame, np.ndarray]) -> LinearRegression:
    X, y = data
    return LinearRegression().fit(X, y)


@pytest.fixture(scope="module")
def booster(data: tuple[pd.DataFrame, np.ndarray]) -> xgb.Booster:
    X, y = data
    return xgb.train({"max_depth": 2}, xgb.DMatrix(X, y), num_boost_round=5)


def read_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def installed(dist: str) -> str:
    return f"{dist}=={metadata.version(dist)}"


# the layout ------------------------------------------------------------------


def test_log_model_writes_mlflow_layout_into_the_run(
    tracking_dir: Path, data: tuple[pd.DataFrame, np.ndarray], regressor: LinearRegression
) -> None:
    X, _ = data
    with mltrail.start_run() as run:
        info = mltrail.sklearn.log_model(regressor, "model", input_example_data=X)
    run_id = run.info.run_id
    assert info.model_uri == f"runs:/{run_id}/model"
    assert info.run_id == run_id and info.artifact_path == "model"

    listed = {f.path for f in mltrail.MlflowClient().list_artifacts(run_id, "model")}
    assert listed == {
        "model/MLmodel",
        "model/model.pkl",
        "model/requirements.txt",
        "model/python_env.yaml",
        "model/conda.yaml",
    }
    folder = Path(mltrail.MlflowClient().download_artifacts(run_id, "model"))
    mlmodel = read_yaml(folder / "MLmodel")
    assert mlmodel["run_id"] == run_id
    assert mlmodel["artifact_path"] == "model"
    assert mlmodel["model_uuid"] == info.model_uuid and len(info.model_uuid) == 32
    assert mlmodel["utc_time_created"] == info.utc_time_created
    pyfunc_conf = mlmodel["flavors"]["python_function"]
    assert pyfunc_conf["loader_module"] == "mlflow.sklearn"
    assert pyfunc_conf["model_path"] == "model.pkl"
    assert pyfunc_conf["python_version"].count(".") == 2
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "cloudpickle"
    assert mlmodel["flavors"]["sklearn"]["sklearn_version"] == metadata.version("scikit-learn")
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert inputs == [
        {"type": "double", "name": "trip_distance", "required": True},
        {"type": "long", "name": "passengers", "required": True},
    ]
    requirements = (folder / "requirements.txt").read_text().split()
    for dist in ("scikit-learn", "numpy", "scipy", "cloudpickle"):
        assert installed(dist) in requirements
    assert read_yaml(folder / "python_env.yaml")["dependencies"] == ["-r requirements.txt"]


def test_save_model_refuses_an_existing_folder(tmp_path: Path, regressor: LinearRegression) -> None:
    target = tmp_path / "m"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(AlreadyExistsError, match="already exists"):
        sk_flavor.save_model(regressor, target)
    assert (target / "keep.txt").read_text() == "mine"


def test_requirements_can_be_replaced_and_extended(
    tmp_path: Path, regressor: LinearRegression
) -> None:
    sk_flavor.save_model(
        regressor,
        tmp_path / "a",
        pip_requirements=["scikit-learn"],
        extra_pip_requirements=["rich"],
    )
    assert (tmp_path / "a" / "requirements.txt").read_text().split() == ["scikit-learn", "rich"]
    with pytest.raises(InvalidParameterError, match="list"):
        sk_flavor.save_model(regressor, tmp_path / "b", pip_requirements="scikit-learn")


def test_input_example_is_saved_as_mlflow_saves_it(
    tmp_path: Path, data: tuple[pd.DataFrame, np.ndarray], regressor: LinearRegression
) -> None:
    X, _ = data
    sk_flavor.save_model(regressor, tmp_path / "m", input_example=X.head(2))
    mlmodel = read_yaml(tmp_path / "m" / "MLmodel")
    assert mlmodel["saved_input_example_info"]["type"] == "dataframe"
    example = json.loads((tmp_path / "m" / "input_example.json").read_text())
    assert example["columns"] == ["trip_distance", "passengers"]
    assert example["data"][1][1] == int(X["passengers"].iloc[1])
    assert "inputs" in mlmodel["signature"]  # inferred from the example


# signatures ------------------------------------------------------------------


def test_signature_of_frames_arrays_and_sparse_matrices() -> None:
    frame = pd.DataFrame({"f": np.array([1.5], dtype="float32"), "i": [1], "s": ["a"], "b": [True]})
    sig = models.infer_signature(frame, pd.Series([1.0], name="target"))
    assert json.loads(sig["inputs"]) == [
        {"type": "float", "name": "f", "required": True},
        {"type": "long", "name": "i", "required": True},
        {"type": "string", "name": "s", "required": True},
        {"type": "boolean", "name": "b", "required": True},
    ]
    assert json.loads(sig["outputs"]) == [{"type": "double", "name": "target", "required": True}]

    tensor = json.loads(models.infer_signature(np.zeros((1000, 7), dtype="float32"))["inputs"])
    assert tensor == [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 7]}}]
    sparse = scipy.sparse.random(50, 4, density=0.1, format="csr")
    sparse_spec = json.loads(models.infer_signature(sparse)["inputs"])
    assert sparse_spec[0]["tensor-spec"] == {"dtype": "float64", "shape": [-1, 4]}
    assert models.infer_signature({"not": "supported"}) is None


def test_signature_of_a_dmatrix_names_its_features(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = data
    sig = xgb_flavor.infer_signature(xgb.DMatrix(X, y))
    assert [c["name"] for c in json.loads(sig["inputs"])] == ["trip_distance", "passengers"]
    assert xgb_flavor.infer_signature(xgb.DMatrix(X.to_numpy(), y)) is None


# mltrail's own loaders -------------------------------------------------------


def test_load_sklearn_and_pyfunc_from_a_run(
    tracking_dir: Path, data: tuple[pd.DataFrame, np.ndarray], regressor: LinearRegression
) -> None:
    X, _ = data
    with mltrail.start_run():
        info = mltrail.sklearn.log_model(regressor, artifact_path="models_mlflow")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a model of a known run loads without a warning
        loaded = mltrail.sklearn.load_model(info.model_uri)
        pyfunc = mltrail.pyfunc.load_model(info.model_uri)
    np.testing.assert_array_equal(loaded.predict(X), regressor.predict(X))
    np.testing.assert_array_equal(pyfunc.predict(X), regressor.predict(X))
    assert pyfunc.flavor == "sklearn"
    assert pyfunc.metadata["run_id"] == info.run_id


def test_xgboost_booster_and_wrapper_round_trip(
    tracking_dir: Path, data: tuple[pd.DataFrame, np.ndarray], booster: xgb.Booster
) -> None:
    X, y = data
    wrapper = xgb.XGBRegressor(n_estimators=5, max_depth=2).fit(X, y)
    with mltrail.start_run():
        booster_info = xgb_flavor.log_model(booster, "booster", input_example_data=xgb.DMatrix(X))
        wrapper_info = xgb_flavor.log_model(wrapper, "wrapper")
    assert booster_info.flavors["xgboost"]["model_class"] == "xgboost.core.Booster"
    assert wrapper_info.flavors["xgboost"]["model_class"] == "xgboost.sklearn.XGBRegressor"

    loaded_booster = xgb_flavor.load_model(booster_info.model_uri)
    assert isinstance(loaded_booster, xgb.Booster)
    np.testing.assert_array_equal(
        loaded_booster.predict(xgb.DMatrix(X)), booster.predict(xgb.DMatrix(X))
    )
    loaded_wrapper = xgb_flavor.load_model(wrapper_info.model_uri)
    assert type(loaded_wrapper) is xgb.XGBRegressor
    np.testing.assert_array_equal(loaded_wrapper.predict(X), wrapper.predict(X))

    pyfunc = mltrail.pyfunc.load_model(booster_info.model_uri)
    np.testing.assert_array_equal(pyfunc.predict(X), booster.predict(xgb.DMatrix(X)))
    assert isinstance(pyfunc.get_raw_model(), xgb.Booster)


def test_unknown_run_path_and_uri_are_clear_errors(
    tracking_dir: Path, regressor: LinearRegression
) -> None:
    with mltrail.start_run() as run:
        mltrail.sklearn.log_model(regressor, "model")
    with pytest.raises(NotFoundError, match="0123456789abcdef0123456789abcdef"):
        mltrail.sklearn.load_model("runs:/0123456789abcdef0123456789abcdef/model")
    with pytest.raises(NotFoundError, match="no MLmodel file under 'models'") as caught:
        mltrail.pyfunc.load_model(f"runs:/{run.info.run_id}/models")
    assert caught.value.resource_id == f"runs:/{run.info.run_id}/models"
    with pytest.raises(NotFoundError, match="does not exist"):
        mltrail.sklearn.load_model(tracking_dir / "no-such-folder")
    with pytest.raises(InvalidParameterError, match="runs:/, models:/"):
        mltrail.sklearn.load_model("s3://bucket/model")
    with pytest.raises(NotFoundError, match="no 'xgboost' flavour"):
        xgb_flavor.load_model(f"runs:/{run.info.run_id}/model")


def test_local_folder_from_elsewhere_warns_once(
    tmp_path: Path, regressor: LinearRegression
) -> None:
    sk_flavor.save_model(regressor, tmp_path / "saved")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sk_flavor.load_model(tmp_path / "saved")  # written by this process: trusted

    # A copy this process did not write stands for a model downloaded from anywhere.
    shutil.copytree(tmp_path / "saved", tmp_path / "foreign")
    with pytest.warns(UserWarning, match="execute code"):
        sk_flavor.load_model(tmp_path / "foreign")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mltrail.pyfunc.load_model((tmp_path / "foreign").as_uri())  # once per folder


# models that cannot be saved --------------------------------------------------


class Unpicklable(LinearRegression):
    """An estimator holding a lock: neither pickle nor cloudpickle can write it."""

    def fit(self, X, y):
        self.lock_ = threading.Lock()
        return super().fit(X, y)


def test_unpicklable_model_is_a_clear_error_and_the_run_finishes(
    tracking_dir: Path, data: tuple[pd.DataFrame, np.ndarray]
) -> None:
    X, y = data
    model = Unpicklable().fit(X, y)
    with mltrail.start_run() as run:
        with pytest.raises(ModelSaveError, match=r"Could not save the sklearn model.*lock") as err:
            mltrail.sklearn.log_model(model, "model")
        assert err.value.key == "model"
        mltrail.log_metric("rmse", 1.0)  # the run goes on
    finished = mltrail.get_run(run.info.run_id)
    assert finished.info.status == RunStatus.FINISHED
    assert finished.data.metrics == {"rmse": 1.0}
    assert mltrail.MlflowClient().list_artifacts(run.info.run_id) == []  # nothing half-logged


def test_log_model_without_a_run_starts_one(
    tracking_dir: Path, regressor: LinearRegression
) -> None:
    info = mltrail.sklearn.log_model(regressor, name="m")
    assert mltrail.active_run().info.run_id == info.run_id
    mltrail.end_run()
    assert mltrail.get_run(info.run_id).info.status == RunStatus.FINISHED


# MLflow's loaders read what mltrail wrote --------------------------------------


@pytest.mark.parametrize("serialization_format", ["cloudpickle", "pickle"])
def test_mlflow_loaders_read_mltrail_sklearn_models(
    tmp_path: Path, data: tuple[pd.DataFrame, np.ndarray], serialization_format: str
) -> None:
    import mlflow.pyfunc
    import mlflow.sklearn

    X, y = data
    pipe = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())])
    pipe.fit(X, (y > y.mean()).astype(int))
    path = tmp_path / "model"
    sk_flavor.save_model(
        pipe, path, serialization_format=serialization_format, input_example_data=X
    )

    by_flavor = mlflow.sklearn.load_model(str(path))
    np.testing.assert_array_equal(by_flavor.predict_proba(X), pipe.predict_proba(X))
    by_pyfunc = mlflow.pyfunc.load_model(str(path))
    np.testing.assert_array_equal(by_pyfunc.predict(X), pipe.predict(X))
    signature = mlflow.models.Model.load(str(path)).signature
    assert signature.inputs.input_names() == ["trip_distance", "passengers"]


def test_mlflow_loaders_read_mltrail_xgboost_models(
    tmp_path: Path, data: tuple[pd.DataFrame, np.ndarray], booster: xgb.Booster
) -> None:
    import mlflow.pyfunc
    import mlflow.xgboost

    X, y = data
    xgb_flavor.save_model(booster, tmp_path / "booster", input_example_data=X)
    loaded = mlflow.xgboost.load_model(str(tmp_path / "booster"))
    assert isinstance(loaded, xgb.Booster)
    expected = booster.predict(xgb.DMatrix(X))
    np.testing.assert_array_equal(loaded.predict(xgb.DMatrix(X)), expected)
    np.testing.assert_array_equal(
        mlflow.pyfunc.load_model(str(tmp_path / "booster")).predict(X), expected
    )

    wrapper = xgb.XGBClassifier(n_estimators=4, max_depth=2).fit(X, (y > y.mean()).astype(int))
    xgb_flavor.save_model(wrapper, tmp_path / "wrapper")
    loaded_wrapper = mlflow.xgboost.load_model(str(tmp_path / "wrapper"))
    assert type(loaded_wrapper) is xgb.XGBClassifier
    np.testing.assert_array_equal(loaded_wrapper.predict_proba(X), wrapper.predict_proba(X))
    np.testing.assert_array_equal(
        mlflow.pyfunc.load_model(str(tmp_path / "wrapper")).predict(X), wrapper.predict(X)
    )
    assert mlflow.models.Model.load(str(tmp_path / "wrapper")).flavors["xgboost"]["xgb_version"]


def test_mltrail_reads_models_mlflow_wrote(
    tmp_path: Path,
    data: tuple[pd.DataFrame, np.ndarray],
    regressor: LinearRegression,
    booster: xgb.Booster,
) -> None:
    import mlflow.sklearn
    import mlflow.xgboost

    X, _ = data
    # Given requirements, MLflow skips inferring them in a subprocess (about 25 s).
    mlflow.sklearn.save_model(
        regressor,
        str(tmp_path / "sk"),
        serialization_format="cloudpickle",
        pip_requirements=["scikit-learn"],
    )
    mlflow.xgboost.save_model(booster, str(tmp_path / "xg"), pip_requirements=["xgboost"])
    with pytest.warns(UserWarning, match="execute code"):
        sk = mltrail.pyfunc.load_model(tmp_path / "sk")
    np.testing.assert_array_equal(sk.predict(X), regressor.predict(X))
    with pytest.warns(UserWarning, match="execute code"):
        xg = mltrail.pyfunc.load_model(tmp_path / "xg")
    np.testing.assert_array_equal(xg.predict(X), booster.predict(xgb.DMatrix(X)))


def test_registry_source_resolved_by_a_server_maps_back_to_the_run() -> None:
    from mltrail.entities import ModelVersion

    run_id = "0123456789abcdef0123456789abcdef"
    served = ModelVersion(
        "m", "1", source=f"mlflow-artifacts:/4/{run_id}/artifacts/model", run_id=run_id
    )
    assert models.uris.source_uri(served) == f"runs:/{run_id}/model"
    given = ModelVersion("m", "1", source=f"runs:/{run_id}/model", run_id=run_id)
    assert models.uris.source_uri(given) == f"runs:/{run_id}/model"


def test_unpicklable_model_under_autolog_warns_and_training_goes_on(
    tracking_dir: Path, data: tuple[pd.DataFrame, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mltrail.autologging import MltrailWarning

    monkeypatch.delenv("MLTRAIL_STRICT")  # as users run it: logging problems only warn
    X, y = data
    mltrail.sklearn.autolog()
    try:
        with pytest.warns(MltrailWarning, match="lock"):
            model = Unpicklable().fit(X, y)
    finally:
        mltrail.sklearn.autolog(disable=True)
    assert model.predict(X).shape == (len(X),)
    (run,) = mltrail.search_runs(output_format="list")
    assert run.info.status == RunStatus.FINISHED
    assert "model" not in {f.path for f in mltrail.MlflowClient().list_artifacts(run.info.run_id)}


def test_log_model_can_register_in_one_call(
    tracking_dir: Path, data: tuple[pd.DataFrame, np.ndarray], regressor: LinearRegression
) -> None:
    X, _ = data
    with mltrail.start_run():
        info = mltrail.sklearn.log_model(regressor, "model", registered_model_name="taxi")
    assert info.registered_model_version == "1"
    loaded = mltrail.sklearn.load_model("models:/taxi/latest")
    np.testing.assert_array_equal(loaded.predict(X), regressor.predict(X))
