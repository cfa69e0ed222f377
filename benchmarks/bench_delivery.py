"""Delivering a big run to a tracking server: mltrail beside MLflow's own client.

Starts a local `mlflow server` (sqlite backend, 127.0.0.1, one worker), then, in
fresh processes on that same server, delivers `--keys` x `--steps` metric points:

- mlflow-seq: `MlflowClient.log_batch` with 1,000-metric batches, one after another;
- mlflow-threads: the same batches from `--threads` threads;
- mltrail: one `log_metric` call a point into a run (to the spool, as training does),
  then the time until the server has every point (`flush`); it reports logging and
  delivery apart (the sender ships while the loop logs);
- mltrail-sync: the same run logged while the server is unreachable (a proxy that
  drops every connection), then `mltrail sync` in a new process once it is back: the
  delivery of a whole backlog, with its progress lines. (The proxy forwards every
  request, a cost only this variant pays.)

Each prints its wall time; the script prints mltrail's delivery time over the best
MLflow time. The machine may be loaded: each variant runs `--repeat` times,
alternating, and the median and spread are printed.

Run: python benchmarks/bench_delivery.py [--keys 10] [--steps 100000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench_remote import _start_server

WORKER = textwrap.dedent(
    """
    import json, sys, time
    args = json.loads(sys.argv[1])
    keys, steps, url = args["keys"], args["steps"], args["url"]
    if args["variant"].startswith("mlflow"):
        from concurrent.futures import ThreadPoolExecutor
        from mlflow import MlflowClient
        from mlflow.entities import Metric
        client = MlflowClient(url)
        experiment = client.get_experiment_by_name("delivery") or None
        eid = experiment.experiment_id if experiment else client.create_experiment("delivery")
        run_id = client.create_run(eid).info.run_id
        now = int(time.time() * 1000)
        points = [
            Metric(f"key{k}", s * 0.001 + k, now, s) for s in range(steps) for k in range(keys)
        ]
        batches = [points[i:i + 1000] for i in range(0, len(points), 1000)]
        start = time.perf_counter()
        if args["variant"] == "mlflow-seq":
            for batch in batches:
                client.log_batch(run_id, metrics=batch)
        else:
            with ThreadPoolExecutor(args["threads"]) as pool:
                list(pool.map(lambda b: client.log_batch(run_id, metrics=b), batches))
        client.set_terminated(run_id)
        took = time.perf_counter() - start
        print(json.dumps({"deliver": took, "total": took}))
    elif args["variant"] == "mltrail-offline":
        import mltrail
        client = mltrail.MlflowClient(url)
        run_id = client.create_run("0").info.run_id  # the server is unreachable: spooled
        for s in range(steps):
            for k in range(keys):
                client.log_metric(run_id, f"key{k}", s * 0.001 + k, step=s)
        client.set_terminated(run_id)
        print(json.dumps({"run_id": run_id}))
    else:
        import mltrail
        client = mltrail.MlflowClient(url)
        experiment = client.get_experiment_by_name("delivery")
        eid = experiment.experiment_id if experiment else client.create_experiment("delivery")
        start = time.perf_counter()
        run_id = client.create_run(eid).info.run_id
        for s in range(steps):
            for k in range(keys):
                client.log_metric(run_id, f"key{k}", s * 0.001 + k, step=s)
        client.set_terminated(run_id)
        logged = time.perf_counter()
        assert client.store.flush(3600), "not delivered"
        done = time.perf_counter()
        got = client.get_metric_history(run_id, "key0")
        assert len(got) == steps, (len(got), steps)
        print(json.dumps({"log": logged - start, "deliver": done - logged, "total": done - start}))
    """
)


def backlog(
    args: argparse.Namespace, url: str, env: dict[str, str], root: Path
) -> dict[str, float]:
    """Log the run behind a down proxy, then time `mltrail sync` once it is up."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from faulty_proxy import FaultyProxy

    spool = Path(tempfile.mkdtemp(prefix="spool-", dir=root))
    env = {**env, "MLTRAIL_SPOOL_DIR": str(spool), "MLTRAIL_FLUSH_TIMEOUT": "0",
           "MLTRAIL_CREATE_TIMEOUT": "0.2"}
    with FaultyProxy(url) as proxy:
        proxy.down = True
        payload = {**vars(args), "url": proxy.url, "variant": "mltrail-offline"}
        # A 1 s read timeout: the dropped create settles 2 s after it was sent, so sync
        # may create the run without waiting for a 30 s timeout to pass.
        subprocess.run([sys.executable, "-c", WORKER, json.dumps(payload)], check=True,
                       capture_output=True, env={**env, "MLTRAIL_HTTP_TIMEOUT": "1"}, cwd=root)
        proxy.down = False
        time.sleep(2.5)
        start = time.perf_counter()
        entry = "import sys; from mltrail.cli import main; sys.exit(main())"
        done = subprocess.run([sys.executable, "-c", entry, "sync", "--uri", proxy.url],
                              capture_output=True, text=True, env=env, cwd=root)
        took = time.perf_counter() - start
    print(done.stdout, end="")
    if done.returncode:
        raise SystemExit(f"mltrail sync failed:\n{done.stderr}")
    return {"deliver": took, "total": took}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--variants", nargs="*",
                        default=["mlflow-seq", "mlflow-threads", "mltrail", "mltrail-sync"])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mltrail-delivery-"))
    server, url = _start_server(root)
    env = dict(os.environ)
    env["MLTRAIL_TRACKING_URI"] = str(root / "unused")
    try:
        times: dict[str, list[dict[str, float]]] = {variant: [] for variant in args.variants}
        for _ in range(args.repeat):
            for variant in times:
                if variant == "mltrail-sync":
                    times[variant].append(backlog(args, url, env, root))
                    print(variant, times[variant][-1], flush=True)
                    continue
                payload = {**vars(args), "url": url, "variant": variant}
                done = subprocess.run(
                    [sys.executable, "-c", WORKER, json.dumps(payload)],
                    capture_output=True, text=True, env=env, cwd=root,
                )
                if done.returncode:
                    raise SystemExit(f"{variant} failed:\n{done.stderr}")
                out = done.stdout
                times[variant].append(json.loads(out.strip().splitlines()[-1]))
                print(variant, times[variant][-1], flush=True)
        points = args.keys * args.steps
        print(f"{points:,} points to {url} (sqlite, 1 worker), {args.repeat} each:")
        medians = {}
        for variant, rows in times.items():
            deliver = [r["deliver"] for r in rows]
            medians[variant] = statistics.median(deliver)
            extra = ""
            if "log" in rows[0]:
                extra = f"; logging {statistics.median(r['log'] for r in rows):.1f} s before it"
            print(
                f"  {variant:15s} delivered in {medians[variant]:.1f} s "
                f"(spread {min(deliver):.1f}-{max(deliver):.1f}){extra}"
            )
        theirs = [medians[v] for v in ("mlflow-seq", "mlflow-threads") if v in medians]
        for ours in ("mltrail", "mltrail-sync"):
            if theirs and ours in medians:
                print(f"  {ours} delivery / best MLflow: {medians[ours] / min(theirs):.2f}x")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
