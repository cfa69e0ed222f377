"""The Store contract, as a test suite any store can run.

Every test goes through `TrackingClient`, so it holds for whatever implements the
`Store` protocol: mltrail runs it over its local store and over a real MLflow
server, and a third-party store (registered in the `mltrail.stores` entry-point
group) runs the same suite. The assertions use only what every backend promises:
ids are strings, layouts are not looked at, experiment names are unique per test
(a store may live for the whole session).

Use it from a test module of your own (pytest collects what the import brings)::

    import pytest
    from mltrail import TrackingClient
    from mltrail.testing.store_contract import *  # noqa: F403

    @pytest.fixture(scope="module")
    def client(tmp_path_factory):
        return TrackingClient(store=MyStore(tmp_path_factory.mktemp("store")))

Requires pytest (it is not a dependency of mltrail itself).
"""

from __future__ import annotations

import math
import os
import re
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from mltrail import TrackingClient
from mltrail.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    LifecycleStage,
    Metric,
    Param,
    Run,
    RunStatus,
    RunTag,
    ViewType,
)
from mltrail.exceptions import (
    AlreadyExistsError,
    InvalidParameterError,
    MltrailError,
    NotFoundError,
)

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
UNKNOWN_RUN = "0123456789abcdef0123456789abcdef"
UNKNOWN_EXPERIMENT = "987654321"


def unique(prefix: str = "contract") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def experiment_id(client: TrackingClient) -> str:
    return client.create_experiment(unique())


@pytest.fixture
def run_id(client: TrackingClient, experiment_id: str) -> str:
    return client.create_run(experiment_id, run_name="subject").info.run_id


# experiments ---------------------------------------------------------------


def test_create_and_get_experiment(client: TrackingClient) -> None:
    name = unique()
    exp_id = client.create_experiment(name, tags={"team": "vision"})
    assert isinstance(exp_id, str) and exp_id

    by_id = client.get_experiment(exp_id)
    by_name = client.get_experiment_by_name(name)
    assert by_name is not None
    for experiment in (by_id, by_name):
        assert experiment.experiment_id == exp_id
        assert experiment.name == name
        assert experiment.lifecycle_stage == LifecycleStage.ACTIVE
        assert experiment.tags.get("team") == "vision"
        assert isinstance(experiment.artifact_location, str) and experiment.artifact_location


def test_experiment_by_unknown_name_is_none(client: TrackingClient) -> None:
    assert client.get_experiment_by_name(unique("missing")) is None


def test_duplicate_experiment_name_is_rejected(client: TrackingClient) -> None:
    name = unique()
    first = client.create_experiment(name)
    with pytest.raises(AlreadyExistsError) as excinfo:
        client.create_experiment(name)
    assert name in str(excinfo.value)
    assert client.get_experiment_by_name(name).experiment_id == first  # type: ignore[union-attr]


def test_search_experiments_lists_created_ones(client: TrackingClient) -> None:
    names = [unique(), unique()]
    ids = [client.create_experiment(n) for n in names]
    found = {e.experiment_id: e.name for e in client.search_experiments(ViewType.ACTIVE_ONLY)}
    for name, exp_id in zip(names, ids, strict=True):
        assert found.get(exp_id) == name
    assert all(isinstance(k, str) for k in found)
    assert found.get("0") == "Default"


def test_unknown_experiment_id_names_the_id(client: TrackingClient) -> None:
    with pytest.raises(NotFoundError) as excinfo:
        client.get_experiment(UNKNOWN_EXPERIMENT)
    assert UNKNOWN_EXPERIMENT in str(excinfo.value)
    with pytest.raises(NotFoundError) as excinfo:
        client.create_run(UNKNOWN_EXPERIMENT)
    assert UNKNOWN_EXPERIMENT in str(excinfo.value)


# runs ----------------------------------------------------------------------


