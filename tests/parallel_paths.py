"""Run scikit-learn's, xgboost's and hyperopt's parallel paths and print what they gave.

Run as a script by `test_autolog_guarantees.py`, in a fresh interpreter, so that
autolog can be turned on before or after the frameworks are imported:

    python parallel_paths.py {off,before,after} BACKEND [BACKEND ...]

It prints one JSON object: for every backend and path, the numbers the path
returned with `n_jobs=2` and with `n_jobs=1`, and how many runs each call made.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

MODE, BACKENDS = sys.argv[1], sys.argv[2:]
os.environ["MLTRAIL_STRICT"] = "1"
os.environ["MLTRAIL_TRACKING_URI"] = tempfile.mkdtemp(prefix="mltrail-parallel-")

if MODE == "before":
    import mltrail

    mltrail.autolog(log_models=False)

import joblib  # noqa: E402
import numpy as np  # noqa: E402
import xgboost as xgb  # noqa: E402
from hyperopt import Trials, fmin, hp, tpe  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.experimental import enable_halving_search_cv  # noqa: E402, F401
from sklearn.inspection import permutation_importance  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import (  # noqa: E402
    GridSearchCV,
    HalvingGridSearchCV,
    RandomizedSearchCV,
    cross_val_predict,
    cross_val_score,
    cross_validate,
    learning_curve,
    permutation_test_score,
    validation_curve,
)

if MODE == "after":
    import mltrail

    mltrail.autolog(log_models=False)

X, y = load_iris(return_X_y=True)
FOLDS = 3


def model() -> LogisticRegression:
    return LogisticRegression(max_iter=300)


def search_result(search: Any) -> list[Any]:
    return [search.best_params_, search.cv_results_["mean_test_score"].tolist()]


def objective_with_jobs(n_jobs: int) -> Callable[[dict[str, Any]], float]:
    def objective(point: dict[str, Any]) -> float:
        return -float(cross_val_score(LogisticRegression(C=point["C"], max_iter=300), X, y,
                                      cv=FOLDS, n_jobs=n_jobs).mean())

    return objective


PATHS: dict[str, Callable[[int], Any]] = {
    "cross_val_score": lambda n: cross_val_score(model(), X, y, cv=FOLDS, n_jobs=n),
    "cross_validate": lambda n: cross_validate(model(), X, y, cv=FOLDS, n_jobs=n)["test_score"],
    "cross_val_predict": lambda n: cross_val_predict(model(), X, y, cv=FOLDS, n_jobs=n),
    "learning_curve": lambda n: learning_curve(model(), X, y, cv=FOLDS, n_jobs=n,
                                               train_sizes=[0.5, 1.0])[2],
    "validation_curve": lambda n: validation_curve(model(), X, y, param_name="C",
                                                   param_range=[0.1, 1.0], cv=FOLDS,
                                                   n_jobs=n)[1],
    "permutation_test_score": lambda n: permutation_test_score(
        model(), X, y, cv=FOLDS, n_permutations=3, random_state=0, n_jobs=n)[:2],
    "permutation_importance": lambda n: permutation_importance(
        model().fit(X, y), X, y, n_repeats=3, random_state=0, n_jobs=n).importances_mean,
    "GridSearchCV": lambda n: search_result(
        GridSearchCV(model(), {"C": [0.1, 1.0]}, cv=FOLDS, n_jobs=n).fit(X, y)),
    "RandomizedSearchCV": lambda n: search_result(RandomizedSearchCV(
        model(), {"C": [0.01, 0.1, 1.0]}, n_iter=2, cv=FOLDS, random_state=0,
        n_jobs=n).fit(X, y)),
    "HalvingGridSearchCV": lambda n: search_result(HalvingGridSearchCV(
        model(), {"C": [0.1, 1.0, 10.0]}, cv=FOLDS, random_state=0, n_jobs=n).fit(X, y)),
    "RandomForestClassifier": lambda n: RandomForestClassifier(
        n_estimators=8, random_state=0, n_jobs=n).fit(X, y).predict_proba(X),
    "XGBClassifier": lambda n: xgb.XGBClassifier(
        n_estimators=5, max_depth=2, n_jobs=n).fit(X, y).predict_proba(X),
    "hyperopt objective": lambda n: fmin(
        objective_with_jobs(n), {"C": hp.choice("C", [0.1, 1.0])}, algo=tpe.suggest,
        max_evals=2, trials=Trials(), rstate=np.random.default_rng(0), show_progressbar=False),
}


def run_count() -> int:
    if MODE == "off":
        return 0
    return len(mltrail.search_runs(output_format="list"))


def plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: np.asarray(v).tolist()))


out: dict[str, Any] = {}
for backend in BACKENDS:
    with joblib.parallel_backend(backend):
        for name, path in PATHS.items():
            entry = {}
            for n_jobs in (2, 1):
                before = run_count()
                entry[f"result_{n_jobs}"] = plain(path(n_jobs))
                entry[f"runs_{n_jobs}"] = run_count() - before
            out[f"{backend} {name}"] = entry
print(json.dumps(out))
