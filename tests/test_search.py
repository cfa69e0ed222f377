"""Tests for mltrail.search: MLflow's filter grammar and order_by evaluated locally."""

from __future__ import annotations

import math

import pytest

from mltrail.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    ModelVersion,
    RegisteredModel,
    Run,
    RunData,
    RunInfo,
    RunInputs,
)
from mltrail.exceptions import FilterSyntaxError, InvalidParameterError
from mltrail.search import (
    MODEL_VERSIONS,
    REGISTERED_MODELS,
    Clause,
    Grammar,
    OrderKey,
    Query,
    matches,
    parse_filter,
    parse_order_by,
    search,
)


def make_run(
    run_id: str = "r1",
    *,
    metrics: dict[str, float] | None = None,
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    status: str = "FINISHED",
    start_time: int = 1000,
    end_time: int | None = None,
    run_name: str = "",
    datasets: tuple[DatasetInput, ...] = (),
) -> Run:
    info = RunInfo(
        run_id=run_id,
        experiment_id="0",
        run_name=run_name or f"name-{run_id}",
        user_id="alice",
        status=status,
        start_time=start_time,
        end_time=end_time,
        artifact_uri=f"file:///tmp/{run_id}/artifacts",
    )
    data = RunData(metrics=metrics or {}, params=params or {}, tags=tags or {})
    return Run(info=info, data=data, inputs=RunInputs(dataset_inputs=datasets))


def ids(runs: list[Run]) -> list[str]:
    return [r.info.run_id for r in runs]


def hit(run: Run, filter_string: str) -> bool:
    return matches(run, parse_filter(filter_string))


# --- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_empty_filter_is_no_clauses(empty: str | None) -> None:
    assert parse_filter(empty) == []
    assert matches(make_run(), [])


def test_parse_shapes() -> None:
    clauses = parse_filter(
        "metrics.val.rmse <= -1.5e2 and params.`my key` ILIKE '%a_' "
        'AND tags."x y" is not null And attr.created > 5 '
        "and datasets.context IN ('train', \"eval\") and run.status != 'FAILED'"
    )
    assert clauses == [
        Clause("metric", "val.rmse", "<=", -150.0),
        Clause("param", "my key", "ILIKE", "%a_"),
        Clause("tag", "x y", "IS NOT NULL", None),
        Clause("attribute", "start_time", ">", 5.0),
        Clause("dataset", "context", "IN", ("train", "eval")),
        Clause("attribute", "status", "!=", "FAILED"),
    ]


@pytest.mark.parametrize(
    ("prefix", "kind"),
    [
        ("metric", "metric"),
        ("metrics", "metric"),
        ("param", "param"),
        ("params", "param"),
        ("parameter", "param"),
        ("parameters", "param"),
        ("tag", "tag"),
        ("tags", "tag"),
        ("attribute", "attribute"),
        ("attributes", "attribute"),
        ("attr", "attribute"),
        ("run", "attribute"),
        ("dataset", "dataset"),
        ("datasets", "dataset"),
    ],
)
def test_entity_type_aliases(prefix: str, kind: str) -> None:
    key = {"attribute": "run_name", "dataset": "name"}.get(kind, "k")
    value = "1" if kind == "metric" else "'1'"
    [clause] = parse_filter(f"{prefix}.{key} = {value}")
    assert (clause.kind, clause.key) == (kind, key)


# --- metrics -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("metrics.rmse = 0.5", True),
        ("metrics.rmse = 0.6", False),
        ("metrics.rmse != 0.6", True),
        ("metrics.rmse != 0.5", False),
        ("metrics.rmse < 0.6", True),
        ("metrics.rmse < 0.5", False),
        ("metrics.rmse <= 0.5", True),
        ("metrics.rmse <= 0.4", False),
        ("metrics.rmse > 0.4", True),
        ("metrics.rmse > 0.5", False),
        ("metrics.rmse >= 0.5", True),
        ("metrics.rmse >= 5e-1", True),
        ("metrics.rmse >= 6E-1", False),
        ("metrics.rmse > -1", True),
        ("metrics.rmse > .49", True),
        ("metrics.loss = 3", True),
        ("metrics.loss = 3.0", True),
    ],
)
def test_metric_comparators(filter_string: str, expected: bool) -> None:
    run = make_run(metrics={"rmse": 0.5, "loss": 3})
    assert hit(run, filter_string) is expected


