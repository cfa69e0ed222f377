"""hyperopt autologging: a search is a parent run, each trial a child run.

Real hyperopt searches (and real xgboost / scikit-learn trainings inside the
objectives) on tiny data, to a local store. `fmin` is imported at the top of
this module, before any test turns autolog on: every test also checks that a
name bound before `autolog()` is recorded.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from hyperopt import (
    JOB_STATE_DONE,
    JOB_STATE_NEW,
    STATUS_FAIL,
    STATUS_OK,
    Ctrl,
    Domain,
    FMinIter,
    Trials,
    fmin,
    hp,
    rand,
    space_eval,
    tpe,
)
from hyperopt.early_stop import no_progress_loss
from hyperopt.pyll import scope

import mltrail
from mltrail.entities import RunStatus

PARENT = "mlflow.parentRunId"


@pytest.fixture
def autolog(tracking_dir: Path) -> Iterator[None]:
    mltrail.hyperopt.autolog()
    mltrail.xgboost.autolog(log_models=False, log_datasets=False)
    mltrail.sklearn.autolog(log_models=False, log_datasets=False)
    yield
    for flavor in ("hyperopt", "xgboost", "sklearn"):
        getattr(mltrail, flavor).autolog(disable=True)


@pytest.fixture(scope="module")
def data() -> tuple[xgb.DMatrix, xgb.DMatrix, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 4))
    y = x[:, 0] * 2.0 - x[:, 1] + rng.normal(scale=0.3, size=240)
    return xgb.DMatrix(x[:180], label=y[:180]), xgb.DMatrix(x[180:], label=y[180:]), y[180:]


def seed_space() -> dict[str, Any]:
    """The search space of the course notes (the seeds), with a current objective name."""
    return {
        "max_depth": scope.int(hp.quniform("max_depth", 2, 8, 1)),
        "learning_rate": hp.loguniform("learning_rate", -3, 0),
        "reg_alpha": hp.loguniform("reg_alpha", -5, -1),
        "min_child_weight": hp.loguniform("min_child_weight", -1, 3),
        "objective": "reg:squarederror",
        "seed": 42,
    }


def all_runs() -> list[mltrail.Run]:
    return mltrail.search_runs(output_format="list")


def runs_by_name() -> dict[str, mltrail.Run]:
    runs = all_runs()
    named = {r.info.run_name: r for r in runs}
    assert len(named) == len(runs)
    return named


def split(runs: dict[str, mltrail.Run]) -> tuple[list[mltrail.Run], dict[int, mltrail.Run]]:
    """Runs without a parent, and the trial runs by tid."""
    parents = [r for r in runs.values() if PARENT not in r.data.tags]
    trials = {
        int(r.data.tags["hyperopt.trial_id"]): r
        for r in runs.values()
        if "hyperopt.trial_id" in r.data.tags
    }
    return parents, trials


def search(
    fn: Any, space: Any, max_evals: int, algo: Any = rand.suggest, seed: int = 0, **kwargs: Any
) -> Any:
    """Plain `fmin`, quiet and seeded."""
    return fmin(
        fn,
        space,
        algo=algo,
        max_evals=max_evals,
        rstate=np.random.default_rng(seed),
        show_progressbar=False,
        **kwargs,
    )


def quadratic(point: dict[str, Any]) -> dict[str, Any]:
    return {"loss": (point["x"] - 1.0) ** 2, "status": STATUS_OK, "true_loss": abs(point["x"])}


# the tree -------------------------------------------------------------------


def test_xgboost_tpe_search_is_one_parent_and_a_child_per_trial(autolog: None, data: Any) -> None:
    dtrain, dvalid, y_valid = data
    rounds = 4

    def objective(params: dict[str, Any]) -> dict[str, Any]:
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=rounds,
            evals=[(dvalid, "validation")],
            verbose_eval=False,
        )
        rmse = float(np.sqrt(np.mean((booster.predict(dvalid) - y_valid) ** 2)))
        return {"loss": rmse, "status": STATUS_OK}

    trials = Trials()
    search(objective, seed_space(), 20, algo=tpe.suggest, seed=7, trials=trials)

    assert mltrail.active_run() is None
    parents, children = split(runs_by_name())
    assert len(parents) == 1 and len(children) == 20
    parent = parents[0]
    assert set(children) == set(trials.tids)
    client = mltrail.MlflowClient()
    for doc in trials.trials:
        child = children[doc["tid"]]
        vals = {k: v[0] for k, v in doc["misc"]["vals"].items()}
        assert child.data.tags[PARENT] == parent.info.run_id
        assert child.info.run_name == f"trial-{doc['tid']}"
        assert child.info.status == RunStatus.FINISHED
        assert child.data.tags["hyperopt.status"] == STATUS_OK
        assert child.data.tags["mlflow.autologging"] == "hyperopt"
        # the sampled point; scope.int's value as an int
        assert child.data.params["max_depth"] == str(int(vals["max_depth"]))
        assert child.data.params["learning_rate"] == str(vals["learning_rate"])
        assert child.data.params["min_child_weight"] == str(vals["min_child_weight"])
        assert child.data.params["objective"] == "reg:squarederror"
        assert child.data.params["seed"] == "42"
        assert child.data.metrics["loss"] == doc["result"]["loss"]
        # what the objective trained logged into its trial's run, per iteration
        history = client.get_metric_history(child.info.run_id, "validation-rmse")
        assert [m.step for m in history] == list(range(rounds))
        assert child.data.params["num_boost_round"] == str(rounds)
    losses = trials.losses()
    assert parent.data.metrics["best_loss"] == min(losses)
    assert parent.data.metrics["n_trials_ok"] == 20
    assert parent.data.metrics["n_trials_failed"] == 0
    best_tid = trials.best_trial["tid"]
    assert parent.data.tags["hyperopt.best_trial_id"] == str(best_tid)
    assert parent.data.tags["hyperopt.best_run_id"] == children[best_tid].info.run_id
    assert parent.data.tags["mlflow.autologging"] == "hyperopt"
    assert parent.info.status == RunStatus.FINISHED
    # nothing the objective trained landed on the search run
    assert "validation-rmse" not in parent.data.metrics
    best = space_eval(seed_space(), trials.argmin)
    assert parent.data.params["best_max_depth"] == str(best["max_depth"])
    assert parent.data.params["best_learning_rate"] == str(best["learning_rate"])
    assert parent.data.params["max_evals"] == "20"
    assert parent.data.params["algo"] == "tpe"
    assert parent.data.params["rstate_seed"] == "7"
    assert parent.data.params["space.max_depth"] == "scope.int(hp.quniform(2, 8, 1))"
    assert parent.data.params["space.learning_rate"] == "hp.loguniform(-3, 0)"
    assert parent.data.params["space.objective"] == "reg:squarederror"


@pytest.mark.parametrize("nested", [False, True])
def test_seed_objective_opening_its_own_run_gives_one_run_per_trial(
    autolog: None, data: Any, nested: bool
) -> None:
    """The seeds' objective: `with mlflow.start_run():` around the training, logging itself."""
    dtrain, dvalid, y_valid = data

    def objective(params: dict[str, Any]) -> dict[str, Any]:
        with mltrail.start_run(nested=nested):
            mltrail.set_tag("model", "xgboost")
            mltrail.log_params(params)
            booster = xgb.train(
                params,
                dtrain,
                num_boost_round=3,
                evals=[(dvalid, "validation")],
                verbose_eval=False,
            )
            rmse = float(np.sqrt(np.mean((booster.predict(dvalid) - y_valid) ** 2)))
            mltrail.log_metric("rmse", rmse)
        return {"loss": rmse, "status": STATUS_OK}

    trials = Trials()
    search(objective, seed_space(), 4, algo=tpe.suggest, seed=1, trials=trials)

    runs = runs_by_name()
    assert len(runs) == 5  # the search and its 4 trials: no empty trial beside a grandchild
    parents, children = split(runs)
    assert len(parents) == 1 and len(children) == 4
    for doc in trials.trials:
        child = children[doc["tid"]]
        assert child.data.tags[PARENT] == parents[0].info.run_id
        assert child.data.tags["model"] == "xgboost"
        assert child.data.metrics["rmse"] == doc["result"]["loss"] == child.data.metrics["loss"]
        assert "validation-rmse" in child.data.metrics
        assert child.data.params["max_depth"] == str(int(doc["misc"]["vals"]["max_depth"][0]))
        assert child.info.status == RunStatus.FINISHED
    assert mltrail.active_run() is None


