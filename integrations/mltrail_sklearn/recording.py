"""What a scikit-learn fit records: params, training metrics, search results, the model.

Each function here runs inside `Session.safe`, so any error it raises is treated
as mltrail's own: warned about once, never breaking the user's fit.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import numpy as np

import mltrail.autologging as autologging
from mltrail.autologging import Session

from . import scores

NOTE_TAG = "mltrail.note"


@cache
def _signature(func: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(func)


def fit_inputs(
    method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Any, Any]:
    """The X, y and sample_weight a fit call received (None where absent).

    A bound method is read through its function, so the signature cache holds
    functions only, never the estimators the methods are bound to.
    """
    func = getattr(method, "__func__", method)
    if func is not method:
        args = (method.__self__, *args)  # type: ignore[attr-defined]
    try:
        bound = _signature(func).bind_partial(*args, **kwargs).arguments
    except TypeError:  # a call the fit itself will refuse, with its own error
        return None, None, None
    params = list(_signature(func).parameters)[1 if func is not method else 0:]
    x = bound.get("X", bound.get(params[0]) if params else None)
    y = bound.get("y", bound.get("Y"))
    fit_params = bound.get("fit_params") or bound.get("kwargs") or {}
    weight = bound.get("sample_weight", fit_params.get("sample_weight"))
    return x, y, weight


@cache
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController  # a dependency of scikit-learn

    return ThreadpoolController()


class _OneBlasThread:
    """A process-wide BLAS limit of one thread, shared by the fits that want it.

    A multi-threaded BLAS call (a linear model's predict) leaves OpenBLAS's worker
    threads spinning for a while after it returns; on a 2-core machine that slowed
    the user's next fit of a Lasso on 50,000 x 50 from 21 ms to 38-42 ms, against
    4-7 ms for the prediction itself. One thread keeps the cost to the prediction.

    The limit is process-wide, so fits in several threads share it: the first one
    in sets it, the last one out restores the counts found before the first (a
    limit per fit would have the second save the first one's 1 and restore 1 for
    good). It is only a speed-up: if threadpoolctl cannot set or restore it, the
    predictions run as they are.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._limiter: Any = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                with contextlib.suppress(Exception):
                    self._limiter = _blas_controller().limit(limits=1, user_api="blas")
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._limiter is not None:
                    limiter, self._limiter = self._limiter, None
                    with contextlib.suppress(Exception):
                        limiter.__exit__(None, None, None)  # restores the counts found


one_blas_thread = _OneBlasThread()


def _random_states(estimator: Any) -> list[Any]:
    """The numpy random generators an estimator (and the estimators inside it) holds."""
    found: dict[int, Any] = {}
    todo, seen = [estimator], set()
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, (np.random.RandomState, np.random.Generator)):
            found[id(item)] = item
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif hasattr(item, "get_params") and hasattr(item, "__dict__"):
            todo.extend(vars(item).values())
    return list(found.values())


@contextlib.contextmanager
def same_random_state(estimator: Any) -> Iterator[None]:
    """Leave numpy's global random state, and every generator the estimator holds, as found.

    Autolog predicts on the training data after the fit; a stochastic estimator's
    predictions (DummyClassifier(strategy="stratified"), anything drawing from
    `np.random`) consume random numbers, which would change what the user's code
    draws next. Reproducibility is what tracking is for, so the states are put
    back. (A thread drawing from the global state during those milliseconds
    would be put back with it.)
    """
    states = [(np.random.mtrand._rand, np.random.get_state())]
    for generator in _random_states(estimator):
        if isinstance(generator, np.random.Generator):
            states.append((generator.bit_generator, generator.bit_generator.state))
        else:
            states.append((generator, generator.get_state()))
    try:
        yield
    finally:
        for owner, state in states:
            if isinstance(owner, np.random.RandomState):
                owner.set_state(state)
            else:
                owner.state = state


