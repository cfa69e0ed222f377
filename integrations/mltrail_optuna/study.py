"""What one `Study.optimize` call records: the parent run, a child run per trial, the outcome.

The parent is the run of the call's session (a new run, or the user's open run).
Each trial gets a child run `trial-<number>` that is the active run, in the
thread running the trial, while the objective runs, so whatever the objective
trains under autolog, or logs itself, lands in it. The trial's params, value(s)
and user attributes are written when the objective returns or raises, after
whatever the objective logged; a key the objective already logged keeps that
value.

Optuna decides a trial's state after the objective returns, so the trial's run
is ended with the state Optuna will give it by Optuna's own rules: an exception
is FAIL (PRUNED for `TrialPruned`), a value that is not a float, is NaN, or has
the wrong count is FAIL; the counts on the parent are read back from the study.

Each step runs inside `Session.safe`: a logging error is mltrail's own and never
reaches the study, while the objective's own errors propagate unchanged.
"""

from __future__ import annotations

import contextvars
import inspect
import math
import numbers
import re
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from optuna.exceptions import TrialPruned
from optuna.trial import TrialState

import mltrail.autologging as autologging
from mltrail.autologging import Metric, RunStatus, RunTag, log_keeping_params

FLAVOR = "optuna"
TRIAL_NUMBER_TAG = "optuna.trial_number"
STATE_TAG = "optuna.state"
ERROR_TAG = "optuna.error"
STUDY_NAME_TAG = "optuna.study_name"
BEST_RUN_TAG = "optuna.best_run_id"
BEST_TRIAL_TAG = "optuna.best_trial_number"
PARETO_TAG = "optuna.pareto_front_trials"
INTERMEDIATE_METRIC = "intermediate_value"
# Kept on the Study object (a plain dict, so a pickled study loads without mltrail):
# the run of each trial number autolog logged, so the best trial of a resumed study
# finds its run even when an earlier call ran it.
MEMORY_ATTR = "_mltrail_trial_runs"

_BAD_KEY_CHARS = re.compile(r"[^\w.\- :/]")
_MISSING = object()
# The seed each of Optuna's lazy random states was built with, noted by the patched
# `LazyRandomState.__init__`: a sampler keeps its state as `_rng`, and no seed.
SEEDS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def remember_seed(sampler: Any) -> int | None:
    """The seed `sampler` was built with, if it was built under autolog."""
    state = getattr(sampler, "__dict__", {}).get("_rng")
    try:
        return SEEDS.get(state) if state is not None else None
    except TypeError:  # not weakly referenceable
        return None


def clean_key(key: str) -> str:
    """`key` with the characters a tracking server refuses in a key replaced by `_`."""
    key = _BAD_KEY_CHARS.sub("_", key).replace("..", "_.")
    return key.lstrip("/") or "_"


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, numbers.Real))