def test_create_run_with_tags(client: TrackingClient, experiment_id: str) -> None:
    run = client.create_run(
        experiment_id, start_time=1_700_000_000_123, tags={"owner": "ana"}, run_name="first"
    )
    info = run.info
    assert RUN_ID.match(info.run_id)
    assert info.experiment_id == experiment_id
    assert info.run_name == "first"
    assert info.status == RunStatus.RUNNING
    assert info.start_time == 1_700_000_000_123
    assert info.end_time is None
    assert info.lifecycle_stage == LifecycleStage.ACTIVE
    assert info.artifact_uri

    fetched = client.get_run(info.run_id)
    assert fetched.info.run_id == info.run_id
    assert fetched.info.run_name == "first"
    assert fetched.data.tags["owner"] == "ana"
    assert fetched.data.tags["mlflow.runName"] == "first"
    assert fetched.data.tags["mlflow.user"] == fetched.info.user_id != ""
    assert fetched.data.tags["mlflow.source.type"] == "LOCAL"
    assert fetched.data.params == {} and fetched.data.metrics == {}


def test_log_batch_params_metrics_tags(client: TrackingClient, run_id: str) -> None:
    client.log_batch(
        run_id,
        metrics=[Metric("rmse", 6.5, 1_000, 0), Metric("r2", 0.75, 1_000, 0)],
        params=[Param("alpha", 0.01), Param("solver", "lbfgs")],
        tags=[RunTag("developer", "ana"), RunTag("stage", 3)],
    )
    data = client.get_run(run_id).data
    assert data.metrics == {"rmse": 6.5, "r2": 0.75}
    assert data.params == {"alpha": "0.01", "solver": "lbfgs"}
    assert data.tags["developer"] == "ana"
    assert data.tags["stage"] == "3"


def test_log_batch_over_server_limits_is_split(client: TrackingClient, run_id: str) -> None:
    params = [Param(f"p{i:03d}", i) for i in range(150)]  # a server takes 100 a request
    metrics = [Metric("loss", float(i), 1_000 + i, i) for i in range(1_200)]
    client.log_batch(run_id, metrics=metrics, params=params)
    # A remote store may still be sending this much when a read's short wait ends.
    assert client.store.flush(60)
    run = client.get_run(run_id)
    assert len(run.data.params) == 150 and run.data.params["p149"] == "149"
    assert run.data.metrics["loss"] == 1_199.0
    assert len(client.get_metric_history(run_id, "loss")) == 1_200


def _history(client: TrackingClient, run_id: str, key: str) -> list[tuple[float, int, int]]:
    points = client.get_metric_history(run_id, key)
    assert all(p.key == key for p in points)
    return sorted((p.value, p.timestamp, p.step) for p in points)


def test_metric_history_keeps_steps_and_timestamps(client: TrackingClient, run_id: str) -> None:
    client.log_metric(run_id, "loss", 0.9, timestamp=1_000, step=0)
    client.log_metric(run_id, "loss", 0.5, timestamp=2_000, step=1)
    client.log_metric(run_id, "loss", 0.25, timestamp=3_000, step=2)
    client.log_metric(run_id, "other", 7.0, timestamp=1_500, step=0)
    assert _history(client, run_id, "loss") == [(0.25, 3_000, 2), (0.5, 2_000, 1), (0.9, 1_000, 0)]
    assert _history(client, run_id, "other") == [(7.0, 1_500, 0)]
    assert client.get_metric_history(run_id, "never-logged") == []


def test_latest_metric_is_the_highest_step(client: TrackingClient, run_id: str) -> None:
    client.log_metric(run_id, "acc", 0.9, timestamp=5_000, step=3)
    client.log_metric(run_id, "acc", 0.1, timestamp=6_000, step=1)  # later, but a lower step
    client.log_metric(run_id, "acc", 0.5, timestamp=4_000, step=2)
    assert client.get_run(run_id).data.metrics["acc"] == 0.9


def test_nan_and_infinite_metrics_round_trip(client: TrackingClient, run_id: str) -> None:
    client.log_metric(run_id, "nan", math.nan, timestamp=1, step=0)
    client.log_metric(run_id, "pinf", math.inf, timestamp=1, step=0)
    client.log_metric(run_id, "ninf", -math.inf, timestamp=1, step=0)
    metrics = client.get_run(run_id).data.metrics
    assert math.isnan(metrics["nan"])
    # a SQL-backed server stores infinities as the largest finite doubles
    assert metrics["pinf"] >= sys.float_info.max
    assert metrics["ninf"] <= -sys.float_info.max
    assert math.isnan(client.get_metric_history(run_id, "nan")[0].value)


