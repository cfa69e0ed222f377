"""Where scikit-learn is patched: every estimator class that defines a fit method.

Classes already imported are found through `BaseEstimator`'s subclass tree;
classes defined later (other sklearn modules, user subclasses, third-party
estimators) are patched as they are created, from `__init_subclass__`. Only a
class that defines the method itself is patched, so a subclass calling
`super().fit` is one outer call with one inner, nested call.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

import mltrail.autologging as autologging

from . import html_view, post_training, recording

FLAVOR = "sklearn"
FIT_METHODS = ("fit", "fit_transform", "fit_predict")


def _patch_class(cls: type) -> None:
    for name in FIT_METHODS:
        if inspect.isfunction(cls.__dict__.get(name)):
            autologging.safe_patch(FLAVOR, cls, name, _fit_wrapper)
    # Prediction and score methods come from mixins too (`ClassifierMixin.score`).
    for owner in cls.__mro__[:-1]:
        for name in (*post_training.PREDICT_METHODS, "score"):
            wrapper = (post_training.score_wrapper if name == "score"
                       else post_training.predict_wrapper)
            attribute = owner.__dict__.get(name)
            if inspect.isfunction(attribute):
                autologging.safe_patch(FLAVOR, owner, name, wrapper)
            elif inspect.isfunction(getattr(attribute, "fn", None)) and hasattr(attribute,
                                                                                 "check"):
                # scikit-learn's `available_if` descriptor: its function is patched in place
                autologging.safe_patch(FLAVOR, attribute, "fn", wrapper)


def patch_metrics(metrics_module: Any) -> None:
    """Patch every metric function of `sklearn.metrics` for post-training metrics.

    Code that bound a metric to its own name before autolog was turned on (`from
    sklearn.metrics import f1_score` ahead of `mltrail.autolog()`, with sklearn
    already imported) calls the unpatched function, as with MLflow.
    """
    for name in post_training.metric_functions(metrics_module):
        autologging.safe_patch(FLAVOR, metrics_module, name, post_training.metric_wrapper)


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


def patch_parallel(parallel_module: Any) -> None:
    """Record nothing for what scikit-learn runs through its own `Parallel`.

    Every fold of `cross_val_score`, a search's candidates, `learning_curve`,
    `permutation_importance` and the like, and the inner fits of ensembles and
    multi-output wrappers, run as `sklearn.utils.parallel._FuncWrapper` calls,
    in this thread, a worker thread or a worker process. Patching that one class
    (rather than the helpers each caller imports under its own name) holds
    whatever the import order, reaches threads where the caller's context does
    not, and ships nothing patched to worker processes: the tasks pickle as
    scikit-learn's own objects. Loky workers are fresh interpreters where
    autolog is off; forked ones inherit this patch.
    """
    autologging.safe_patch(FLAVOR, parallel_module._FuncWrapper, "__call__", _suppressing_wrapper)


def patch_validation(validation_module: Any) -> None:
    """`permutation_test_score` scores the unpermuted data by calling its fold helper
    directly, outside `Parallel`; the helper is looked up in its module at call time."""
    autologging.safe_patch(FLAVOR, validation_module, "_permutation_test_score",
                           _suppressing_wrapper)


def _suppressing_wrapper(
    call_original: autologging.OriginalCall, instance: Any, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    with autologging.suppressed():
        call_original(*args, **kwargs)


def _fit_wrapper(
    call_original: autologging.OriginalCall, instance: Any, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    if autologging.in_training() or instance is None:
        call_original(*args, **kwargs)
        return
    if autologging.owner_of(type(instance).__module__) not in (None, FLAVOR):
        call_original(*args, **kwargs)  # another integration records this class
        return
    with autologging.training_run(FLAVOR) as session:
        if session is None:
            call_original(*args, **kwargs)
            return
        X, y, sample_weight = session.safe("read the fit arguments", recording.fit_inputs,
                                           call_original.func, args, kwargs) or (None, None, None)
        session.safe("start the estimator.html helper", html_view.warm_up)
        session.safe("log params", recording.log_params, session, instance)
        session.log_input(X, y)
        call_original(*args, **kwargs)
        # numpy's floating-point warnings of autolog's own arithmetic and predictions are
        # not the user's: never shown, never raised by a user's np.seterr(all="raise").
        with (recording.one_blas_thread(), recording.same_random_state(instance),
              np.errstate(all="ignore")):
            session.safe("log training metrics", recording.log_training_metrics, session,
                         instance, X, y, sample_weight)
            session.safe("log the search results", recording.log_search, session, instance)
            if session.options.log_models:
                session.safe("log the model", recording.log_fitted_model, session, instance, X)
            session.safe("log estimator.html", html_view.log_estimator_html, session, instance)
        session.safe("register the model for post-training metrics",
                     post_training.register_model, session, instance)
