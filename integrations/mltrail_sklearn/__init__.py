"""scikit-learn autologging for mltrail: every estimator's fit becomes one run.

Records params (`get_params(deep=True)`), training metrics on the data passed to
fit, the fitted model in the MLflow layout, a dataset input, `estimator.html`,
for classifiers plots of the training predictions (confusion matrix; ROC and
precision-recall curves when binary), post-training metrics, and for
hyperparameter searches (GridSearchCV, RandomizedSearchCV, Halving*) the best
params, `cv_results.csv` and one child run per top candidate.

Turn it on with `mltrail.autolog()` or `mltrail.sklearn.autolog(...)`.
"""

from __future__ import annotations

import sys
from typing import Any

import mltrail.autologging as autologging

from .model import load_model, log_model, save_model

__all__ = ["INTEGRATION", "autolog", "load_model", "log_model", "patch", "save_model"]


def autolog(
    disable: bool = False,
    exclusive: bool = False,
    log_models: bool = True,
    log_datasets: bool = True,
    log_plots: bool = True,
    log_post_training_metrics: bool = True,
    silent: bool = False,
    extra_tags: dict[str, str] | None = None,
    disable_for_unsupported_versions: bool = False,
    log_search_report: bool = True,
    max_tuning_runs: int | None = 5,
    pos_label: Any = None,
) -> None:
    """Turn scikit-learn autologging on (or off with `disable=True`).

    Args:
        disable: turn it off; patches stay installed but call straight through.
        exclusive: do not log into a run the user opened.
        log_models: log the fitted estimator (the best one for a search) as `model`.
        log_datasets: record the training data's name, digest, schema and shape.
        log_plots: for classifiers, the confusion matrix on the training data, and
            for binary ones the ROC and precision-recall curves, as SVG images and
            `plots.json` (see `mltrail.plots`).
        log_post_training_metrics: log `sklearn.metrics` calls and `score` calls on a
            logged model's predictions to its run (see `post_training`).
        silent: no warnings from mltrail's own logging problems.
        extra_tags: tags added to every run autolog creates.
        disable_for_unsupported_versions: stay off on scikit-learn versions outside
            the tested range instead of warning.
        log_search_report: when a search (GridSearchCV, RandomizedSearchCV, ...) ends,
            log `search_report.html` on its run (every candidate's score, slices,
            parameter importance).
        max_tuning_runs: how many of a search's best candidates become child runs;
            None for all.
        pos_label: the positive class for binary precision/recall/f1 (else weighted).
    """
    autologging.enable(
        sys.modules[__name__],
        disable=disable,
        exclusive=exclusive,
        log_models=log_models,
        log_datasets=log_datasets,
        log_plots=log_plots,
        silent=silent,
        extra_tags=extra_tags,
        disable_for_unsupported_versions=disable_for_unsupported_versions,
        log_search_report=log_search_report,
        max_tuning_runs=max_tuning_runs,
        pos_label=pos_label,
        log_post_training_metrics=log_post_training_metrics,
    )


def patch(module: Any) -> None:
    """Install the patches for a newly imported scikit-learn module (see MODULES)."""
    from . import patches

    if module.__name__ == "sklearn.base":
        patches.patch_estimators(module.BaseEstimator)
    elif module.__name__ == "sklearn.utils.parallel":
        patches.patch_parallel(module)
    elif module.__name__ == "sklearn.metrics":
        patches.patch_metrics(module)
    else:
        patches.patch_validation(module)


INTEGRATION = autologging.Integration(
    flavor="sklearn",
    modules=("sklearn.base", "sklearn.utils.parallel", "sklearn.model_selection._validation",
             "sklearn.metrics"),
    patch=patch,
    options={"max_tuning_runs": 5, "pos_label": None, "log_post_training_metrics": True},
    supported={"scikit-learn": ("1.3", "1.10")},
)
