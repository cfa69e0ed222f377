"""`mltrail demo`: train small models with autolog on, then say where the runs went.

The training code is plain scikit-learn, xgboost and hyperopt, as in the course
notes; the only tracking line that matters is `mltrail.autolog()`. The forest
sweep also shows autolog and hand-written logging side by side: each forest's
child run gets autolog's params, training metrics and model, plus the held-out
accuracy logged by hand. xgboost and hyperopt parts run when those are installed.
The frameworks are imported inside the functions: the core must not import them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import mltrail
from mltrail.uri import redact_uri

DEMO_EXPERIMENT = "mltrail-demo"
FOREST_GRID = ((2, 10), (4, 20), (6, 40))  # (max_depth, n_estimators)
LASSO_ALPHAS = (0.01, 0.1, 1.0)
SEARCH_TRIALS = 8


def forest_name(max_depth: int, n_estimators: int) -> str:
    return f"forest-depth{max_depth}-trees{n_estimators}"


def _wine() -> tuple[Any, Any, Any, Any]:
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    x, y = load_wine(return_X_y=True)
    return train_test_split(x, y, test_size=0.25, random_state=42, stratify=y)


def _diabetes() -> tuple[Any, Any, Any, Any]:
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    x, y = load_diabetes(return_X_y=True)
    return train_test_split(x, y, test_size=0.25, random_state=42)


def forest_sweep() -> str:
    """A parent run with one child per forest; autolog fills each child.

    Returns:
        The first forest's run id: the parent holds only its children, a forest's
        run shows everything autolog records.
    """
    from sklearn.ensemble import RandomForestClassifier

    x_train, x_test, y_train, y_test = _wine()
    first: str | None = None
    with mltrail.start_run(run_name="wine-forest-sweep", tags={"dataset": "wine"}):
        for depth, trees in FOREST_GRID:
            with mltrail.start_run(run_name=forest_name(depth, trees), nested=True) as child:
                model = RandomForestClassifier(
                    max_depth=depth, n_estimators=trees, random_state=42
                ).fit(x_train, y_train)
                mltrail.log_metric("accuracy", model.score(x_test, y_test))
            first = first or child.info.run_id
    assert first is not None
    return first


def lasso_fits() -> None:
    """Plain fits: autolog makes one run for each."""
    from sklearn.linear_model import Lasso

    x_train, _, y_train, _ = _diabetes()
    for alpha in LASSO_ALPHAS:
        Lasso(alpha=alpha).fit(x_train, y_train)


def xgboost_train() -> None:
    """Native xgboost training: per-iteration metrics, early stopping, the model."""
    import xgboost as xgb

    x_train, x_valid, y_train, y_valid = _diabetes()
    train = xgb.DMatrix(x_train, label=y_train)
    valid = xgb.DMatrix(x_valid, label=y_valid)
    params = {"objective": "reg:squarederror", "max_depth": 3, "learning_rate": 0.1, "seed": 42}
    xgb.train(
        params,
        train,
        num_boost_round=200,
        evals=[(valid, "validation")],
        early_stopping_rounds=20,
        verbose_eval=False,
    )


def hyperopt_search() -> None:
    """A TPE search over Lasso's alpha: a parent run and one child run per trial."""
    import numpy as np
    from hyperopt import STATUS_OK, Trials, fmin, hp, tpe
    from sklearn.linear_model import Lasso
    from sklearn.metrics import root_mean_squared_error

    x_train, x_valid, y_train, y_valid = _diabetes()

    def objective(params: dict[str, Any]) -> dict[str, Any]:
        model = Lasso(alpha=params["alpha"]).fit(x_train, y_train)
        return {
            "loss": root_mean_squared_error(y_valid, model.predict(x_valid)),
            "status": STATUS_OK,
        }

    fmin(
        objective,
        {"alpha": hp.loguniform("alpha", -5, 1)},
        algo=tpe.suggest,
        max_evals=SEARCH_TRIALS,
        trials=Trials(),
        rstate=np.random.default_rng(0),
        show_progressbar=False,
    )


def run_demo(
    tracking_uri: str | None = None,
    experiment_name: str = DEMO_EXPERIMENT,
    echo: Callable[[str], None] = print,
) -> list[str]:
    """Train the demo models with autolog on and print how to look at their runs.

    Args:
        tracking_uri: where to log; default: the usual resolution (`get_tracking_uri`).
        experiment_name: the experiment to log into, created when missing.
        echo: where the progress and the closing hints go.

    Returns:
        The ids of every run in the experiment after the demo, newest first.
    """
    if tracking_uri is not None:
        mltrail.set_tracking_uri(tracking_uri)
    experiment = mltrail.set_experiment(experiment_name)
    before = {run.info.run_id for run in mltrail.search_runs(
        experiment_ids=[experiment.experiment_id], output_format="list")}
    mltrail.autolog()

    forest_id = forest_sweep()
    echo(f"Trained {len(FOREST_GRID)} random forests on the wine data, in one sweep run.")
    lasso_fits()
    echo(f"Trained {len(LASSO_ALPHAS)} Lasso models on the diabetes data.")
    if importlib.util.find_spec("xgboost") is not None:
        xgboost_train()
        echo("Trained an xgboost model with early stopping (per-iteration metrics logged).")
    if importlib.util.find_spec("hyperopt") is not None:
        hyperopt_search()
        echo(f"Ran a hyperopt search of {SEARCH_TRIALS} trials (a parent run, a child per trial).")

    # A server or database gets the runs in the background; what is counted and named
    # below is what it holds, by the ids it gave them.
    mltrail.flush(120)
    experiment = mltrail.get_experiment_by_name(experiment_name) or experiment
    runs = mltrail.search_runs(experiment_ids=[experiment.experiment_id], output_format="list")
    forest_id = mltrail.get_run(forest_id).info.run_id
    logged = sum(run.info.run_id not in before for run in runs)
    earlier = f", beside {len(runs) - logged} from earlier demos" if len(runs) > logged else ""
    prefix = (
        "mltrail" if tracking_uri is None else f"mltrail --tracking-uri {redact_uri(tracking_uri)}"
    )
    echo(
        f"\n{logged} runs logged to experiment {experiment.name!r} "
        f"(id {experiment.experiment_id}){earlier}\n"
        f"at {redact_uri(mltrail.get_tracking_uri())}\n"
        "\nLook at them with:\n"
        f"  {prefix} runs list\n"
        f"  {prefix} runs show {forest_id[:8]}\n"
        f'  {prefix} runs list --filter "metrics.training_r2_score > 0.4" '
        '--order-by "metrics.training_r2_score DESC"'
    )
    return [run.info.run_id for run in runs]
