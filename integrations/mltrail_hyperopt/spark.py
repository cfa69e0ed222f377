"""SparkTrials: the driver owns each trial's run, and the executor attaches to it.

hyperopt's `SparkTrials` runs each trial as a one-task Spark job, started by a
dispatcher thread on the driver (`_SparkFMinState._run_trial_async`) and written
back when the job ends (`_SparkFMinState._finish_trial_run`). Those two methods
are where a trial's run begins and ends:

- before the job, the driver starts `trial-<tid>` (a child of the search run, with
  a real server id: another process must find it) and hands the job a spec (run
  id, tracking URI, experiment, autolog settings, flush timeout) as the Spark
  local property `mltrail.trial`, which the job's thread inherits;
- on the executor, the objective is wrapped (`executor_objective`): the wrapper
  is pickled by value and imports mltrail only when a spec is there, so a trial
  runs where mltrail is not installed. It attaches to the run without owning it
  (see `mltrail_hyperopt.executor`), autologs what the objective trains into it,
  flushes, and sends a small report back beside the result;
- when the job ends, the driver logs the point, the numbers of the result and a
  status (ok, fail, error with the traceback's tail, cancelled), and ends the run
  FINISHED, FAILED or KILLED. Only the driver ends trial runs, so they appear as
  trials finish, and a driver stopped by SIGTERM ends the runs still open KILLED.

When the executor cannot attach (mltrail missing there, a local store folder it
cannot see, no server id in time, Spark without pinned threads), the trial's run
holds what the driver records, and says so in `mltrail.spark.records`.
"""

from __future__ import annotations

import contextvars
import json
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import mltrail.autologging as autologging
from mltrail.autologging import RunStatus

from .search import ERROR_TAG, FLAVOR, STATUS_TAG, TRIAL_ID_TAG, all_docs, outcome

if TYPE_CHECKING:
    from .search import Search

PROPERTY = "mltrail.trial"  # the Spark local property that carries a trial's spec
REPORT_KEY = "mltrail.trial"  # the executor's report beside a result; removed on the driver
REPORT_ATTR = "_mltrail_trial"  # the same report on an exception the objective raised
RECORDS_TAG = "mltrail.spark.records"  # "executor": attached there; "driver": driver's only
WHY_TAG = "mltrail.spark.driver_only"  # why the executor did not record into the run
UNSENT_HOST_TAG = "mltrail.spark.unsent_host"  # records left in that host's spool...
UNSENT_SPOOL_TAG = "mltrail.spark.unsent_spool"  # ...in this folder: `mltrail sync` there
TRACEBACK_TAG = "hyperopt.traceback"
TRACEBACK_TAIL = 4000  # characters: the end of a traceback says where it failed
FLUSH_TIMEOUT_ENV = "MLTRAIL_FLUSH_TIMEOUT"

_lock = threading.Lock()
_searches: dict[int, SparkRuns] = {}  # id(SparkTrials) -> the search under way on it


def is_spark_trials(trials: Any) -> bool:
    return any(cls.__name__ == "SparkTrials" for cls in type(trials).__mro__)


def _flush_timeout() -> float:
    try:
        return float(os.environ.get(FLUSH_TIMEOUT_ENV, "5"))
    except ValueError:
        return 5.0


