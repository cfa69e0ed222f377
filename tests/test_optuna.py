"""Optuna autologging: a study's optimize call is a parent run, each trial a child run.

Real Optuna studies (and real xgboost / scikit-learn trainings inside the
objectives) on tiny data, to a local store. `optuna` is imported at the top of
this module, before any test turns autolog on; a fresh interpreter checks the
other import order.
"""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import xgboost as xgb
from sklearn.linear_model import LogisticRegression

import mltrail
from mltrail.entities import RunStatus

PARENT = "mlflow.parentRunId"

optuna.logging.set_verbosity(optuna.logging.ERROR)


@pytest.fixture
def autolog(tracking_dir: Path) -> Iterator[None]:
    mltrail.optuna.autolog()
    mltrail.xgboost.autolog(log_models=False, log_datasets=False)
    mltrail.sklearn.autolog(log_models=False, log_datasets=False)
    yield
    for flavor in ("optuna", "xgboost", "sklearn"):
        getattr(mltrail, flavor).autolog(disable=True)


def all_runs() -> list[mltrail.Run]:
    return mltrail.search_runs(output_format="list")


def parents() -> list[mltrail.Run]:
    return [r for r in all_runs() if PARENT not in r.data.tags]


def children_of(parent: mltrail.Run) -> dict[int, mltrail.Run]:
    found = {}
    for run in all_runs():
        if run.data.tags.get(PARENT) == parent.info.run_id:
            number = int(run.data.tags["optuna.trial_number"])
            assert run.info.run_name == f"trial-{number}"
            assert number not in found
            found[number] = run
    return found


def quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    depth = trial.suggest_int("depth", 1, 5)
    trial.set_user_attr("kind_was", kind)
    return (x - 2) ** 2 + depth + (0.5 if kind == "b" else 0.0)


def history(run: mltrail.Run, key: str) -> list[tuple[int, float]]:
    points = mltrail.MlflowClient().get_metric_history(run.info.run_id, key)
    return sorted((p.step, p.value) for p in points)


def test_single_objective_is_one_parent_and_a_child_per_trial(autolog: None) -> None:
    study = optuna.create_study(
        study_name="quad", sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3)
    )
    study.optimize(quadratic, n_trials=6)

    assert len(all_runs()) == 7
    (parent,) = parents()
    assert parent.info.status == RunStatus.FINISHED
    p = parent.data.params
    assert p["study_name"] == "quad"
    assert p["direction"] == "minimize"
    assert p["sampler"] == "TPESampler"
    assert p["sampler.n_startup_trials"] == "3"
    assert p["sampler.seed"] == "0"  # built after autolog: its seed was noted
    assert p["pruner"] == "MedianPruner"  # Optuna's default
    assert (p["n_trials"], p["timeout"], p["n_jobs"]) == ("6", "None", "1")
    assert parent.data.tags["optuna.study_name"] == "quad"
    assert parent.data.tags["mlflow.autologging"] == "optuna"

    children = children_of(parent)
    assert sorted(children) == [t.number for t in study.trials] == list(range(6))
    for trial in study.trials:
        run = children[trial.number]
        assert run.info.status == RunStatus.FINISHED
        assert run.data.params == {k: str(v) for k, v in trial.params.items()}
        assert run.data.metrics == {"value": trial.value}
        assert run.data.tags["optuna.state"] == "COMPLETE"
        assert run.data.tags["kind_was"] == trial.user_attrs["kind_was"]
        assert run.data.tags["mlflow.autologging"] == "optuna"

    best = study.best_trial
    assert parent.data.metrics["best_value"] == study.best_value
    assert {k: v for k, v in p.items() if k.startswith("best_")} == {
        f"best_{k}": str(v) for k, v in best.params.items()
    }
    assert parent.data.tags["optuna.best_trial_number"] == str(best.number)
    assert parent.data.tags["optuna.best_run_id"] == children[best.number].info.run_id
    assert parent.data.metrics["n_trials_complete"] == 6
    assert parent.data.metrics["n_trials_pruned"] == 0
    assert parent.data.metrics["n_trials_failed"] == 0


