"""The model registry: the seeds' walk-through on the local store and on a real MLflow server,
concurrent registration, stages, aliases, search, errors and the `mltrail models` commands."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Lasso

import mltrail
import mltrail.pyfunc
from mltrail import MlflowClient
from mltrail.cli import main as cli_main
from mltrail.entities import ViewType
from mltrail.exceptions import AlreadyExistsError, InvalidParameterError, NotFoundError

BACKENDS = ["local", "rest"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Sets the tracking URI to a local folder or the session's MLflow server."""
    if request.param == "local":
        mltrail.set_tracking_uri(str(tmp_path / "runs"))
        yield str(tmp_path / "runs")
    else:
        server = request.getfixturevalue("mlflow_server")
        mltrail.set_tracking_uri(server.url)
        yield server.url


def unique(prefix: str) -> str:
    """The server lives for the whole session: names must not collide between tests."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def taxi() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"trip_distance": rng.random(80) * 10, "hour": rng.integers(0, 24, 80)})
    y = 2.5 * X["trip_distance"].to_numpy() + 0.1 * X["hour"].to_numpy() + rng.random(80)
    return X, y


def train_runs(X: pd.DataFrame, y: np.ndarray, experiment: str) -> dict[str, Lasso]:
    """Three Lasso runs with an rmse metric and a logged model, as in the course notes."""
    mltrail.set_experiment(experiment)
    fitted = {}
    for alpha in (0.001, 0.5, 3.0):
        with mltrail.start_run() as run:
            model = Lasso(alpha=alpha).fit(X, y)
            rmse = float(np.sqrt(np.mean((model.predict(X) - y) ** 2)))
            mltrail.log_param("alpha", alpha)
            mltrail.log_metric("rmse", rmse)
            mltrail.sklearn.log_model(model, artifact_path="model")
            fitted[run.info.run_id] = model
    return fitted


# the seeds' walk-through ---------------------------------------------------------


def test_seed_registry_walk_through(backend: str, taxi: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = taxi
    experiment = unique("nyc-taxi-experiment")
    fitted = train_runs(X, y, experiment)
    model_name = "nyc-taxi-regressor" if not backend.startswith("http") else unique("nyc-taxi")

    client = MlflowClient(tracking_uri=backend)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs(
        experiment_ids=exp.experiment_id,
        filter_string="metrics.rmse < 100",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=5,
        order_by=["metrics.rmse ASC"],
    )
    best = runs[0]
    assert best.data.params["alpha"] == "0.001"
    run_id = best.info.run_id

    registered = mltrail.register_model(model_uri=f"runs:/{run_id}/model", name=model_name)
    assert registered.version == "1" and registered.run_id == run_id

    latest_versions = client.get_latest_versions(name=model_name)
    assert [(v.version, v.current_stage) for v in latest_versions] == [("1", "None")]

    model_version = 1
    new_stage = "Staging"
    moved = client.transition_model_version_stage(
        name=model_name, version=model_version, stage=new_stage, archive_existing_versions=False
    )
    assert moved.current_stage == "Staging"
    date = datetime.today().date()
    description = f"The model version {model_version} was transitioned to {new_stage} on {date}"
    updated = client.update_model_version(
        name=model_name, version=model_version, description=description
    )
    assert updated.description == description

    client.set_registered_model_alias(model_name, "champion", model_version)
    champion = client.get_model_version_by_alias(model_name, "champion")
    assert (champion.version, champion.current_stage) == ("1", "Staging")
    assert champion.description == description and "champion" in champion.aliases
    assert client.get_registered_model(model_name).aliases == {"champion": "1"}
    assert [v.version for v in client.get_latest_versions(model_name, stages=["Staging"])] == ["1"]

    expected = fitted[run_id].predict(X)
    loaded = mltrail.pyfunc.load_model(f"models:/{model_name}@champion")
    np.testing.assert_allclose(loaded.predict(X), expected)
    np.testing.assert_allclose(
        mltrail.sklearn.load_model(f"models:/{model_name}/Staging").predict(X), expected
    )
    np.testing.assert_allclose(
        mltrail.sklearn.load_model(f"models:/{model_name}/1").predict(X), expected
    )


def test_mlflow_reads_what_mltrail_logged_and_registered_on_a_server(
    mlflow_server, taxi: tuple[pd.DataFrame, np.ndarray]
) -> None:
    import mlflow.pyfunc
    import mlflow.sklearn

    X, y = taxi
    mltrail.set_tracking_uri(mlflow_server.url)
    fitted = train_runs(X, y, unique("mlflow-reads"))
    run_id, model = next(iter(fitted.items()))
    name = unique("served")
    mltrail.register_model(f"runs:/{run_id}/model", name)
    MlflowClient().set_registered_model_alias(name, "champion", 1)
    assert mltrail.flush(30), "the model files did not reach the server"

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        by_run = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
        np.testing.assert_allclose(by_run.predict(X), model.predict(X))
        by_alias = mlflow.sklearn.load_model(f"models:/{name}@champion")
        np.testing.assert_allclose(by_alias.predict(X), model.predict(X))
        version = mlflow.MlflowClient().get_model_version(name, "1")
        assert version.run_id == run_id
    finally:
        mlflow.set_tracking_uri(previous)


# versions under concurrency -----------------------------------------------------

_REGISTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import mltrail

    mltrail.set_tracking_uri(sys.argv[1])
    go = Path(sys.argv[2])
    deadline = time.monotonic() + 60
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    print(mltrail.register_model(sys.argv[3], "racer").version)
    """
)