def test_missing_metric_never_matches_a_comparison() -> None:
    run = make_run(metrics={"other": 1.0})
    for comparator in ("=", "!=", "<", "<=", ">", ">="):
        assert not hit(run, f"metrics.rmse {comparator} 1")


def test_nan_metric_compares_like_python_float() -> None:
    run = make_run(metrics={"m": math.nan})
    assert not hit(run, "metrics.m < 1")
    assert not hit(run, "metrics.m >= 1")
    assert not hit(run, "metrics.m = 1")
    assert hit(run, "metrics.m != 1")


def test_keys_with_dots_and_quotes() -> None:
    run = make_run(metrics={"val.rmse": 1.0, "my metric": 2.0, "a/b:c-d": 3.0})
    assert hit(run, "metrics.val.rmse = 1")
    assert not hit(run, "metrics.val = 1")
    assert hit(run, "metrics.`my metric` = 2")
    assert hit(run, 'metrics."my metric" = 2')
    assert hit(run, "metrics.`val.rmse` < 1.5")
    assert hit(run, "metrics.a/b:c-d = 3")
    assert not hit(run, "metrics.`my metric` = 1")


# --- params and tags -----------------------------------------------------------------------


@pytest.mark.parametrize("entity", ["params.model", "tags.model"])
@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("= 'RandomForest'", True),
        ('= "RandomForest"', True),
        ("= 'randomforest'", False),
        ("!= 'xgb'", True),
        ("!= 'RandomForest'", False),
        ("LIKE 'Random%'", True),
        ("LIKE 'random%'", False),
        ("LIKE '%Forest'", True),
        ("LIKE 'Random_orest'", True),
        ("LIKE 'Random_'", False),
        ("LIKE 'RandomForest'", True),
        ("LIKE '%RandomForest%'", True),  # % also matches nothing
        ("LIKE 'Random%Forest'", True),
        ("like '%dom%'", True),
        ("ILIKE 'random%'", True),
        ("ilike '%FOREST'", True),
        ("ILIKE 'xgb%'", False),
        ("IS NOT NULL", True),
        ("IS NULL", False),
    ],
)
def test_string_comparators(entity: str, condition: str, expected: bool) -> None:
    run = make_run(params={"model": "RandomForest"}, tags={"model": "RandomForest"})
    assert hit(run, f"{entity} {condition}") is expected


def test_like_escapes_regex_characters() -> None:
    run = make_run(params={"p": "a.b(c)"})
    assert hit(run, "params.p LIKE 'a.b(c)'")
    assert not hit(make_run(params={"p": "axb(c)"}), "params.p LIKE 'a.b(c)'")


@pytest.mark.parametrize("entity", ["params.p", "tags.t"])
def test_is_null_on_missing_and_present(entity: str) -> None:
    present = make_run(metrics={"m": 1.0}, params={"p": "x"}, tags={"t": "y"})
    missing = make_run()
    assert hit(missing, f"{entity} IS NULL")
    assert not hit(missing, f"{entity} IS NOT NULL")
    assert not hit(present, f"{entity} is null")
    assert hit(present, f"{entity} is not null")


def test_missing_param_or_tag_never_matches() -> None:
    run = make_run()
    assert not hit(run, "params.p != 'x'")
    assert not hit(run, "tags.t != 'x'")
    assert not hit(run, "params.p LIKE '%'")


# --- attributes and datasets ---------------------------------------------------------------


def test_string_attributes() -> None:
    run = make_run("abc123", status="FAILED", run_name="my-run")
    assert hit(run, "attributes.status = 'FAILED'")
    assert hit(run, "attributes.status != 'FINISHED'")
    assert hit(run, "attribute.run_id IN ('zzz', 'abc123')")
    assert not hit(run, "attr.run_id NOT IN ('abc123')")
    assert hit(run, "run.run_name LIKE 'my-%'")
    assert hit(run, "attributes.user_id ILIKE 'ALI%'")
    assert hit(run, "attributes.artifact_uri LIKE 'file://%/artifacts'")
    # a server filters on the run's view type instead, and refuses lifecycle_stage here
    with pytest.raises(FilterSyntaxError, match=r"unknown attribute 'attributes\.lifecycle_stage'"):
        parse_filter("attributes.lifecycle_stage = 'active'")


