"""Which fitted model objects log into which run.

A fitted model outlives the training call that logged it, and a later call on
it can belong to its run: its predictions fed to `sklearn.metrics` become that
run's post-training metrics. The integration that logged the fit remembers the
object here (xgboost's sklearn wrappers as much as scikit-learn's estimators),
and whatever later asks "whose model is this?" reads it here, so no integration
reaches into another's bookkeeping.

Objects are held by id with a weak reference, never by value, so tracking keeps
no model alive; an object that takes no weak reference is not remembered.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

_lock = threading.Lock()
_models: dict[int, tuple[weakref.ref[Any], str, Any]] = {}  # id -> ref, run id, client


def remember_fitted(run_id: str, client: Any, model: Any) -> None:
    """From now on `model` belongs to run `run_id` (a later fit of it moves it)."""
    key = id(model)

    def forget(ref: weakref.ref[Any], key: int = key) -> None:
        with _lock:
            if _models.get(key, (None,))[0] is ref:
                del _models[key]

    try:
        ref = weakref.ref(model, forget)
    except TypeError:  # without weak references its id could be reused unseen
        return
    with _lock:
        _models[key] = (ref, run_id, client)


def fitted_run(model: Any) -> tuple[str, Any] | None:
    """(run id, client) of the run that logged `model`'s fit, or None."""
    entry = _models.get(id(model))
    if entry is None or entry[0]() is not model:
        return None
    return entry[1], entry[2]
