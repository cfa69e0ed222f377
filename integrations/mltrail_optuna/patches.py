"""Where Optuna is patched: a study's optimize call, and a trial's report.

`Study.optimize` is a method looked up on the class at call time, so patching it
catches every study whatever the import order. The objective is the one place
where Optuna hands over the trial under way, so the patch replaces the `func`
argument with a wrapper that runs each trial inside its child run (see
`study.Search.objective`); the call itself is Optuna's own. `Trial.report`
logs an intermediate value into the run of the trial that reported it, found
through a ContextVar the objective wrapper sets in the thread running the trial.
"""

from __future__ import annotations

import inspect
from typing import Any

import mltrail.autologging as autologging

from .study import FLAVOR, SEEDS, Search, current_trial


def patch_optuna(module: Any) -> None:
    autologging.safe_patch(FLAVOR, module.study.Study, "optimize", _optimize_wrapper)
    autologging.safe_patch(FLAVOR, module.trial.Trial, "report", _report_wrapper)
    # Optuna's samplers turn their seed into a random state and keep no seed. The
    # seed is noted where that state is built (inside the sampler's `__init__`, so the
    # sampler's own warnings still name the caller's line), to describe the study.
    lazy = getattr(getattr(module.samplers, "_lazy_random_state", None), "LazyRandomState", None)
    if lazy is not None:
        autologging.safe_patch(FLAVOR, lazy, "__init__", _random_state_init_wrapper)


def _random_state_init_wrapper(
    call_original: autologging.OriginalCall, instance: Any, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    call_original(*args, **kwargs)
    seed = inspect.signature(call_original.func).bind(*args, **kwargs).arguments.get("seed")
    if instance is not None and isinstance(seed, int) and not isinstance(seed, bool):
        SEEDS[instance] = seed


def _optimize_wrapper(
    call_original: autologging.OriginalCall, instance: Any, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    try:
        bound = inspect.signature(call_original.func).bind(*args, **kwargs)
    except (TypeError, ValueError):  # Optuna will say what is wrong with the call
        bound = None
    if instance is None or bound is None or not callable(bound.arguments.get("func")):
        call_original(*args, **kwargs)
        return
    with autologging.training_run(FLAVOR) as session:
        if session is None:
            call_original(*args, **kwargs)
            return
        search = session.safe(
            "start recording the study", Search.start, session, instance, bound.arguments
        )
        if search is None:
            call_original(*args, **kwargs)
            return
        bound.arguments["func"] = search.objective(bound.arguments["func"])
        try:
            call_original(*bound.args, **bound.kwargs)
        finally:
            session.safe("record the study's outcome", search.finish)


def _report_wrapper(
    call_original: autologging.OriginalCall, instance: Any, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    call_original(*args, **kwargs)
    running = current_trial.get()
    if running is None or running.trial is not instance:
        return
    running.search.session.safe(
        "log an intermediate value", running.search.log_report, running, args, kwargs,
        call_original.func,
    )
