"""Overhead of xgboost autolog: a 500-round train, bare vs autolog to a local store.

Two eval sets and two metrics give 2,000 metric points per train; autolog also
logs params, the dataset, feature importance and the model (models on). Bare
and autologged trains alternate in one process, so drift (CPU frequency, other
load) hits both alike, and the medians of the repetitions are compared.

On a shared machine a single train's time can swing by 10-20%, more than the
effect measured, so a second measure leaves the boosting itself out: the time
a train spends outside xgboost's boosting loop plus the time autolog's callback
takes inside it, autolog minus bare, over the median bare train time. The loop
is timed by a user callback that both kinds of train carry.

Run: python benchmarks/bench_xgboost.py [--rows 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any


def _data(rows: int, cols: int, seed: int = 0) -> tuple[Any, Any]:
    import numpy as np
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, cols)).astype("float32")
    y = x[:, 0] * 2.0 + np.sin(x[:, 1] * 3.0) + rng.normal(scale=0.5, size=rows)
    split = int(rows * 0.8)
    names = [f"x{i}" for i in range(cols)]
    dtrain = xgb.DMatrix(x[:split], label=y[:split], feature_names=names)
    dvalid = xgb.DMatrix(x[split:], label=y[split:], feature_names=names)
    return dtrain, dvalid


class _Clock:
    """Times the boosting loop (a user callback) and autolog's callback inside it."""

    def __init__(self) -> None:
        self.loop = 0.0
        self.callback = 0.0
        self._start = 0.0

    def install(self) -> None:
        """Time every round of autolog's callback (this benchmark's own instrument)."""
        from mltrail_xgboost.callback import MetricsCallback

        original = MetricsCallback.after_iteration
        clock = self

        def timed(self: Any, model: Any, epoch: int, evals_log: Any) -> bool:
            start = time.perf_counter()
            try:
                return original(self, model, epoch, evals_log)
            finally:
                clock.callback += time.perf_counter() - start

        MetricsCallback.after_iteration = timed  # type: ignore[method-assign]

    def marker(self) -> Any:
        from xgboost.callback import TrainingCallback

        clock = self

        class Marker(TrainingCallback):
            def before_training(self, model: Any) -> Any:
                clock._start = time.perf_counter()
                return model

            def after_training(self, model: Any) -> Any:
                clock.loop = time.perf_counter() - clock._start
                return model

        return Marker()


def _train(dtrain: Any, dvalid: Any, rounds: int, nthread: int, marker: Any) -> Any:
    import xgboost as xgb

    params = {
        "max_depth": 4,
        "eta": 0.05,
        "eval_metric": ["rmse", "mae"],
        "nthread": nthread,
        "tree_method": "hist",
        "seed": 0,
    }
    return xgb.train(
        params,
        dtrain,
        rounds,
        evals=[(dtrain, "train"), (dvalid, "validation")],
        verbose_eval=False,
        callbacks=[marker],
    )


def _report(label: str, bare: list[float], logged: list[float]) -> None:
    bare_median, logged_median = statistics.median(bare), statistics.median(logged)
    ratio = logged_median / bare_median
    print(f"{label} bare    s: " + " ".join(f"{t:.3f}" for t in bare))
    print(f"{label} autolog s: " + " ".join(f"{t:.3f}" for t in logged))
    print(
        f"{label} median bare {bare_median:.3f} s, autolog {logged_median:.3f} s: "
        f"ratio {ratio:.3f} ({(ratio - 1) * 100:+.1f}% added time)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--cols", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    # One training thread by default: on a shared machine, OpenMP threads waiting for
    # a busy core make bare timings swing by seconds. What the ratio depends on is
    # the bare time (set it with --rows), not the thread count: logging runs in the
    # Python thread either way.
    parser.add_argument("--nthread", type=int, default=1)
    args = parser.parse_args()

    import mltrail
    from mltrail.client import TrackingClient

    dtrain, dvalid = _data(args.rows, args.cols)
    clock = _Clock()
    clock.install()
    wall: dict[str, list[float]] = {"bare": [], "autolog": []}
    outside: dict[str, list[float]] = {"bare": [], "autolog": []}
    with tempfile.TemporaryDirectory(prefix="mltrail-bench-") as root:
        mltrail.set_tracking_uri(root)
        mltrail.set_experiment("bench-xgboost")
        # One untimed train of each first: imports, the store's folders, first-use caches.
        for rep in range(-1, args.repeat):
            for mode in ("bare", "autolog") if rep % 2 else ("autolog", "bare"):
                mltrail.xgboost.autolog(disable=(mode == "bare"), log_models=True)
                clock.callback = 0.0
                start = time.perf_counter()
                _train(dtrain, dvalid, args.rounds, args.nthread, clock.marker())
                elapsed = time.perf_counter() - start
                if rep >= 0:
                    wall[mode].append(elapsed)
                    outside[mode].append(elapsed - clock.loop + clock.callback)
        last = mltrail.last_active_run()
        assert last is not None
        client = TrackingClient()
        run = client.get_run(last.info.run_id)
        points = len(client.get_metric_history(last.info.run_id, "validation-rmse"))
        artifacts = [a.path for a in client.list_artifacts(last.info.run_id)]

    print(
        f"rows={args.rows} cols={args.cols} rounds={args.rounds} repeat={args.repeat} "
        f"nthread={args.nthread}"
    )
    print(
        f"last autolog run: {len(run.data.metrics)} metric keys, {points} validation-rmse "
        f"points, artifacts {artifacts}"
    )
    _report("wall", wall["bare"], wall["autolog"])
    bare_median = statistics.median(wall["bare"])
    added = statistics.median(outside["autolog"]) - statistics.median(outside["bare"])
    print(
        f"outside the boosting loop + autolog's callback: bare "
        f"{statistics.median(outside['bare']) * 1000:.1f} ms, autolog "
        f"{statistics.median(outside['autolog']) * 1000:.1f} ms (medians): added "
        f"{added * 1000:.1f} ms = {added / bare_median * 100:+.1f}% of the bare train"
    )


if __name__ == "__main__":
    main()
