"""The autolog engine, and the public API integration plugins are written against.

An integration registers an `Integration` (see `integration`), patches its
framework with `safe_patch` (whose wrapper gets a `call_original` that runs the
user's call exactly once), opens a `training_run` in each patched training call,
and logs through the `Session` it gets: params, tags, metrics (at once or
buffered per iteration), datasets (`log_input` for array-likes, `log_dataset`
for a `Dataset` it describes itself), artifacts written in place
(`stage_artifacts`), finished child runs (`log_child_run`), a search's report when
it ends (`log_search_report` with `SearchTrial`s), each step inside
`Session.safe` so that a logging error is warned about once and training goes on.

A search integration runs each trial in its own child run that user code can log
into: the active-run stack (`start_run`, `end_run`, `active_run`) under
`isolated()` (what the trial trains logs into the trial's run) and
`adoptable(run)` (a `start_run(nested=True)` in the user's objective reuses that
run); `log_keeping_params` logs a batch without clashing with params the user
logged first. A fitted model is tied to its run with `remember_fitted`, and
`fitted_run` answers whose it is later (post-training metrics). Models are
written in MLflow's layout with `models`, plot data and images with `plots` (both
imported on first use); `options_of(flavor)` reads the
options in force outside a training call. Entities and errors an integration
needs are re-exported here.
Nothing here knows any framework, and the built-in integrations import nothing
else of mltrail.
"""

from __future__ import annotations

from typing import Any

from ..entities import Dataset, Metric, Param, RunStatus, RunTag
from ..exceptions import InvalidParameterError, NotFoundError, ParamConflictError
from ..fluent import ActiveRun, active_run, adoptable, end_run, flush, set_experiment, start_run
from ..runtime import background_work
from ..uri import set_tracking_uri
from .enabling import (
    apply_settings,
    autolog,
    enable,
    owner_of,
    registered,
    settings,
    unsupported_versions,
)
from .fitted import fitted_run, remember_fitted
from .integration import Integration, IntegrationError
from .options import AutologOptions
from .options import get as options_of
from .options import reset as reset_options
from .patching import OriginalCall, class_tree, is_patched, safe_patch
from .search_report import SEARCH_REPORT_ARTIFACT, log_search_report
from .session import (
    AUTOLOGGING_TAG,
    MltrailWarning,
    Session,
    current_session,
    in_training,
    isolated,
    strict,
    suppressed,
    training_run,
    warn_once,
)

__all__ = [
    "AUTOLOGGING_TAG",
    "SEARCH_REPORT_ARTIFACT",
    "ActiveRun",
    "AutologOptions",
    "Dataset",
    "Integration",
    "IntegrationError",
    "InvalidParameterError",
    "Metric",
    "MltrailWarning",
    "NotFoundError",
    "OriginalCall",
    "Param",
    "ParamConflictError",
    "RunStatus",
    "RunTag",
    "SearchTrial",
    "Session",
    "active_run",
    "adoptable",
    "apply_settings",
    "autolog",
    "background_work",
    "class_tree",
    "current_session",
    "enable",
    "end_child_run",
    "end_run",
    "fitted_run",
    "flush",
    "in_training",
    "is_patched",
    "isolated",
    "log_keeping_params",
    "log_search_report",
    "models",
    "options_of",
    "owner_of",
    "plots",
    "registered",
    "remember_fitted",
    "reset_options",
    "safe_patch",
    "set_experiment",
    "set_tracking_uri",
    "settings",
    "start_run",
    "strict",
    "suppressed",
    "training_run",
    "unsupported_versions",
    "warn_once",
]


def log_keeping_params(
    client: Any,
    run_id: str,
    params: dict[str, Any],
    metrics: Any = (),
    tags: Any = (),
) -> list[str]:
    """Log a batch, except params the run already has with another value; returns their keys.

    A user's objective may log a param itself (`int(point["max_depth"])`) before
    the integration logs the same key with hyperopt's value; the user's value is
    kept. Tried as one batch first: a run rarely has the keys already, re-logging
    a key with the same value is allowed, and a conflicting batch is refused
    whole, so the run is read (and the batch sent again) only on a conflict.
    """
    try:
        client.log_batch(run_id, metrics, [Param(k, v) for k, v in params.items()], tags)
        return []
    except ParamConflictError:
        existing = client.get_run(run_id).data.params
    new = [Param(k, v) for k, v in params.items() if k not in existing]
    client.log_batch(run_id, metrics, new, tags)
    return sorted(k for k, v in params.items() if k in existing and existing[k] != str(v))


def end_child_run(active: ActiveRun, below: ActiveRun | None, status: str) -> None:
    """End a child run that user code ran inside (a search's trial), with `status`.

    The user's code may have ended the run itself, or left runs open above it (an
    adopted `start_run(nested=True)` handle, a run it forgot to end): those are
    ended first, down to `active`; `below` is the run that was active before the
    child was started, where the unwinding stops. An attached handle (`start_run(run_id,
    end_on_exit=False)`) is unwound the same way, and its run is left open for its owner.
    """
    while True:
        top = active_run()
        if top is None or top is below:
            break  # the user's code ended the child run itself
        if top is active:
            end_run(status)
            return
        end_run(status)  # an adopted handle (not ended) or a run left open
    if not active.adopted:
        active.client.set_terminated(active.info.run_id, status)


def __getattr__(name: str) -> Any:
    # The model layout pulls in YAML and more: loaded when an integration first saves one.
    if name == "models":
        from .. import models

        return models
    if name == "plots":
        from .. import plots

        return plots
    if name == "SearchTrial":  # the report module is loaded when a search first ends
        from ..report import SearchTrial

        return SearchTrial
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
