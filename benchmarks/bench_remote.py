"""Logging to a tracking server: mltrail vs MLflow, wall time including delivery.

Starts a local `mlflow server` (sqlite backend, proxied artifacts), then measures
in fresh subprocesses, one per variant so the two autologgers never patch the
same process:

- xgboost: a 500-round `xgboost.train` with 2 eval sets (train, validation) and
  2 metrics (2,000 metric points), bare, with `mltrail.xgboost.autolog()` and
  with `mlflow.xgboost.autolog()` (both with their defaults: params, per-round
  metrics, the model);
- loop: 10,000 `log_metric` calls in one run, through mltrail and through mlflow.

mltrail's time includes the final flush (every record and the model on the
server); MLflow's logging is synchronous. Each figure is the median of
`--repeat` runs (default 3), after one untimed warm-up.

Run: python benchmarks/bench_remote.py [--repeat 3] [--rows 20000] [--points 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import requests


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    exe = shutil.which("mlflow")
    cmd = [exe] if exe else [sys.executable, "-m", "mlflow"]
    cmd += [
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
    ]
    log = open(root / "server.log", "ab")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except requests.RequestException:
            pass
        time.sleep(0.3)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError(f"mlflow server did not start: see {root / 'server.log'}")


# Each variant runs as `python -c WORKER <json args>` and prints one JSON line of timings.
WORKER = textwrap.dedent(
    """
    import json, sys, time
    args = json.loads(sys.argv[1])
    variant, url, repeat = args["variant"], args["url"], args["repeat"]

    def data():
        import numpy as np, xgboost as xgb
        rng = np.random.default_rng(0)
        x = rng.normal(size=(args["rows"], 20)).astype("float32")
        y = x[:, 0] * 2.0 + np.sin(x[:, 1] * 3.0) + rng.normal(scale=0.5, size=len(x))
        split = int(len(x) * 0.8)
        return xgb.DMatrix(x[:split], label=y[:split]), xgb.DMatrix(x[split:], label=y[split:])

    def train(dtrain, dvalid):
        import xgboost as xgb
        params = {"max_depth": 6, "eta": 0.05, "eval_metric": ["rmse", "mae"], "nthread": 2,
                  "tree_method": "hist", "seed": 0}
        return xgb.train(params, dtrain, 500, evals=[(dtrain, "train"), (dvalid, "validation")],
                         verbose_eval=False)

    times = []
    if variant == "bare-xgb":
        dtrain, dvalid = data()
        for i in range(repeat + 1):
            t = time.perf_counter(); train(dtrain, dvalid); times.append(time.perf_counter() - t)
    elif variant in ("mltrail-xgb", "mltrail-loop"):
        import mltrail
        mltrail.set_tracking_uri(url)
        mltrail.set_experiment(variant)
        store = mltrail.MlflowClient().store
        if variant == "mltrail-xgb":
            import mltrail.xgboost
            mltrail.xgboost.autolog()
            dtrain, dvalid = data()
        for i in range(repeat + 1):
            t = time.perf_counter()
            with mltrail.start_run():
                if variant == "mltrail-xgb":
                    train(dtrain, dvalid)
                else:
                    for step in range(args["points"]):
                        mltrail.log_metric("m", step * 0.5, step=step)
            assert store.flush(600), "not delivered"
            times.append(time.perf_counter() - t)
    else:
        import mlflow
        mlflow.set_tracking_uri(url)
        mlflow.set_experiment(variant)
        if variant == "mlflow-xgb":
            import mlflow.xgboost
            mlflow.xgboost.autolog(silent=True)
            dtrain, dvalid = data()
        for i in range(repeat + 1):
            t = time.perf_counter()
            with mlflow.start_run():
                if variant == "mlflow-xgb":
                    train(dtrain, dvalid)
                else:
                    for step in range(args["points"]):
                        mlflow.log_metric("m", step * 0.5, step=step)
            times.append(time.perf_counter() - t)
    print(json.dumps(times[1:]))  # the first run warms caches and connections
    """
)


def _measure(variant: str, url: str, args: argparse.Namespace, spool: Path) -> list[float]:
    payload = {
        "variant": variant,
        "url": url,
        "repeat": args.repeat,
        "rows": args.rows,
        "points": args.points,
    }
    env = {**os.environ, "MLTRAIL_SPOOL_DIR": str(spool), "MLFLOW_TRACKING_URI": url}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps(payload)],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--only", choices=("xgboost", "loop"), help="run one of the two comparisons"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mltrail-bench-remote-") as tmp:
        root = Path(tmp)
        process, url = _start_server(root)
        try:
            medians: dict[str, float] = {}
            variants = {
                "xgboost": ("bare-xgb", "mltrail-xgb", "mlflow-xgb"),
                "loop": ("mltrail-loop", "mlflow-loop"),
            }
            chosen = [v for k, vs in variants.items() if args.only in (None, k) for v in vs]
            for variant in chosen:
                times = _measure(variant, url, args, root / "spool")
                medians[variant] = statistics.median(times)
                shown = ", ".join(f"{t:.2f}" for t in times)
                print(f"{variant:<14} median {medians[variant]:7.2f} s   ({shown})", flush=True)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    print()
    if "mltrail-xgb" in medians:
        bare, ours, theirs = medians["bare-xgb"], medians["mltrail-xgb"], medians["mlflow-xgb"]
        print(
            f"xgboost 500 rounds: bare {bare:.2f} s, mltrail {ours:.2f} s "
            f"({ours / bare:.2f}x bare), mlflow {theirs:.2f} s ({theirs / bare:.2f}x bare); "
            f"mlflow/mltrail = {theirs / ours:.1f}x"
        )
    if "mltrail-loop" in medians:
        loop_ours, loop_theirs = medians["mltrail-loop"], medians["mlflow-loop"]
        print(
            f"{args.points} log_metric calls: mltrail {loop_ours:.2f} s, mlflow "
            f"{loop_theirs:.2f} s; mlflow/mltrail = {loop_theirs / loop_ours:.1f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(medians, indent=2))


if __name__ == "__main__":
    main()
