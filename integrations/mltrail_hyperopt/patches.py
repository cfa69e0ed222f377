"""Where hyperopt is patched: the search loop, and the evaluation of one trial.

`fmin` is looked up in three places (`hyperopt.fmin`, the module
`hyperopt.fmin`, and `Trials.fmin`, which calls `fmin` again), and a user who
ran `from hyperopt import fmin` before `autolog()` holds the unpatched
function. Every one of those calls runs `FMinIter.exhaust` exactly once, a
method looked up on the class at call time, so that is where a search begins
and ends: one parent run per `fmin` call, whatever the import order. Each trial
goes through `Domain.evaluate(config, ctrl)`, whose `ctrl.current_trial` names
the trial, so that is where a trial's child run is opened. SparkTrials
evaluates elsewhere; its dispatch and write-back are patched in `spark`.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any

import mltrail.autologging as autologging

from . import spark
from .search import FLAVOR, Search

# The search under way in this context; a trial's evaluate finds its search here.
_search: contextvars.ContextVar[Search | None] = contextvars.ContextVar(
    "mltrail_hyperopt_search", default=None
)


def patch_hyperopt(module: Any) -> None:
    autologging.safe_patch(FLAVOR, module.FMinIter, "exhaust", _exhaust_wrapper)
    autologging.safe_patch(FLAVOR, module.Domain, "evaluate", _evaluate_wrapper)
    spark.patch_spark(module)


def _exhaust_wrapper(
    call_original: autologging.OriginalCall, instance: Any, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    if instance is None:
        call_original(*args, **kwargs)
        return
    with autologging.training_run(FLAVOR) as session:
        if session is None:
            call_original(*args, **kwargs)
            return
        search = session.safe("start recording the search", Search.start, session, instance)
        if search is None:
            call_original(*args, **kwargs)
            return
        token = _search.set(search)
        with contextlib.ExitStack() as stack:
            if search.spark is not None:  # its dispatcher finds the search by its Trials
                stack.enter_context(search.spark)
            try:
                call_original(*args, **kwargs)
            finally:
                _search.reset(token)
                session.safe("record the search's outcome", search.finish)


def _evaluate_wrapper(
    call_original: autologging.OriginalCall, instance: Any, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    search = _search.get()
    # Only the domain of the search under way, evaluated in its own process and thread.
    if search is None or not search.live or instance is not search.domain:
        call_original(*args, **kwargs)
        return
    search.evaluate(call_original, instance, args, kwargs)
