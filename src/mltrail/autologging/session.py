"""The training-session guard: one run per training call, and tracking that never breaks it.

A patched training call opens a session with `training_run(flavor)`. Only the
outermost call gets one: a Pipeline's inner fits, a subclass calling
`super().fit`, or an sklearn wrapper calling `xgboost.train` all run inside the
outer session and record nothing of their own. The session logs into the run the
user has open (unless `exclusive`), or starts a run tagged `mlflow.autologging`
and ends it FINISHED, FAILED or KILLED as the training ends.

Every logging call of a session goes through `Session.safe`: an error there is
mltrail's own, so it is warned about once and training goes on, unless
MLTRAIL_STRICT is set (tests set it). Errors from the training itself are never
caught here; they reach the user unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

from .. import fluent, notices
from ..client import TrackingClient
from ..entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from . import options as options_module
from .options import AutologOptions

T = TypeVar("T")

AUTOLOGGING_TAG = "mlflow.autologging"
STRICT_ENV = "MLTRAIL_STRICT"

_FLUSH_POINTS = 1000  # one log-batch request holds at most 1000 metrics
_FLUSH_SECONDS = 1.0  # a crash loses at most this much of a training's history


class MltrailWarning(UserWarning):
    """A problem in mltrail's own logging; the training went on."""


_warned: set[tuple[str, str]] = set()


def strict() -> bool:
    return os.environ.get(STRICT_ENV, "").lower() in ("1", "true", "yes")


def warn_once(flavor: str, what: str, detail: str = "") -> None:
    """Warn about a logging problem once per flavour and kind, unless `silent`."""
    opts = options_module.get(flavor)
    if (flavor, what) in _warned or (opts is not None and opts.silent):
        return
    _warned.add((flavor, what))
    notices.warn(f"mltrail ({flavor}): {what}{': ' + detail if detail else ''}", MltrailWarning,
                 stacklevel=3)