def test_numeric_attributes() -> None:
    run = make_run(start_time=2000, end_time=3000)
    assert hit(run, "attributes.start_time = 2000")
    assert hit(run, "attributes.start_time >= 2000")
    assert not hit(run, "attributes.start_time > 2000")
    assert hit(run, "attributes.created < 2001")
    assert hit(run, "attributes.end_time <= 3000")
    assert not hit(run, "attributes.end_time != 3000")
    unfinished = make_run(end_time=None)
    assert not hit(unfinished, "attributes.end_time > 0")
    assert not hit(unfinished, "attributes.end_time != 0")


def test_bare_names_are_attributes_as_in_mlflow() -> None:
    run = make_run("abc123", status="FINISHED", run_name="x", start_time=2000)
    assert hit(run, "status = 'FINISHED'")
    assert hit(run, "run_name = 'x'")
    assert hit(run, "start_time >= 2000 and status != 'FAILED'")
    assert not hit(run, "run_name = 'y'")
    runs = [make_run("a", start_time=1), make_run("b", start_time=3), make_run("c", start_time=2)]
    assert ids(search(runs, None, ["start_time DESC"])) == ["b", "c", "a"]
    assert ids(search(runs, None, ["start_time"])) == ["a", "c", "b"]


def test_other_spellings_a_server_takes() -> None:
    run = make_run(run_name="my run", start_time=2000)
    assert hit(run, "`Run name` = 'my run'")
    assert hit(run, "attributes.`run name` = 'my run'")
    assert hit(run, "Created = 2000")
    assert parse_order_by(["created DESC", "`Run Name`"]) == [
        OrderKey("attribute", "start_time", False),
        OrderKey("attribute", "run_name", True),
    ]


def test_a_trailing_and_is_ignored_as_a_server_ignores_it() -> None:
    assert parse_filter("metrics.a > 1 AND") == parse_filter("metrics.a > 1")


def test_datasets_match_any_input() -> None:
    train = DatasetInput(
        Dataset("iris", "d1", "local", "/x"), (InputTag("mlflow.data.context", "training"),)
    )
    evaluation = DatasetInput(
        Dataset("wine", "d2", "local", "/y"), (InputTag("mlflow.data.context", "eval"),)
    )
    untagged = DatasetInput(Dataset("boston", "d3", "local", "/z"))
    run = make_run(datasets=(train, evaluation, untagged))
    assert hit(run, "datasets.name = 'wine'")
    assert hit(run, "dataset.digest IN ('zz', 'd1')")
    assert hit(run, "datasets.context = 'eval'")
    assert hit(run, "datasets.context LIKE 'train%'")
    assert not hit(run, "datasets.context = 'test'")
    assert not hit(run, "datasets.name = 'mnist'")
    assert not hit(make_run(), "datasets.name != 'x'")


# --- AND chains and case --------------------------------------------------------------------


def test_and_chain_requires_every_clause() -> None:
    run = make_run(metrics={"acc": 0.9}, params={"lr": "0.1"}, status="FINISHED")
    assert hit(run, "metrics.acc > 0.8 AND params.lr = '0.1' AND attributes.status = 'FINISHED'")
    assert not hit(run, "metrics.acc > 0.8 AND params.lr = '0.2'")
    assert not hit(run, "metrics.acc > 0.95 and params.lr = '0.1'")


