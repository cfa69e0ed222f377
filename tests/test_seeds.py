"""The snippets from the course notes users learned from, run with `import mltrail as mlflow`.

They are copied as users write them (manual set_tag/log_param/log_metric, MlflowClient,
ViewType), with two changes: the tracking URI is a temporary folder, and RMSE comes from
`root_mean_squared_error` since `mean_squared_error(..., squared=False)` is gone in
scikit-learn 1.9. The data is synthetic or shipped with scikit-learn.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from sklearn.datasets import load_wine, make_regression
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Lasso
from sklearn.metrics import accuracy_score, root_mean_squared_error
from sklearn.model_selection import train_test_split

import mltrail as mlflow
from mltrail.entities import ViewType
from mltrail.tracking import MlflowClient

ALPHAS = [0.001, 0.01, 0.1, 0.5, 1, 2, 3, 5]  # six of them give an RMSE under 7


@pytest.fixture
def taxi_data() -> tuple:
    x, y = make_regression(n_samples=300, n_features=8, n_informative=5, noise=5.0, random_state=0)
    return tuple(train_test_split(x, y, test_size=0.3, random_state=0))


def test_lasso_seed_and_client_search(tracking_dir: Path, taxi_data: tuple) -> None:
    X_train, X_val, y_train, y_val = taxi_data
    MLFLOW_TRACKING_URI = str(tracking_dir)

    mlflow.set_tracking_uri(MLFLOW_TRACKING_URI)
    mlflow.set_experiment("nyc-taxi-experiment")
    logged: dict[str, float] = {}
    for alpha in ALPHAS:
        with mlflow.start_run():
            # set tag for mlflow
            mlflow.set_tag("developer", "Wenna")

            # log information about the datasets used
            mlflow.log_param("train-data-path", "./data/green_tripdata_2021-01.parquet")
            mlflow.log_param("valid-data-path", "./data/green_tripdata_2021-02.parquet")

            # log the hyperparameter alpha
            mlflow.log_param("alpha", alpha)
            lr = Lasso(alpha)
            lr.fit(X_train, y_train)

            y_pred = lr.predict(X_val)
            # calculate and log RMSE score
            rmse = root_mean_squared_error(y_val, y_pred)
            mlflow.log_metric("rmse", rmse)
            logged[mlflow.active_run().info.run_id] = rmse  # type: ignore[union-attr]

    client = MlflowClient(tracking_uri=MLFLOW_TRACKING_URI)
    runs = client.search_runs(
        experiment_ids="1",  # Experiment ID we want
        filter_string="metrics.rmse < 7",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=5,
        order_by=["metrics.rmse ASC"],
    )
    lines = [f"run id: {run.info.run_id}, rmse: {run.data.metrics['rmse']:.4f}" for run in runs]

    assert client.get_experiment_by_name("nyc-taxi-experiment").experiment_id == "1"
    under_seven = sorted((rmse, run_id) for run_id, rmse in logged.items() if rmse < 7)
    assert len(under_seven) == 6 and len(logged) == len(ALPHAS)
    assert [run.info.run_id for run in runs] == [run_id for _, run_id in under_seven[:5]]
    assert [run.data.metrics["rmse"] for run in runs] == [rmse for rmse, _ in under_seven[:5]]
    assert lines[0].startswith(f"run id: {under_seven[0][1]}, rmse: ")
    for run in runs:
        assert run.data.tags["developer"] == "Wenna"
        assert run.data.params["train-data-path"] == "./data/green_tripdata_2021-01.parquet"
        assert run.info.status == "FINISHED"
    assert [run.data.params["alpha"] for run in runs] == ["0.001", "0.01", "0.1", "0.5", "1"]


def test_wine_random_forest_seed(tracking_dir: Path) -> None:
    # Load wine dataset
    wine = load_wine()
    X = wine.data
    y = wine.target

    # Set the tracking URI
    mlflow.set_tracking_uri(str(tracking_dir))

    # Train test split
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.1, random_state=42)

    # Define the params for RF model
    max_depth = 5
    n_estimators = 10

    mlflow.set_experiment("Test-Exp1")
    with mlflow.start_run() as run:
        rf = RandomForestClassifier(max_depth=max_depth, n_estimators=n_estimators, random_state=42)
        rf.fit(X_train, y_train)
        y_pred = rf.predict(X_test)
        accuracy = accuracy_score(y_test, y_pred)
        mlflow.log_metric("accuracy", accuracy)
        mlflow.log_param("max_depth", max_depth)
        mlflow.log_param("n_estimators", n_estimators)

    stored = mlflow.get_run(run.info.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"max_depth": "5", "n_estimators": "10"}
    assert stored.data.metrics == {"accuracy": accuracy}
    assert 0.8 <= accuracy <= 1.0
    assert stored.info.experiment_id == mlflow.get_experiment_by_name("Test-Exp1").experiment_id


def test_experiment_by_id_and_artifact_seed(tracking_dir: Path, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=str(tracking_dir))
    experiment_id = client.create_experiment("nyc-new-brand-experiment_first")

    model = Lasso(alpha=0.1).fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0])
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(pickle.dumps(model))
    with mlflow.start_run(experiment_id=experiment_id):
        mlflow.log_param("alpha", 0.01)
        mlflow.log_metric("rmse", 2.56)
        mlflow.log_artifact(str(model_file), artifact_path="models/")

    frame = mlflow.search_runs(experiment_ids=[experiment_id])
    assert list(frame["metrics.rmse"]) == [2.56]
    run_id = frame["run_id"][0]
    listed = client.list_artifacts(run_id, "models")
    assert [f.path for f in listed] == ["models/model.pkl"]
    copy = Path(client.download_artifacts(run_id, "models/model.pkl", str(tmp_path / "dl")))
    restored = pickle.loads(copy.read_bytes())
    assert restored.predict([[3.0]]) == pytest.approx(model.predict([[3.0]]))
