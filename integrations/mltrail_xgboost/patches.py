"""Where xgboost is patched: `train`, `cv`, and the sklearn wrappers' `fit`.

`xgboost.train` is one function reachable under three names that callers look
up separately: `xgboost.train`, `xgboost.training.train` and `xgboost.sklearn.train`
(the wrappers call the name bound in their own module). Each name is patched.

A wrapper's `fit` and the `train` it calls are one run. The fit opens the run
and logs `get_params()`, the data, importance and the model; the inner `train`
recognises the fit's session (`_fit_session`) and only adds the per-round
metrics callback and the early-stopping results.
"""

from __future__ import annotations

import contextvars
import sys
from typing import Any

import mltrail.autologging as autologging

from . import recording
from .callback import MetricsCallback

FLAVOR = "xgboost"
TRAIN_OWNERS = ("xgboost", "xgboost.training", "xgboost.sklearn")

# The session of the wrapper fit under way, handed to the one `train` call it makes.
_fit_session: contextvars.ContextVar[autologging.Session | None] = contextvars.ContextVar(
    "mltrail_xgboost_fit_session", default=None
)


def patch_all(xgboost: Any) -> None:
    """Patch `train` under each of its names, `cv`, and every sklearn wrapper's `fit`."""
    for name in TRAIN_OWNERS:
        owner = sys.modules.get(name)
        if owner is not None:
            autologging.safe_patch(FLAVOR, owner, "train", _train_wrapper)
    for name in ("xgboost", "xgboost.training"):
        owner = sys.modules.get(name)
        if owner is not None:
            autologging.safe_patch(FLAVOR, owner, "cv", _cv_wrapper)
    sklearn_api = sys.modules.get("xgboost.sklearn")
    if sklearn_api is not None:
        for cls in autologging.class_tree(sklearn_api.XGBModel):
            if "fit" in cls.__dict__:
                autologging.safe_patch(FLAVOR, cls, "fit", _fit_wrapper)


def _call_with_metrics(
    session: autologging.Session,
    call_original: autologging.OriginalCall,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    arguments: dict[str, Any] | None,
) -> Any:
    """Run the original with the metrics callback added; then log early stopping.

    Whatever training raises reaches the user unchanged, after the rounds it ran
    are queued (the session writes them when it closes). If the callback cannot
    be added, the user's call runs as given.
    """
    callback = MetricsCallback(session)
    patched = session.safe("add the metrics callback", recording.with_callback,
                           call_original.func, args, kwargs, callback)
    call_args, call_kwargs = patched if patched is not None else (args, kwargs)
    try:
        result = call_original(*call_args, **call_kwargs)
    finally:  # the rounds run so far are kept however training ends
        session.safe("log metrics", callback.push)
    if arguments is not None and recording.has_early_stopping(arguments):
        session.safe("log early stopping", recording.log_early_stopping, session, callback)
    return result


def _train_wrapper(
    call_original: autologging.OriginalCall, instance: Any, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    fit_session = _fit_session.get()
    if fit_session is not None and autologging.current_session() is fit_session:
        token = _fit_session.set(None)  # only the fit's own train call; not one nested in it
        try:
            arguments = fit_session.safe("read the train arguments", recording.bind,
                                         call_original.func, args, kwargs)
            _call_with_metrics(fit_session, call_original, args, kwargs, arguments)
        finally:
            _fit_session.reset(token)
        return
    with autologging.training_run(FLAVOR) as session:
        if session is None:
            call_original(*args, **kwargs)
            return
        arguments = session.safe("read the train arguments", recording.bind,
                                 call_original.func, args, kwargs)
        _log_arguments(session, arguments, recording.TRAIN_ARGS)
        booster = _call_with_metrics(session, call_original, args, kwargs, arguments)
        _log_trained(session, booster, booster, (arguments or {}).get("dtrain"))


def _log_trained(session: autologging.Session, booster: Any, model: Any, data: Any) -> None:
    """What train and a wrapper's fit log once trained: importance and the model
    (the Booster, or the wrapper itself), with the training data for its signature."""
    if booster is not None:
        session.safe("log feature importance", recording.log_importance, session, booster)
    if session.options.log_models:
        session.safe("log the model", recording.log_fitted_model, session, model, data)


def _log_arguments(
    session: autologging.Session, arguments: dict[str, Any] | None, names: tuple[str, ...]
) -> None:
    """The call's params (those in `names`) and its training data, as train and cv share."""
    if arguments is not None:
        session.safe("log params", recording.log_call_params, session, arguments, names)
        session.safe(
            "log the dataset", recording.log_dmatrix_input, session, arguments.get("dtrain")
        )


def _cv_wrapper(
    call_original: autologging.OriginalCall, instance: Any, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    with autologging.training_run(FLAVOR) as session:
        if session is None:
            call_original(*args, **kwargs)
            return
        arguments = session.safe("read the cv arguments", recording.bind,
                                 call_original.func, args, kwargs)
        _log_arguments(session, arguments, recording.CV_ARGS)
        _call_with_metrics(session, call_original, args, kwargs, arguments)


def _fit_wrapper(
    call_original: autologging.OriginalCall, instance: Any, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    if autologging.in_training() or instance is None:
        call_original(*args, **kwargs)
        return
    with autologging.training_run(FLAVOR) as session:
        if session is None:
            call_original(*args, **kwargs)
            return
        arguments = session.safe("read the fit arguments", recording.bind,
                                 call_original.func, args, kwargs)
        session.safe("log params", recording.log_estimator_params, session, instance)
        if arguments is not None:
            session.log_input(arguments.get("X"), arguments.get("y"))
        token = _fit_session.set(session)
        try:
            call_original(*args, **kwargs)
        finally:
            _fit_session.reset(token)
        booster = session.safe("read the booster", instance.get_booster)
        _log_trained(session, booster, instance, (arguments or {}).get("X"))
        # Its predictions scored by sklearn.metrics are this run's post-training metrics.
        session.safe("remember the fitted model", autologging.remember_fitted, session.run_id,
                     session.client, instance)