def test_multi_objective_values_and_the_pareto_front(autolog: None) -> None:
    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0, 5)
        return x**2, (x - 2) ** 2

    study = optuna.create_study(
        directions=["minimize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1)
    )
    study.optimize(objective, n_trials=5)
    (parent,) = parents()
    assert parent.data.params["directions"] == "minimize,minimize"
    assert parent.data.params["sampler"] == "RandomSampler"
    assert parent.data.params["sampler.seed"] == "1"
    assert "best_value" not in parent.data.metrics
    front = sorted(t.number for t in study.best_trials)
    assert parent.data.tags["optuna.pareto_front_trials"] == ",".join(map(str, front))
    children = children_of(parent)
    for trial in study.trials:
        assert children[trial.number].data.metrics == {
            "values_0": trial.values[0], "values_1": trial.values[1]
        }

    # With metric names set, the values are logged under them.
    named = optuna.create_study(directions=["minimize", "maximize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        named.set_metric_names(["loss", "accuracy"])
    named.optimize(lambda t: (t.suggest_float("x", 0, 1), 0.5), n_trials=2)
    parent = next(r for r in parents() if r.data.params["study_name"] == named.study_name)
    assert parent.data.params["metric_names"] == "loss,accuracy"
    for trial in named.trials:
        assert children_of(parent)[trial.number].data.metrics == {
            "loss": trial.values[0], "accuracy": 0.5
        }


def test_pruned_trials_are_killed_with_their_intermediate_values(autolog: None) -> None:
    def objective(trial: optuna.Trial) -> float:
        slope = trial.suggest_float("slope", 0.0, 1.0)
        value = 0.0
        for step in range(5):
            value = slope / (step + 1)  # pruners compare the best value so far
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study = optuna.create_study(
        sampler=optuna.samplers.RandomSampler(seed=3),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    study.optimize(objective, n_trials=12)
    (parent,) = parents()
    assert parent.data.params["pruner"] == "MedianPruner"
    assert parent.data.params["pruner.n_startup_trials"] == "2"
    assert parent.data.params["pruner.n_warmup_steps"] == "1"
    children = children_of(parent)
    states = [t.state for t in study.trials]
    pruned = states.count(optuna.trial.TrialState.PRUNED)
    assert pruned > 0
    assert parent.data.metrics["n_trials_pruned"] == pruned
    assert parent.data.metrics["n_trials_complete"] == 12 - pruned
    for trial in study.trials:
        run = children[trial.number]
        assert history(run, "intermediate_value") == sorted(trial.intermediate_values.items())
        if trial.state == optuna.trial.TrialState.PRUNED:
            assert run.info.status == RunStatus.KILLED
            assert run.data.tags["optuna.state"] == "PRUNED"
            assert "value" not in run.data.metrics
        else:
            assert run.info.status == RunStatus.FINISHED
            assert run.data.metrics["value"] == trial.value


def test_a_repeated_step_is_ignored_as_optuna_ignores_it(autolog: None) -> None:
    def objective(trial: optuna.Trial) -> float:
        trial.report(1.0, 0)
        with pytest.warns(UserWarning, match="already reported"):
            trial.report(2.0, 0)
        trial.report(3.0, step=1)
        return 0.0

    study = optuna.create_study()
    study.optimize(objective, n_trials=1)
    (child,) = children_of(parents()[0]).values()
    assert history(child, "intermediate_value") == [(0, 1.0), (1, 3.0)]


def test_caught_failures_let_the_study_go_on(autolog: None) -> None:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        if trial.number in (1, 3):
            raise ValueError(f"bad trial {trial.number}")
        if trial.number == 4:
            return float("nan")  # Optuna refuses it: FAIL without an exception
        return x

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=6, catch=(ValueError,))
    (parent,) = parents()
    assert parent.info.status == RunStatus.FINISHED
    assert parent.data.metrics["n_trials_failed"] == 3
    assert parent.data.metrics["n_trials_complete"] == 3
    children = children_of(parent)
    for number in (1, 3):
        run = children[number]
        assert run.info.status == RunStatus.FAILED
        assert run.data.tags["optuna.state"] == "FAIL"
        assert run.data.tags["optuna.error"] == f"ValueError: bad trial {number}"
        assert run.data.params == {"x": str(study.trials[number].params["x"])}
        assert "value" not in run.data.metrics
    nan_run = children[4]
    assert study.trials[4].state == optuna.trial.TrialState.FAIL
    assert nan_run.info.status == RunStatus.FAILED
    assert "not acceptable" in nan_run.data.tags["optuna.error"]
    assert [children[n].info.status for n in (0, 2, 5)] == [RunStatus.FINISHED] * 3


def test_wrong_number_of_values_fails_the_trial(autolog: None) -> None:
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.optimize(lambda t: 1.0, n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    (child,) = children_of(parents()[0]).values()
    assert child.info.status == RunStatus.FAILED
    assert "did not match" in child.data.tags["optuna.error"]


def test_an_uncaught_exception_propagates_unchanged(autolog: None) -> None:
    error = KeyError("boom")

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        if trial.number == 1:
            raise error
        return 1.0

    study = optuna.create_study()
    with pytest.raises(KeyError) as raised:
        study.optimize(objective, n_trials=5, catch=(ValueError,))
    assert raised.value is error
    assert len(study.trials) == 2
    (parent,) = parents()
    assert parent.info.status == RunStatus.FAILED
    children = children_of(parent)
    assert children[0].info.status == RunStatus.FINISHED
    assert children[1].info.status == RunStatus.FAILED
    assert children[1].data.tags["optuna.error"] == "KeyError: 'boom'"
    assert parent.data.metrics["n_trials_failed"] == 1
    assert mltrail.active_run() is None


def test_threads_keep_each_trials_records_in_its_own_run(autolog: None) -> None:
    both_inside = threading.Barrier(2, timeout=10)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        if trial.number < 2:
            both_inside.wait()  # the first two trials overlap for sure
        for step in range(3):
            trial.report(x + step, step)
        mltrail.log_param("thread_trial", trial.number)
        return x

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=6, n_jobs=2)
    (parent,) = parents()
    assert parent.data.params["n_jobs"] == "2"
    children = children_of(parent)
    assert len(children) == 6 and len(all_runs()) == 7
    for trial in study.trials:
        run = children[trial.number]
        assert run.data.params == {"x": str(trial.params["x"]),
                                   "thread_trial": str(trial.number)}
        assert history(run, "intermediate_value") == sorted(trial.intermediate_values.items())
        assert run.data.metrics["value"] == trial.value
    assert parent.data.metrics["n_trials_complete"] == 6


def test_a_resumed_study_is_a_new_parent_with_only_the_new_trials(autolog: None) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(quadratic, n_trials=3)
    study.optimize(quadratic, n_trials=2)
    first, second = sorted(parents(), key=lambda r: r.info.start_time)
    assert sorted(children_of(first)) == [0, 1, 2]
    assert sorted(children_of(second)) == [3, 4]
    assert second.data.metrics["n_trials_complete"] == 2
    # The best trial is the study's; its run is found even when an earlier call ran it.
    best = study.best_trial
    owner = first if best.number < 3 else second
    assert second.data.tags["optuna.best_run_id"] == children_of(owner)[best.number].info.run_id
    assert second.data.metrics["best_value"] == study.best_value


def test_objective_training_xgboost_and_sklearn_logs_into_its_trial(autolog: None) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    train, valid = xgb.DMatrix(x[:80], label=y[:80]), xgb.DMatrix(x[80:], label=y[80:])

    def objective(trial: optuna.Trial) -> float:
        depth = trial.suggest_int("max_depth", 2, 4)
        c = trial.suggest_float("C", 0.1, 10, log=True)
        booster = xgb.train({"max_depth": depth, "objective": "binary:logistic"}, train, 4,
                            evals=[(valid, "validation")], verbose_eval=False)
        model = LogisticRegression(C=c).fit(x[:80], y[:80])
        return float(booster.eval(valid).split(":")[1]) - model.score(x[80:], y[80:])

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=3)
    assert len(all_runs()) == 4  # no top-level run of xgboost or sklearn
    (parent,) = parents()
    for trial in study.trials:
        run = children_of(parent)[trial.number]
        assert run.data.tags["optuna.trial_number"] == str(trial.number)
        assert run.data.params["max_depth"] == str(trial.params["max_depth"])
        assert run.data.params["C"] == str(trial.params["C"])
        assert run.data.params["num_boost_round"] == "4"  # xgboost's
        assert "training_accuracy_score" in run.data.metrics  # sklearn's
        assert len(history(run, "validation-logloss")) == 4
        assert run.data.metrics["value"] == trial.value


def test_an_objective_opening_its_own_run_gets_the_trials_run(autolog: None) -> None:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        with mltrail.start_run(nested=True):
            mltrail.log_metric("own", x)
        run = mltrail.start_run(nested=True)  # left open: autolog ends it with the trial
        mltrail.log_metric("deeper", 1.0)
        assert run is not None
        return x

    study = optuna.create_study()
    study.optimize(objective, n_trials=2)
    (parent,) = parents()
    children = children_of(parent)
    assert len(children) == 2
    for trial in study.trials:
        assert children[trial.number].data.metrics["own"] == trial.params["x"]
    # the run left open is a grandchild, ended with its trial
    grandchildren = [r for r in all_runs()
                     if r.data.tags.get(PARENT) in {c.info.run_id for c in children.values()}]
    assert len(grandchildren) == 2
    assert all(r.info.status == RunStatus.FINISHED for r in grandchildren)
    assert mltrail.active_run() is None


def test_the_users_open_run_is_the_parent(autolog: None) -> None:
    with mltrail.start_run(run_name="mine") as run:
        mltrail.log_param("n_trials", 2)
        optuna.create_study().optimize(quadratic, n_trials=2)
    (parent,) = parents()
    assert parent.info.run_id == run.info.run_id
    assert parent.data.params["n_trials"] == "2"
    assert len(children_of(parent)) == 2


def test_sampler_seeds_are_noted_where_optuna_keeps_none(autolog: None) -> None:
    optuna.create_study(sampler=optuna.samplers.RandomSampler()).optimize(quadratic, n_trials=1)
    with pytest.warns(optuna.exceptions.ExperimentalWarning) as caught:
        qmc = optuna.samplers.QMCSampler(seed=5)
    assert caught[0].filename == __file__  # the sampler's own warning still names this line
    optuna.create_study(sampler=qmc).optimize(quadratic, n_trials=1)
    tpe = optuna.samplers.TPESampler(seed=11)
    assert pickle.loads(pickle.dumps(tpe)).sample_independent  # still pickles
    seeds = {r.data.params["sampler"]: r.data.params.get("sampler.seed") for r in parents()}
    assert seeds == {"RandomSampler": None, "QMCSampler": "5"}


def test_extra_tags_and_exclusive(tracking_dir: Path) -> None:
    mltrail.optuna.autolog(extra_tags={"team": "search"})
    try:
        optuna.create_study().optimize(quadratic, n_trials=2)
        assert len(all_runs()) == 3
        assert all(r.data.tags["team"] == "search" for r in all_runs())
        mltrail.optuna.autolog(exclusive=True)
        with mltrail.start_run() as run:
            optuna.create_study().optimize(quadratic, n_trials=2)
        assert len(all_runs()) == 4  # the user's run, with nothing of the study in it
        assert mltrail.get_run(run.info.run_id).data.params == {}
    finally:
        mltrail.optuna.autolog(disable=True)


def test_ctrl_c_in_a_trial_kills_its_run_and_the_study_run(autolog: None) -> None:
    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        raise KeyboardInterrupt

    study = optuna.create_study()
    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective, n_trials=3)
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    (parent,) = parents()
    (child,) = children_of(parent).values()
    assert (parent.info.status, child.info.status) == (RunStatus.KILLED, RunStatus.KILLED)
    assert child.data.tags["optuna.state"] == "FAIL"
    assert mltrail.active_run() is None


def test_disabled_records_nothing(autolog: None) -> None:
    mltrail.optuna.autolog(disable=True)
    optuna.create_study().optimize(quadratic, n_trials=2)
    assert all_runs() == []


def _seeded_search() -> tuple[dict[str, Any], list[float | None]]:
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=7, n_startup_trials=3),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
    )

    def objective(trial: optuna.Trial) -> float:
        value = quadratic(trial)
        for step in range(3):
            trial.report(value / (step + 1), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=10)
    return study.best_params, [t.value for t in study.trials]


