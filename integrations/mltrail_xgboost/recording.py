"""What an xgboost training call records besides per-round metrics.

Params, the training data's description, feature importance and the model. Each
function runs inside `Session.safe`, so an error here is mltrail's own: warned
about once, never breaking the user's training.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from mltrail.autologging import Dataset, Session, plots

from .callback import MetricsCallback

NOTE_TAG = "mltrail.note"
_DIGEST_ROWS = 10_000  # as for arrays and frames: the digest reads a bounded prefix
# Arguments of xgboost.train / xgboost.cv that change the result. Data, callbacks,
# result holders and display switches (verbose_eval, show_stdv, as_pandas) are not params.
TRAIN_ARGS = ("num_boost_round", "early_stopping_rounds", "maximize")
CV_ARGS = (
    "num_boost_round",
    "nfold",
    "stratified",
    "metrics",
    "early_stopping_rounds",
    "maximize",
    "seed",
    "shuffle",
)
FUNCTION_ARGS = ("obj", "custom_metric", "feval")


@cache
def signature(func: Callable[..., Any]) -> inspect.Signature:
    """The signature of a plain function (cached: functions live as long as their module)."""
    return inspect.signature(func)


def bind(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any] | None:
    """The call's arguments by name, defaults included; None where they do not bind.

    A bound method is read through its function, so the cache holds functions
    only, never the instances a method is bound to. xgboost still accepts, with a
    FutureWarning of its own, positional values for keyword-only parameters; they
    are matched in order, as xgboost does. A call that binds neither way is left
    to raise its own error.
    """
    target = getattr(func, "__func__", func)
    if target is not func:
        args = (func.__self__, *args)  # type: ignore[attr-defined]
    sig = signature(target)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        names = [p.name for p in sig.parameters.values()
                 if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if len(args) > len(names) or set(names[: len(args)]) & set(kwargs):
            return None
        try:
            bound = sig.bind(**dict(zip(names, args, strict=False)), **kwargs)
        except TypeError:
            return None
    bound.apply_defaults()
    return dict(bound.arguments)


def with_callback(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    callback: MetricsCallback,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The same call with `callback` put before the user's callbacks.

    The user's list is not modified (xgboost copies it too); whether `callbacks`
    came by keyword or position, it is passed back the same way.
    """
    names = list(signature(func).parameters)
    index = names.index("callbacks")
    if index < len(args):
        user = args[index]
        new_args = (*args[:index], [callback, *(user or [])], *args[index + 1 :])
        return new_args, kwargs
    return args, {**kwargs, "callbacks": [callback, *(kwargs.get("callbacks") or [])]}


def has_early_stopping(arguments: Mapping[str, Any]) -> bool:
    from xgboost.callback import EarlyStopping

    if arguments.get("early_stopping_rounds"):
        return True
    return any(isinstance(cb, EarlyStopping) for cb in arguments.get("callbacks") or [])


def param_text(value: Any) -> str:
    """A param value as text; functions by name, lists as their list text."""
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}".lstrip(".")
    return str(value)


