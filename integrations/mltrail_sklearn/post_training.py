"""Post-training metrics: a `sklearn.metrics` call on a logged model's predictions is logged
to that model's run, as MLflow's sklearn autolog does.

The chain, and the facts from MLflow it keeps:

- a fit that autolog recorded registers the fitted object (and a search's best
  estimator) with its run;
- `predict`, `predict_proba`, `predict_log_proba` and `transform` of a
  registered model register their result: which run, and the name of the
  variable the input came from in the caller's code (`X_test`). An expression
  with no variable (`X[mask]`) is named `unknown_dataset`; another object under
  a name already taken in that run gets `-2`, `-3`, ... (`X_test-2`);
- a `sklearn.metrics` function called with such a result as one of its
  arguments logs `<function>_<dataset>` (`accuracy_score_X_test`), and
  `model.score(X, y)` of a registered model logs `<Class>_score_<dataset>`; a
  second call of the same function in a run becomes `<function>-2_<dataset>`;
- `metric_info.json` maps every key to the call that made it
  (`accuracy_score(y_true=y_test, y_pred=y_pred)`); MLflow rewrites it with each
  call, here at most once a second and at `flush()` and exit;
- nothing is logged for a result no registered model produced, for a value that
  is not a number, or for calls made inside another patched call (a Pipeline's
  inner predict, the metric `score` calls itself) or inside a training call.

Models and results are held by id with weak references, never by value, so
tracking keeps nothing alive. Option: `log_post_training_metrics` (default on).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import json
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import mltrail.autologging as autologging
from mltrail.autologging import Metric

FLAVOR = "sklearn"
OPTION = "log_post_training_metrics"
INFO_FILE = "metric_info.json"
_INFO_INTERVAL = 1.0  # seconds between rewrites of metric_info.json during a burst of calls
UNKNOWN_DATASET = "unknown_dataset"
PREDICT_METHODS = ("predict", "predict_proba", "predict_log_proba", "transform")
_EXCLUDED = frozenset(("check_scoring", "get_scorer", "make_scorer", "get_scorer_names"))
# Frames of these modules are patching machinery, never the user's code naming a variable:
# wrapt, the plugin API, and the integrations. (mltrail's other modules are user code
# here: `mltrail demo` names its datasets like any script.)
_MACHINERY = ("wrapt", "mltrail.autologging", "mltrail_")


def _machinery(module: str) -> bool:
    return module.startswith(_MACHINERY)

_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("mltrail_post_training",
                                                               default=False)


class _Registry:
    """Which objects are predictions of logged models, and each run's metric calls."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.results: dict[int, tuple[str, str, Any]] = {}  # id -> dataset name, run, client
        self.datasets: dict[tuple[str, str], list[int]] = {}  # (run, name) -> dataset ids
        self.calls: dict[str, dict[str, list[tuple[str, str]]]] = {}  # run -> fn -> (key, cmd)
        self.unwritten: dict[str, Any] = {}  # run -> client, where metric_info.json lags
        self.written_at: dict[str, float] = {}  # run -> when metric_info.json was written


_registry = _Registry()


def enabled() -> bool:
    current = autologging.options_of(FLAVOR)
    return current is not None and not current.disable and bool(current.extra.get(OPTION, True))


def _active() -> bool:
    return not (_inside.get() or autologging.in_training()) and enabled()


@contextlib.contextmanager
def _nested() -> Iterator[None]:
    token = _inside.set(True)
    try:
        yield
    finally:
        _inside.reset(token)


# registration ----------------------------------------------------------------------


def register_model(session: autologging.Session, model: Any) -> None:
    """Remember that `model` (and a search's best estimator) logs into the session's run."""
    if not session.options.extra.get(OPTION, True):
        return
    for item in (model, getattr(model, "best_estimator_", None)):
        if item is not None:
            autologging.remember_fitted(session.run_id, session.client, item)


def _dataset_name(run_id: str, dataset: Any, name: str) -> str:
    """`name`, or `name-2`, `name-3` for other objects seen under the same name in the run."""
    with _registry.lock:
        seen = _registry.datasets.setdefault((run_id, name), [])
        if id(dataset) not in seen:
            seen.append(id(dataset))
        index = seen.index(id(dataset))
    return name if index == 0 else f"{name}-{index + 1}"


