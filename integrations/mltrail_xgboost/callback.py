"""The training callback that streams xgboost's evaluation results into a run.

xgboost evaluates every eval set after each boosting round and appends the
results to its evaluation log, which it keeps for the whole training. The
callback only notes, per round, that the log grew; about once a second (and when
training ends or raises) it hands the rounds not yet sent to
`Session.buffer_metrics`, which writes them in batches. Reading the log in
bursts keeps the per-round cost to a few attribute stores: a per-round Python
call that builds records runs with caches the training just evicted, and that
was most of autolog's cost on a 500-round train. The price is that points sent
in one burst share its timestamp (the step is exact).

Metric keys are `<evalname>-<metric>` as xgboost prints them (`validation-rmse`);
`xgboost.cv` series get `-mean` and `-std` suffixes (`test-rmse-mean`). Tracking
keys allow only letters, digits, `_ - . / :` and spaces, so `@` becomes `_at_`
(`ndcg@5` -> `ndcg_at_5`, `error@0.7` -> `error_at_0.7`) and any other character
outside that set becomes `_`.

The step is the booster's own iteration number: 0..n-1 for a fresh booster, and
continuing from the rounds already in the model when training resumes from
`xgb_model`, which is also how xgboost numbers `best_iteration`.
"""

from __future__ import annotations

import re
import time
from typing import Any

from xgboost.callback import TrainingCallback

from mltrail.autologging import Session

_NOT_KEY_SAFE = re.compile(r"[^/\w.\- :]")
_PUSH_SECONDS = 1.0  # as the session's own flush period: a live chart lags about a second


def metric_key(name: str) -> str:
    """A tracking-safe key for an xgboost series name (see the module docstring)."""
    key = _NOT_KEY_SAFE.sub("_", name.replace("@", "_at_"))
    if key.startswith("/") or ".." in key.split("/"):
        key = key.replace("/", "_")
    return key


class MetricsCallback(TrainingCallback):
    """Logs every round's evaluation results; remembers what early stopping found.

    It is put first in the callback list: xgboost asks callbacks whether to stop
    with `any(...)`, which skips the callbacks after the first one that says
    yes. It never asks to stop and never changes the model, so the user's
    callbacks see exactly what they would see without it, in their own order.
    Whoever runs the training calls `push()` once it returns or raises, so the
    last rounds are sent even if training was interrupted.

    Attributes:
        start: rounds already in the model when training began (resumed training).
        last_epoch: the last round run, counted from `start`; None before the first.
        best_iteration: xgboost's `best_iteration` when training ended, if it set one.
        best_score: xgboost's `best_score` when training ended, if it set one.
    """

    def __init__(self, session: Session) -> None:
        super().__init__()
        self._session = session
        self._keys: dict[tuple[str, str], tuple[str, ...]] = {}
        self._history: dict[str, dict[str, list[Any]]] | None = None
        self._first_epoch = 0
        self._sent = 0  # rounds of the evaluation log already handed to the session
        self._due = 0.0  # monotonic time of the next burst; the first round goes at once
        self.start = 0
        self.last_epoch: int | None = None
        self.best_iteration: int | None = None
        self.best_score: float | None = None

    # xgboost's hooks: each must hand back its argument even if our logging fails.

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        if self._history is None:
            self._first_epoch = epoch
            # Read once xgboost itself has run a round: the first call into a new
            # booster configures it, and xgboost's own warnings ("Parameters ... are
            # not used") would then name this file as where they came from.
            self._session.safe("read the starting round", self._read_start, model)
        self._history = evals_log  # xgboost's own log, appended in place every round
        self.last_epoch = epoch
        if time.monotonic() >= self._due:
            self._session.safe("log metrics", self.push)
        return False

    def after_training(self, model: Any) -> Any:
        self._session.safe("read the early stopping result", self._read_best, model)
        return model

    # the work ------------------------------------------------------------------

    def _read_start(self, model: Any) -> None:
        """Rounds the model had before this training (resumed from `xgb_model`): all
        it has now but the one just run."""
        self.start = int(model.num_boosted_rounds()) - 1

    def _keys_for(self, data: str, metric: str, cv: bool) -> tuple[str, ...]:
        base = metric_key(f"{data}-{metric}")
        keys = (f"{base}-mean", f"{base}-std") if cv else (base,)
        self._keys[(data, metric)] = keys
        return keys

    def push(self) -> None:
        """Hand every round not sent yet to the session, one `buffer_metrics` per round."""
        self._due = time.monotonic() + _PUSH_SECONDS
        history = self._history
        if not history:
            return
        series = []
        for data, metrics in history.items():
            for metric, points in metrics.items():
                if points:
                    cv = isinstance(points[0], tuple)  # xgboost.cv keeps (mean, std) pairs
                    keys = self._keys.get((data, metric)) or self._keys_for(data, metric, cv)
                    series.append((keys, points, cv))
        if not series:
            return
        rounds = min(len(points) for _, points, _ in series)
        first_step = self.start + self._first_epoch
        for index in range(self._sent, rounds):
            values: dict[str, float] = {}
            for keys, points, cv in series:
                point = points[index]
                if cv:
                    values[keys[0]] = point[0]
                    values[keys[1]] = point[1]
                else:
                    values[keys[0]] = point
            self._session.buffer_metrics(values, step=first_step + index)
        self._sent = max(self._sent, rounds)

    def _read_best(self, model: Any) -> None:
        iteration = model.attr("best_iteration")
        score = model.attr("best_score")
        self.best_iteration = int(iteration) if iteration is not None else None
        self.best_score = float(score) if score is not None else None

    def early_stopping_metrics(self) -> tuple[dict[str, float], dict[str, float]]:
        """What early stopping found, as (summary metrics, best round's metrics).

        The summary holds `best_iteration`, `best_score` and `stopped_iteration`;
        the best round's values are keyed `best_<key>` so that each per-round
        history keeps exactly one point per round.
        """
        summary: dict[str, float] = {}
        best: dict[str, float] = {}
        if self.last_epoch is not None:
            summary["stopped_iteration"] = self.start + self.last_epoch
        if self.best_iteration is None:
            return summary, best
        summary["best_iteration"] = self.best_iteration
        if self.best_score is not None:
            summary["best_score"] = self.best_score
        index = self.best_iteration - self.start - self._first_epoch
        for (data, metric), keys in self._keys.items():
            points = (self._history or {}).get(data, {}).get(metric, [])
            if not 0 <= index < len(points):
                continue
            point = points[index]
            if isinstance(point, tuple):
                pairs = zip(keys, point, strict=True)
            else:
                pairs = zip(keys, (point,), strict=True)
            for key, value in pairs:
                best[f"best_{key}"] = value
        return summary, best