def test_processes_registering_at_once_get_distinct_versions(
    tracking_dir: Path, taxi: tuple[pd.DataFrame, np.ndarray]
) -> None:
    X, y = taxi
    with mltrail.start_run() as run:
        mltrail.sklearn.log_model(Lasso().fit(X, y), "model")
    go = tracking_dir.parent / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _REGISTER,
                str(tracking_dir),
                str(go),
                f"runs:/{run.info.run_id}/model",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    time.sleep(0.5)  # let them import; the go file starts them together
    go.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert sorted(out.strip() for out, _ in outputs) == ["1", "2", "3", "4"]
    client = MlflowClient()
    versions = client.search_model_versions("name = 'racer'")
    assert sorted(v.version for v in versions) == ["1", "2", "3", "4"]
    assert [m.name for m in client.search_registered_models()] == ["racer"]


def test_lost_or_late_register_answers_make_one_version_each(
    mlflow_server: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    taxi: tuple[pd.DataFrame, np.ndarray],
) -> None:
    """The server registers the version but its answer is lost (dropped, or sent after
    the client's read timeout): the retry must find that version, not make another."""
    from faulty_proxy import FaultyProxy
    from remote_helpers import RemoteFactory

    X, y = taxi
    name = unique("lost-answers")
    factory = RemoteFactory(tmp_path / "spool", monkeypatch)
    try:
        with FaultyProxy(mlflow_server.url) as proxy:  # type: ignore[attr-defined]
            factory(proxy.url, timeout=3.0)
            mltrail.set_tracking_uri(proxy.url)
            mltrail.set_experiment(unique("lost-answers"))
            with mltrail.start_run() as run:
                mltrail.sklearn.log_model(Lasso().fit(X, y), "model")
            source = f"runs:/{run.info.run_id}/model"
            proxy.add("model-versions/create", ("status", 503, 1))  # not now: try again
            proxy.add("model-versions/create", "drop_after")
            first = mltrail.register_model(source, name)
            proxy.add("model-versions/create", ("delay", 4.0))  # past the 3 s read timeout
            second = mltrail.register_model(source, name)
            assert proxy.count("model-versions/create") == 3
    finally:
        factory.close()
    assert (first.version, second.version) == ("1", "2")
    server = MlflowClient(tracking_uri=mlflow_server.url)  # type: ignore[attr-defined]
    assert sorted(v.version for v in server.search_model_versions(f"name = '{name}'")) == [
        "1", "2"
    ]