def _register_result(result: Any, dataset_name: str, run_id: str, client: Any) -> None:
    key = id(result)

    def forget() -> None:
        with _registry.lock:
            _registry.results.pop(key, None)

    try:
        weakref.finalize(result, forget)
    except TypeError:  # a list or tuple: its id may be reused unseen, so it is not followed
        return
    with _registry.lock:
        _registry.results[key] = (dataset_name, run_id, client)


# naming ----------------------------------------------------------------------------


def variable_name(value: Any, fallback: str) -> str:
    """The name the calling code gave `value`, as MLflow finds it.

    Walking out from the patched call (past mltrail's and wrapt's frames), a frame
    that received `value` as an argument passes the question to its caller; the
    first frame that did not is asked for a local variable holding `value`. None
    found (an expression such as `X[mask]`): `fallback`.
    """
    if value is None:
        return fallback
    frame = sys._getframe(1)
    try:
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if _machinery(module):
                frame = frame.f_back
                continue
            if any(arg is value for arg in _arguments(frame)):
                frame = frame.f_back
                continue
            for name, local in frame.f_locals.items():
                if local is value:
                    return name
            return fallback
        return fallback
    finally:
        del frame


def _arguments(frame: Any) -> list[Any]:
    info = inspect.getargvalues(frame)
    values = [info.locals[name] for name in info.args if name in info.locals]
    if info.varargs and info.varargs in info.locals:
        values.extend(info.locals[info.varargs])
    if info.keywords and isinstance(info.locals.get(info.keywords), dict):
        values.extend(info.locals[info.keywords].values())
    return values