def test_keywords_are_case_insensitive() -> None:
    run = make_run(params={"p": "Abc"})
    assert hit(run, "params.p like 'A%' aNd params.p iLiKe 'abc' AND run_id Not In ('x')")
    assert hit(run, "params.p Is Not Null and params.q is NULL")


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_string", "position", "quoted"),
    [
        ("metrics.rmse <", 14, "end of filter"),
        ("metrics.rmse < 'a'", 15, "\"'a'\""),
        ("params.alpha < 1", 13, "'<'"),
        ("params.alpha = 1", 15, "'1'"),
        ("foo.bar = 1", 0, "'foo.bar'"),
        ("metrics.rmse < 7 OR metrics.x > 1", 17, "'OR'"),
        ("params.a = 'abc", 11, '"\'abc"'),
        ("metrics.rmse ~ 3", 13, "'~'"),
        ("metrics rmse < 7", 0, "'metrics'"),  # a bare name
        ("metrics.rmse < 7 metrics.x > 1", 17, "'metrics.x'"),
        ("metrics.rmse IS NULL", 13, "'IS'"),  # a server takes IS NULL for params and tags only
        ("attributes.status IN ('A')", 18, "'IN'"),  # and IN for run_id only
        ("tags.t IN ('a')", 7, "'IN'"),
        ("attributes.nope = 'x'", 0, "'attributes.nope'"),
        ("attributes.start_time LIKE '1%'", 22, "'LIKE'"),
        ("attributes.status IS NULL", 18, "'IS'"),
        ("metrics.x IN (1, 2)", 10, "'IN'"),
        ("run_id IN ('a' 'b')", 15, "\"'b'\""),
        ("run_id IN 'a'", 10, "\"'a'\""),
        ("params.x IS NOT 'a'", 16, "\"'a'\""),
        ("params.x NOT LIKE 'a'", 13, "'LIKE'"),
        ("rmse > 5", 0, "'rmse'"),  # a bare name is an attribute, and rmse is none
        ("datasets.size = 'x'", 0, "'datasets.size'"),
    ],
)
def test_malformed_filters(filter_string: str, position: int, quoted: str) -> None:
    with pytest.raises(FilterSyntaxError) as excinfo:
        parse_filter(filter_string)
    err = excinfo.value
    assert err.position == position
    first, shown, caret = str(err).split("\n")
    assert first.startswith("Invalid filter: ")
    assert quoted in first
    assert f"at position {position} " in first
    assert shown == "  " + filter_string
    assert caret == "  " + " " * position + "^"


def test_or_error_says_only_and() -> None:
    with pytest.raises(FilterSyntaxError, match="only AND is supported"):
        parse_filter("metrics.a > 1 or metrics.b > 1")


def test_filter_error_is_an_invalid_parameter_error() -> None:
    with pytest.raises(InvalidParameterError):
        parse_filter("metrics.a >")


# --- order_by ------------------------------------------------------------------------------


def test_parse_order_by_shapes() -> None:
    assert parse_order_by(None) == []
    assert parse_order_by(
        ["metrics.`a b` desc", "attributes.start_time", "params.lr ASC", "tags.t DESC"]
    ) == [
        OrderKey("metric", "a b", False),
        OrderKey("attribute", "start_time", True),
        OrderKey("param", "lr", True),
        OrderKey("tag", "t", False),
    ]


@pytest.mark.parametrize(
    ("item", "position"),
    [
        ("rmse", 0),
        ("metrics.a up", 10),
        ("metrics.a DESC DESC", 15),
        ("", 0),
        ("datasets.name", 0),
        ("foo.bar", 0),
        ("attributes.nope DESC", 0),
    ],
)
def test_malformed_order_by(item: str, position: int) -> None:
    with pytest.raises(FilterSyntaxError) as excinfo:
        parse_order_by(["metrics.ok", item])
    assert excinfo.value.position == position
    assert str(excinfo.value).startswith("Invalid order_by: ")
    assert str(excinfo.value).endswith("\n  " + " " * position + "^")


def test_default_order_is_start_time_desc_then_run_id() -> None:
    runs = [
        make_run("b", start_time=1),
        make_run("c", start_time=3),
        make_run("a", start_time=1),
        make_run("d", start_time=2),
    ]
    assert ids(search(runs, None, None)) == ["c", "d", "a", "b"]
    assert ids(search(runs, None, [])) == ["c", "d", "a", "b"]