# stages, aliases, deletion --------------------------------------------------------


@pytest.fixture
def three_versions(tracking_dir: Path, taxi: tuple[pd.DataFrame, np.ndarray]) -> MlflowClient:
    X, y = taxi
    with mltrail.start_run() as run:
        mltrail.sklearn.log_model(Lasso().fit(X, y), "model")
    for _ in range(3):
        mltrail.register_model(f"runs:/{run.info.run_id}/model", "m")
    return MlflowClient()


def test_archive_existing_versions(three_versions: MlflowClient) -> None:
    client = three_versions
    client.transition_model_version_stage("m", 1, "production")  # stage names are case-blind
    client.transition_model_version_stage("m", 2, "Production")
    stages = {v.version: v.current_stage for v in client.search_model_versions("name = 'm'")}
    assert stages == {"1": "Production", "2": "Production", "3": "None"}
    client.transition_model_version_stage("m", 3, "Production", archive_existing_versions=True)
    stages = {v.version: v.current_stage for v in client.search_model_versions("name = 'm'")}
    assert stages == {"1": "Archived", "2": "Archived", "3": "Production"}
    latest = client.get_latest_versions("m")
    assert [(v.current_stage, v.version) for v in latest] == [
        ("Production", "3"),
        ("Archived", "2"),
    ]
    with pytest.raises(InvalidParameterError, match="archive_existing_versions"):
        client.transition_model_version_stage("m", 1, "None", archive_existing_versions=True)
    with pytest.raises(InvalidParameterError, match="Invalid model version stage 'Live'"):
        client.transition_model_version_stage("m", 1, "Live")


def test_aliases_move_and_go_away_with_their_version(three_versions: MlflowClient) -> None:
    client = three_versions
    client.set_registered_model_alias("m", "champion", 1)
    client.set_registered_model_alias("m", "champion", "2")  # moves the alias
    client.set_registered_model_alias("m", "challenger", 3)
    assert client.get_model_version_by_alias("m", "champion").version == "2"
    assert client.get_model_version("m", 2).aliases == ("champion",)
    client.delete_registered_model_alias("m", "challenger")
    with pytest.raises(NotFoundError, match="challenger"):
        client.get_model_version_by_alias("m", "challenger")
    client.delete_model_version("m", 2)
    assert client.get_registered_model("m").aliases == {}
    for reserved in ("latest", "v2", "bad alias"):
        with pytest.raises(InvalidParameterError):
            client.set_registered_model_alias("m", reserved, 1)


def test_deleted_version_numbers_are_not_reused(three_versions: MlflowClient) -> None:
    client = three_versions
    source = client.get_model_version("m", 3).source
    client.delete_model_version("m", 3)
    with pytest.raises(NotFoundError, match="no version 3"):
        client.get_model_version("m", 3)
    assert client.create_model_version("m", source).version == "4"
    client.delete_registered_model("m")
    with pytest.raises(NotFoundError, match="'m'"):
        client.get_registered_model("m")


def test_search_and_tags(three_versions: MlflowClient) -> None:
    client = three_versions
    client.create_registered_model("other-model", tags={"team": "pricing"}, description="d")
    client.set_registered_model_tag("m", "team", "rides")
    client.set_model_version_tag("m", 2, "validated", "yes")
    assert [m.name for m in client.search_registered_models()] == ["m", "other-model"]
    assert [m.name for m in client.search_registered_models("name LIKE 'oth%'")] == ["other-model"]
    assert [m.name for m in client.search_registered_models("tags.team = 'rides'")] == ["m"]
    versions = client.search_model_versions("name = 'm' AND tags.validated = 'yes'")
    assert [v.version for v in versions] == ["2"]
    run_id = client.get_model_version("m", 1).run_id
    assert len(client.search_model_versions(f"run_id = '{run_id}'")) == 3
    first = client.search_registered_models(max_results=1)
    second = client.search_registered_models(max_results=1, page_token=first.token)
    assert [m.name for m in first + second] == ["m", "other-model"] and second.token is None
    with pytest.raises(mltrail.exceptions.FilterSyntaxError, match="unknown attribute 'owner'"):
        client.search_registered_models("owner = 'x'")