def test_sklearn_objective_logs_into_its_trial(autolog: None) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(
        *load_diabetes(return_X_y=True), random_state=0
    )

    def objective(point: dict[str, Any]) -> float:
        model = Ridge(alpha=point["alpha"]).fit(x_train, y_train)
        return -model.score(x_test, y_test)  # a bare float

    trials = Trials()
    search(objective, {"alpha": hp.loguniform("alpha", -4, 2)}, 3, trials=trials)

    parents, children = split(runs_by_name())
    assert len(parents) == 1 and len(children) == 3
    for doc in trials.trials:
        child = children[doc["tid"]]
        assert child.data.metrics["loss"] == doc["result"]["loss"]
        assert "training_r2_score" in child.data.metrics  # from the sklearn integration
        assert child.data.tags["estimator_name"] == "Ridge"
        assert child.data.params["alpha"] == str(doc["misc"]["vals"]["alpha"][0])
    assert "training_r2_score" not in parents[0].data.metrics


# what a trial records --------------------------------------------------------


def test_choice_over_dicts_of_different_shapes_is_flattened(autolog: None) -> None:
    space = {
        "classifier": hp.choice(
            "classifier",
            [
                {
                    "type": "svm",
                    "C": hp.lognormal("svm_C", 0, 1),
                    "kernel": hp.choice("kernel", ["linear", "rbf"]),
                },
                {"type": "tree", "depth": scope.int(hp.quniform("tree_depth", 1, 5, 1))},
                {"type": "dummy"},
            ],
        ),
        "x": hp.uniform("x", -2, 2),
        "nested": {"fixed": 3, "layers": [16, 8]},
    }
    seen: list[dict[str, Any]] = []

    def objective(point: dict[str, Any]) -> float:
        seen.append(point)
        return point["x"] ** 2

    trials = Trials()
    search(objective, space, 12, seed=3, trials=trials)

    parents, children = split(runs_by_name())
    shapes = set()
    for doc, point in zip(trials.trials, seen, strict=True):
        params = children[doc["tid"]].data.params
        chosen = point["classifier"]
        shapes.add(chosen["type"])
        expected = {f"classifier.{k}": str(v) for k, v in chosen.items()}
        expected.update({"x": str(point["x"]), "nested.fixed": "3", "nested.layers": "(16, 8)"})
        assert params == expected
        if chosen["type"] == "tree":
            assert params["classifier.depth"] == str(int(doc["misc"]["vals"]["tree_depth"][0]))
    assert shapes == {"svm", "tree", "dummy"}
    described = parents[0].data.params
    assert described["space.classifier"] == (
        "hp.choice([{'C': svm_C, 'kernel': kernel, 'type': 'svm'}, "
        "{'depth': tree_depth, 'type': 'tree'}, {'type': 'dummy'}])"
    )
    assert described["space.svm_C"] == "hp.lognormal(0, 1)"
    assert described["space.kernel"] == "hp.choice(['linear', 'rbf'])"
    assert described["space.tree_depth"] == "scope.int(hp.quniform(1, 5, 1))"
    assert described["space.nested.fixed"] == "3"
    assert described["space.nested.layers"] == "[16, 8]"
    best = space_eval(space, trials.argmin)
    assert described["best_classifier.type"] == best["classifier"]["type"]
    assert described["best_x"] == str(best["x"])