def test_metric_order_missing_last_both_directions() -> None:
    runs = [
        make_run("none", metrics={}),
        make_run("lo", metrics={"m": 1.0}),
        make_run("nan", metrics={"m": math.nan}),
        make_run("hi", metrics={"m": 5.0}),
        make_run("mid", metrics={"m": 2.0}),
    ]
    assert ids(search(runs, None, ["metrics.m"])) == ["lo", "mid", "hi", "nan", "none"]
    assert ids(search(runs, None, ["metrics.m ASC"])) == ["lo", "mid", "hi", "nan", "none"]
    assert ids(search(runs, None, ["metrics.m DESC"])) == ["hi", "mid", "lo", "nan", "none"]


def test_multi_key_order_and_tie_break() -> None:
    runs = [
        make_run("r1", params={"model": "rf"}, metrics={"acc": 0.7}, start_time=10),
        make_run("r2", params={"model": "xgb"}, metrics={"acc": 0.9}, start_time=20),
        make_run("r3", params={"model": "rf"}, metrics={"acc": 0.8}, start_time=30),
        make_run("r4", params={"model": "rf"}, metrics={"acc": 0.8}, start_time=40),
        make_run("r5", metrics={"acc": 0.99}, start_time=50),
    ]
    ordered = search(runs, None, ["params.model ASC", "metrics.acc DESC"])
    # Within model=rf, acc 0.8 ties: the newer run (r4) comes first.
    assert ids(ordered) == ["r4", "r3", "r1", "r2", "r5"]
    ordered = search(runs, None, ["params.model DESC", "metrics.acc"])
    assert ids(ordered) == ["r2", "r1", "r4", "r3", "r5"]


def test_order_by_attributes_and_tags() -> None:
    runs = [
        make_run("a", status="RUNNING", end_time=None, tags={"t": "b"}),
        make_run("b", status="FAILED", end_time=5, tags={"t": "a"}),
        make_run("c", status="FINISHED", end_time=9),
    ]
    assert ids(search(runs, None, ["attributes.status"])) == ["b", "c", "a"]
    assert ids(search(runs, None, ["attributes.end_time DESC"])) == ["c", "b", "a"]
    assert ids(search(runs, None, ["tags.t"])) == ["b", "a", "c"]
    assert ids(search(runs, None, ["tags.t DESC"])) == ["a", "b", "c"]


def test_sort_does_not_modify_input() -> None:
    runs = [make_run("a", start_time=1), make_run("b", start_time=2)]
    search(runs, None, None)
    assert ids(runs) == ["a", "b"]


# --- search --------------------------------------------------------------------------------


def test_search_filters_then_sorts() -> None:
    runs = [
        make_run("a", metrics={"acc": 0.5}, start_time=1),
        make_run("b", metrics={"acc": 0.9}, start_time=2),
        make_run("c", metrics={"acc": 0.7}, start_time=3),
        make_run("d", start_time=4),
    ]
    assert ids(search(iter(runs), "metrics.acc > 0.6", ["metrics.acc DESC"])) == ["b", "c"]
    assert ids(search(runs, None, None)) == ["d", "c", "b", "a"]
    assert ids(search(runs, "metrics.acc < 0.6 AND", None)) == ["a"]  # a server ignores it


def test_search_parses_before_touching_runs() -> None:
    def exploding():
        raise AssertionError("runs were read")
        yield  # pragma: no cover

    with pytest.raises(FilterSyntaxError):
        search(exploding(), "metrics.a >", None)
    with pytest.raises(FilterSyntaxError):
        search(exploding(), None, ["rmse"])


# --- the registry's grammars ---------------------------------------------------------------


def model(name: str, updated: int = 0, **tags: str) -> RegisteredModel:
    return RegisteredModel(name, creation_timestamp=0, last_updated_timestamp=updated, tags=tags)


def version(name: str, number: int, run_id: str = "", updated: int = 0) -> ModelVersion:
    return ModelVersion(
        name, str(number), creation_timestamp=number, last_updated_timestamp=updated,
        source=f"s3://b/{name}/{number}", run_id=run_id, tags={"n": str(number)},
    )


