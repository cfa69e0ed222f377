"""Where scikit-learn is patched: every estimator class that defines a fit method.

Classes already imported are found through `BaseEstimator`'s subclass tree;
classes defined later (other sklearn modules, user subclasses, third-party
estimators) are patched as they are created, from `__init_subclass__`. Only a
class that defines the method itself is patched, so a subclass calling
`super().fit` is one outer call with one inner, nested call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import mltrail.autologging as autologging

from . import recording

FLAVOR = "sklearn"
FIT_METHODS = ("fit", "fit_transform", "fit_predict")
# Helpers that fit clones of an estimator once per fold; their fits are not runs.
CV_HELPERS = ("_fit_and_score", "_fit_and_predict", "_permutation_test_score")


def _patch_class(cls: type) -> None:
    for name in FIT_METHODS:
        if inspect.isfunction(cls.__dict__.get(name)):
            autologging.safe_patch(FLAVOR, cls, name, _fit_wrapper)


def patch_estimators(base_estimator: type) -> None:
    """Patch every existing estimator class, and every one defined from now on."""
    for cls in autologging.class_tree(base_estimator):
        _patch_class(cls)
    if getattr(base_estimator, "_mltrail_subclass_hook", False):
        return
    previous = base_estimator.__dict__.get("__init_subclass__")

    def __init_subclass__(cls: type, **kwargs: Any) -> None:
        if previous is not None:
            previous.__get__(None, cls)(**kwargs)
        else:
            super(base_estimator, cls).__init_subclass__(**kwargs)  # type: ignore[misc]
        try:
            _patch_class(cls)
        except Exception as exc:  # defining a class must never fail because of us
            autologging.warn_once(FLAVOR, "could not patch an estimator class", repr(exc))

    base_estimator.__init_subclass__ = classmethod(__init_subclass__)  # type: ignore[assignment]
    base_estimator._mltrail_subclass_hook = True  # type: ignore[attr-defined]


def patch_cv_helpers(validation_module: Any) -> None:
    for name in CV_HELPERS:
        autologging.safe_patch(FLAVOR, validation_module, name, _suppressing_wrapper)


def _suppressing_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    with autologging.suppressed():
        return wrapped(*args, **kwargs)


def _fit_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if autologging.in_training() or instance is None:
        return wrapped(*args, **kwargs)
    if autologging.owner_of(type(instance).__module__) not in (None, FLAVOR):
        return wrapped(*args, **kwargs)  # another integration records this class
    with autologging.training_run(FLAVOR) as session:
        if session is None:
            return wrapped(*args, **kwargs)
        X, y, sample_weight = session.safe("read the fit arguments", recording.fit_inputs,
                                           wrapped, args, kwargs) or (None, None, None)
        session.safe("log params", recording.log_params, session, instance)
        session.log_input(X, y)
        result = wrapped(*args, **kwargs)
        with recording.one_blas_thread():
            session.safe("log training metrics", recording.log_training_metrics, session,
                         instance, X, y, sample_weight)
            session.safe("log the search results", recording.log_search, session, instance)
            if session.options.log_models:
                session.safe("log the model", recording.log_fitted_model, session, instance, X)
        return result