def test_a_space_that_is_one_hyperparameter_names_it_by_label(autolog: None) -> None:
    trials = Trials()
    search(lambda x: (x - 1.0) ** 2, hp.uniform("x", -5, 5), 3, algo=tpe.suggest, trials=trials)
    parents, children = split(runs_by_name())
    for doc in trials.trials:
        assert children[doc["tid"]].data.params == {"x": str(doc["misc"]["vals"]["x"][0])}
    assert parents[0].data.params["space.x"] == "hp.uniform(-5, 5)"
    assert parents[0].data.params["best_x"] == str(trials.argmin["x"])


def test_numeric_result_entries_become_metrics(autolog: None) -> None:
    def objective(point: dict[str, Any]) -> dict[str, Any]:
        return {
            "loss": point["x"] ** 2,
            "status": STATUS_OK,
            "true_loss": 1.5,
            "loss_variance": 0.25,
            "n_iter": 7,
            "note": "text",
            "converged": True,
            "accuracy (val)": 0.9,
        }

    search(objective, {"x": hp.uniform("x", -1, 1)}, 2)
    _, children = split(runs_by_name())
    for child in children.values():
        assert set(child.data.metrics) == {
            "loss",
            "true_loss",
            "loss_variance",
            "n_iter",
            "accuracy _val_",
        }
        assert child.data.metrics["true_loss"] == 1.5


