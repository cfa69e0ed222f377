"""The benchmark workloads: the trainings of the course notes, on fixed data and seeds.

Each workload is a `prepare()` that builds its data (not timed) and returns a
callable that trains (timed). `log_metric` is the one workload that only logs:
it takes the logging module (mltrail or mlflow) to call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

Prepared = Callable[[Any], None]


def rf_wine() -> Prepared:
    """Seed 001: 10 RandomForest fits on the wine data."""
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    x, y = load_wine(return_X_y=True)
    x_train, _, y_train, _ = train_test_split(x, y, test_size=0.1, random_state=42)

    def train(_: Any) -> None:
        for seed in range(10):
            RandomForestClassifier(max_depth=5, n_estimators=10, random_state=seed).fit(
                x_train, y_train)

    return train


def lasso_50k() -> Prepared:
    """Seed 000: 10 Lasso fits on 50,000 x 50."""
    from sklearn.datasets import make_regression
    from sklearn.linear_model import Lasso

    x, y = make_regression(n_samples=50_000, n_features=50, noise=5.0, random_state=0)

    def train(_: Any) -> None:
        for alpha in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0):
            Lasso(alpha=alpha).fit(x, y)

    return train


def _xgb_data(rows: int) -> tuple[Any, Any, Any]:
    """Synthetic regression data split 70/15/15 into train, validation and test DMatrix."""
    import numpy as np
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 20))
    y = x[:, 0] * 3 + np.sin(x[:, 1]) + rng.normal(scale=0.5, size=len(x))
    a, b = int(rows * 0.7), int(rows * 0.85)
    return (xgb.DMatrix(x[:a], label=y[:a]), xgb.DMatrix(x[a:b], label=y[a:b]),
            xgb.DMatrix(x[b:], label=y[b:]))


def xgb_500() -> Prepared:
    """xgboost.train, 500 rounds, two eval sets, two metrics, early stopping."""
    import xgboost as xgb

    train, valid, test = _xgb_data(20_000)
    params = {"objective": "reg:squarederror", "eval_metric": ["rmse", "mae"], "max_depth": 6,
              "learning_rate": 0.05, "seed": 42, "nthread": 2}

    def run(_: Any) -> None:
        xgb.train(params, train, num_boost_round=500, evals=[(test, "test"), (valid, "validation")],
                  early_stopping_rounds=50, verbose_eval=False)

    return run


def hyperopt_20() -> Prepared:
    """Seeds 000/004: TPE, 20 trials, an xgboost objective."""
    import numpy as np
    import xgboost as xgb
    from hyperopt import STATUS_OK, Trials, fmin, hp, tpe
    from hyperopt.pyll import scope

    train, valid, _ = _xgb_data(1_000)
    y_valid = valid.get_label()
    space = {
        "max_depth": scope.int(hp.quniform("max_depth", 4, 100, 1)),
        "learning_rate": hp.loguniform("learning_rate", -3, 0),
        "reg_alpha": hp.loguniform("reg_alpha", -5, -1),
        "reg_lambda": hp.loguniform("reg_lambda", -6, -1),
        "min_child_weight": hp.loguniform("min_child_weight", -1, 3),
        "objective": "reg:squarederror",
        "seed": 42,
        "nthread": 2,
    }

    def objective(params: dict[str, Any]) -> dict[str, Any]:
        booster = xgb.train(params, train, num_boost_round=50, evals=[(valid, "validation")],
                            early_stopping_rounds=10, verbose_eval=False)
        pred = booster.predict(valid)
        return {"loss": float(np.sqrt(np.mean((pred - y_valid) ** 2))), "status": STATUS_OK}

    def run(_: Any) -> None:
        fmin(objective, space, algo=tpe.suggest, max_evals=20, trials=Trials(),
             rstate=np.random.default_rng(0), show_progressbar=False)

    return run


def optuna_50() -> Prepared:
    """The hyperopt row's search as an Optuna study: TPE, 50 trials, an xgboost objective."""
    import numpy as np
    import optuna
    import xgboost as xgb

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train, valid, _ = _xgb_data(1_000)
    y_valid = valid.get_label()

    def objective(trial: Any) -> float:
        params = {
            "max_depth": trial.suggest_int("max_depth", 4, 100),
            "learning_rate": trial.suggest_float("learning_rate", np.exp(-3), 1.0, log=True),
            "reg_alpha": trial.suggest_float("reg_alpha", np.exp(-5), np.exp(-1), log=True),
            "reg_lambda": trial.suggest_float("reg_lambda", np.exp(-6), np.exp(-1), log=True),
            "min_child_weight": trial.suggest_float("min_child_weight", np.exp(-1), np.exp(3),
                                                    log=True),
            "objective": "reg:squarederror",
            "seed": 42,
            "nthread": 2,
        }
        booster = xgb.train(params, train, num_boost_round=50, evals=[(valid, "validation")],
                            early_stopping_rounds=10, verbose_eval=False)
        pred = booster.predict(valid)
        return float(np.sqrt(np.mean((pred - y_valid) ** 2)))

    def run(_: Any) -> None:
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
        study.optimize(objective, n_trials=50)

    return run


def grid_24() -> Prepared:
    """GridSearchCV: 24 candidates, 3 folds."""
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GridSearchCV

    x, y = load_wine(return_X_y=True)
    grid = {"n_estimators": [5, 10, 20], "max_depth": [2, 4, 6, None],
            "criterion": ["gini", "entropy"]}

    def run(_: Any) -> None:
        GridSearchCV(RandomForestClassifier(random_state=0), grid, cv=3).fit(x, y)

    return run


def log_metric_10k() -> Prepared:
    """10,000 log_metric calls in a loop, in one run (nothing to compare when bare).

    BENCH_LOG_METRIC_CALLS lowers the count for a tool too slow to make 10,000
    calls within the benchmark's time (run.py scales its time and says so).
    """
    calls = int(os.environ.get("BENCH_LOG_METRIC_CALLS", "10000"))

    def run(tracker: Any) -> None:
        if tracker is None:
            return
        with tracker.start_run():
            for step in range(calls):
                tracker.log_metric("loss", 1.0 / (step + 1), step=step)

    return run


WORKLOADS: dict[str, Callable[[], Prepared]] = {
    "rf_wine_x10": rf_wine,
    "lasso_50k_x10": lasso_50k,
    "xgb_train_500": xgb_500,
    "hyperopt_tpe_20": hyperopt_20,
    "optuna_tpe_50": optuna_50,
    "grid_search_24x3": grid_24,
    "log_metric_10k": log_metric_10k,
}
