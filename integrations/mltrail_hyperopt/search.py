"""What one hyperopt search records: the parent run, a child run per trial, the outcome.

The parent is the run of the search's session (a new run, or the user's open
run). Each evaluation of the objective gets a child run named `trial-<tid>`
that is the active run while the objective runs, so whatever the objective
trains under autolog, or logs itself, lands in it. Params of a trial are the
point the objective received, flattened (see `space.SpaceInfo.flatten`); they
are written when the trial ends, after whatever the objective logged, and a key
the objective (or an autologged framework) already logged keeps that value, so
a converted value (`int(params["max_depth"])`) never collides with hyperopt's.

Each step runs inside `Session.safe`: a logging error is mltrail's own and never
reaches the search, while the objective's own errors propagate unchanged.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from hyperopt import JOB_STATE_DONE, JOB_STATE_ERROR, STATUS_FAIL, STATUS_OK, space_eval
from hyperopt.base import JOB_STATE_CANCEL

import mltrail.autologging as autologging
from mltrail.autologging import Metric, RunStatus, RunTag, log_keeping_params

from .space import SpaceInfo, algo_params, clean_key, qualified_name, rstate_params

if TYPE_CHECKING:
    from .spark import SparkRuns

FLAVOR = "hyperopt"
PARENT_TAG = "mlflow.parentRunId"
TRIAL_ID_TAG = "hyperopt.trial_id"
STATUS_TAG = "hyperopt.status"  # hyperopt's result status, or "error" when the trial raised
ERROR_TAG = "hyperopt.error"
BEST_RUN_TAG = "hyperopt.best_run_id"
BEST_TRIAL_TAG = "hyperopt.best_trial_id"
RESUMED_TAG = "hyperopt.resumed_from"  # the previous search run on the same Trials object
# Kept on the Trials object (a plain dict, so a pickled Trials stays loadable without
# mltrail): which runs the trials already got, so a resumed search logs only new ones.
MEMORY_ATTR = "_mltrail_runs"


def _memory(trials: Any) -> dict[str, Any]:
    memory = getattr(trials, MEMORY_ATTR, None)
    if not isinstance(memory, dict):
        memory = {"trial_runs": {}, "search_runs": []}
        setattr(trials, MEMORY_ATTR, memory)
    return memory


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def outcome(result: Any, exc: BaseException | None) -> tuple[str, dict[str, float], dict[str, str]]:
    """The run status, metrics and tags of a trial from its result or its exception."""
    if exc is not None:
        status = RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
        return status, {}, {STATUS_TAG: "error", ERROR_TAG: f"{type(exc).__name__}: {exc}"}
    if _is_number(result):  # hyperopt turns a bare number into {"loss": ..., "status": "ok"}
        return RunStatus.FINISHED, {"loss": float(result)}, {STATUS_TAG: STATUS_OK}
    result = dict(result) if isinstance(result, dict) else {}
    hyperopt_status = str(result.get("status"))
    metrics = {
        clean_key(str(key)): float(value)
        for key, value in result.items()
        if key != "status" and _is_number(value)
    }
    if hyperopt_status != STATUS_OK:
        metrics.pop("loss", None)
    status = RunStatus.FAILED if hyperopt_status == STATUS_FAIL else RunStatus.FINISHED
    return status, metrics, {STATUS_TAG: hyperopt_status}


class Trial:
    """One evaluation under way: its run, and the run that was active before it."""

    def __init__(
        self,
        tid: Any,
        doc: dict[str, Any] | None,
        active: autologging.ActiveRun,
        below: autologging.ActiveRun | None,
    ) -> None:
        self.tid = tid
        self.doc = doc
        self.active = active
        self.below = below
        self.params: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        return self.active.info.run_id


class Search:
    """The record of one `FMinIter.exhaust`, the loop every `fmin` call runs once.

    Attributes:
        live: True when trials are evaluated in this process, one at a time, so
            each gets its run while it runs; otherwise (MongoTrials,
            SparkTrials) the finished trials get their runs when the search ends.
    """

    def __init__(self, session: autologging.Session, fmin_iter: Any) -> None:
        self.session = session
        self.client = session.client
        self.run_id = session.run_id
        self.iter = fmin_iter
        self.domain = fmin_iter.domain
        self.trials = fmin_iter.trials
        self.live = not fmin_iter.asynchronous
        self.space = SpaceInfo(self.domain.expr)
        self.experiment_id = session.experiment_id
        self.memory = _memory(self.trials)
        self.tids_at_start = set(self.trials.tids)
        self.trial_tags = {autologging.AUTOLOGGING_TAG: FLAVOR, **session.options.extra_tags}
        self.spark: SparkRuns | None = None  # a SparkTrials search: runs started at dispatch

    @classmethod
    def start(cls, session: autologging.Session, fmin_iter: Any) -> Search:
        """Describe the search on its run: budget, algorithm, seed, space."""
        search = cls(session, fmin_iter)
        from .spark import SparkRuns, is_spark_trials

        if is_spark_trials(search.trials):
            search.spark = SparkRuns(search)
        search._log_new_params(search._start_params(), warn=True)
        previous = search.memory["search_runs"]
        if previous:
            session.set_tags({RESUMED_TAG: previous[-1]})
        previous.append(search.run_id)
        return search

    def _start_params(self) -> dict[str, Any]:
        it = self.iter
        params: dict[str, Any] = {}
        if it.max_evals is not None and it.max_evals < 2**62:  # fmin's "no limit" is maxsize
            params["max_evals"] = it.max_evals
        params.update(algo_params(it.algo))
        for name in ("timeout", "loss_threshold"):
            if getattr(it, name, None) is not None:
                params[name] = getattr(it, name)
        if getattr(it, "early_stop_fn", None) is not None:
            params["early_stop_fn"] = qualified_name(it.early_stop_fn)
        if self.spark is not None:
            params.update(self.spark.search_params())
        params.update(rstate_params(it.rstate))
        if self.tids_at_start:
            params["trials_at_start"] = len(self.tids_at_start)
        params.update(self.space.describe())
        return params

    def _log_new_params(self, params: dict[str, Any], *, warn: bool) -> None:
        """Log the search's params; a key the run already has keeps its value."""
        kept = log_keeping_params(self.client, self.run_id, params)
        if kept and warn:
            autologging.warn_once(
                FLAVOR,
                "the run already has some of this search's params; they keep their "
                "first values (start one run per search to keep each)",
                ", ".join(kept[:5]),
            )

    # trials, live -----------------------------------------------------------

    def evaluate(
        self,
        call_original: autologging.OriginalCall,
        domain: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Run one `Domain.evaluate` call inside its trial's child run.

        The tid comes from the `ctrl` hyperopt passes to `Domain.evaluate`
        (`ctrl.current_trial`): the one interface through which hyperopt names
        the trial being evaluated, the objective itself never sees it.
        """
        ctrl = args[1] if len(args) > 1 else kwargs.get("ctrl")
        doc = getattr(ctrl, "current_trial", None)
        doc = doc if isinstance(doc, dict) else None
        trial = self.session.safe("start a trial run", self._open_trial, doc)
        if trial is None:
            return call_original(*args, **kwargs)
        original = domain.fn
        if not domain.pass_expr_memo_ctrl:
            domain.fn = self._capturing(trial, original)
        try:
            with autologging.isolated(), autologging.adoptable(trial.active):
                result = call_original(*args, **kwargs)
        except BaseException as exc:
            self._close_trial(trial, None, exc)
            raise
        finally:
            domain.fn = original
        self._close_trial(trial, result, None)
        return result

    def _open_trial(self, doc: dict[str, Any] | None) -> Trial:
        tid = doc.get("tid") if doc is not None else None
        tags = dict(self.trial_tags)
        if tid is not None:
            tags[TRIAL_ID_TAG] = tid
        below = autologging.active_run()
        active = autologging.start_run(
            experiment_id=self.experiment_id,
            parent_run_id=self.run_id,
            run_name="trial" if tid is None else f"trial-{tid}",
            tags=tags,
        )
        return Trial(tid, doc, active, below)

    def _capturing(self, trial: Trial, fn: Callable[..., Any]) -> Callable[..., Any]:
        def objective(*args: Any, **kwargs: Any) -> Any:
            if args:  # flattened now, before the objective can change the point in place
                trial.params = self.session.safe(
                    "read the trial's point", self.space.flatten, args[0]
                )
            return fn(*args, **kwargs)

        return objective

    def _close_trial(self, trial: Trial, result: Any, exc: BaseException | None) -> None:
        status, metrics, tags = outcome(result, exc)
        try:
            params = trial.params
            if params is None:
                params = self.session.safe("read the trial's point", self.point_of, trial.doc)
            self.session.safe(
                "log the trial", self.log_trial, trial.run_id, params or {}, metrics, tags
            )
        finally:
            self.session.safe("end the trial run", self._end_trial, trial, status)
            if trial.tid is not None:
                self.memory["trial_runs"][trial.tid] = trial.run_id

    def point_of(self, doc: dict[str, Any] | None) -> dict[str, Any]:
        """The params of a trial whose objective was not called with a point."""
        vals = {
            k: v[0] for k, v in ((doc or {}).get("misc", {}).get("vals", {}) or {}).items() if v
        }
        try:
            return self.space.flatten(space_eval(self.domain.expr, vals))
        except Exception:  # the space itself failed on this point: keep hyperopt's raw values
            return {clean_key(str(k)): v for k, v in vals.items()}

    def log_trial(
        self,
        run_id: str,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, Any],
        end_time: int | None = None,
    ) -> None:
        now = end_time or _now_ms()
        log_keeping_params(
            self.client,
            run_id,
            params,
            [Metric(k, v, now, 0) for k, v in metrics.items()],
            [RunTag(k, v) for k, v in tags.items()],
        )

    def _end_trial(self, trial: Trial, status: str) -> None:
        """End the trial run, and any run the objective left open above it."""
        autologging.end_child_run(trial.active, trial.below, status)

    # the end ---------------------------------------------------------------

    def finish(self) -> None:
        """Log the outcome on the search run (and runs for trials evaluated elsewhere)."""
        if self.spark is not None:
            self.session.safe("end the cancelled trials' runs", self.spark.finish_remaining)
        if not self.live:
            self.session.safe("log the trials evaluated elsewhere", self._log_unseen_trials)
        trials = self.trials
        statuses = [doc.get("result", {}).get("status") for doc in trials.trials]
        errors = trials.count_by_state_unsynced(JOB_STATE_ERROR)
        metrics: dict[str, float] = {
            "n_trials_ok": statuses.count(STATUS_OK),
            "n_trials_failed": statuses.count(STATUS_FAIL) + errors,
            "n_trials_cancelled": trials.count_by_state_unsynced(JOB_STATE_CANCEL),
        }
        tags: dict[str, Any] = {}
        best = _best_trial(trials)
        if best is not None:
            metrics["best_loss"] = float(best["result"]["loss"])
            tags[BEST_TRIAL_TAG] = best["tid"]
            best_run = self.memory["trial_runs"].get(best["tid"])
            if best_run is not None:
                tags[BEST_RUN_TAG] = best_run
            self.session.safe("log the best params", self._log_best_params, best)
        self.session.log_metrics(metrics)
        if tags:
            self.session.set_tags(tags)
        self.session.safe("log the search report", self._log_report)

    def _log_report(self) -> None:
        """`search_report.html` on the search run, from this search's trials."""
        found = []
        for doc in self.trials.trials:
            tid = doc.get("tid")
            if tid in self.tids_at_start or tid is None:
                continue
            result = doc.get("result") or {}
            status = "error" if doc.get("state") == JOB_STATE_ERROR else str(result.get("status"))
            loss = result.get("loss")
            found.append(autologging.SearchTrial(
                number=int(tid), params=self.point_of(doc),
                value=float(loss) if status == STATUS_OK and _is_number(loss) else None,
                status=status, run_id=self.memory["trial_runs"].get(tid)))
        autologging.log_search_report(self.session, found, objective="loss",
                                      title=f"hyperopt search {self.run_id[:8]}")

    def _log_best_params(self, best: dict[str, Any]) -> None:
        point = self.point_of(best)
        self._log_new_params({f"best_{k}": v for k, v in point.items()}, warn=True)

    def _log_unseen_trials(self) -> None:
        logged = self.memory["trial_runs"]
        for doc in all_docs(self.trials):
            tid = doc.get("tid")
            if (
                tid in self.tids_at_start
                or tid in logged
                or doc.get("state") not in (JOB_STATE_DONE, JOB_STATE_ERROR, JOB_STATE_CANCEL)
            ):
                continue
            self.session.safe("log a trial run", self._log_finished_trial, doc)

    def _log_finished_trial(self, doc: dict[str, Any]) -> None:
        tid = doc["tid"]
        state = doc.get("state")
        if state == JOB_STATE_CANCEL:  # cancelled before it ran, or while it ran
            status, metrics, tags = RunStatus.KILLED, {}, {STATUS_TAG: "cancelled"}
        elif state == JOB_STATE_ERROR:  # raised in a worker: hyperopt kept (type, message)
            error = (doc.get("misc") or {}).get("error") or ("", "")
            status, metrics = RunStatus.FAILED, {}
            tags = {STATUS_TAG: "error", ERROR_TAG: f"{error[0]}: {error[1]}"[-4000:]}
        else:
            status, metrics, tags = outcome(doc.get("result"), None)
        run = self.client.create_run(
            self.experiment_id,
            start_time=_ms(doc.get("book_time")),
            tags={**self.trial_tags, PARENT_TAG: self.run_id, TRIAL_ID_TAG: tid},
            run_name=f"trial-{tid}",
        )
        run_id = run.info.run_id
        self.memory["trial_runs"][tid] = run_id
        end_time = _ms(doc.get("refresh_time"))
        self.log_trial(run_id, self.point_of(doc), metrics, tags, end_time)
        self.client.set_terminated(run_id, status, end_time)


def all_docs(trials: Any) -> list[dict[str, Any]]:
    """Every trial document, cancelled and raised ones too: `Trials.trials` lists only
    the new, running and done ones."""
    docs = getattr(trials, "_dynamic_trials", None)
    return list(docs) if isinstance(docs, list) else list(trials.trials)


def _best_trial(trials: Any) -> dict[str, Any] | None:
    """hyperopt's best trial (lowest non-NaN loss among ok trials), or None."""
    try:
        return trials.best_trial
    except Exception:  # AllTrialsFailed, or no trial at all
        return None


def _ms(when: Any) -> int | None:
    if not isinstance(when, datetime):
        return None
    if when.tzinfo is None:  # hyperopt's coarse_utcnow() is naive UTC
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)
