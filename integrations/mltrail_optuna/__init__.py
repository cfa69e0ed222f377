"""Optuna autologging for mltrail: a study's `optimize` is a parent run, each trial a child run.

With autolog on, every `Study.optimize` call (whatever the import order) is one
run, or logs into the run the user has open. It records:

- on the study's run, at the start: `study_name`, `direction` (or `directions`
  for a multi-objective study), `metric_names` when set, `sampler` (its class)
  and `sampler.<setting>` for the sampler's plain settings (`n_startup_trials`,
  `seed` when the sampler keeps it or was built after `autolog()`), `pruner`
  and `pruner.<setting>` likewise, `n_trials`, `timeout` and `n_jobs`; tag `optuna.study_name`;
- on the study's run, at the end: metrics `n_trials_complete`,
  `n_trials_pruned` and `n_trials_failed`, counting this call's trials only;
  for a single objective, metric `best_value`, params `best_<name>` (the study's
  best trial, as `study.best_trial` gives it) and tags
  `optuna.best_trial_number` and `optuna.best_run_id` (when that trial has a run);
  for several objectives, tag `optuna.pareto_front_trials` (the trial numbers
  of `study.best_trials`);
- one child run per trial, `trial-<number>`, active while the objective runs:
  params are `trial.params` (what was suggested); metric `value` (several
  objectives: `values_0`, `values_1`, ..., or the study's metric names);
  metric `intermediate_value` at each step given to `trial.report`, logged as it
  is reported; the trial's user attributes as tags; tags `optuna.trial_number`
  and `optuna.state` (`COMPLETE`, `PRUNED`, `FAIL`). A COMPLETE trial ends
  FINISHED, a pruned one KILLED, a trial that raised FAILED with the error in
  `optuna.error` (the exception propagates as it would without autolog; Optuna's
  `catch` decides whether the study goes on), and a trial whose returned value
  Optuna refuses (NaN, a wrong number of values) FAILED with Optuna's reason.

Whatever the objective trains under autolog (xgboost, scikit-learn) logs into
the trial's run. An objective that opens its own run
(`with mlflow.start_run(nested=True):`) gets the trial's run instead of a new
one. A param the objective logs itself keeps its value. With `n_jobs>1`
(threads), each trial's records stay in its own run. Processes sharing one
RDB or journal storage each get their own parent run holding the trials that
process ran. Calling `optimize` again on the same study is a new parent run with
only the new trials.

Turn it on with `mltrail.autolog()` or `mltrail.optuna.autolog(...)`.
"""

from __future__ import annotations

import sys
from typing import Any

import mltrail.autologging as autologging

__all__ = ["INTEGRATION", "autolog", "patch"]


def autolog(
    disable: bool = False,
    exclusive: bool = False,
    log_models: bool = True,
    log_datasets: bool = True,
    silent: bool = False,
    extra_tags: dict[str, str] | None = None,
    disable_for_unsupported_versions: bool = False,
    log_search_report: bool = True,
) -> None:
    """Turn Optuna autologging on (or off with `disable=True`).

    Args:
        disable: turn it off; patches stay installed but call straight through.
        exclusive: do not log into a run the user opened (such a study is not logged).
        log_models: accepted for symmetry; Optuna trains no model itself (what
            the objective trains follows its own framework's option).
        log_datasets: accepted for symmetry, as `log_models`.
        silent: no warnings from mltrail's own logging problems.
        extra_tags: tags added to the study's run and every trial run autolog creates.
        disable_for_unsupported_versions: stay off on Optuna versions outside
            the tested range instead of warning.
        log_search_report: when the study ends, log `search_report.html` on its
            run (history, slices, parameter importance).
    """
    autologging.enable(
        sys.modules[__name__],
        disable=disable,
        exclusive=exclusive,
        log_models=log_models,
        log_datasets=log_datasets,
        silent=silent,
        extra_tags=extra_tags,
        disable_for_unsupported_versions=disable_for_unsupported_versions,
        log_search_report=log_search_report,
    )


def patch(module: Any) -> None:
    """Install the patches once Optuna is imported (see `patches`)."""
    from . import patches

    patches.patch_optuna(module)


INTEGRATION = autologging.Integration(
    flavor="optuna",
    modules=("optuna",),
    patch=patch,
    supported={"optuna": ("4.0", "6")},
)