# the filter grammar, on both registries ------------------------------------------


@dataclass(frozen=True)
class Registered:
    client: MlflowClient
    prefix: str  # every name starts with it: the server's registry lives for the session
    run_id: str


@pytest.fixture(scope="module", params=BACKENDS)
def registered(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Registered:
    """Three models (two with versions) made through the public client, once per backend.

    Versions point at object-store URIs: a server takes those without a run's artifacts.
    """
    if request.param == "local":
        client = MlflowClient(str(tmp_path_factory.mktemp("grammar") / "runs"))
    else:
        client = MlflowClient(request.getfixturevalue("mlflow_server").url)
    prefix = unique("g")
    run_id = client.create_run(client.create_experiment(prefix)).info.run_id
    for name, team in (("nyc-taxi", "rides"), ("NYC-bikes", "rides"), ("boston", "pricing")):
        tags = {"team": team} | ({"owner id": "ana"} if name == "nyc-taxi" else {})
        client.create_registered_model(f"{prefix}-{name}", tags=tags)
    for v in range(3):
        client.create_model_version(
            f"{prefix}-nyc-taxi", f"s3://bucket/{prefix}/m{v}", run_id=run_id if v < 2 else None,
            tags={"stage": str(v)},
        )
        time.sleep(0.01)  # distinct timestamps, so orders on them are defined
    client.create_model_version(f"{prefix}-boston", f"s3://other/{prefix}/b", run_id=None)
    return Registered(client, prefix, run_id)


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("name LIKE '{p}%'", ["NYC-bikes", "boston", "nyc-taxi"]),
        ("name = '{p}-boston'", ["boston"]),
        ('name = "{p}-boston"', ["boston"]),
        ("name != '{p}-boston' AND name LIKE '{p}%'", ["NYC-bikes", "nyc-taxi"]),
        ("name ILIKE '{p}-nyc%'", ["NYC-bikes", "nyc-taxi"]),
        ("name LIKE '{p}-nyc%'", ["nyc-taxi"]),
        ("name IN ('{p}-boston', '{p}-nyc-taxi')", ["boston", "nyc-taxi"]),
        ("name NOT IN ('{p}-boston') AND name LIKE '{p}%'", ["NYC-bikes", "nyc-taxi"]),
        ("name LIKE '{p}%' AND tags.team = 'rides'", ["NYC-bikes", "nyc-taxi"]),
        ("name LIKE '{p}%' and tag.team != 'rides'", ["boston"]),
        ("name LIKE '{p}%' AND tags.team LIKE 'pri%'", ["boston"]),
        ("name LIKE '{p}%' AND tags.`owner id` = 'ana'", ["nyc-taxi"]),
        ("attribute.name = '{p}-boston'", ["boston"]),
    ],
)
def test_registered_model_filters(
    registered: Registered, filter_string: str, expected: list[str]
) -> None:
    found = registered.client.search_registered_models(filter_string.format(p=registered.prefix))
    assert [m.name.removeprefix(registered.prefix + "-") for m in found] == expected


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("name = '{p}-nyc-taxi'", ["nyc-taxi/3", "nyc-taxi/2", "nyc-taxi/1"]),
        ("name IN ('{p}-boston')", ["boston/1"]),
        ("name ILIKE '{p}-NYC-TAXI'", ["nyc-taxi/3", "nyc-taxi/2", "nyc-taxi/1"]),
        ("run_id = '{r}'", ["nyc-taxi/2", "nyc-taxi/1"]),
        ("run_id IN ('{r}')", ["nyc-taxi/2", "nyc-taxi/1"]),
        ("run_id != '{r}' AND name LIKE '{p}%'", ["boston/1", "nyc-taxi/3"]),  # '' != id
        ("source_path = 's3://bucket/{p}/m1'", ["nyc-taxi/2"]),
        ("source_path LIKE 's3://bucket/{p}/%'", ["nyc-taxi/3", "nyc-taxi/2", "nyc-taxi/1"]),
        ("version_number = 2 AND name LIKE '{p}%'", ["nyc-taxi/2"]),
        ("version_number = '2' AND name LIKE '{p}%'", ["nyc-taxi/2"]),  # a server takes it
        ("version_number >= 2 AND name LIKE '{p}%'", ["nyc-taxi/3", "nyc-taxi/2"]),
        ("name LIKE '{p}%' AND version_number != 1", ["nyc-taxi/3", "nyc-taxi/2"]),
        ("tags.stage = '1' AND name LIKE '{p}%'", ["nyc-taxi/2"]),
        ("tag.stage LIKE '%' AND name LIKE '{p}%'", ["nyc-taxi/3", "nyc-taxi/2", "nyc-taxi/1"]),
    ],
)
def test_model_version_filters(
    registered: Registered, filter_string: str, expected: list[str]
) -> None:
    found = registered.client.search_model_versions(
        filter_string.format(p=registered.prefix, r=registered.run_id)
    )
    shown = [f"{v.name.removeprefix(registered.prefix + '-')}/{v.version}" for v in found]
    assert shown == expected