def test_nan_and_inf_losses_are_kept(autolog: None) -> None:
    losses = iter([float("nan"), 2.0, float("inf"), 1.0])
    trials = Trials()
    search(lambda point: next(losses), {"x": hp.uniform("x", 0, 1)}, 4, trials=trials)
    parents, children = split(runs_by_name())
    logged = [children[tid].data.metrics["loss"] for tid in range(4)]
    assert math.isnan(logged[0]) and logged[1:] == [2.0, math.inf, 1.0]
    assert parents[0].data.metrics["best_loss"] == 1.0  # hyperopt's best skips NaN
    assert parents[0].data.tags["hyperopt.best_run_id"] == children[3].info.run_id


def test_status_fail_trials_are_failed_runs_without_loss(autolog: None) -> None:
    def objective(point: dict[str, Any]) -> dict[str, Any]:
        if point["x"] < 0:
            return {"status": STATUS_FAIL, "loss": 99.0, "attempts": 2}
        return {"status": STATUS_OK, "loss": point["x"]}

    trials = Trials()
    search(objective, {"x": hp.uniform("x", -1, 1)}, 10, seed=2, trials=trials)
    parents, children = split(runs_by_name())
    failed = [d["tid"] for d in trials.trials if d["result"]["status"] == STATUS_FAIL]
    assert 0 < len(failed) < 10
    for doc in trials.trials:
        child = children[doc["tid"]]
        if doc["tid"] in failed:
            assert child.info.status == RunStatus.FAILED
            assert child.data.tags["hyperopt.status"] == STATUS_FAIL
            assert "loss" not in child.data.metrics
            assert child.data.metrics["attempts"] == 2
        else:
            assert child.info.status == RunStatus.FINISHED
            assert child.data.metrics["loss"] == doc["result"]["loss"]
    assert parents[0].data.metrics["n_trials_failed"] == len(failed)
    assert parents[0].data.metrics["n_trials_ok"] == 10 - len(failed)
    assert parents[0].info.status == RunStatus.FINISHED


def test_raising_objective_propagates_and_fails_its_trial_and_the_search(autolog: None) -> None:
    calls = []

    def objective(point: dict[str, Any]) -> float:
        calls.append(point)
        if len(calls) == 3:
            raise ValueError("diverged at trial three")
        return point["x"]

    trials = Trials()
    with pytest.raises(ValueError, match="diverged at trial three"):
        search(objective, {"x": hp.uniform("x", 0, 1)}, 5, trials=trials)

    assert mltrail.active_run() is None
    parents, children = split(runs_by_name())
    assert len(children) == 3
    assert children[2].info.status == RunStatus.FAILED
    assert children[2].data.tags["hyperopt.status"] == "error"
    assert children[2].data.tags["hyperopt.error"] == "ValueError: diverged at trial three"
    assert children[2].data.params == {"x": str(calls[2]["x"])}
    assert [children[t].info.status for t in (0, 1)] == [RunStatus.FINISHED] * 2
    assert parents[0].info.status == RunStatus.FAILED
    assert parents[0].data.metrics["n_trials_ok"] == 2
    assert parents[0].data.metrics["n_trials_failed"] == 1