def test_param_with_another_value_is_rejected(client: TrackingClient, run_id: str) -> None:
    client.log_param(run_id, "alpha", 0.1)
    with pytest.raises(InvalidParameterError) as excinfo:
        client.log_param(run_id, "alpha", 0.2)
    assert "alpha" in str(excinfo.value)
    assert client.get_run(run_id).data.params["alpha"] == "0.1"


def test_param_relogged_with_the_same_value_is_fine(client: TrackingClient, run_id: str) -> None:
    client.log_param(run_id, "alpha", 0.1)
    client.log_param(run_id, "alpha", "0.1")
    client.log_batch(run_id, params=[Param("alpha", 0.1), Param("beta", 2)])
    assert client.get_run(run_id).data.params == {"alpha": "0.1", "beta": "2"}


def test_tags_overwrite_and_delete(client: TrackingClient, run_id: str) -> None:
    client.set_tag(run_id, "stage", "draft")
    client.set_tag(run_id, "stage", "final")
    client.set_tag(run_id, "keep", "yes")
    assert client.get_run(run_id).data.tags["stage"] == "final"

    client.delete_tag(run_id, "stage")
    tags = client.get_run(run_id).data.tags
    assert "stage" not in tags and tags["keep"] == "yes"
    with pytest.raises(NotFoundError):
        client.delete_tag(run_id, "stage")


@pytest.mark.parametrize("status", [RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED])
def test_set_terminated(client: TrackingClient, run_id: str, status: str) -> None:
    info = client.set_terminated(run_id, status, end_time=1_800_000_000_000)
    assert info.status == status
    run = client.get_run(run_id)
    assert run.info.status == status
    assert run.info.end_time == 1_800_000_000_000


def test_unknown_status_is_rejected(client: TrackingClient, run_id: str) -> None:
    with pytest.raises(InvalidParameterError):
        client.set_terminated(run_id, "DONE")
    assert client.get_run(run_id).info.status == RunStatus.RUNNING


def test_delete_and_restore_run_with_view_types(client: TrackingClient, experiment_id: str) -> None:
    kept = client.create_run(experiment_id, run_name="kept").info.run_id
    gone = client.create_run(experiment_id, run_name="gone").info.run_id

    def ids(view: int) -> set[str]:
        return {r.info.run_id for r in client.search_runs([experiment_id], run_view_type=view)}

    client.delete_run(gone)
    assert client.get_run(gone).info.lifecycle_stage == LifecycleStage.DELETED
    assert ids(ViewType.ACTIVE_ONLY) == {kept}
    assert ids(ViewType.DELETED_ONLY) == {gone}
    assert ids(ViewType.ALL) == {kept, gone}
    with pytest.raises(MltrailError):
        client.log_metric(gone, "m", 1.0)

    client.restore_run(gone)
    assert client.get_run(gone).info.lifecycle_stage == LifecycleStage.ACTIVE
    assert ids(ViewType.ACTIVE_ONLY) == {kept, gone}
    assert ids(ViewType.DELETED_ONLY) == set()
    client.log_metric(gone, "m", 1.0)
    assert client.get_run(gone).data.metrics == {"m": 1.0}


def test_unknown_run_id_names_the_id(client: TrackingClient, experiment_id: str) -> None:
    for call in (
        lambda: client.get_run(UNKNOWN_RUN),
        lambda: client.log_metric(UNKNOWN_RUN, "m", 1.0),
        lambda: client.log_param(UNKNOWN_RUN, "p", 1),
        lambda: client.set_terminated(UNKNOWN_RUN),
    ):
        with pytest.raises(NotFoundError) as excinfo:
            call()
        assert UNKNOWN_RUN in str(excinfo.value)


# search --------------------------------------------------------------------

