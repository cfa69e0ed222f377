"""Parallel paths with n_jobs=2 under joblib's loky, threading and multiprocessing backends.

Each test computes a result with n_jobs=2 inside ``joblib.parallel_config(backend=...)``
and asserts it is identical to the same computation run sequentially (n_jobs=1).
Run by tests/peer/run.py with autolog off and on (with autolog on, the patched
functions and estimators have to travel to the worker processes); not collected
by the project's default pytest run.
"""

from __future__ import annotations

import multiprocessing
import signal

import numpy as np
import pytest
from joblib import parallel_config
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    HalvingRandomSearchCV,
    RandomizedSearchCV,
    cross_val_predict,
    cross_val_score,
    cross_validate,
    learning_curve,
    permutation_test_score,
    validation_curve,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

BACKENDS = ["loky", "threading", "multiprocessing"]
X, Y = make_classification(n_samples=120, n_features=6, n_informative=4, random_state=0)
GRID = {"C": [0.1, 1.0, 10.0]}


TEST_TIMEOUT = 120  # seconds; each test takes under 3 s with autolog off


@pytest.fixture(autouse=True)
def _fail_instead_of_hanging():
    """A hung pool (a worker that never exits after a failed task) fails its test
    with TimeoutError instead of stalling the suite: SIGALRM interrupts the wait."""

    def timed_out(signum, frame):
        stuck = multiprocessing.active_children()
        for child in stuck:  # else joining them at exit hangs the whole run
            child.kill()
        raise TimeoutError(
            f"test still running after {TEST_TIMEOUT} s; killed {len(stuck)} hung pool worker(s)"
        )

    previous = signal.signal(signal.SIGALRM, timed_out)
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _model():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=200))


def _search_result(search):
    search.fit(X, Y)
    return (
        search.best_params_,
        search.best_score_,
        search.cv_results_["mean_test_score"],
        search.best_estimator_.predict(X),
    )


PATHS = {
    "cross_val_score": lambda n: cross_val_score(_model(), X, Y, cv=3, n_jobs=n),
    "cross_validate": lambda n: [
        v
        for k, v in sorted(
            cross_validate(_model(), X, Y, cv=3, n_jobs=n, return_train_score=True).items()
        )
        if "time" not in k
    ],
    "cross_val_predict": lambda n: cross_val_predict(
        _model(), X, Y, cv=3, n_jobs=n, method="predict_proba"
    ),
    "learning_curve": lambda n: learning_curve(
        _model(), X, Y, cv=3, n_jobs=n, train_sizes=[0.5, 1.0]
    ),
    "validation_curve": lambda n: validation_curve(
        LogisticRegression(max_iter=200),
        X,
        Y,
        param_name="C",
        param_range=[0.1, 1.0],
        cv=3,
        n_jobs=n,
    ),
    "permutation_test_score": lambda n: permutation_test_score(
        LogisticRegression(max_iter=200),
        X,
        Y,
        cv=3,
        n_permutations=5,
        n_jobs=n,
        random_state=0,
    ),
    "permutation_importance": lambda n: (
        permutation_importance(
            LogisticRegression(max_iter=200).fit(X, Y),
            X,
            Y,
            n_repeats=3,
            n_jobs=n,
            random_state=0,
        ).importances
    ),
    "GridSearchCV": lambda n: _search_result(
        GridSearchCV(LogisticRegression(max_iter=200), GRID, cv=3, n_jobs=n)
    ),
    "RandomizedSearchCV": lambda n: _search_result(
        RandomizedSearchCV(
            LogisticRegression(max_iter=200), GRID, n_iter=2, cv=3, n_jobs=n, random_state=0
        )
    ),
    "HalvingGridSearchCV": lambda n: _search_result(
        HalvingGridSearchCV(LogisticRegression(max_iter=200), GRID, cv=3, n_jobs=n, random_state=0)
    ),
    "HalvingRandomSearchCV": lambda n: _search_result(
        HalvingRandomSearchCV(
            LogisticRegression(max_iter=200), GRID, cv=3, n_jobs=n, random_state=0
        )
    ),
    "RandomForestClassifier": lambda n: (
        RandomForestClassifier(n_estimators=8, random_state=0, n_jobs=n).fit(X, Y).predict_proba(X)
    ),
}


def _assert_identical(expected, actual):
    if isinstance(expected, dict):
        assert expected == actual
    elif isinstance(expected, (tuple, list)):
        assert len(expected) == len(actual)
        for e, a in zip(expected, actual, strict=True):
            _assert_identical(e, a)
    else:
        np.testing.assert_array_equal(np.asarray(expected), np.asarray(actual))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("path", sorted(PATHS))
def test_parallel_path_matches_sequential(path, backend):
    expected = PATHS[path](1)
    with parallel_config(backend=backend):
        actual = PATHS[path](2)
    _assert_identical(expected, actual)


# Not under "multiprocessing": that backend forks, and a process forked after xgboost's
# OpenMP threads ran hangs in libgomp (with autolog off too); loky spawns fresh workers.
@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_xgboost_wrapper_n_jobs(backend):
    xgb = pytest.importorskip("xgboost")
    expected = xgb.XGBClassifier(n_estimators=5, n_jobs=1).fit(X, Y).predict_proba(X)
    with parallel_config(backend=backend):
        # n_jobs=2: xgboost's own threads; inside cross_val_score: joblib's workers too
        actual = xgb.XGBClassifier(n_estimators=5, n_jobs=2).fit(X, Y).predict_proba(X)
        scores = cross_val_score(xgb.XGBClassifier(n_estimators=5, n_jobs=2), X, Y, cv=3, n_jobs=2)
    np.testing.assert_array_equal(expected, actual)
    np.testing.assert_array_equal(
        cross_val_score(xgb.XGBClassifier(n_estimators=5, n_jobs=1), X, Y, cv=3), scores
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_hyperopt_objective_with_n_jobs(backend):
    hyperopt = pytest.importorskip("hyperopt")

    def objective(n_jobs):
        def loss(c):
            return -cross_val_score(
                LogisticRegression(C=c, max_iter=200), X, Y, cv=3, n_jobs=n_jobs
            ).mean()

        return loss

    def run(n_jobs):
        trials = hyperopt.Trials()
        best = hyperopt.fmin(
            objective(n_jobs),
            hyperopt.hp.loguniform("c", -3, 2),
            algo=hyperopt.tpe.suggest,
            max_evals=4,
            trials=trials,
            rstate=np.random.default_rng(0),
            show_progressbar=False,
        )
        return best, trials.losses()

    expected = run(1)
    with parallel_config(backend=backend):
        actual = run(2)
    assert expected == actual