@pytest.mark.parametrize(
    ("models", "order_by", "expected"),
    [
        (True, ["name DESC"], ["nyc-taxi", "boston", "NYC-bikes"]),
        (True, ["last_updated_timestamp"], ["NYC-bikes", "nyc-taxi", "boston"]),
        (True, ["timestamp DESC"], ["boston", "nyc-taxi", "NYC-bikes"]),  # the last update
        (False, [], ["boston/1", "nyc-taxi/3", "nyc-taxi/2", "nyc-taxi/1"]),  # last update first
        (False, ["name DESC"], ["nyc-taxi/3", "nyc-taxi/2", "nyc-taxi/1", "boston/1"]),
        (False, ["version_number ASC"], ["boston/1", "nyc-taxi/1", "nyc-taxi/2", "nyc-taxi/3"]),
        (False, ["creation_timestamp"], ["nyc-taxi/1", "nyc-taxi/2", "nyc-taxi/3", "boston/1"]),
        (False, ["name", "version_number"], ["boston/1", "nyc-taxi/1", "nyc-taxi/2", "nyc-taxi/3"]),
    ],
)
def test_registry_order_by(
    registered: Registered, models: bool, order_by: list[str], expected: list[str]
) -> None:
    client, p = registered.client, registered.prefix
    if models:
        found = client.search_registered_models(f"name LIKE '{p}%'", order_by=order_by)
        shown = [m.name.removeprefix(p + "-") for m in found]
    else:
        versions = client.search_model_versions(f"name LIKE '{p}%'", order_by=order_by)
        shown = [f"{v.name.removeprefix(p + '-')}/{v.version}" for v in versions]
    assert shown == expected


# What a server refuses with INVALID_PARAMETER_VALUE. Left out: `tags.x IS NULL` and an
# order_by naming a key twice, which a 3.17 server fails on with HTTP 500 (the local
# registry refuses both).
@pytest.mark.parametrize(
    ("models", "filter_string", "order_by"),
    [
        (True, "name < 'a'", None),
        (True, "name = x", None),
        (True, "run_id = 'x'", None),  # models have a name, and tags
        (True, "attributes.name = 'x'", None),  # the registry says attribute, not attributes
        (True, "tags.team IN ('rides')", None),
        (True, "name LIKE 'x%' OR name LIKE 'y%'", None),
        (True, None, ["creation_timestamp DESC"]),
        (True, None, ["tags.team"]),
        (True, None, ["name UP"]),
        (False, "metrics.a > 1", None),
        (False, "current_stage = 'None'", None),
        (False, "source_path IN ('x')", None),
        (False, "version_number IN (1, 2)", None),
        (False, None, ["run_id"]),
    ],
)
def test_registry_refuses_what_a_server_refuses(
    registered: Registered, models: bool, filter_string: str | None, order_by: list[str] | None
) -> None:
    search = (
        registered.client.search_registered_models
        if models
        else registered.client.search_model_versions
    )
    with pytest.raises(InvalidParameterError):
        search(filter_string, order_by=order_by)