# name, start offset, rmse, `val-loss`, alpha, model tag (None = no tag), status
SEARCH_RUNS = [
    ("lasso-a", 1, 3.0, 0.5, "0.01", "lasso", RunStatus.FINISHED),
    ("lasso-b", 2, 5.5, 0.7, "0.1", "lasso", RunStatus.FINISHED),
    ("xgb-a", 3, 7.0, 0.9, "0.3", "xgboost", RunStatus.FAILED),
    ("xgb-b", 4, 9.25, 1.5, "1.0", "XGB-dart", RunStatus.FINISHED),
    ("plain", 5, None, None, None, None, RunStatus.KILLED),
]
BASE_TIME = 1_700_000_000_000
# run name -> the datasets it read: (name, digest, context)
SEARCH_DATASETS = {
    "lasso-a": [("taxi-2023", "d1a5", "training"), ("taxi-2024", "d2b6", "evaluation")],
    "xgb-a": [("bikes", "e3c7", "training")],
}


@dataclass(frozen=True)
class Searchable:
    experiment_id: str
    ids: dict[str, str]  # run name -> run id


@pytest.fixture(scope="module")
def searchable(client: TrackingClient) -> Searchable:
    """The runs of SEARCH_RUNS in a fresh experiment, shared by the read-only search tests."""
    experiment_id = client.create_experiment(unique("search"))
    ids = {}
    for name, offset, rmse, val_loss, alpha, model, status in SEARCH_RUNS:
        tags = {"model": model} if model is not None else {}
        if name.startswith("lasso"):
            tags["owner id"] = "ana"  # a key only a quoted form can name
        run = client.create_run(
            experiment_id, start_time=BASE_TIME + offset * 1000, tags=tags, run_name=name
        )
        metrics = [] if rmse is None else [Metric("rmse", rmse, 1, 0)]
        if val_loss is not None:
            metrics.append(Metric("val-loss", val_loss, 1, 0))
        params = [] if alpha is None else [Param("alpha", alpha)]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        inputs = [
            DatasetInput(
                Dataset(data_name, digest, "local", f'{{"uri": "/data/{data_name}"}}'),
                (InputTag("mlflow.data.context", context),),
            )
            for data_name, digest, context in SEARCH_DATASETS.get(name, [])
        ]
        if inputs:
            client.log_inputs(run.info.run_id, inputs)
        client.set_terminated(run.info.run_id, status, end_time=BASE_TIME + offset * 1000 + 500)
        ids[name] = run.info.run_id
    return Searchable(experiment_id, ids)


def _names(runs: list[Run]) -> list[str]:
    return [r.info.run_name for r in runs]


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("metrics.rmse < 7", {"lasso-a", "lasso-b"}),
        ("metrics.rmse <= 7", {"lasso-a", "lasso-b", "xgb-a"}),
        ("metrics.rmse > 5.5", {"xgb-a", "xgb-b"}),
        ("metrics.rmse >= 5.5", {"lasso-b", "xgb-a", "xgb-b"}),
        ("metrics.rmse = 9.25", {"xgb-b"}),
        ("metrics.rmse != 3", {"lasso-b", "xgb-a", "xgb-b"}),
        ("metrics.`val-loss` < 0.8", {"lasso-a", "lasso-b"}),
        ("params.alpha = '0.1'", {"lasso-b"}),
        ("params.alpha != '0.1'", {"lasso-a", "xgb-a", "xgb-b"}),
        ("params.alpha LIKE '0.%'", {"lasso-a", "lasso-b", "xgb-a"}),
        ("params.alpha IS NULL", {"plain"}),
        ("params.alpha IS NOT NULL", {"lasso-a", "lasso-b", "xgb-a", "xgb-b"}),
        ("tags.model = 'lasso'", {"lasso-a", "lasso-b"}),
        ("tags.model != 'lasso'", {"xgb-a", "xgb-b"}),
        ("tags.model LIKE 'xgb%'", {"xgb-a"}),
        ("tags.model ILIKE 'xgb%'", {"xgb-a", "xgb-b"}),
        ("tags.model IS NULL", {"plain"}),
        ("tags.model IS NOT NULL", {"lasso-a", "lasso-b", "xgb-a", "xgb-b"}),
        ("attributes.status = 'FINISHED'", {"lasso-a", "lasso-b", "xgb-b"}),
        ("attributes.status != 'FINISHED'", {"xgb-a", "plain"}),
        ("attributes.run_name LIKE 'xgb-%'", {"xgb-a", "xgb-b"}),
        ("attributes.run_name ILIKE 'LASSO%'", {"lasso-a", "lasso-b"}),
        (f"attributes.start_time > {BASE_TIME + 3000}", {"xgb-b", "plain"}),
        (f"attributes.start_time <= {BASE_TIME + 2000}", {"lasso-a", "lasso-b"}),
        ("metrics.rmse < 8 and params.alpha = '0.01'", {"lasso-a"}),
        ("metrics.rmse < 8 and tags.model LIKE 'xgb%'", {"xgb-a"}),
        ("", {"lasso-a", "lasso-b", "xgb-a", "xgb-b", "plain"}),
    ],
)
def test_search_filters(
    client: TrackingClient, searchable: Searchable, filter_string: str, expected: set[str]
) -> None:
    runs = client.search_runs([searchable.experiment_id], filter_string)
    assert set(_names(runs)) == expected
    assert runs.token is None