def _settings(obj: Any, prefix: str) -> dict[str, Any]:
    """The class of a sampler or pruner and the plain settings it keeps.

    A setting is a parameter of the class's `__init__` kept as `_<name>` (or
    `<name>`) with a plain value; a wrapped sampler or pruner is named by its
    class. Most of Optuna's samplers seed a random state and keep no seed: theirs
    is the one noted when the sampler was built under autolog (see `SEEDS`).
    """
    params: dict[str, Any] = {prefix: type(obj).__name__}
    try:
        names = [
            p.name
            for p in inspect.signature(type(obj).__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return params
    state = vars(obj) if hasattr(obj, "__dict__") else {}
    nested = state.get("_parzen_estimator_parameters")  # TPESampler keeps some settings here
    for name in names:
        for key in (f"_{name}", name):
            if key in state:
                value = state[key]
                break
        else:
            value = getattr(nested, name, _MISSING) if nested is not None else _MISSING
            if value is _MISSING:
                continue
        if name == "seed" and value is None:
            continue  # no seed to replay (QMCSampler keeps the one it drew for None)
        if _is_plain(value):
            params[f"{prefix}.{name}"] = value
        elif type(value).__module__.startswith("optuna."):
            params[f"{prefix}.{name}"] = type(value).__name__
    return params


def _values_problem(values: Sequence[Any], n_directions: int) -> str | None:
    """Optuna's reason to refuse the values an objective returned, or None (as `Study.tell`)."""
    errors = []
    for v in values:
        try:
            float(v)
        except (ValueError, TypeError):
            errors.append(f"The value {v!r} could not be cast to float")
            continue
        if math.isnan(float(v)):
            errors.append(f"The value {v} is not acceptable")
    if errors:
        return "; ".join(errors)
    if len(values) != n_directions:
        return (
            f"The number of the values {len(values)} did not match the number of the "
            f"objectives {n_directions}"
        )
    return None


class RunningTrial:
    """One trial under way: its Optuna trial, its run, and the run active before it."""

    def __init__(
        self,
        search: Search,
        trial: Any,
        active: autologging.ActiveRun,
        below: autologging.ActiveRun | None,
    ) -> None:
        self.search = search
        self.trial = trial
        self.number = trial.number
        self.active = active
        self.below = below
        self.reported_steps: set[int] = set()

    @property
    def run_id(self) -> str:
        return self.active.info.run_id


# The trial whose objective runs in this context (thread), for `Trial.report`.
current_trial: contextvars.ContextVar[RunningTrial | None] = contextvars.ContextVar(
    "mltrail_optuna_trial", default=None
)


class Search:
    """The record of one `Study.optimize` call."""

    def __init__(self, session: autologging.Session, study: Any) -> None:
        self.session = session
        self.client = session.client
        self.run_id = session.run_id
        self.experiment_id = session.experiment_id
        self.study = study
        self.directions = list(study.directions)
        self.metric_names = study.metric_names
        self.trial_tags = {autologging.AUTOLOGGING_TAG: FLAVOR, **session.options.extra_tags}
        self._lock = threading.Lock()
        self.numbers: set[int] = set()  # the trials this call ran
        memory = getattr(study, MEMORY_ATTR, None)
        if not isinstance(memory, dict):
            memory = {}
            setattr(study, MEMORY_ATTR, memory)
        self.memory: dict[int, str] = memory

    @classmethod
    def start(cls, session: autologging.Session, study: Any, arguments: dict[str, Any]) -> Search:
        """Describe the study on its run: name, directions, sampler, pruner, budget."""
        search = cls(session, study)
        params: dict[str, Any] = {"study_name": study.study_name}
        names = [d.name.lower() for d in search.directions]
        if len(names) == 1:
            params["direction"] = names[0]
        else:
            params["directions"] = ",".join(names)
        if search.metric_names:
            params["metric_names"] = ",".join(search.metric_names)
        params.update(_settings(study.sampler, "sampler"))
        seed = remember_seed(study.sampler)
        if seed is not None:
            params.setdefault("sampler.seed", seed)
        params.update(_settings(study.pruner, "pruner"))
        for name, default in (("n_trials", None), ("timeout", None), ("n_jobs", 1)):
            params[name] = arguments.get(name, default)
        kept = log_keeping_params(
            search.client, search.run_id, params, tags=[RunTag(STUDY_NAME_TAG, study.study_name)]
        )
        if kept:
            autologging.warn_once(
                FLAVOR,
                "the run already has some of this study's params; they keep their "
                "first values (start one run per optimize call to keep each)",
                ", ".join(kept[:5]),
            )
        return search

    # trials -------------------------------------------------------------------

    def objective(self, func: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """`func` running each trial inside its child run."""

        def objective(trial: Any) -> Any:
            with self._lock:
                self.numbers.add(trial.number)
            running = self.session.safe("start a trial run", self._open_trial, trial)
            if running is None:
                return func(trial)
            token = current_trial.set(running)
            try:
                with autologging.isolated(), autologging.adoptable(running.active):
                    result = func(trial)
            except BaseException as exc:
                current_trial.reset(token)
                self._close_trial(running, None, exc)
                raise
            current_trial.reset(token)
            self._close_trial(running, result, None)
            return result

        return objective

    def _open_trial(self, trial: Any) -> RunningTrial:
        number = trial.number
        below = autologging.active_run()
        active = autologging.start_run(
            experiment_id=self.experiment_id,
            parent_run_id=self.run_id,
            run_name=f"trial-{number}",
            tags={**self.trial_tags, TRIAL_NUMBER_TAG: number},
        )
        return RunningTrial(self, trial, active, below)

    def log_report(
        self, running: RunningTrial, args: tuple[Any, ...], kwargs: dict[str, Any],
        report: Callable[..., Any],
    ) -> None:
        """Log a value `Trial.report` accepted, at its step (a repeated step is ignored,
        as Optuna ignores it)."""
        bound = inspect.signature(report).bind(*args, **kwargs)
        value, step = float(bound.arguments["value"]), int(bound.arguments["step"])
        if step in running.reported_steps:
            return
        running.reported_steps.add(step)
        metric = Metric(INTERMEDIATE_METRIC, value, int(time.time() * 1000), step)
        self.client.log_batch(running.run_id, metrics=[metric])

    def _outcome(
        self, result: Any, exc: BaseException | None
    ) -> tuple[str, dict[str, float], dict[str, Any]]:
        if isinstance(exc, TrialPruned):
            return RunStatus.KILLED, {}, {STATE_TAG: TrialState.PRUNED.name}
        if exc is not None:
            status = RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
            return status, {}, {STATE_TAG: TrialState.FAIL.name,
                                ERROR_TAG: f"{type(exc).__name__}: {exc}"}
        if result is None:
            problem: str | None = "The value None could not be cast to float."
            values: Sequence[Any] = ()
        else:
            values = result if isinstance(result, Sequence) else [result]
            problem = _values_problem(values, len(self.directions))
        if problem is not None:
            return RunStatus.FAILED, {}, {STATE_TAG: TrialState.FAIL.name, ERROR_TAG: problem}
        return (
            RunStatus.FINISHED,
            dict(zip(self._value_names(), (float(v) for v in values), strict=True)),
            {STATE_TAG: TrialState.COMPLETE.name},
        )

    def _value_names(self) -> list[str]:
        if self.metric_names and len(self.metric_names) == len(self.directions):
            return [clean_key(str(name)) for name in self.metric_names]
        if len(self.directions) == 1:
            return ["value"]
        return [f"values_{i}" for i in range(len(self.directions))]

    def _close_trial(self, running: RunningTrial, result: Any, exc: BaseException | None) -> None:
        outcome = self.session.safe("judge the trial", self._outcome, result, exc)
        status = outcome[0] if outcome is not None else RunStatus.FAILED
        try:
            if outcome is not None:
                self.session.safe("log the trial", self._log_trial, running, *outcome[1:])
        finally:
            self.session.safe("end the trial run", self._end_trial, running, status)
            with self._lock:
                self.memory[running.number] = running.run_id

    def _log_trial(
        self, running: RunningTrial, metrics: dict[str, float], tags: dict[str, Any]
    ) -> None:
        trial = running.trial
        params = {clean_key(str(k)): v for k, v in trial.params.items()}
        tags = dict(tags)
        for key, value in trial.user_attrs.items():
            tags.setdefault(clean_key(str(key)), value)
        now = int(time.time() * 1000)
        log_keeping_params(
            self.client,
            running.run_id,
            params,
            [Metric(k, v, now, 0) for k, v in metrics.items()],
            [RunTag(k, v) for k, v in tags.items()],
        )

    def _end_trial(self, running: RunningTrial, status: str) -> None:
        """End the trial run, and any run the objective left open above it."""
        autologging.end_child_run(running.active, running.below, status)

    # the end -----------------------------------------------------------------

    def finish(self) -> None:
        """Log the outcome on the study's run: counts of this call's trials, the best."""
        study = self.study
        mine = [t for t in study.get_trials(deepcopy=False) if t.number in self.numbers]
        states = [t.state for t in mine]
        self.session.log_metrics({
            "n_trials_complete": states.count(TrialState.COMPLETE),
            "n_trials_pruned": states.count(TrialState.PRUNED),
            "n_trials_failed": states.count(TrialState.FAIL),
        })
        if len(self.directions) == 1:
            self.session.safe("log the best trial", self._log_best)
        else:
            front = self.session.safe("read the Pareto front", lambda: study.best_trials)
            if front:
                numbers = ",".join(str(t.number) for t in sorted(front, key=lambda t: t.number))
                self.session.set_tags({PARETO_TAG: numbers})
        self.session.safe("log the search report", self._log_report)

    def _log_report(self) -> None:
        """`search_report.html` on the study's run, from this call's trials (the first
        objective of a multi-objective study)."""
        mine = [t for t in self.study.get_trials(deepcopy=False) if t.number in self.numbers]
        found = [
            autologging.SearchTrial(
                number=t.number, params={clean_key(str(k)): v for k, v in t.params.items()},
                value=(float(t.values[0]) if t.state == TrialState.COMPLETE and t.values
                       else None),
                status=t.state.name, run_id=self.memory.get(t.number))
            for t in mine
        ]
        autologging.log_search_report(
            self.session, found, objective=self._value_names()[0],
            direction=self.directions[0].name.lower(),
            title=f"Optuna study {self.study.study_name}")

    def _log_best(self) -> None:
        try:
            best = self.study.best_trial
        except ValueError:  # no complete (or no feasible) trial
            return
        if best.value is not None:
            self.session.log_metrics({"best_value": float(best.value)})
        params = {f"best_{clean_key(str(k))}": v for k, v in best.params.items()}
        kept = log_keeping_params(self.client, self.run_id, params)
        if kept:
            autologging.warn_once(
                FLAVOR, "the run already has some best_ params; they keep their first values",
                ", ".join(kept[:5]),
            )
        tags: dict[str, Any] = {BEST_TRIAL_TAG: best.number}
        best_run = self.memory.get(best.number)
        if best_run is not None:
            tags[BEST_RUN_TAG] = best_run
        self.session.set_tags(tags)