def test_caught_exceptions_let_the_search_go_on(autolog: None) -> None:
    def objective(point: dict[str, Any]) -> float:
        if point["x"] > 0.5:
            raise RuntimeError(f"bad x {point['x']:.3f}")
        return point["x"]

    trials = Trials()
    search(
        objective,
        {"x": hp.uniform("x", 0, 1)},
        8,
        seed=4,
        trials=trials,
        catch_eval_exceptions=True,
    )

    assert mltrail.active_run() is None
    parents, children = split(runs_by_name())
    assert len(children) == 8  # the trials that raised included
    errors = [c for c in children.values() if c.data.tags["hyperopt.status"] == "error"]
    assert 0 < len(errors) < 8
    for child in errors:
        assert child.info.status == RunStatus.FAILED
        assert child.data.tags["hyperopt.error"].startswith("RuntimeError: bad x ")
        assert float(child.data.params["x"]) > 0.5
    assert parents[0].info.status == RunStatus.FINISHED
    assert parents[0].data.metrics["n_trials_failed"] == len(errors)
    assert parents[0].data.metrics["n_trials_ok"] == len(trials.trials) == 8 - len(errors)


def test_objective_logging_a_param_its_own_way_keeps_its_value(autolog: None) -> None:
    """No conflict when the objective logs a converted value under the point's key."""

    def objective(point: dict[str, Any]) -> float:
        mltrail.log_param("depth", int(point["depth"]))  # quniform gives 3.0; logged as 3
        return point["depth"]

    trials = Trials()
    search(
        objective,
        {"depth": hp.quniform("depth", 1, 5, 1), "x": hp.uniform("x", 0, 1)},
        3,
        trials=trials,
    )
    _, children = split(runs_by_name())
    for doc in trials.trials:
        params = children[doc["tid"]].data.params
        assert params["depth"] == str(int(doc["misc"]["vals"]["depth"][0]))
        assert params["x"] == str(doc["misc"]["vals"]["x"][0])


# the ways a search is run ----------------------------------------------------


def test_without_trials_and_through_trials_fmin_each_call_is_one_search(autolog: None) -> None:
    search(quadratic, {"x": hp.uniform("x", -2, 2)}, 3)
    trials = Trials()
    trials.fmin(
        quadratic,
        {"x": hp.uniform("x", -2, 2)},
        algo=rand.suggest,
        max_evals=2,
        rstate=np.random.default_rng(0),
        show_progressbar=False,
    )
    runs = all_runs()  # both searches have a trial-0
    parents = [r for r in runs if PARENT not in r.data.tags]
    assert len(parents) == 2 and len(runs) == 2 + 3 + 2
    counts = sorted(sum(r.data.tags.get(PARENT) == p.info.run_id for r in runs) for p in parents)
    assert counts == [2, 3]
    assert mltrail.active_run() is None


def test_resumed_trials_log_only_the_new_trials(autolog: None) -> None:
    trials = Trials()
    space = {"x": hp.uniform("x", -2, 2)}
    search(quadratic, space, 3, algo=tpe.suggest, trials=trials)
    first = mltrail.last_active_run()
    assert first is not None
    # as people resume a long search: the Trials pickled, loaded, given more evals
    trials = pickle.loads(pickle.dumps(trials))
    search(quadratic, space, 7, algo=tpe.suggest, seed=1, trials=trials)

    runs = runs_by_name()
    parents = {r.info.run_id: r for r in split(runs)[0]}
    assert len(parents) == 2 and len(runs) == 2 + 7
    second = parents[next(i for i in parents if i != first.info.run_id)]
    children_of = {
        pid: sorted(
            int(r.data.tags["hyperopt.trial_id"])
            for r in runs.values()
            if r.data.tags.get(PARENT) == pid
        )
        for pid in parents
    }
    assert children_of[first.info.run_id] == [0, 1, 2]
    assert children_of[second.info.run_id] == [3, 4, 5, 6]
    assert second.data.tags["hyperopt.resumed_from"] == first.info.run_id
    assert second.data.params["trials_at_start"] == "3"
    assert second.data.params["max_evals"] == "7"
    # the outcome covers the whole Trials, and the best run is found even if it is an old one
    assert second.data.metrics["best_loss"] == min(trials.losses())
    assert second.data.metrics["n_trials_ok"] == 7
    best_run = runs[f"trial-{trials.best_trial['tid']}"]
    assert second.data.tags["hyperopt.best_run_id"] == best_run.info.run_id