ALL_SEARCH_RUNS = {"lasso-a", "lasso-b", "xgb-a", "xgb-b", "plain"}


# MLflow's filter grammar beyond entity prefixes: each case as an MLflow server answers it.
@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        # bare attribute names, and the other spellings a server takes
        ("status = 'FINISHED'", {"lasso-a", "lasso-b", "xgb-b"}),
        ("status != 'FINISHED'", {"xgb-a", "plain"}),
        ("run_name = 'plain'", {"plain"}),
        ('run_name = "plain"', {"plain"}),
        ("run_name LIKE 'xgb_a'", {"xgb-a"}),
        ("run_name ILIKE 'XGB%'", {"xgb-a", "xgb-b"}),
        ("`Run name` = 'plain'", {"plain"}),
        ("attributes.`Run name` = 'lasso-b'", {"lasso-b"}),
        (f"start_time > {BASE_TIME + 3000}", {"xgb-b", "plain"}),
        (f"created >= {BASE_TIME + 4000}", {"xgb-b", "plain"}),
        (f"end_time < {BASE_TIME + 2000}", {"lasso-a"}),
        (f"end_time = {BASE_TIME + 2500}", {"lasso-b"}),
        ("user_id LIKE '%'", ALL_SEARCH_RUNS),
        ("artifact_uri LIKE '%'", ALL_SEARCH_RUNS),
        ("run.status = 'KILLED'", {"plain"}),
        ("attr.status = 'FAILED'", {"xgb-a"}),
        ("status = 'finished'", set()),  # string comparisons are case-sensitive
        # prefixes in their singular and plural forms
        ("metric.rmse = 3", {"lasso-a"}),
        ("param.alpha = '0.3'", {"xgb-a"}),
        ("parameters.alpha = '1.0'", {"xgb-b"}),
        ("tag.model = 'xgboost'", {"xgb-a"}),
        # numeric literals
        ("metrics.rmse > -1", {"lasso-a", "lasso-b", "xgb-a", "xgb-b"}),
        ("metrics.rmse < 5.5e0", {"lasso-a"}),
        ("metrics.`val-loss` <= .7", {"lasso-a", "lasso-b"}),
        # quoted keys and values
        ("tags.`owner id` = 'ana'", {"lasso-a", "lasso-b"}),
        ('tags."owner id" = "ana"', {"lasso-a", "lasso-b"}),
        ("tags.`owner id` IS NULL", {"xgb-a", "xgb-b", "plain"}),
        ("metrics.\"val-loss\" > 1", {"xgb-b"}),
        ('params.alpha LIKE "0.%"', {"lasso-a", "lasso-b", "xgb-a"}),
        # LIKE and ILIKE: % and _ wildcards over the whole value
        ("tags.model LIKE '%o'", {"lasso-a", "lasso-b"}),
        ("tags.model LIKE 'lass_'", {"lasso-a", "lasso-b"}),
        ("tags.model LIKE 'LASSO'", set()),
        ("tags.model ILIKE 'LASSO'", {"lasso-a", "lasso-b"}),
        ("tags.model ILIKE '%dart'", {"xgb-b"}),
        ("params.alpha ILIKE '1%'", {"xgb-b"}),
        # datasets: a clause holds when any of the run's datasets satisfies it
        ("datasets.name = 'bikes'", {"xgb-a"}),
        ("datasets.name LIKE 'taxi-%'", {"lasso-a"}),
        ("datasets.name IN ('bikes', 'taxi-2024')", {"lasso-a", "xgb-a"}),
        ("datasets.digest = 'd2b6'", {"lasso-a"}),
        ("datasets.context = 'evaluation'", {"lasso-a"}),
        ("datasets.context IN ('training')", {"lasso-a", "xgb-a"}),
        ("datasets.name = 'taxi-2023' AND datasets.context = 'evaluation'", {"lasso-a"}),
        ("dataset.name ILIKE 'BIKES'", {"xgb-a"}),
        ("datasets.name != 'bikes'", {"lasso-a"}),  # runs without datasets never match
        ("datasets.context NOT IN ('training')", {"lasso-a"}),
        # AND in any case; a trailing AND is ignored by a server
        ("status = 'FINISHED' and tags.model LIKE 'lasso' AND metrics.rmse > 4", {"lasso-b"}),
        ("metrics.rmse < 4 AND", {"lasso-a"}),
    ],
)
def test_search_grammar(
    client: TrackingClient, searchable: Searchable, filter_string: str, expected: set[str]
) -> None:
    assert set(_names(client.search_runs([searchable.experiment_id], filter_string))) == expected


