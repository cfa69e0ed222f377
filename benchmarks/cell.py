"""One cell of the benchmark table, in a process of its own.

Each tool patches the same frameworks, so mltrail's and MLflow's autolog cannot
share a process; every cell therefore runs here, in a fresh interpreter, and
prints one JSON line: the wall times of its repetitions (each including the
final flush of pending records) and the process's peak memory.

    python benchmarks/cell.py WORKLOAD MODE [--models on|off] [--reps N] [--warmup N]
        [--min-seconds S] [--uri URI]

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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import WORKLOADS

MODES = ("bare", "mltrail-local", "mltrail-server", "mlflow-server")
MAX_REPS = 25


def setup(mode: str, models: bool, uri: str | None) -> tuple[Any, Any]:
    """Turn the tool of `mode` on; return (tracker module or None, flush function)."""
    if mode == "bare":
        return None, lambda: None
    if mode.startswith("mltrail"):
        import mltrail

        mltrail.set_tracking_uri(uri or tempfile.mkdtemp(prefix="mltrail-bench-"))
        mltrail.set_experiment(f"bench-{os.getpid()}")
        mltrail.autolog(log_models=models)
        return mltrail, lambda: mltrail.flush(120)
    import logging
    import warnings

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(f"bench-{os.getpid()}")
    mlflow.autolog(log_models=models, silent=True)
    return mlflow, getattr(mlflow, "flush_async_logging", lambda: None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--models", choices=("on", "off"), default="on")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--min-seconds", type=float, default=0.0)
    parser.add_argument("--uri")
    args = parser.parse_args()
    train = WORKLOADS[args.workload]()
    tracker, flush = setup(args.mode, args.models == "on", args.uri)
    for _ in range(args.warmup):
        train(tracker)
        flush()
    times: list[float] = []
    # A short workload repeats until it has run `--min-seconds` (at most MAX_REPS
    # times): its median then rests on enough samples to be steady on a noisy machine.
    while len(times) < args.reps or (sum(times) < args.min_seconds and len(times) < MAX_REPS):
        start = time.perf_counter()
        train(tracker)
        flush()
        times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times, "peak_mb": round(peak_mb, 1)}))


if __name__ == "__main__":
    main()