def log_params(session: Session, estimator: Any) -> None:
    """`get_params(deep=True)` as params (so a Pipeline logs `clf__C`), plus class tags."""
    cls = type(estimator)
    session.set_tags({"estimator_name": cls.__name__,
                      "estimator_class": f"{cls.__module__}.{cls.__qualname__}"})
    params = None
    for deep in (True, False):
        try:
            params = estimator.get_params(deep=deep)
            break
        except Exception as exc:  # a third-party estimator with a broken get_params
            session.set_tags({f"{NOTE_TAG}.params": f"get_params(deep={deep}) raised "
                                                     f"{type(exc).__name__}: {exc}"})
    if params is not None:
        session.log_params({k: _param_text(v) for k, v in params.items()})


def _param_text(value: Any) -> str:
    """Readable text for a param value; nested estimators by class and params."""
    return str(value) if not hasattr(value, "get_params") else repr(value)


def _sklearn_kind(estimator: Any) -> str:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(estimator):
        return "classifier"
    if is_regressor(estimator):
        return "regressor"
    return "other"


def log_training_metrics(
    session: Session, estimator: Any, x: Any, y: Any, sample_weight: Any
) -> None:
    """Metrics on the training data, prefixed `training_`, respecting sample weights.

    A search is measured through its refitted `best_estimator_` (what its own
    predict would call), never through the search object, whose methods a custom
    search may not provide; with `refit=False` there is nothing to measure.
    """
    if x is None or y is None:
        session.set_tags({f"{NOTE_TAG}.training_metrics": "skipped: fit() received no y"})
        return
    fitted_name = type(estimator).__name__
    if hasattr(estimator, "cv_results_"):
        estimator = getattr(estimator, "best_estimator_", None)
        if estimator is None:
            session.set_tags({f"{NOTE_TAG}.training_metrics":
                              "skipped: the search has no refitted best estimator"})
            return
    kind = _sklearn_kind(estimator)
    metrics: dict[str, float] = {}
    try:
        if kind == "classifier":
            y_pred, proba = _classifier_predictions(estimator, x)
            metrics.update(_classifier_metrics(session, estimator, y, y_pred, proba,
                                               sample_weight))
            if session.options.log_plots:
                session.safe("log plots", log_classifier_plots, session, estimator, fitted_name,
                             x, y, y_pred, proba, sample_weight)
        elif kind == "regressor":
            y_pred = _ask(estimator, "predict", x)
            metrics.update(_regressor_metrics(y, y_pred, sample_weight))
        score = _score(estimator, kind, x, y, sample_weight, metrics)
        if score is not None:
            metrics["training_score"] = score
    except _Refused as refused:
        session.set_tags({f"{NOTE_TAG}.training_metrics": str(refused)})
    session.log_metrics(metrics)


class _Refused(Exception):
    """The estimator's own method raised when autolog called it on the training data.

    That is the estimator's answer, not mltrail's bug (a multi-output target its
    `score` does not take, a predict that needs more than X): the run notes it in a
    tag and keeps the metrics it has, even in strict mode.
    """