# What an MLflow server refuses (INVALID_PARAMETER_VALUE), so a store must refuse it too.
@pytest.mark.parametrize(
    "filter_string",
    [
        "metrics.rmse < 7 OR metrics.rmse > 8",  # only AND
        "metrics.rmse IS NULL",  # IS NULL is for params and tags
        "status IS NOT NULL",
        "status IN ('FINISHED')",  # IN is for run_id (and datasets)
        "params.alpha IN ('0.1')",
        "params.alpha = 0.1",  # params, tags and string attributes take quoted values
        "status = FINISHED",
        "metrics.rmse = '3'",  # metrics and times take numbers
        "start_time > '1700000000000'",
        "metrics.rmse LIKE '3%'",
        "lifecycle_stage = 'active'",  # not a searchable attribute
        "nosuch = 'x'",
        "foo.bar = 'x'",
        "datasets.size = 'x'",
        "(metrics.rmse < 5)",
    ],
)
def test_search_refuses_what_a_server_refuses(
    client: TrackingClient, searchable: Searchable, filter_string: str
) -> None:
    with pytest.raises(InvalidParameterError):
        client.search_runs([searchable.experiment_id], filter_string)


def test_search_by_run_id(client: TrackingClient, searchable: Searchable) -> None:
    experiment_id, ids = searchable.experiment_id, searchable.ids
    found = client.search_runs([experiment_id], f"attributes.run_id = '{ids['xgb-a']}'")
    assert _names(found) == ["xgb-a"]
    pair = f"('{ids['lasso-a']}', '{ids['plain']}')"
    found = client.search_runs([experiment_id], f"attributes.run_id IN {pair}")
    assert set(_names(found)) == {"lasso-a", "plain"}
    found = client.search_runs([experiment_id], f"attributes.run_id NOT IN {pair}")
    assert set(_names(found)) == {"lasso-b", "xgb-a", "xgb-b"}
    found = client.search_runs([experiment_id], f"run_id IN {pair} AND status = 'FINISHED'")
    assert _names(found) == ["lasso-a"]


