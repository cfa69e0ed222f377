"""Listing speed of the local store: 10,000 finished runs in one experiment.

Times, each the median (and spread) of --repeat tries: `search_runs` of every run in a
fresh store instance (no memory of earlier calls), the same with a filter and an
order_by, all runs read in pages of 1,000, and the `mltrail runs list` command as a
user runs it (a new interpreter each time, so its import and start-up are included).
The mltrail on sys.path is measured, so `PYTHONPATH=<other tree>/src` times another. The runs are
generated once through the client, with params, tags and two metrics each, and ended
FINISHED, so each has its summary written as a real run would.

Run: python benchmarks/bench_listing.py [--runs 10000] [--repeat 3] [--root DIR]
     (--root keeps the generated store, and reuses it when it already holds the runs)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mltrail import TrackingClient
from mltrail.entities import Metric, Param, RunStatus, RunTag
from mltrail.stores.local import LocalStore

EXPERIMENT = "listing-bench"


def generate(root: Path, count: int) -> str:
    """`count` finished runs in EXPERIMENT; returns its id (reused when already there)."""
    client = TrackingClient(str(root))
    existing = client.get_experiment_by_name(EXPERIMENT)
    if existing is not None:
        found = client.search_runs([existing.experiment_id], max_results=50_000)
        if len(found) >= count:
            return existing.experiment_id
        raise SystemExit(f"{root} holds {len(found)} runs, fewer than {count}: use another --root")
    experiment_id = client.create_experiment(EXPERIMENT)
    start = time.perf_counter()
    for i in range(count):
        run_id = client.create_run(experiment_id, run_name=f"run-{i}").info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric("rmse", 10.0 - i / count, 0, 0), Metric("r2", i / count, 0, 0)],
            params=[Param("alpha", i % 17), Param("solver", "lbfgs")],
            tags=[RunTag("model", "xgb" if i % 2 else "lasso")],
        )
        client.set_terminated(run_id, RunStatus.FINISHED)
    took = time.perf_counter() - start
    print(f"generated {count} runs in {took:.1f} s ({1000 * took / count:.2f} ms a run)")
    return experiment_id


def median_time(task: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """Median, fastest and slowest of `repeat` timed calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        task()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--root", type=Path, default=None)
    args = parser.parse_args()

    temp = None
    if args.root is None:
        temp = tempfile.mkdtemp(prefix="mltrail-bench-")
        root = Path(temp) / "runs"
    else:
        root = args.root
    try:
        experiment_id = generate(root, args.runs)

        def search_all() -> None:
            runs = LocalStore(root).search_runs([experiment_id], "", 1, 50_000, [], None)
            assert len(runs) == args.runs

        def search_filtered() -> None:
            LocalStore(root).search_runs(
                [experiment_id],
                "metrics.rmse < 9.5 and tags.model = 'xgb'",
                1,
                100,
                ["metrics.rmse ASC"],
                None,
            )

        def pages() -> None:
            store, token, seen = LocalStore(root), None, 0
            for _ in range(args.runs // 1000 + 2):
                page = store.search_runs([experiment_id], "", 1, 1000, [], token)
                seen += len(page)
                token = page.token
                if token is None:
                    break
            assert seen == args.runs

        # The CLI of the mltrail on sys.path (PYTHONPATH), not whichever is installed.
        entry = "import sys; from mltrail.cli import main; sys.exit(main())"
        mltrail = [sys.executable, "-c", entry]
        command = [*mltrail, "--tracking-uri", str(root), "runs", "list", "-e", EXPERIMENT]
        env = {k: v for k, v in os.environ.items() if not k.endswith("TRACKING_URI")}

        def cli(argv: list[str] = command) -> None:
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)

        default = command[:-2]  # no -e: the experiment of the latest run, found by a search

        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.runs} runs")
        for label, task in (
            ("search_runs, all runs", search_all),
            ("search_runs, filter + order_by", search_filtered),
            ("search_runs, all in pages of 1,000", pages),
            ("`mltrail runs list -e EXPERIMENT`", lambda: cli(command)),
            ("`mltrail runs list`", lambda: cli(default)),
        ):
            took, low, high = median_time(task, args.repeat)
            print(f"{label + ':':36s} {took:.3f} s (spread {low:.3f}-{high:.3f})")
        print(f"(median of {args.repeat}; the first search of a fresh store writes the catalog)")
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
