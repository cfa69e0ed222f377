"""What the HTML reports cost: `search_report.html` on a search, and `mltrail report` at scale.

1. search: the README's hyperopt row (TPE, 20 trials, an xgboost objective) under
   autolog, with `log_search_report` on and off, alternating in one process so drift hits
   both alike. Prints each mode's wall times, their medians and spreads, the ratio, the
   time spent inside `log_search_report` itself (timed around each call), and the size
   of the `search_report.html` files (static SVG, no plotly).
2. scale: 1,000 runs in a local store (10 hyperopt searches of 60 trials logged by
   autolog, and 390 runs with params, final metrics and two 100-step curves), then the
   report of the experiment built as `mltrail report` builds it: build time (median of
   the repetitions) and file size, with the share that is plotly.js.

Run: python benchmarks/bench_report.py [--repeat 7] [--runs-repeat 3] [--only search|scale]
The machine is shared: read ratios of medians, not single times.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any


def _spread(values: list[float]) -> str:
    return (f"median {statistics.median(values):.3f} s (min {min(values):.3f}, "
            f"max {max(values):.3f}, n={len(values)})")


def bench_search(repeat: int) -> None:
    import workloads

    import mltrail
    import mltrail.autologging as autologging

    inside: list[float] = []
    original = autologging.log_search_report

    def timed(*args: Any, **kwargs: Any) -> bool:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            inside.append(time.perf_counter() - started)

    autologging.log_search_report = timed  # integrations look it up at call time
    run = workloads.hyperopt_20()
    times: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="mltrail-bench-") as root:
        mltrail.set_tracking_uri(root)
        mltrail.set_experiment("bench-search-report")
        mltrail.hyperopt.autolog()
        run(None)  # untimed: imports and first-use caches
        for rep in range(repeat):
            for mode in ("on", "off") if rep % 2 else ("off", "on"):
                mltrail.hyperopt.autolog(log_search_report=(mode == "on"))
                started = time.perf_counter()
                run(None)
                times[mode].append(time.perf_counter() - started)
                print(f"  rep {rep} report {mode}: {times[mode][-1]:.3f} s", flush=True)
        sizes = _report_sizes(root)
    autologging.log_search_report = original
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    print(f"search report on a 20-trial hyperopt search (xgboost objective), {repeat} each:")
    print("  report on :", " ".join(f"{t:.3f}" for t in times["on"]), "->", _spread(times["on"]))
    print("  report off:", " ".join(f"{t:.3f}" for t in times["off"]), "->",
          _spread(times["off"]))
    print(f"  ratio of medians on/off: {on / off:.3f} ({(on / off - 1) * 100:+.1f}%)")
    timed_calls = inside[1:]  # the first call (untimed run) imports the report module
    print(f"  inside log_search_report: {_spread(timed_calls)}, "
          f"{statistics.median(timed_calls) / off * 100:.2f}% of the search's median "
          f"(first call, with imports: {inside[0]:.3f} s)")
    print(f"  search_report.html: {len(sizes)} files, median {statistics.median(sizes) / 1e3:.1f}"
          f" KB (min {min(sizes) / 1e3:.1f}, max {max(sizes) / 1e3:.1f})")


def _report_sizes(root: str) -> list[int]:
    """Bytes of every search parent's search_report.html, read through the client."""
    import os

    from mltrail import TrackingClient

    client = TrackingClient(root)
    experiment = client.get_experiment_by_name("bench-search-report")
    parents = client.search_runs([experiment.experiment_id], "tags.`hyperopt.best_run_id` != ''",
                                 max_results=1000)
    return [os.path.getsize(client.download_artifacts(r.info.run_id, "search_report.html"))
            for r in parents
            if "search_report.html" in {f.path for f in client.list_artifacts(r.info.run_id)}]


def _log_runs(root: str) -> str:
    import numpy as np
    from hyperopt import fmin, hp, tpe

    import mltrail
    from mltrail import TrackingClient
    from mltrail.entities import Metric, Param

    mltrail.set_tracking_uri(root)
    exp = mltrail.set_experiment("bench-report-1000")
    mltrail.hyperopt.autolog()
    space = {"x": hp.uniform("x", -5, 5), "lr": hp.loguniform("lr", -4, 0),
             "kind": hp.choice("kind", ["a", "b", "c"])}
    for seed in range(10):
        fmin(lambda p: (p["x"] - 1) ** 2 + p["lr"], space, algo=tpe.suggest, max_evals=60,
             rstate=np.random.default_rng(seed), show_progressbar=False)
    client = TrackingClient(root)
    rng = np.random.default_rng(0)
    now = int(time.time() * 1000)
    for i in range(390):
        run = client.create_run(exp.experiment_id, run_name=f"model-{i}")
        params = [Param("depth", int(rng.integers(2, 12))), Param("eta", float(rng.uniform())),
                  Param("booster", str(rng.choice(["gbtree", "dart"])))]
        curve = np.cumsum(rng.uniform(0, 0.1, 100))[::-1]
        metrics = [Metric(key, float(v * scale), now, step)
                   for key, scale in (("train-rmse", 1.0), ("valid-rmse", 1.2))
                   for step, v in enumerate(curve)]
        metrics.append(Metric("accuracy", float(rng.uniform()), now, 0))
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        client.set_terminated(run.info.run_id)
    return exp.experiment_id


def bench_scale(repeat: int) -> None:
    from mltrail import TrackingClient, report

    with tempfile.TemporaryDirectory(prefix="mltrail-bench-") as root:
        started = time.perf_counter()
        experiment_id = _log_runs(root)
        client = TrackingClient(root)
        count = len(report.data.all_runs(client, [experiment_id]))
        print(f"\nreport of {count} runs (logged in {time.perf_counter() - started:.1f} s):")
        times, size = [], 0
        for _ in range(repeat):
            started = time.perf_counter()
            page = report.build_report(client, experiment_ids=[experiment_id],
                                       output=f"{root}/report.html")
            times.append(time.perf_counter() - started)
            size = len(page.encode())
        js = len(report.plotly_js().encode())
        print(f"  build: {_spread(times)} (per-step curves of the 200 newest runs)")
        print(f"  size: {size / 1e6:.2f} MB, of which plotly.js {js / 1e6:.2f} MB and the "
              f"runs, charts and table {(size - js) / 1e6:.2f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--runs-repeat", type=int, default=3)
    parser.add_argument("--only", choices=("search", "scale"))
    args = parser.parse_args()
    if args.only in (None, "search"):
        bench_search(args.repeat)
    if args.only in (None, "scale"):
        bench_scale(args.runs_repeat)


if __name__ == "__main__":
    main()