def test_malformed_filter_is_an_error(client: TrackingClient, experiment_id: str) -> None:
    with pytest.raises(InvalidParameterError):
        client.search_runs([experiment_id], "metrics.rmse <")


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        # newest first when no order is given
        ([], ["plain", "xgb-b", "xgb-a", "lasso-b", "lasso-a"]),
        (["metrics.rmse ASC"], ["lasso-a", "lasso-b", "xgb-a", "xgb-b", "plain"]),
        (["metrics.rmse DESC"], ["xgb-b", "xgb-a", "lasso-b", "lasso-a", "plain"]),
        (["metrics.rmse"], ["lasso-a", "lasso-b", "xgb-a", "xgb-b", "plain"]),
        (["params.alpha DESC"], ["xgb-b", "xgb-a", "lasso-b", "lasso-a", "plain"]),
        (["attributes.start_time ASC"], ["lasso-a", "lasso-b", "xgb-a", "xgb-b", "plain"]),
        (["attributes.start_time DESC"], ["plain", "xgb-b", "xgb-a", "lasso-b", "lasso-a"]),
        (
            ["tags.model ASC", "metrics.rmse DESC"],
            ["xgb-b", "lasso-b", "lasso-a", "xgb-a", "plain"],
        ),
        (["attributes.status ASC"], ["xgb-a", "xgb-b", "lasso-b", "lasso-a", "plain"]),
        # bare attributes, MLflow's other spellings, quoted keys, several keys
        (["start_time DESC"], ["plain", "xgb-b", "xgb-a", "lasso-b", "lasso-a"]),
        (["start_time"], ["lasso-a", "lasso-b", "xgb-a", "xgb-b", "plain"]),
        (["created ASC"], ["lasso-a", "lasso-b", "xgb-a", "xgb-b", "plain"]),
        (["end_time desc"], ["plain", "xgb-b", "xgb-a", "lasso-b", "lasso-a"]),
        (["run_name DESC"], ["xgb-b", "xgb-a", "plain", "lasso-b", "lasso-a"]),
        (["status DESC", "start_time ASC"], ["plain", "lasso-a", "lasso-b", "xgb-b", "xgb-a"]),
        (["metrics.`val-loss` DESC"], ["xgb-b", "xgb-a", "lasso-b", "lasso-a", "plain"]),
        (["tags.`owner id`", "run_name DESC"], ["lasso-b", "lasso-a", "xgb-b", "xgb-a", "plain"]),
        (
            ["params.alpha ASC", "attributes.run_name ASC"],
            ["lasso-a", "lasso-b", "xgb-a", "xgb-b", "plain"],
        ),
    ],
)
def test_search_order_by(
    client: TrackingClient, searchable: Searchable, order_by: list[str], expected: list[str]
) -> None:
    found = client.search_runs([searchable.experiment_id], order_by=order_by)
    assert _names(found) == expected


@pytest.mark.parametrize(
    "order_by",
    [["metrics.rmse UP"], ["datasets.name"], ["lifecycle_stage"], ["foo.bar"], ["rmse DESC"]],
)
def test_order_by_refuses_what_a_server_refuses(
    client: TrackingClient, searchable: Searchable, order_by: list[str]
) -> None:
    with pytest.raises(InvalidParameterError):
        client.search_runs([searchable.experiment_id], order_by=order_by)


def test_search_pages_through_page_token(client: TrackingClient, searchable: Searchable) -> None:
    experiment_id = searchable.experiment_id
    order = ["metrics.rmse ASC"]
    expected = _names(client.search_runs([experiment_id], order_by=order))
    seen: list[str] = []
    pages = 0
    token = None
    for _ in range(10):  # bounded: 5 runs in pages of 2 is 3 pages
        page = client.search_runs(
            [experiment_id], "", max_results=2, order_by=order, page_token=token
        )
        pages += 1
        assert len(page) <= 2
        seen.extend(_names(page))
        token = page.token
        if not token:
            break
    assert pages == 3
    assert seen == expected
    assert len(set(seen)) == 5


def test_search_over_several_experiments(client: TrackingClient) -> None:
    first, second = client.create_experiment(unique()), client.create_experiment(unique())
    a = client.create_run(first, run_name="in-first").info.run_id
    b = client.create_run(second, run_name="in-second").info.run_id
    found = client.search_runs([first, second])
    assert {r.info.run_id for r in found} == {a, b}
    assert {r.info.run_id: r.info.experiment_id for r in found} == {a: first, b: second}


def test_max_results_bounds(client: TrackingClient, experiment_id: str) -> None:
    for bad in (0, -1, 50_001):
        with pytest.raises(InvalidParameterError):
            client.search_runs([experiment_id], max_results=bad)


# artifacts -----------------------------------------------------------------