# errors ----------------------------------------------------------------------------


def test_unknown_name_version_and_alias_are_clear_errors(
    backend: str, taxi: tuple[pd.DataFrame, np.ndarray]
) -> None:
    X, y = taxi
    client = MlflowClient()
    name = unique("known")
    missing = unique("missing")
    with mltrail.start_run() as run:
        mltrail.sklearn.log_model(Lasso().fit(X, y), "model")
    mltrail.register_model(f"runs:/{run.info.run_id}/model", name)

    with pytest.raises(NotFoundError, match=missing) as caught:
        client.get_registered_model(missing)
    assert caught.value.resource_id == missing
    with pytest.raises(NotFoundError, match="no version 7") as caught:
        client.get_model_version(name, 7)
    assert caught.value.resource_id == f"{name}/7"
    with pytest.raises(NotFoundError, match="no alias 'ghost'") as caught:
        client.get_model_version_by_alias(name, "ghost")
    assert caught.value.resource_id == f"{name}@ghost"
    with pytest.raises(NotFoundError, match=missing):
        mltrail.pyfunc.load_model(f"models:/{missing}/1")
    with pytest.raises(NotFoundError, match="ghost"):
        mltrail.pyfunc.load_model(f"models:/{name}@ghost")
    with pytest.raises(NotFoundError, match="no version in stage 'Production'"):
        mltrail.pyfunc.load_model(f"models:/{name}/Production")
    with pytest.raises(InvalidParameterError, match="positive integer"):
        client.get_model_version(name, "one")
    with pytest.raises(AlreadyExistsError):
        client.create_registered_model(name)
    # The run's model is named: in its artifacts, or (MLflow 3 server) as a LoggedModel.
    with pytest.raises(
        NotFoundError,
        match=r"no MLmodel file under 'models' \(its artifacts: (model/|none; "
        r"its logged models: model\))",
    ):
        mltrail.register_model(f"runs:/{run.info.run_id}/models", name)
    with pytest.raises(InvalidParameterError, match="cannot contain"):
        client.create_registered_model("a/b")


# the command line --------------------------------------------------------------------


def test_models_list_and_show_commands(
    three_versions: MlflowClient, tracking_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = three_versions
    client.transition_model_version_stage("m", 2, "Production")
    client.set_registered_model_alias("m", "champion", 2)
    client.update_model_version("m", 2, "best so far")

    assert cli_main(["--tracking-uri", str(tracking_dir), "models", "list"]) == 0
    listing = capsys.readouterr().out
    row = next(line for line in listing.splitlines() if line.startswith("m "))
    assert row.split()[:4] == ["m", "3", "Production:", "2"]
    assert "@champion -> 2" in row

    assert cli_main(["models", "show", "m", "--tracking-uri", str(tracking_dir)]) == 0
    shown = capsys.readouterr().out
    version_rows = [
        line.split()
        for line in shown.splitlines()
        if line.strip()[:1].isdigit() and "runs:/" in line
    ]
    assert [r[0] for r in version_rows] == ["3", "2", "1"]
    assert version_rows[1][1:3] == ["Production", "@champion"] and "best so far" in shown

    assert cli_main(["--tracking-uri", str(tracking_dir), "models", "show", "nope"]) == 1
    assert "Registered model 'nope' does not exist" in capsys.readouterr().err