def test_early_stop_fn(autolog: None) -> None:
    trials = Trials()
    search(
        lambda point: 1.0,
        {"x": hp.uniform("x", 0, 1)},
        50,
        algo=tpe.suggest,
        trials=trials,
        early_stop_fn=no_progress_loss(3),
    )
    assert len(trials.trials) < 50
    parents, children = split(runs_by_name())
    assert len(children) == len(trials.trials)
    assert parents[0].data.params["early_stop_fn"] == (
        "hyperopt.early_stop.no_progress_loss.<locals>.stop_fn"
    )


def test_the_users_open_run_is_the_parent(autolog: None) -> None:
    with mltrail.start_run(run_name="my-search") as run:
        search(quadratic, {"x": hp.uniform("x", -2, 2)}, 3)
        assert mltrail.active_run() is run
        assert mltrail.get_run(run.info.run_id).info.status == RunStatus.RUNNING
    runs = runs_by_name()
    assert len(runs) == 4
    parent = runs["my-search"]
    assert parent.info.status == RunStatus.FINISHED
    assert "mlflow.autologging" not in parent.data.tags
    assert parent.data.params["max_evals"] == "3"
    assert all(runs[f"trial-{t}"].data.tags[PARENT] == run.info.run_id for t in range(3))


def test_points_to_evaluate_are_trials_too(autolog: None) -> None:
    trials_out = search(
        quadratic, {"x": hp.uniform("x", -2, 2)}, 2, points_to_evaluate=[{"x": 1.0}]
    )
    assert trials_out == {"x": 1.0}
    parents, children = split(runs_by_name())
    assert children[0].data.params == {"x": "1.0"} and children[0].data.metrics["loss"] == 0.0
    assert parents[0].data.tags["hyperopt.best_run_id"] == children[0].info.run_id


def test_disabled_records_nothing(autolog: None) -> None:
    mltrail.hyperopt.autolog(disable=True)
    search(quadratic, {"x": hp.uniform("x", -2, 2)}, 2)
    assert runs_by_name() == {}


def test_interrupted_trial_is_killed_and_nothing_leaks(autolog: None) -> None:
    def objective(point: dict[str, Any]) -> float:
        mltrail.start_run(nested=True)  # adopted, and never ended by the objective
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search(objective, {"x": hp.uniform("x", 0, 1)}, 3)
    assert mltrail.active_run() is None
    parents, children = split(runs_by_name())
    assert children[0].info.status == RunStatus.KILLED
    assert parents[0].info.status == RunStatus.KILLED


# trials evaluated elsewhere --------------------------------------------------


class InlineWorkerTrials(Trials):
    """Stands in for MongoTrials/SparkTrials, whose servers are not available here.

    An asynchronous Trials: fmin only queues points, and a worker evaluates them
    from the pickled Domain, as hyperopt's Mongo worker does; this worker runs
    inline, whenever fmin polls the queue.
    """

    asynchronous = True

    def count_by_state_unsynced(self, arg: Any) -> int:
        for doc in self._dynamic_trials:
            if doc["state"] == JOB_STATE_NEW:
                domain = pickle.loads(self.attachments["FMinIter_Domain"])
                spec = {k: v[0] for k, v in doc["misc"]["vals"].items() if v}
                doc["result"] = domain.evaluate(spec, Ctrl(self, current_trial=doc))
                doc["state"] = JOB_STATE_DONE
        return super().count_by_state_unsynced(arg)


def remote_objective(point: dict[str, Any]) -> dict[str, Any]:
    return {"loss": point["x"] ** 2, "status": STATUS_OK if point["x"] < 0.8 else STATUS_FAIL}