class Session:
    """The run a training call logs into, with logging methods that never raise.

    Attributes:
        flavor: the integration that opened the session.
        options: the autolog options in force for it.
        run_id: the run records go to.
        experiment_id: that run's experiment (child runs go there too).
        created_run: True when autolog started the run (and so will end it).
    """

    def __init__(
        self,
        flavor: str,
        options: AutologOptions,
        client: TrackingClient,
        run_id: str,
        experiment_id: str,
        active_run: fluent.ActiveRun | None,
    ) -> None:
        self.flavor = flavor
        self.options = options
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.created_run = active_run is not None
        self._active_run = active_run
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()

    def safe(self, what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Run a piece of logging; on error warn once (or raise in strict mode)."""
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if strict():
                raise
            warn_once(self.flavor, f"could not {what}", f"{type(exc).__name__}: {exc}")
            return None

    def log_params(self, params: dict[str, Any]) -> None:
        items = [Param(str(k), v) for k, v in params.items()]
        self.safe("log params", self.client.log_batch, self.run_id, params=items)

    def set_tags(self, tags: dict[str, Any]) -> None:
        items = [RunTag(str(k), v) for k, v in tags.items()]
        self.safe("set tags", self.client.log_batch, self.run_id, tags=items)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Log metrics now (for end-of-training values)."""
        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in metrics.items()]
        self.safe("log metrics", self.client.log_batch, self.run_id, metrics=items)

    def buffer_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Queue per-iteration metrics; they are written in batches, at most 1 s late."""
        now_ms = int(time.time() * 1000)
        self._pending.extend(Metric(k, v, now_ms, step) for k, v in metrics.items())
        if len(self._pending) >= _FLUSH_POINTS or (
            time.monotonic() - self._last_flush >= _FLUSH_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        if pending:
            self.safe("log metrics", self.client.log_batch, self.run_id, metrics=pending)

    def stage_artifacts(self, artifact_path: str | None = None) -> AbstractContextManager[Path]:
        """A folder to write artifacts of the run into, published when the block ends
        (see `TrackingClient.stage_artifacts`); use it inside `safe`."""
        return self.client.stage_artifacts(self.run_id, artifact_path)

    def log_input(self, data: Any, targets: Any = None, context: str = "train",
                  name: str | None = None) -> None:
        """Describe the training data as a dataset input, if `log_datasets` is on.

        Takes anything a framework takes as data: arrays, lists, pandas objects,
        scipy sparse matrices of any format.
        """
        if not self.options.log_datasets or data is None:
            return

        def describe() -> None:
            from ..data import from_any

            self.log_dataset(from_any(data, targets=targets, name=name), context)

        self.safe("log the dataset", describe)

    def log_dataset(self, dataset: Dataset, context: str = "train") -> None:
        """Log a dataset the integration described itself (an xgboost DMatrix), if
        `log_datasets` is on. Errors propagate: call it inside `safe`."""
        if self.options.log_datasets:
            tags = (InputTag("mlflow.data.context", context),)
            self.client.log_inputs(self.run_id, [DatasetInput(dataset, tags)])

    def log_child_run(
        self,
        run_name: str,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, Any] | None = None,
    ) -> str | None:
        """Record a finished child run of this session's run (e.g. a CV candidate).

        Returns its id as this client knows it. Against a tracking server the run
        is created in the background (`create_run(defer=True)`), so that id may be a
        local one, which this client resolves but the server does not know: do not
        write it into another run's tags.
        """

        def create() -> str:
            child_tags = {fluent.PARENT_RUN_ID_TAG: self.run_id, AUTOLOGGING_TAG: self.flavor,
                          **self.options.extra_tags, **(tags or {})}
            # Nothing reads a child's id now: the server gives it in the background.
            child = self.client.create_run(self.experiment_id, tags=child_tags,
                                           run_name=run_name, defer=True)
            now = int(time.time() * 1000)
            self.client.log_batch(
                child.info.run_id,
                metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                params=[Param(k, v) for k, v in params.items()],
            )
            self.client.set_terminated(child.info.run_id)
            return child.info.run_id

        return self.safe("log a child run", create)

    def close(self, exc: BaseException | None) -> None:
        """Flush, and end the run if autolog started it (status from the exception)."""
        self.flush()
        if self._active_run is not None:
            active, self._active_run = self._active_run, None
            exc_type = type(exc) if exc is not None else None
            self.safe("end the run", active.__exit__, exc_type, exc, None)


class _Suppressed:
    """Marks a scope where training calls record nothing (a CV helper's clone fits)."""


_current: contextvars.ContextVar[Session | _Suppressed | None] = contextvars.ContextVar(
    "mltrail_training_session", default=None
)


def current_session() -> Session | None:
    """The session of the training call under way in this context, if any."""
    current = _current.get()
    return current if isinstance(current, Session) else None


def in_training() -> bool:
    """True inside any patched training call (or a suppressed scope)."""
    return _current.get() is not None


def _open(flavor: str, run_name: str | None, tags: dict[str, Any] | None) -> Session | None:
    opts = options_module.get(flavor)
    if opts is None or opts.disable:
        return None
    active = fluent.active_run()
    if active is not None:
        if opts.exclusive:
            return None
        session = Session(flavor, opts, active.client, active.info.run_id,
                          active.info.experiment_id, None)
        if opts.extra_tags or tags:
            session.set_tags({**opts.extra_tags, **(tags or {})})
        return session
    run_tags = {AUTOLOGGING_TAG: flavor, **opts.extra_tags, **(tags or {})}
    started = fluent.start_run(run_name=run_name, tags=run_tags)
    return Session(flavor, opts, started.client, started.info.run_id,
                   started.info.experiment_id, started)


@contextlib.contextmanager
def training_run(
    flavor: str, *, run_name: str | None = None, tags: dict[str, Any] | None = None
) -> Iterator[Session | None]:
    """Open the session of a training call; yields None where nothing is to be recorded.

    None means: a training call is already under way (this one is nested), the
    user's run is open and `exclusive` is set, or the run could not be started.
    """
    if in_training():
        yield None
        return
    session: Session | None = None
    try:
        session = _open(flavor, run_name, tags)
    except Exception as exc:
        if strict():
            raise
        warn_once(flavor, "could not start a run; this training is not logged",
                  f"{type(exc).__name__}: {exc}")
    token = _current.set(session if session is not None else _Suppressed())
    try:
        yield session
    except BaseException as exc:
        if session is not None:
            session.close(exc)
        raise
    else:
        if session is not None:
            session.close(None)
    finally:
        _current.reset(token)


@contextlib.contextmanager
def suppressed() -> Iterator[None]:
    """Record nothing for training calls inside this scope (e.g. cross-validation clones)."""
    token = _current.set(_Suppressed())
    try:
        yield
    finally:
        _current.reset(token)


@contextlib.contextmanager
def isolated() -> Iterator[None]:
    """Start a fresh scope: training calls inside are outermost again.

    A search integration wraps each trial in this, so what a trial trains logs
    into the trial's run rather than being swallowed by the search's session.
    """
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)