def test_registered_model_filters_and_order() -> None:
    models = [model("nyc", 3, team="a"), model("NYC-2", 1, team="b"), model("boston", 2)]
    names = lambda found: [m.name for m in found]  # noqa: E731
    assert names(search(models, None, None, REGISTERED_MODELS)) == ["NYC-2", "boston", "nyc"]
    assert names(search(models, "name ILIKE 'nyc%'", None, REGISTERED_MODELS)) == ["NYC-2", "nyc"]
    assert names(search(models, "name IN ('nyc', 'boston')", None, REGISTERED_MODELS)) == [
        "boston", "nyc"
    ]
    assert names(search(models, "tags.team != 'a'", None, REGISTERED_MODELS)) == ["NYC-2"]
    assert names(search(models, "tag.team LIKE '%'", ["name DESC"], REGISTERED_MODELS)) == [
        "nyc", "NYC-2"
    ]
    # `timestamp` is the last update, as on a server
    assert names(search(models, None, ["timestamp DESC"], REGISTERED_MODELS)) == [
        "nyc", "boston", "NYC-2"
    ]


def test_model_version_filters_and_default_order() -> None:
    versions = [version("a", 1, "r1", updated=5), version("a", 2, updated=9),
                version("b", 1, "r1", updated=5), version("a", 3, updated=1)]
    shown = lambda found: [f"{v.name}/{v.version}" for v in found]  # noqa: E731
    # no order_by: the latest update first, then name, then the newest version
    assert shown(search(versions, None, None, MODEL_VERSIONS)) == ["a/2", "a/1", "b/1", "a/3"]
    assert shown(search(versions, None, ["name DESC"], MODEL_VERSIONS)) == [
        "b/1", "a/3", "a/2", "a/1"
    ]
    assert shown(search(versions, "run_id = 'r1'", ["version_number"], MODEL_VERSIONS)) == [
        "a/1", "b/1"
    ]
    assert shown(search(versions, "run_id != 'r1'", None, MODEL_VERSIONS)) == ["a/2", "a/3"]
    assert shown(search(versions, "version_number >= '2'", None, MODEL_VERSIONS)) == [
        "a/2", "a/3"
    ]
    assert shown(search(versions, "source_path LIKE 's3://b/b/%'", None, MODEL_VERSIONS)) == ["b/1"]
    assert shown(search(versions, "tags.n = '3'", None, MODEL_VERSIONS)) == ["a/3"]


@pytest.mark.parametrize(
    ("grammar", "filter_string", "position", "quoted"),
    [
        (REGISTERED_MODELS, "owner = 'x'", 0, "unknown attribute 'owner'"),
        (REGISTERED_MODELS, "attributes.name = 'x'", 0, "invalid entity 'attributes.name'"),
        (REGISTERED_MODELS, "name < 'a'", 5, "invalid comparator '<'"),
        (REGISTERED_MODELS, "tags.t IS NULL", 7, "invalid comparator 'IS'"),
        (REGISTERED_MODELS, "tags.t IN ('a')", 7, "invalid comparator 'IN'"),
        (MODEL_VERSIONS, "metrics.a > 1", 0, "invalid entity 'metrics.a'"),
        (MODEL_VERSIONS, "source_path IN ('x')", 12, "invalid comparator 'IN'"),
        (MODEL_VERSIONS, "version_number = 'two'", 17, "\"'two'\""),
        (MODEL_VERSIONS, "name = 'a' OR name = 'b'", 11, "'OR'"),
    ],
)
def test_registry_filter_errors(
    grammar: Grammar, filter_string: str, position: int, quoted: str
) -> None:
    with pytest.raises(FilterSyntaxError) as excinfo:
        Query(filter_string, None, grammar)
    assert excinfo.value.position == position
    assert quoted in str(excinfo.value).splitlines()[0]


@pytest.mark.parametrize(
    ("grammar", "item", "message"),
    [
        (REGISTERED_MODELS, "creation_timestamp", "unknown attribute"),  # a server refuses it
        (REGISTERED_MODELS, "tags.team", "order by an attribute name alone"),
        (MODEL_VERSIONS, "run_id DESC", "unknown attribute"),
        (MODEL_VERSIONS, "version_number UP", "expected ASC, DESC"),
        (MODEL_VERSIONS, "name DESC", "duplicate key 'name'"),  # after "name"
    ],
)
def test_registry_order_by_errors(grammar: Grammar, item: str, message: str) -> None:
    with pytest.raises(FilterSyntaxError, match=message):
        parse_order_by(["name", item], grammar)