def booster_params(params: Any) -> dict[str, Any]:
    """xgboost's params as a dict: a list of pairs repeating a key becomes a list."""
    if params is None:
        return {}
    if isinstance(params, Mapping):
        return dict(params)
    merged: dict[str, Any] = {}
    for key, value in params:
        if key in merged:
            previous = merged[key]
            merged[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            merged[key] = value
    return merged


def log_call_params(session: Session, arguments: Mapping[str, Any], names: tuple[str, ...]) -> None:
    """The booster params plus the call's own arguments that shape the model."""
    params = {k: param_text(v) for k, v in booster_params(arguments.get("params")).items()}
    for name in names:
        params[name] = param_text(arguments.get(name))
    for name in FUNCTION_ARGS:
        if arguments.get(name) is not None:
            params[name] = param_text(arguments[name])
    session.log_params(params)


def log_estimator_params(session: Session, estimator: Any) -> None:
    """An sklearn wrapper's `get_params()`, plus tags naming its class."""
    cls = type(estimator)
    session.set_tags(
        {"estimator_name": cls.__name__, "estimator_class": f"{cls.__module__}.{cls.__qualname__}"}
    )
    session.log_params({k: param_text(v) for k, v in estimator.get_params().items()})


def log_early_stopping(session: Session, callback: MetricsCallback) -> None:
    summary, best = callback.early_stopping_metrics()
    if summary:
        session.log_metrics(summary)
    if best and callback.best_iteration is not None:
        session.log_metrics(best, step=callback.best_iteration)


# datasets --------------------------------------------------------------------------

_DMATRIX_TYPES = {"int": "long", "i": "boolean", "c": "string"}


def describe_dmatrix(dmatrix: Any, name: str) -> Dataset:
    """A Dataset for a DMatrix from its shape, feature names and types, and labels.

    A DMatrix does not hand its features back cheaply, so the digest covers the
    shape, the feature names and types and the first labels; two DMatrix with the
    same labels and columns but other feature values share a digest.
    """
    import numpy as np

    rows, cols = int(dmatrix.num_row()), int(dmatrix.num_col())
    names = dmatrix.feature_names
    types = dmatrix.feature_types
    digest = hashlib.md5(json.dumps([rows, cols, names, types]).encode())
    labels = dmatrix.get_label()
    digest.update(np.ascontiguousarray(labels[:_DIGEST_ROWS]).tobytes())
    if names:
        types = types or ["float"] * len(names)
        schema: dict[str, Any] = {
            "mlflow_colspec": [
                {"type": _DMATRIX_TYPES.get(t, "float"), "name": n, "required": True}
                for n, t in zip(names, types, strict=False)
            ]
        }
    else:
        spec = {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, cols]}}
        schema = {"mlflow_tensorspec": {"features": json.dumps([spec])}}
    profile = {
        "num_rows": rows,
        "num_cols": cols,
        "num_nonmissing": int(dmatrix.num_nonmissing()),
        "has_labels": bool(len(labels)),
    }
    return Dataset(
        name=name,
        digest=digest.hexdigest()[:8],
        source_type="code",
        source="{}",
        schema=json.dumps(schema),
        profile=json.dumps(profile),
    )


def log_dmatrix_input(session: Session, dmatrix: Any, name: str = "dtrain") -> None:
    """The training DMatrix as a dataset input; anything else xgboost will refuse itself."""
    from xgboost import DMatrix

    if isinstance(dmatrix, DMatrix) and session.options.log_datasets:
        session.log_dataset(describe_dmatrix(dmatrix, name))


# feature importance and the model --------------------------------------------------------


def log_importance(session: Session, booster: Any) -> None:
    """`feature_importance_<type>.json` for each of the `importance_types` option, and
    with `log_plots` its bar chart `feature_importance_<type>.svg` (data in `plots.json`).

    Keys are the booster's feature names (`f0`, `f1`, ... without them); xgboost
    leaves out features no tree split on. A type the booster does not define
    (gblinear has only `weight`) is skipped and noted in a tag.
    """
    from xgboost.core import XGBoostError

    types = session.options.extra.get("importance_types") or []
    if isinstance(types, str):
        types = [types]
    if not types:
        return
    skipped = []
    found = []
    with session.stage_artifacts() as folder:  # written in place
        for importance_type in types:
            try:
                scores = booster.get_score(importance_type=importance_type)
            except (XGBoostError, ValueError) as exc:
                skipped.append(f"{importance_type}: {str(exc).splitlines()[0]}")
                continue
            payload = {
                str(k): float(v) if not isinstance(v, list) else [float(x) for x in v]
                for k, v in scores.items()
            }
            (folder / f"feature_importance_{importance_type}.json").write_text(
                json.dumps(payload, indent=2))
            if payload:  # MLflow draws no plot for a booster without splits
                found.append(plots.feature_importance(importance_type, payload))
        if found and session.options.log_plots:
            plots.write(folder, found)
    if skipped:
        session.set_tags({f"{NOTE_TAG}.feature_importance": "; ".join(skipped)})


def log_fitted_model(session: Session, model: Any, data: Any = None) -> None:
    """The booster (or the sklearn wrapper) as the run's `model`.

    The training data only gives the signature (column names and types, or dtype
    and width); none of its values is stored.
    """
    from .model import log_model

    log_model(model, "model", run_id=session.run_id, input_example_data=data)
