"""hyperopt autologging for mltrail: a search is a parent run, each trial a child run.

With autolog on, every `fmin` call (however it is reached: `hyperopt.fmin`,
`Trials.fmin`, a name imported before `autolog()`) is one run, or logs into the
run the user has open. It records:

- on the search run, at the start: `max_evals`, `algo` (`tpe`, `rand`,
  `anneal`, `atpe`, `mix`, a partial's keywords as `algo.<name>`), `timeout`,
  `loss_threshold` and `early_stop_fn` when given, `rstate_seed` (the seed of
  the numpy Generator when it alone replays the search; else `rstate`
  describes it), `trials_at_start` for a resumed Trials, and the space: one
  `space.<label>` param per hyperparameter (`scope.int(hp.quniform(4, 100, 1))`,
  `hp.choice(['gbtree', 'dart'])`, nested ones by label) and one
  `space.<path>` per constant;
- on the search run, at the end: metrics `best_loss` (hyperopt's best trial:
  the lowest non-NaN loss of an ok trial), `n_trials_ok`, `n_trials_failed`
  (trials with status fail plus trials that raised) and `n_trials_cancelled`
  (SparkTrials' timeout or early stop), counted over the whole
  Trials object; params `best_<name>` (the best point as `space_eval` gives it,
  flattened like a trial's params); tags `hyperopt.best_trial_id` and
  `hyperopt.best_run_id` (the best trial's run), `hyperopt.resumed_from`;
- one child run per evaluation, `trial-<tid>`, active while the objective runs:
  params are the point the objective received, flattened by dict keys
  (`classifier.C`) with values as it got them (a `scope.int` value is an int);
  metrics `loss` and every other number of the returned dict (`true_loss` ...);
  tags `hyperopt.trial_id`, `hyperopt.status` (`ok`, `fail`, or `error` when the
  objective raised, with the message in `hyperopt.error`). A trial ends
  FINISHED, or FAILED for status fail (no `loss` metric) or an exception, which
  propagates as it would without autolog.

Whatever the objective trains under autolog (xgboost, scikit-learn) logs into
the trial's run. An objective that opens its own run, as code written before
autolog does (`with mlflow.start_run(nested=True):`), gets the trial's run
instead of a new one, so each trial is one run (see `mltrail.autologging.adoptable`).
A param the objective logs itself keeps its value; the trial's param of the same
name is then not logged. Characters a tracking server refuses in a key are
replaced by `_`. A resumed search (`fmin` again on the same Trials) is a new
search run whose children are the new trials only.

With SparkTrials the driver starts each trial's run before the trial's Spark
job, the executor records into it what the objective trains, and the driver
ends it as the trial ends (see `spark`); the search run also gets
`parallelism`, SparkTrials' `timeout` and `n_trials_cancelled`. With MongoTrials
the trials run in other processes: their runs are written from the Trials when
the search ends, with the point, the result's numbers and the status (a trial
that raised gets FAILED with hyperopt's error text, a cancelled one KILLED),
but nothing the objective trained in the worker.

Turn it on with `mltrail.autolog()` or `mltrail.hyperopt.autolog(...)`.
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
    """Turn hyperopt autologging on (or off with `disable=True`).

    Args:
        disable: turn it off; patches stay installed but call straight through.
        exclusive: do not log into a run the user opened (such a search is not logged).
        log_models: accepted for symmetry; hyperopt trains no model itself (what
            the objective trains follows its own framework's option).
        log_datasets: accepted for symmetry, as `log_models`.
        silent: no warnings from mltrail's own logging problems.
        extra_tags: tags added to the search run and every trial run autolog creates.
        disable_for_unsupported_versions: stay off on hyperopt versions outside
            the tested range instead of warning.
        log_search_report: when the search ends, log `search_report.html` on its
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
    """Install the patches once hyperopt is imported (see `patches`)."""
    from . import patches

    patches.patch_hyperopt(module)


INTEGRATION = autologging.Integration(
    flavor="hyperopt",
    modules=("hyperopt",),
    patch=patch,
    supported={"hyperopt": ("0.2.7", "0.4")},
)
