"""The filter grammar's own cost: mltrail.search at a git revision against the working tree's.

Loads N runs once (made in memory, shaped like bench_listing's: params, tags, two metrics),
then times `search(runs, filter, order_by)` of both versions of the module side by side in
this one process, alternating which goes first, so machine load hits both alike. Reading
runs from disk is left out on purpose: it is the same code on both sides and would hide
the difference (bench_listing.py measures the whole listing).

Run: python benchmarks/bench_search.py [--runs 10000] [--repeat 9] [--baseline main]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import mltrail.search
from mltrail.entities import Run, RunData, RunInfo

CASES: list[tuple[str, str, list[str]]] = [
    ("all runs, default order", "", []),
    ("metric + tag filter, metric order", "metrics.rmse < 9.5 and tags.model = 'xgb'",
     ["metrics.rmse ASC"]),
    ("param LIKE, two keys", "params.alpha LIKE '1%'", ["params.solver", "metrics.r2 DESC"]),
    ("bare attribute", "status = 'FINISHED'", ["start_time DESC"]),
]


def make_runs(count: int) -> list[Run]:
    runs = []
    for i in range(count):
        info = RunInfo(
            run_id=f"{i:032x}", experiment_id="1", run_name=f"run-{i}", user_id="bench",
            status="FINISHED", start_time=1_700_000_000_000 + i, end_time=1_700_000_000_500 + i,
            artifact_uri=f"file:///tmp/{i}/artifacts",
        )
        data = RunData(
            metrics={"rmse": 10.0 - i / count, "r2": i / count},
            params={"alpha": str(i % 17), "solver": "lbfgs"},
            tags={"model": "xgb" if i % 2 else "lasso"},
        )
        runs.append(Run(info=info, data=data))
    return runs


def load_baseline(revision: str, folder: Path) -> ModuleType:
    """mltrail/search.py as it is at `revision`, imported under another name."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "-C", str(root), "show", f"{revision}:src/mltrail/search.py"],
        check=True, capture_output=True, text=True,
    ).stdout
    path = folder / "baseline_search.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_search", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def timed(task: Callable[[], object]) -> float:
    start = time.perf_counter()
    task()
    return time.perf_counter() - start


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--baseline", default="main", help="git revision to compare with")
    args = parser.parse_args()

    runs = make_runs(args.runs)
    with tempfile.TemporaryDirectory() as folder:
        baseline = load_baseline(args.baseline, Path(folder))
    sides = {"baseline": baseline.search, "now": mltrail.search.search}
    print(f"python {sys.version.split()[0]}, {args.runs} runs, median of {args.repeat} "
          f"(min-max), baseline = {args.baseline}")
    for label, filter_string, order_by in CASES:
        found = {name: len(fn(runs, filter_string, order_by)) for name, fn in sides.items()}
        assert len(set(found.values())) == 1, f"{label}: the two disagree: {found}"
        times: dict[str, list[float]] = {name: [] for name in sides}
        ratios = []
        for attempt in range(args.repeat):
            order = list(sides) if attempt % 2 == 0 else list(reversed(sides))
            took = {
                name: timed(lambda fn=sides[name], f=filter_string, o=order_by: fn(runs, f, o))
                for name in order
            }
            for name, seconds in took.items():
                times[name].append(seconds)
            ratios.append(took["now"] / took["baseline"])
        shown = "  ".join(
            f"{name} {ms(statistics.median(t))} ms ({ms(min(t))}-{ms(max(t))})"
            for name, t in times.items()
        )
        print(f"{label:36s} {shown}  now/baseline {statistics.median(ratios):.2f} "
              f"({min(ratios):.2f}-{max(ratios):.2f})  [{found['now']} found]")


if __name__ == "__main__":
    main()
