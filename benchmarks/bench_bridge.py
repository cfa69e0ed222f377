"""The foreground cost of logging to a database, bridge in a helper process vs in a thread.

A database tracking URI (``sqlite:///mlflow.db``) is written through MLflow's own
store code by a background worker (`mltrail.stores.bridge`). The worker can run in
a thread of the training process or in a helper process. This script measures what
the *training* pays for each, side by side with the local folder store:

- workload: seed 001's 10 RandomForest fits on the wine data, under
  ``mltrail.autolog()`` (params, training metrics, the model: one run a fit);
- variants, each in a fresh subprocess: ``local`` (the local folder store),
  ``process`` (``sqlite:///`` with the helper process, the default) and ``thread``
  (``MLTRAIL_BRIDGE=thread``); each uses a new sqlite file, as a new user would, so
  the worker starts by importing mlflow and running MLflow's migrations;
- per subprocess, `--rounds` rounds of the workload are timed (foreground only,
  nothing waits for delivery). Round 1 is the one the worker's start-up (import
  mlflow, migrations) overlaps; rounds 2.. show the steady state. Delivery (the
  final flush) is timed apart and not counted as foreground;
- also the CPU time of the training process per round (all its threads, so the
  thread mode's MLflow work counts and the helper process's does not): less
  sensitive to the machine's load than wall time;
- `--trials` subprocesses per variant, interleaved (local, process, thread, local,
  ...) so a change in the machine's load hits every variant alike.

Figures: medians over trials (and rounds), spread = min..max. The machine these
figures come from is shared and loaded: read ratios, not absolute times.

Run: python benchmarks/bench_bridge.py [--trials 5] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

WORKER = textwrap.dedent(
    """
    import json, sys, time
    args = json.loads(sys.argv[1])
    sys.path.insert(0, args["benchmarks"])
    import workloads
    import mltrail
    mltrail.set_tracking_uri(args["uri"])
    mltrail.set_experiment("bench-bridge")
    mltrail.autolog()
    train = workloads.rf_wine()
    rounds, cpu = [], []
    for _ in range(args["rounds"]):
        t, c = time.perf_counter(), time.process_time()
        train(None)
        rounds.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    in_training = "mlflow" in sys.modules
    t = time.perf_counter()
    delivered = mltrail.flush(300)
    print(json.dumps({"rounds": rounds, "cpu": cpu, "flush": time.perf_counter() - t,
                      "delivered": bool(delivered), "mlflow_imported": in_training}))
    """
)

VARIANTS = ("local", "process", "thread")


def _run(variant: str, rounds: int, folder: Path) -> dict[str, object]:
    env = {**os.environ, "MLTRAIL_SPOOL_DIR": str(folder / "spool"),
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    if variant == "local":
        uri = str(folder / "runs")
    else:
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        env["MLTRAIL_BRIDGE"] = variant
    payload = {"uri": uri, "rounds": rounds, "benchmarks": str(Path(__file__).parent)}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps(payload)],
        capture_output=True, text=True, env=env, cwd=folder, timeout=900, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):6.3f} s  ({min(values):.3f}..{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    first: dict[str, list[float]] = {v: [] for v in VARIANTS}
    later: dict[str, list[float]] = {v: [] for v in VARIANTS}
    flush: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for trial in range(args.trials):
        for variant in VARIANTS:
            with tempfile.TemporaryDirectory(prefix=f"bench-bridge-{variant}-") as tmp:
                result = _run(variant, args.rounds, Path(tmp))
            rounds = result["rounds"]
            assert isinstance(rounds, list)
            first[variant].append(rounds[0])
            later[variant].extend(rounds[1:])
            cpu[variant].extend(result["cpu"])  # type: ignore[arg-type]
            flush[variant].append(float(result["flush"]))  # type: ignore[arg-type]
            if not result["delivered"]:
                print(f"  ({variant}, trial {trial + 1}: not all delivered within 300 s)")
            if variant == "process" and result["mlflow_imported"]:
                print("  (process: mlflow was imported in the training process!)")
            print(f"trial {trial + 1} {variant:<8} rounds " +
                  " ".join(f"{r:.3f}" for r in rounds) + f"  flush {result['flush']:.2f}",
                  flush=True)
    base_first = statistics.median(first["local"])
    base_later = statistics.median(later["local"])
    print(f"\n10 RandomForest fits (wine) under mltrail.autolog(); {args.trials} trials, "
          f"{args.rounds} rounds each; median (min..max)")
    print(f"{'store':<10} {'round 1 (worker starting)':<34} {'rounds 2..':<30} "
          f"{'ratio r1 / r2..':<16} {'delivery after':<10}")
    for variant in VARIANTS:
        r1 = statistics.median(first[variant]) / base_first
        r2 = statistics.median(later[variant]) / base_later
        print(f"{variant:<10} {_fmt(first[variant]):<34} {_fmt(later[variant]):<30} "
              f"{r1:4.2f} / {r2:4.2f}     {statistics.median(flush[variant]):.2f} s")
    load = os.getloadavg()
    base_cpu = statistics.median(cpu["local"])
    print("\nCPU time of the training process per round (all its threads; the helper "
          "process's own CPU is not in it), median (min..max):")
    for variant in VARIANTS:
        ratio = statistics.median(cpu[variant]) / base_cpu
        print(f"{variant:<10} {_fmt(cpu[variant])}   ratio {ratio:4.2f}")
    print(f"\nload average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