@cache
def _parameter_names(func: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(inspect.signature(func).parameters)


def call_command(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 owner: Any = None) -> str:
    """`accuracy_score(y_true=y_test, y_pred=y_pred)`: the call as metric_info.json shows it."""
    import numpy as np

    def text(arg: Any) -> str:
        if arg is None or np.isscalar(arg):
            if isinstance(arg, str) and len(arg) > 32:
                return repr(arg[:32] + "...")
            return repr(arg)
        return variable_name(arg, f"<{type(arg).__name__}>")

    names = list(_parameter_names(getattr(func, "__func__", func)))
    if owner is not None:
        names = names[1:]  # self
    shown = [f"{n}={text(a)}" for n, a in zip(names, args, strict=False)]
    shown += [f"{n}={text(a)}" for n, a in kwargs.items()]
    prefix = f"{type(owner).__name__}." if owner is not None else ""
    return f"{prefix}{getattr(func, '__name__', 'metric')}({', '.join(shown)})"


def _loggable(value: Any) -> bool:
    import numpy as np

    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def _log(run_id: str, client: Any, metric: str, dataset: str, value: Any, command: str) -> None:
    """Log `<metric>[-n]_<dataset>`; metric_info.json follows (see `_write_info`)."""
    with _registry.lock:
        calls = _registry.calls.setdefault(run_id, {}).setdefault(metric, [])
        index = len(calls)
        key = f"{metric if index == 0 else f'{metric}-{index + 1}'}_{dataset}"
        calls.append((key, command))
        _registry.unwritten[run_id] = client
        due = time.monotonic() - _registry.written_at.get(run_id, 0.0) >= _INFO_INTERVAL
    client.log_batch(run_id, metrics=[Metric(key, float(value), int(time.time() * 1000), 0)])
    if due:
        _write_info(run_id)
    else:
        autologging.background_work(write_pending)


def _write_info(run_id: str) -> None:
    """Rewrite the run's metric_info.json with every call so far.

    Writing an artifact costs milliseconds (a file moved into the run's folder, or
    an upload), more than most metric calls, which often sit in loops: it is
    rewritten at most once a second while calls come, and always by
    `mltrail.flush()` and at exit, so the file ends complete.
    """
    with _registry.lock:
        client = _registry.unwritten.pop(run_id, None)
        if client is None:
            return
        _registry.written_at[run_id] = time.monotonic()
        info = dict(sorted(pair for pairs in _registry.calls[run_id].values() for pair in pairs))
    with client.stage_artifacts(run_id) as folder:
        (folder / INFO_FILE).write_text(json.dumps(info, indent=2))


def write_pending(timeout: float = 0.0) -> bool:
    """Write the metric_info.json files that lag behind (flush and exit call this)."""
    with _registry.lock:
        runs = list(_registry.unwritten)
    for run_id in runs:
        try:
            _write_info(run_id)
        except Exception as exc:
            autologging.warn_once(FLAVOR, "could not write metric_info.json",
                                  f"{type(exc).__name__}: {exc}")
    return True


# patch wrappers --------------------------------------------------------------------


def _bound(instance: Any, args: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """(self, the call's other arguments).

    A method reached through scikit-learn's `available_if` descriptor (a Pipeline's
    predict) is its plain function called with the estimator first.
    """
    if instance is None and args:
        return args[0], args[1:]
    return instance, args


def _first_argument(func: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
    """The data a method was called with (`X`), by position or by name."""
    if args:
        return args[0]
    names = _parameter_names(getattr(func, "__func__", func))  # self first
    return kwargs.get(names[1]) if len(names) > 1 else None


def _call_on_logged_model(
    call_original: autologging.OriginalCall, instance: Any, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[Any, tuple[Any, ...], tuple[str, Any], Any] | None:
    """Run the user's call, once. For a logged model (while post-training metrics are on):
    the model, the call's arguments after it, (run id, client) and the call's result."""
    model, rest = _bound(instance, args)
    target = autologging.fitted_run(model) if _active() else None
    if target is None:
        call_original(*args, **kwargs)
        return None
    with _nested():
        result = call_original(*args, **kwargs)
    return model, rest, target, result


def _dataset(call_original: autologging.OriginalCall, rest: tuple[Any, ...],
             kwargs: dict[str, Any], run_id: str) -> str:
    """The name of the data the call was given, unique in the run (see `_dataset_name`)."""
    data = _first_argument(call_original.func, rest, kwargs)
    return _dataset_name(run_id, data, variable_name(data, UNKNOWN_DATASET))


def predict_wrapper(call_original: autologging.OriginalCall, instance: Any,
                    args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    called = _call_on_logged_model(call_original, instance, args, kwargs)
    if called is not None:
        _, rest, target, result = called
        _register_result(result, _dataset(call_original, rest, kwargs, target[0]), *target)


def score_wrapper(call_original: autologging.OriginalCall, instance: Any,
                  args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    called = _call_on_logged_model(call_original, instance, args, kwargs)
    if called is None or not _loggable(called[3]):
        return
    model, rest, target, value = called
    func = getattr(call_original.func, "__func__", call_original.func)
    command = call_command(func, rest, kwargs, owner=model)
    name = _dataset(call_original, rest, kwargs, target[0])
    _log(target[0], target[1], f"{type(model).__name__}_score", name, value, command)


def metric_wrapper(call_original: autologging.OriginalCall, instance: Any,
                   args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A metric function's call. What it fits inside (`log_loss` fits a LabelBinarizer)
    is part of computing the metric, never a training run of its own."""
    if not _active():
        with autologging.suppressed():
            call_original(*args, **kwargs)
        return
    with _nested(), autologging.suppressed():
        value = call_original(*args, **kwargs)
    if not _loggable(value) or not _registry.results:
        return
    for arg in (*args, *kwargs.values()):
        found = _registry.results.get(id(arg)) if arg is not None else None
        if found is not None:
            break
    else:
        return  # no argument came from a logged model
    dataset, run_id, client = found
    command = call_command(call_original.func, args, kwargs)
    _log(run_id, client, call_original.func.__name__, dataset, value, command)


def metric_functions(metrics_module: Any) -> list[str]:
    """The public functions of `sklearn.metrics` that compute a metric (no scorer helpers)."""
    names = []
    for name in getattr(metrics_module, "__all__", ()):
        value = getattr(metrics_module, name, None)
        if (name not in _EXCLUDED and callable(value) and not inspect.isclass(value)
                and not name.startswith("plot_")):
            names.append(name)
    return names