def _ask(estimator: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call the estimator's method `name` for autolog's metrics; `_Refused` if it raises.

    Reading the method is part of the call: scikit-learn hides a method the
    fitted object cannot serve (a Pipeline ending in a transformer has no `score`)
    behind an attribute error.
    """
    try:
        return getattr(estimator, name)(*args, **kwargs)
    except Exception as exc:
        raise _Refused(f"skipped: {name}() raised {type(exc).__name__}: {exc}") from exc


def _score(
    estimator: Any, kind: str, x: Any, y: Any, sample_weight: Any, metrics: dict[str, float]
) -> float | None:
    """The estimator's own `score`, called at most once, never with a scorer the user passed.

    Where `score` is scikit-learn's default (accuracy, R²) the metric already
    computed is reused. An estimator given a callable `scoring` would call that
    user code once more from `score`, so it gets no `training_score`.
    """
    from sklearn.base import ClassifierMixin, RegressorMixin

    score_method = getattr(type(estimator), "score", None)
    if score_method is None:
        return None
    if kind == "classifier" and score_method is ClassifierMixin.score:
        return metrics.get("training_accuracy_score")
    if kind == "regressor" and score_method is RegressorMixin.score:
        return metrics.get("training_r2_score")
    if callable(getattr(estimator, "scoring", None)):
        return None
    if sample_weight is not None and _accepts(score_method, "sample_weight"):
        return float(_ask(estimator, "score", x, y, sample_weight=sample_weight))
    return float(_ask(estimator, "score", x, y))


def _accepts(func: Callable[..., Any], name: str) -> bool:
    try:
        parameters = _signature(getattr(func, "__func__", func)).parameters
    except (TypeError, ValueError):  # no signature to read: do not pass the keyword
        return False
    return name in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _classifier_predictions(estimator: Any, x: Any) -> tuple[Any, Any]:
    """`predict(x)`, and `predict_proba(x)` where the classifier gives probabilities.

    A forest's own `predict` is the argmax of its `predict_proba`, so for forests
    the labels are taken from the probabilities rather than predicted twice.
    """
    # The module is loaded whenever the estimator is a forest; never import it here.
    forest = getattr(sys.modules.get("sklearn.ensemble._forest"), "ForestClassifier", None)
    proba = None
    if hasattr(estimator, "predict_proba"):
        try:
            proba = estimator.predict_proba(x)
        except Exception:  # e.g. SVC(probability=False) exposes the method but refuses
            proba = None
    if (proba is not None and forest is not None and type(estimator).predict is forest.predict
            and getattr(estimator, "n_outputs_", 1) == 1):
        return np.asarray(estimator.classes_).take(np.argmax(proba, axis=1), axis=0), proba
    return _ask(estimator, "predict", x), proba


def _classifier_metrics(
    session: Session, estimator: Any, y: Any, y_pred: Any, proba: Any, sample_weight: Any
) -> dict[str, float]:
    """Accuracy, precision, recall, f1; log loss and ROC AUC from well-formed probabilities.

    Multi-output and multilabel classifiers (2-D targets, `classes_` as one array
    per output) get only their own score. Probabilities count only as one row per
    sample and one column per class of `classes_`, with every label of `y` among
    the classes, and at least two classes (as scikit-learn's `log_loss`, which
    refuses one: a classifier fitted on one class gets no log loss or AUC).
    """
    labels = getattr(estimator, "classes_", None)
    y = np.asarray(y)  # first: an array-like may refuse numpy's functions until converted
    if not isinstance(labels, np.ndarray) or labels.ndim != 1 or y.ndim > 1:
        return {}
    pos_label = session.options.extra.get("pos_label")
    out = scores.classification(y, y_pred, labels, sample_weight, pos_label)
    if (proba is not None and len(labels) > 1 and np.ndim(proba) == 2
            and np.shape(proba) == (len(y), len(labels)) and np.isin(y, labels).all()):
        out["log_loss"] = scores.log_loss(y, proba, labels, sample_weight)
        with contextlib.suppress(ValueError):  # one class only in y: AUC is undefined
            out["roc_auc"] = scores.roc_auc(y, proba, labels, sample_weight)
    return {f"training_{k}": v for k, v in out.items()}


def log_classifier_plots(
    session: Session, estimator: Any, name: str, x: Any, y: Any, y_pred: Any, proba: Any,
    sample_weight: Any,
) -> None:
    """The training data's confusion matrix; for two classes in `y`, ROC and PR curves.

    As MLflow: every single-output classifier gets the confusion matrix, and the
    curves come when `y` holds exactly two labels, scored by `predict_proba`'s
    column of `classes_[1]` (else `decision_function`). Only numbers are computed
    here; `mltrail.plots` writes the images and `plots.json`.
    """
    from mltrail.autologging import plots

    y = np.asarray(y)
    if y.ndim > 1 or np.ndim(y_pred) > 1:
        return
    found = [plots.confusion_matrix("training_confusion_matrix", y, y_pred, sample_weight)]
    labels = getattr(estimator, "classes_", None)
    if len(np.unique(y)) == 2 and isinstance(labels, np.ndarray) and len(labels) == 2:
        score = None
        if proba is not None and np.shape(proba) == (len(y), 2):
            score = np.asarray(proba)[:, 1]
        elif hasattr(estimator, "decision_function"):
            with contextlib.suppress(Exception):  # the estimator's refusal: no curves
                score = np.asarray(estimator.decision_function(x)).reshape(-1)
        if score is not None and len(score) == len(y):
            found.append(plots.roc_curve("training_roc_curve", y, score, labels[1],
                                         sample_weight, estimator=name))
            found.append(plots.precision_recall_curve("training_precision_recall_curve", y,
                                                      score, labels[1], sample_weight,
                                                      estimator=name))
    with session.stage_artifacts() as folder:  # written in place
        plots.write(folder, found)


def _regressor_metrics(y: Any, y_pred: Any, sample_weight: Any) -> dict[str, float]:
    return {f"training_{k}": v for k, v in scores.regression(y, y_pred, sample_weight).items()}


def log_search(session: Session, search: Any) -> None:
    """For a fitted hyperparameter search: best params and score, results, child runs."""
    if not (hasattr(search, "cv_results_") and hasattr(search, "best_params_")):
        return
    session.log_params({f"best_{k}": _param_text(v) for k, v in search.best_params_.items()})
    if getattr(search, "best_score_", None) is not None:
        session.log_metrics({"best_cv_score": float(search.best_score_)})
    import pandas as pd

    with session.stage_artifacts() as folder:  # written in place
        pd.DataFrame(search.cv_results_).to_csv(folder / "cv_results.csv", index=False)
    _log_candidates(session, search.cv_results_)
    session.safe("log the search report", _log_report, session, search)


def _log_report(session: Session, search: Any) -> None:
    """`search_report.html` from every candidate of `cv_results_` (the child runs hold
    only the best `max_tuning_runs`): the mean test score of the refit metric."""
    results = search.cv_results_
    refit = search.refit if isinstance(search.refit, str) else "score"
    key = f"mean_test_{refit}" if f"mean_test_{refit}" in results else next(
        (k for k in results if k.startswith("mean_test_")), None)
    if key is None:
        return
    trials = []
    for index, params in enumerate(results["params"]):
        value = float(results[key][index])
        trials.append(autologging.SearchTrial(
            number=index, params={k: _param_text(v) for k, v in params.items()},
            value=value if value == value else None,  # NaN: the candidate's fit failed
            status="ok" if value == value else "failed"))
    autologging.log_search_report(session, trials, objective=key, direction="maximize",
                                  title=f"{type(search).__name__} {session.run_id[:8]}")


def _log_candidates(session: Session, cv_results: dict[str, Any]) -> None:
    """One finished child run per top candidate, ranked by the (first) test score rank."""
    limit = session.options.extra.get("max_tuning_runs", 5)
    if limit == 0:
        return
    rank_key = next((k for k in cv_results if k.startswith("rank_test_")), None)
    count = len(cv_results["params"])
    order = list(range(count))
    if rank_key is not None:
        order.sort(key=lambda i: (cv_results[rank_key][i], i))
    if limit is not None:
        order = order[:limit]
    score_keys = [k for k in cv_results
                  if k.startswith(("mean_test_", "std_test_", "mean_train_", "std_train_",
                                   "rank_test_"))
                  or k in ("mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time")]
    for index in order:
        params = {k: _param_text(v) for k, v in cv_results["params"][index].items()}
        metrics = {k: float(cv_results[k][index]) for k in score_keys}
        session.log_child_run(f"candidate-{index}", params=params, metrics=metrics)


def log_fitted_model(session: Session, estimator: Any, x: Any) -> None:
    """The fitted estimator (a search's best estimator) as the run's `model`."""
    from .model import log_model

    model = getattr(estimator, "best_estimator_", estimator)
    log_model(model, "model", run_id=session.run_id, input_example_data=x)
