"""One cell of the benchmark table, in a process of its own.

Each tool patches the same frameworks, so mltrail's and MLflow's autolog cannot
share a process; every cell therefore runs here, in a fresh interpreter, and
prints one JSON line: the wall times of its repetitions with the tool on (each
including the final flush of pending records), the times of the bare
repetitions paired with them (the same workload with the tool turned off, run
just before each), and the process's peak memory.

    python benchmarks/cell.py WORKLOAD MODE [--models on|off] [--plots on|off] [--reps N]
        [--warmup N] [--min-seconds S] [--uri URI]

MODE is bare, mltrail-local, mltrail-server or mlflow-server.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import WORKLOADS

MODES = ("bare", "mltrail-local", "mltrail-server", "mlflow-server")
MAX_REPS = 25


@dataclass
class Tool:
    """A tracking tool in this process: the module the workload may call, and switches."""

    module: Any
    flush: Callable[[], None]
    on: Callable[[], None]
    off: Callable[[], None]


def setup(mode: str, models: bool, uri: str | None, plots: bool = True) -> Tool:
    """The tool of `mode`, set up and turned on."""
    if mode == "bare":
        return Tool(None, lambda: None, lambda: None, lambda: None)
    if mode.startswith("mltrail"):
        import mltrail

        mltrail.set_tracking_uri(uri)
        mltrail.set_experiment(f"bench-{os.getpid()}")

        def on() -> None:
            mltrail.autolog(log_models=models, log_plots=plots)

        on()
        return Tool(mltrail, lambda: mltrail.flush(120), on,
                    lambda: mltrail.autolog(disable=True))
    import logging
    import warnings

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(f"bench-{os.getpid()}")

    def mlflow_on() -> None:
        mlflow.autolog(log_models=models, silent=True)

    mlflow_on()
    return Tool(mlflow, getattr(mlflow, "flush_async_logging", lambda: None), mlflow_on,
                lambda: mlflow.autolog(disable=True, silent=True))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--models", choices=("on", "off"), default="on")
    parser.add_argument("--plots", choices=("on", "off"), default="on")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--min-seconds", type=float, default=0.0)
    parser.add_argument("--uri")
    parser.add_argument("--fresh", action="store_true",
                        help="one run as a user's script does it: no warm-up, no pairing")
    args = parser.parse_args()
    if args.uri is None and args.mode == "mltrail-local":
        # The cell's own store goes when the cell ends; after the last flush, every
        # record has been written, so nothing is still using it.
        with tempfile.TemporaryDirectory(prefix="mltrail-bench-") as folder:
            args.uri = folder
            (fresh if args.fresh else measure)(args)
    else:
        (fresh if args.fresh else measure)(args)


def measure(args: argparse.Namespace) -> None:
    """Time `args.reps` repetitions with the tool on, each paired with one bare."""
    train = WORKLOADS[args.workload]()
    tool = setup(args.mode, args.models == "on", args.uri, args.plots == "on")
    paired = args.mode != "bare"

    def timed(tracking: bool) -> float:
        start = time.perf_counter()
        train(tool.module if tracking else None)
        tool.flush()
        return time.perf_counter() - start

    if paired and args.warmup == 0:
        tool.off()
        timed(False)  # the framework's own first-call costs are nobody's overhead
        tool.on()
    for _ in range(args.warmup):
        timed(True)
    times: list[float] = []
    bare_times: list[float] = []
    # Each repetition with the tool is paired with one right before it with the tool
    # off, in this same process, so a ratio compares runs seconds apart on a machine
    # whose speed drifts. A short workload repeats until it has run `--min-seconds`
    # (at most MAX_REPS times), so its medians rest on enough samples.
    while len(times) < args.reps or (sum(times) < args.min_seconds and len(times) < MAX_REPS):
        if paired:
            tool.off()
            bare_times.append(timed(False))
            tool.on()
        times.append(timed(True))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times, "bare_times": bare_times, "peak_mb": round(peak_mb, 1)}))


def fresh(args: argparse.Namespace) -> None:
    """Set up and train once in this new process, timing the first fit as a script pays
    it: the tool's import and one-time work are inside, nothing is warmed up."""
    start = time.perf_counter()
    tool = setup(args.mode, args.models == "on", args.uri)  # a script's first lines
    train = WORKLOADS[args.workload]()
    began = time.perf_counter()
    train(tool.module)
    tool.flush()
    done = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"fit_s": done - began, "script_s": done - start,
                      "peak_mb": round(peak_mb, 1)}))


if __name__ == "__main__":
    main()