def test_logged_model_by_its_id(client: TrackingClient, run_id: str, tmp_path: Path) -> None:
    if not client.logs_model_ids:
        pytest.skip("this store keeps models as run artifacts only (no LoggedModelStore)")
    model_id = client.new_model_id()
    with client.stage_logged_model(run_id, model_id, "net", "net") as folder:
        (folder / "MLmodel").write_text("flavors: {}\n")
        (folder / "weights.bin").write_bytes(b"\x00\x01\xff")
    model = client.get_logged_model(model_id)
    assert (model.source_run_id, model.name, model.status) == (run_id, "net", "READY")
    assert [m.model_id for m in client.run_logged_models(run_id)] == [model.model_id]
    assert client.get_logged_model(model.model_id).model_id == model.model_id
    got = Path(client.download_logged_model(model_id, str(tmp_path / "out")))
    assert (got / "weights.bin").read_bytes() == b"\x00\x01\xff"
    with pytest.raises(NotFoundError):
        client.get_logged_model(f"m-{'0' * 32}")


def test_artifacts_log_list_download(client: TrackingClient, run_id: str, tmp_path: Path) -> None:
    payload = os.urandom(20_000) + b"\x00\n\r\xff"
    source = tmp_path / "src"
    (source / "nested").mkdir(parents=True)
    (source / "weights.bin").write_bytes(payload)
    (source / "nested" / "notes.txt").write_text("hello\n")
    single = tmp_path / "config.json"
    single.write_text('{"a": 1}')

    client.log_artifact(run_id, single)
    client.log_artifact(run_id, source / "weights.bin", artifact_path="model")
    client.log_artifacts(run_id, source, artifact_path="bundle")
    client.log_text(run_id, "plain text", "texts/readme.txt")

    root = {(f.path, f.is_dir) for f in client.list_artifacts(run_id)}
    assert root == {("config.json", False), ("model", True), ("bundle", True), ("texts", True)}
    model = client.list_artifacts(run_id, "model")
    assert [(f.path, f.is_dir, f.file_size) for f in model] == [
        ("model/weights.bin", False, len(payload))
    ]
    bundle = {(f.path, f.is_dir) for f in client.list_artifacts(run_id, "bundle")}
    assert bundle == {("bundle/weights.bin", False), ("bundle/nested", True)}

    out = tmp_path / "out"
    out.mkdir()
    got = Path(client.download_artifacts(run_id, "model/weights.bin", str(out)))
    assert got.read_bytes() == payload
    folder = Path(client.download_artifacts(run_id, "bundle", str(out / "b")))
    assert (folder / "weights.bin").read_bytes() == payload
    assert (folder / "nested" / "notes.txt").read_text() == "hello\n"
    text = Path(client.download_artifacts(run_id, "texts/readme.txt", str(out / "t")))
    assert text.read_text() == "plain text"


def test_staged_artifacts_appear_whole_or_not_at_all(
    client: TrackingClient, run_id: str, tmp_path: Path
) -> None:
    with client.stage_artifacts(run_id, "model") as folder:
        (folder / "MLmodel").write_text("first")
        (folder / "sub").mkdir()
        (folder / "sub" / "a.txt").write_text("a")
        assert client.list_artifacts(run_id, "model") == []  # nothing visible while staged
    with pytest.raises(RuntimeError), client.stage_artifacts(run_id, "broken") as folder:
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("writing failed")
    with client.stage_artifacts(run_id, "model") as folder:  # into an existing folder
        (folder / "MLmodel").write_text("second")
        (folder / "extra.txt").write_text("e")

    assert {f.path for f in client.list_artifacts(run_id)} == {"model"}
    listed = {f.path for f in client.list_artifacts(run_id, "model")}
    assert listed == {"model/MLmodel", "model/sub", "model/extra.txt"}
    out = Path(client.download_artifacts(run_id, "model", str(tmp_path / "out")))
    assert (out / "MLmodel").read_text() == "second"
    assert (out / "sub" / "a.txt").read_text() == "a"


def test_missing_artifact_is_not_found(client: TrackingClient, run_id: str, tmp_path: Path) -> None:
    assert client.list_artifacts(run_id, "nothing-here") == []
    with pytest.raises(NotFoundError):
        client.download_artifacts(run_id, "nothing-here.txt", str(tmp_path))


# What `from mltrail.testing.store_contract import *` brings: the fixtures built on the
# user's `client` fixture, and every test.
__all__ = ["experiment_id", "run_id", "searchable", "unique",
           *sorted(name for name in dict(globals()) if name.startswith("test_"))]