def _without_credentials(uri: str) -> str:
    """The URI without `user:password@`: a job's properties are shown in Spark's UI, so
    executors take credentials from their environment (MLFLOW_TRACKING_USERNAME, ...)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class _TrialRun:
    """A trial's run on the driver: started in a context of its own, so the dispatcher
    thread's active-run stack stays empty and the run can be ended from the job's thread."""

    def __init__(self, tid: Any, context: contextvars.Context, active: Any) -> None:
        self.tid = tid
        self.context = context
        self.active = active
        self.driver_only: str | None = None  # why the executor is not told about the run

    @property
    def run_id(self) -> str:
        return str(self.active.info.run_id)


class SparkRuns:
    """The trial runs of one search on a SparkTrials, from dispatch to end."""

    def __init__(self, search: Search) -> None:
        self.search = search
        self.client = search.client
        self.open: dict[Any, _TrialRun] = {}
        self.lock = threading.Lock()
        self.flush_timeout = _flush_timeout()
        self.autolog = autologging.settings()
        store_uri = getattr(self.client.store, "uri", None)  # a local store's absolute URI
        local = isinstance(store_uri, str) and store_uri.startswith("file:")
        self.uri = store_uri if local else _without_credentials(self.client.tracking_uri)

    def search_params(self) -> dict[str, Any]:
        """SparkTrials' own settings: its timeout is not fmin's, so fmin never sees it."""
        trials = self.search.trials
        params: dict[str, Any] = {"parallelism": trials.parallelism}
        if getattr(trials, "timeout", None) is not None:
            params["timeout"] = trials.timeout
        return params

    def __enter__(self) -> SparkRuns:
        with _lock:
            _searches[id(self.search.trials)] = self
        return self

    def __exit__(self, *exc: object) -> None:
        with _lock:
            if _searches.get(id(self.search.trials)) is self:
                del _searches[id(self.search.trials)]

    # dispatch (the driver's dispatcher thread) ------------------------------

    def start(self, doc: dict[str, Any], pinned: bool) -> str | None:
        """Start the trial's run; returns the spec for its job, or None (driver only)."""
        search = self.search
        tid = doc.get("tid")
        context = contextvars.Context()
        active = context.run(
            autologging.start_run,
            experiment_id=search.experiment_id,
            parent_run_id=search.run_id,  # the dispatcher thread has no active run
            run_name=f"trial-{tid}",
            tags={**search.trial_tags, TRIAL_ID_TAG: tid},
        )
        trial = _TrialRun(tid, context, active)
        search.memory["trial_runs"][tid] = trial.run_id
        with self.lock:
            self.open[tid] = trial
        shared = None
        if not pinned:
            trial.driver_only = "Spark runs without pinned threads (PYSPARK_PIN_THREAD=false)"
        else:  # the executor must find the run: by the server's id, never a local one
            shared = self.client.shared_run_id(trial.run_id, self.flush_timeout)
            if shared is None:
                trial.driver_only = "the tracking server gave no run id in time"
        if trial.driver_only is not None:
            autologging.warn_once(
                FLAVOR, "trials on Spark record only what the driver sees", trial.driver_only
            )
            return None
        return json.dumps(
            {
                "run_id": shared,
                "uri": self.uri,
                "experiment_id": search.experiment_id,
                "autolog": self.autolog,
                "flush_timeout": self.flush_timeout,
            },
            default=str,
        )

    # the end of a trial (the job's thread, or the search's end) -------------

    def finish(self, doc: dict[str, Any], success: bool, cancelled: bool, data: Any,
               report: dict[str, Any] | None) -> None:
        """Log the trial's outcome on its run and end it, once."""
        with self.lock:
            trial = self.open.pop(doc.get("tid"), None)
        if trial is None:
            return
        status, metrics, tags = self._outcome(success, cancelled, data)
        tags.update(self._records_tags(trial, report, cancelled))
        try:
            self.search.session.safe(
                "log the trial", self.search.log_trial, trial.run_id,
                self.search.session.safe("read the trial's point", self.search.point_of, doc)
                or {}, metrics, tags,
            )
        finally:
            self.search.session.safe("end the trial run", trial.context.run,
                                     autologging.end_run, status)

    @staticmethod
    def _outcome(success: bool, cancelled: bool, data: Any
                 ) -> tuple[str, dict[str, float], dict[str, Any]]:
        if success:
            status, metrics, tags = outcome(data, None)
        else:
            status, metrics, tags = outcome(None, data if isinstance(data, BaseException)
                                            else RuntimeError(str(data)))
            traceback = getattr(data, "_tb_str", None)  # hyperopt's text of the executor's
            if isinstance(traceback, str) and traceback:
                tags[TRACEBACK_TAG] = traceback[-TRACEBACK_TAIL:]
        if cancelled:
            status, tags = RunStatus.KILLED, {STATUS_TAG: "cancelled"}
            if not success and data is not None:
                tags[ERROR_TAG] = f"{type(data).__name__}: {data}"[:TRACEBACK_TAIL]
        return status, metrics, tags

    def _records_tags(self, trial: _TrialRun, report: dict[str, Any] | None,
                      cancelled: bool) -> dict[str, Any]:
        why = trial.driver_only
        if why is None and report is None and cancelled:
            return {}  # the job was stopped before it could answer: nothing to say
        if why is None and report is None:
            why = "no report from the executor (is mltrail installed there?)"
            autologging.warn_once(FLAVOR, "trials on Spark record only what the driver sees",
                                  why)
        elif why is None and report is not None and not report.get("attached"):
            why = str(report.get("reason") or "the executor could not attach to the run")
            autologging.warn_once(FLAVOR, "trials on Spark record only what the driver sees",
                                  why)
        if why is not None:
            return {RECORDS_TAG: "driver", WHY_TAG: why}
        tags = {RECORDS_TAG: "executor"}
        unsent = report.get("unsent") if report is not None else None
        if isinstance(unsent, dict):  # said at once here; the executor's copy comes with sync
            tags[UNSENT_HOST_TAG] = str(unsent.get("host"))
            tags[UNSENT_SPOOL_TAG] = str(unsent.get("spool"))
            autologging.warn_once(FLAVOR, "an executor could not deliver a trial's records in "
                                  "time; run `mltrail sync` on the host the run's tags name")
        return tags

    def finish_remaining(self) -> None:
        """At the search's end: trials still open were cancelled (timeout, early stop,
        Ctrl-C), even if their jobs have not returned yet; they end KILLED now."""
        with self.lock:
            tids = list(self.open)
        docs = {doc.get("tid"): doc for doc in all_docs(self.search.trials)}
        for tid in tids:
            doc = docs.get(tid, {"tid": tid})
            error = (doc.get("misc") or {}).get("error")
            reason = RuntimeError(error[1] if error else "the search ended before the trial")
            self.finish(doc, False, True, reason, None)


