"""A trial's objective on a Spark executor, recorded into the run the driver started.

Imported by the wrapper of `mltrail_hyperopt.spark.executor_objective` inside a
Spark task, only when the job carries a trial spec. The executor:

- turns autolog on as the driver has it (`autologging.apply_settings`);
- attaches to the trial's run without owning it (`start_run(run_id=...,
  end_on_exit=False)`): no status is written here, so nothing sent later from
  this host can overwrite the driver's final status;
- runs the objective as the in-process path does (`isolated()` and
  `adoptable(run)`), so a course-notes `with mlflow.start_run(nested=True):` gets
  the trial's run and no stray run is written in the worker's folder;
- flushes before returning, within the driver's flush timeout: a PySpark worker
  leaves with `os._exit`, so no exit hook would ever run. What could not be sent
  stays in this host's spool; the run is then tagged with the host and spool
  folder, where `mltrail sync` ships it.

A small report (attached or not, and why; unsent or not) goes back to the driver
beside the result, which the driver removes before hyperopt stores the result.
"""

from __future__ import annotations

import contextlib
import json
import numbers
import socket
from typing import Any

import mltrail.autologging as autologging
from mltrail.autologging import NotFoundError, RunStatus

from .spark import REPORT_ATTR, REPORT_KEY, UNSENT_HOST_TAG, UNSENT_SPOOL_TAG


def run_trial(fn: Any, spec_text: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call the objective inside the trial's run; the result goes back with a report."""
    spec = json.loads(spec_text)
    report: dict[str, Any] = {"attached": False}
    below = autologging.active_run()
    handle = None
    try:
        handle = _attach(spec)
        report["attached"] = True
    except NotFoundError:
        report["reason"] = "the run is not visible from the executor (a local store on "\
            "another machine?)"
    except Exception as exc:
        if autologging.strict():
            raise
        report["reason"] = f"could not attach to the run: {type(exc).__name__}: {exc}"
    if handle is None:
        return _with_report(_call(fn, args, kwargs, report), report)
    try:
        with autologging.isolated(), autologging.adoptable(handle):
            result = fn(*args, **kwargs)
    except BaseException as exc:
        _leave(handle, below, RunStatus.FAILED, spec, report)
        _attach_report(exc, report)
        raise
    _leave(handle, below, RunStatus.FINISHED, spec, report)
    return _with_report(result, report)


def _attach(spec: dict[str, Any]) -> autologging.ActiveRun:
    autologging.set_tracking_uri(spec["uri"])
    autologging.apply_settings(spec.get("autolog") or {})
    handle = autologging.start_run(run_id=spec["run_id"], end_on_exit=False)
    # A run the objective nests below the trial's goes to the same experiment.
    autologging.set_experiment(experiment_id=spec["experiment_id"])
    return handle


def _call(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], report: dict[str, Any]) -> Any:
    try:
        return fn(*args, **kwargs)
    except BaseException as exc:
        _attach_report(exc, report)
        raise


def _leave(handle: autologging.ActiveRun, below: autologging.ActiveRun | None, status: str,
           spec: dict[str, Any], report: dict[str, Any]) -> None:
    """Unwind what the objective left open (ending only its own runs), then flush."""
    try:
        autologging.end_child_run(handle, below, status)
    except Exception as exc:
        if autologging.strict():
            raise
        autologging.warn_once("hyperopt", "could not leave the trial's run",
                              f"{type(exc).__name__}: {exc}")
    if autologging.flush(float(spec.get("flush_timeout", 5.0))):
        return
    spool = handle.client.spool_folder() or ""
    report["unsent"] = {"host": socket.gethostname(), "spool": spool}
    try:  # kept in the spool with the rest: `mltrail sync` there delivers it
        handle.client.set_tag(handle.info.run_id, UNSENT_HOST_TAG, socket.gethostname())
        handle.client.set_tag(handle.info.run_id, UNSENT_SPOOL_TAG, spool)
    except Exception:
        if autologging.strict():
            raise


def _attach_report(exc: BaseException, report: dict[str, Any]) -> None:
    # Pickled with the exception, as hyperopt's _tb_str is; an exception type without a
    # __dict__ goes back without it, and the driver records without the report.
    with contextlib.suppress(Exception):
        setattr(exc, REPORT_ATTR, report)


def _with_report(result: Any, report: dict[str, Any]) -> Any:
    """The result with the report beside it, in a form hyperopt reads the same way."""
    if isinstance(result, dict):
        return {**result, REPORT_KEY: report}
    if isinstance(result, numbers.Real):
        # hyperopt turns a bare number into exactly this dict itself
        return {"loss": float(result), "status": "ok", REPORT_KEY: report}
    return result