def test_asynchronous_trials_get_their_runs_when_the_search_ends(autolog: None) -> None:
    trials = InlineWorkerTrials()
    domain_space = {"x": hp.uniform("x", 0, 1), "k": "v"}
    search = FMinIter(
        rand.suggest,
        Domain(remote_objective, domain_space),
        trials,
        rstate=np.random.default_rng(5),
        max_evals=6,
        poll_interval_secs=0.001,
        show_progressbar=False,
    )
    search.exhaust()

    parents, children = split(runs_by_name())
    assert len(parents) == 1 and set(children) == set(trials.tids) and len(children) == 6
    for doc in trials.trials:
        child = children[doc["tid"]]
        assert child.data.tags[PARENT] == parents[0].info.run_id
        assert child.data.params == {"x": str(doc["misc"]["vals"]["x"][0]), "k": "v"}
        ok = doc["result"]["status"] == STATUS_OK
        assert child.info.status == (RunStatus.FINISHED if ok else RunStatus.FAILED)
        assert ("loss" in child.data.metrics) == ok
    assert parents[0].data.tags["hyperopt.best_run_id"] == (
        children[trials.best_trial["tid"]].info.run_id
    )


# the core hook ---------------------------------------------------------------


def test_adoptable_run_is_taken_over_once(tracking_dir: Path) -> None:
    outer = mltrail.start_run(run_name="trial")
    with mltrail.autologging.adoptable(outer):
        with mltrail.start_run(nested=True, tags={"t": "1"}, description="note") as adopted:
            assert adopted.info.run_id == outer.info.run_id and adopted.adopted
            assert mltrail.active_run() is adopted
            with mltrail.start_run(nested=True) as grandchild:  # a second run nests as usual
                assert grandchild.info.run_id != outer.info.run_id
        assert mltrail.active_run() is outer
        assert mltrail.get_run(outer.info.run_id).info.status == RunStatus.RUNNING
    with mltrail.autologging.adoptable(outer):
        mltrail.start_run()  # a plain start_run too, as the seeds write it
        mltrail.end_run()
        assert mltrail.active_run() is outer
    run = mltrail.get_run(outer.info.run_id)
    assert run.data.tags["t"] == "1" and run.data.tags["mlflow.note.content"] == "note"
    mltrail.end_run()
    with mltrail.start_run(), pytest.raises(mltrail.exceptions.RunStateError):
        mltrail.start_run()  # outside the scope: as before


# a tracking server -----------------------------------------------------------


def test_search_logged_to_an_mlflow_server(
    autolog: None, data: Any, mlflow_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same tree on a real `mlflow server`, read back with MLflow's own client."""
    import mlflow
    from remote_helpers import RemoteFactory, unique

    dtrain, dvalid, y_valid = data
    factory = RemoteFactory(tmp_path / "spool", monkeypatch)
    client = factory(mlflow_server.url)
    mltrail.set_tracking_uri(mlflow_server.url)
    experiment = mltrail.set_experiment(unique("hyperopt"))

    def objective(params: dict[str, Any]) -> dict[str, Any]:
        with mltrail.start_run(nested=True):  # the seeds' pattern
            booster = xgb.train(
                params, dtrain, 3, evals=[(dvalid, "validation")], verbose_eval=False
            )
            rmse = float(np.sqrt(np.mean((booster.predict(dvalid) - y_valid) ** 2)))
        return {"loss": rmse, "status": STATUS_OK}

    trials = Trials()
    try:
        search(objective, seed_space(), 3, algo=tpe.suggest, trials=trials)
        assert client.store.flush(60)
    finally:
        factory.close()

    server = mlflow.MlflowClient(tracking_uri=mlflow_server.url)
    runs = server.search_runs([experiment.experiment_id])
    parents = [r for r in runs if PARENT not in r.data.tags]
    assert len(parents) == 1 and len(runs) == 4
    parent = parents[0]
    children = {int(r.data.tags["hyperopt.trial_id"]): r for r in runs if r is not parent}
    for doc in trials.trials:
        child = children[doc["tid"]]
        assert child.data.tags[PARENT] == parent.info.run_id
        assert child.info.status == "FINISHED"
        assert child.data.metrics["loss"] == doc["result"]["loss"]
        assert child.data.params["max_depth"] == str(int(doc["misc"]["vals"]["max_depth"][0]))
        assert len(server.get_metric_history(child.info.run_id, "validation-rmse")) == 3
    assert parent.data.metrics["best_loss"] == min(trials.losses())
    assert (
        parent.data.tags["hyperopt.best_run_id"] == children[trials.best_trial["tid"]].info.run_id
    )