# patches ----------------------------------------------------------------------


def patch_spark(module: Any) -> None:
    """Patch hyperopt's SparkTrials machinery, where it exists (pyspark may be absent)."""
    state = getattr(getattr(module, "spark", None), "_SparkFMinState", None)
    if state is None:
        return
    autologging.safe_patch(FLAVOR, state, "_run_trial_async", _dispatch_wrapper)
    autologging.safe_patch(FLAVOR, state, "_finish_trial_run", _finish_wrapper)


def _dispatch_wrapper(
    call_original: autologging.OriginalCall, instance: Any, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    with _lock:
        runs = _searches.get(id(getattr(instance, "trials", None)))
    doc = args[0] if args else kwargs.get("trial")
    if runs is None or not isinstance(doc, dict):
        call_original(*args, **kwargs)
        return
    if not getattr(instance.eval_function, "_mltrail_spark", False):
        instance.eval_function = executor_objective(instance.eval_function)
    pinned = bool(getattr(instance.trials, "_spark_pinned_threads_enabled", False))
    spec = runs.search.session.safe("start a trial run", runs.start, doc, pinned)
    if spec is None:
        call_original(*args, **kwargs)
        return
    spark_context = instance.spark.sparkContext
    before = spark_context.getLocalProperty(PROPERTY)
    # The job's thread is made in the original and inherits this thread's properties.
    spark_context.setLocalProperty(PROPERTY, spec)
    try:
        call_original(*args, **kwargs)
    finally:
        spark_context.setLocalProperty(PROPERTY, before)


def _finish_wrapper(
    call_original: autologging.OriginalCall, instance: Any, args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    names = ("is_success", "is_cancelled", "trial", "data")
    values = dict(zip(names, args, strict=False)) | kwargs
    data = values.get("data")
    if isinstance(data, dict) and REPORT_KEY in data:
        report = data.pop(REPORT_KEY)  # hyperopt stores the result as the objective gave it
    else:
        report = getattr(data, REPORT_ATTR, None)
    with _lock:
        runs = _searches.get(id(getattr(instance, "trials", None)))
    doc = values.get("trial")
    if runs is not None and isinstance(doc, dict):
        # Before hyperopt marks the trial done: the run is complete when fmin sees it end.
        runs.search.session.safe(
            "record the trial", runs.finish, doc, bool(values.get("is_success")),
            bool(values.get("is_cancelled")), data,
            report if isinstance(report, dict) else None,
        )
    call_original(*args, **kwargs)


def executor_objective(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` wrapped for a Spark job: with a trial spec in the job, recorded into its run.

    Defined in a function so that Spark's pickler ships it by value: an executor
    without mltrail unpickles it, finds no mltrail, and runs `fn` as it is.
    """

    def mltrail_spark_objective(*args: Any, **kwargs: Any) -> Any:
        try:
            from pyspark import TaskContext

            task = TaskContext.get()
            spec = task.getLocalProperty("mltrail.trial") if task is not None else None
        except Exception:
            spec = None
        if not spec:
            return fn(*args, **kwargs)
        try:
            from mltrail_hyperopt.executor import run_trial
        except ImportError:
            return fn(*args, **kwargs)
        return run_trial(fn, spec, args, kwargs)

    mltrail_spark_objective._mltrail_spark = True  # type: ignore[attr-defined]
    return mltrail_spark_objective