def test_results_are_identical_with_autolog_on_and_off(tracking_dir: Path) -> None:
    off = _seeded_search()
    mltrail.optuna.autolog()
    try:
        on = _seeded_search()
    finally:
        mltrail.optuna.autolog(disable=True)
    assert on == off
    assert len(all_runs()) == 11
    assert not math.isnan(on[1][0])


@pytest.mark.parametrize("order", ["autolog first", "optuna first"])
def test_import_order_does_not_matter(tmp_path: Path, order: str) -> None:
    imports = ["import mltrail", "import optuna"]
    if order == "optuna first":
        imports.reverse()
    script = "\n".join(imports) + textwrap.dedent(f"""
        mltrail.set_tracking_uri({str(tmp_path / "runs")!r})
        mltrail.autolog()
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.create_study()
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        runs = mltrail.search_runs(output_format="list")
        print(len(runs), sum("mlflow.parentRunId" in r.data.tags for r in runs))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4", "3"]


def test_study_logged_to_an_mlflow_server(
    autolog: None, mlflow_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One parent with a child per trial, pruned and failed ones included, read back
    with MLflow's own client (what its UI shows as nested runs)."""
    import mlflow
    from remote_helpers import RemoteFactory, unique

    factory = RemoteFactory(tmp_path / "spool", monkeypatch)
    client = factory(mlflow_server.url)
    mltrail.set_tracking_uri(mlflow_server.url)
    experiment = mltrail.set_experiment(unique("optuna"))

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        trial.report(x, 0)
        trial.report(x / 2, 1)
        if trial.number == 1:
            raise optuna.TrialPruned()
        if trial.number == 2:
            raise ValueError("bad")
        return x

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    try:
        study.optimize(objective, n_trials=4, catch=(ValueError,))
        assert client.store.flush(60)
    finally:
        factory.close()

    server = mlflow.MlflowClient(tracking_uri=mlflow_server.url)
    runs = server.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if PARENT not in r.data.tags]
    assert len(runs) == 5
    children = {int(r.data.tags["optuna.trial_number"]): r for r in runs if r is not parent}
    assert {n: c.info.status for n, c in children.items()} == {
        0: "FINISHED", 1: "KILLED", 2: "FAILED", 3: "FINISHED"}
    for trial in study.trials:
        child = children[trial.number]
        assert child.data.tags[PARENT] == parent.info.run_id
        assert child.info.run_name == f"trial-{trial.number}"
        assert child.data.params == {"x": str(trial.params["x"])}
        steps = server.get_metric_history(child.info.run_id, "intermediate_value")
        assert sorted((m.step, m.value) for m in steps) == sorted(
            trial.intermediate_values.items())
    assert parent.data.tags["optuna.best_run_id"] == children[study.best_trial.number].info.run_id
    assert parent.data.metrics["n_trials_pruned"] == 1
    assert parent.data.metrics["n_trials_failed"] == 1


def test_processes_sharing_a_storage_each_log_their_own_trials(tracking_dir: Path) -> None:
    pytest.importorskip("sqlalchemy")
    storage = f"sqlite:///{tracking_dir.parent / 'study.db'}"
    optuna.create_study(study_name="shared", storage=storage)
    script = textwrap.dedent(f"""
        import mltrail
        mltrail.set_tracking_uri({str(tracking_dir)!r})
        mltrail.autolog()
        import optuna
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.load_study(study_name="shared", storage={storage!r})
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    """)
    workers = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0, worker.stderr.read() if worker.stderr else ""
    found = parents()
    assert len(found) == 2
    numbers = [sorted(children_of(parent)) for parent in found]
    assert all(len(n) == 3 for n in numbers)
    assert sorted(numbers[0] + numbers[1]) == list(range(6))
    study = optuna.load_study(study_name="shared", storage=storage)
    for parent, mine in zip(found, numbers, strict=True):
        assert parent.data.params["study_name"] == "shared"
        assert parent.data.metrics["n_trials_complete"] == 3
        for number in mine:
            run = children_of(parent)[number]
            assert run.data.params == {"x": str(study.trials[number].params["x"])}
