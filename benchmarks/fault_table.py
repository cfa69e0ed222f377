"""The fault table of issue 13: records expected / delivered / lost / doubled, and seconds
to converge, for each fault scenario, against a real `mlflow server` on 127.0.0.1.

    python3 benchmarks/fault_table.py            # about 3 minutes on 2 cores

Each scenario logs metric points with known values (and a param per run), then reads
the server back through MLflow's own client. "Delivered" counts distinct expected points
and params found in the one server run of each expected run; "doubled" counts server
runs beyond one per expected run (their points included) and repeated points; "lost" is
expected minus delivered. "Converge" is measured from the moment the fault ends (or the
trainer starts, for faults that never end) to the moment the last record was confirmed
(the last `flush` or `mltrail sync` that returned with nothing left), by this script's
clock. The scenario code mirrors tests/test_remote_promise.py and tests/test_remote_faults.py,
whose helpers it imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from faulty_proxy import FaultyProxy  # noqa: E402
from mlflow_server import MlflowServer, free_port  # noqa: E402

BASE_TS = 1_700_000_000_000
ROOT = Path(tempfile.mkdtemp(prefix="mltrail-fault-table-"))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def env_for(spool: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "MLTRAIL_SPOOL_DIR": str(spool),
        "MLTRAIL_HTTP_BACKOFF": "0.05",
        "MLTRAIL_HTTP_BACKOFF_MAX": "0.5",
        "MLTRAIL_HTTP_RETRIES": "1",
        "MLTRAIL_FLUSH_TIMEOUT": "1",
        **extra,
    }
    env.pop("MLTRAIL_STRICT", None)
    return env


def trainer(url: str, experiment: str, runs: int, points: int, tail: str = "") -> str:
    return f"""
import os, signal, mltrail
mltrail.set_tracking_uri({url!r})
mltrail.set_experiment({experiment!r})
for r in range({runs}):
    with mltrail.start_run(run_name="r" + str(r)):
        mltrail.log_param("r", r)
        for i in range({points}):
            mltrail.log_metric("loss", float(i), step=i, timestamp={BASE_TS} + i)
{tail}
"""


def run_py(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )


def sync_until_done(url: str, spool: Path, tries: int = 40) -> None:
    for _ in range(tries):  # bounded: a run may need its lost create to settle first
        done = subprocess.run(
            [sys.executable, "-m", "mltrail.cli", "sync", "--uri", url],
            env=env_for(spool),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode == 0:
            return
        time.sleep(0.5)
    raise RuntimeError(f"sync did not finish: {done.stdout} {done.stderr}")


def count(server_url: str, experiment: str, names: list[str], points: int) -> dict[str, int]:
    import mlflow
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient(tracking_uri=server_url)
    exp = client.get_experiment_by_name(experiment)
    found = (
        []
        if exp is None
        else list(
            client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=5000)
        )
    )
    expected = len(names) * (points + 1)
    delivered = doubled = 0
    by_name: dict[str, list[Any]] = {}
    for run in found:
        by_name.setdefault(run.info.run_name, []).append(run)
    for name in names:
        copies = by_name.get(name, [])
        for index, run in enumerate(copies):
            history = client.get_metric_history(run.info.run_id, "loss")
            steps = {(m.step, m.value) for m in history if m.value == float(m.step)}
            good = len([s for s in steps if 0 <= s[0] < points]) + ("r" in run.data.params)
            if index == 0:
                delivered += good
                doubled += len(history) - len(steps)
            else:
                doubled += good
    doubled += sum(len(v) for k, v in by_name.items() if k not in names)
    return {
        "expected": expected,
        "delivered": delivered,
        "lost": expected - delivered,
        "doubled": doubled,
    }


# scenarios: each returns (names, points, experiment, seconds to converge) ----------------


def server_down_at_start(own: MlflowServer) -> tuple[list[str], int, str, float]:
    own.stop()
    spool, experiment = ROOT / unique("spool"), unique("down-at-start")
    run_py(trainer(own.url, experiment, 2, 200), env_for(spool))
    own.start()
    start = time.monotonic()
    sync_until_done(own.url, spool)
    return ["r0", "r1"], 200, experiment, time.monotonic() - start


def killed_mid_run(own: MlflowServer) -> tuple[list[str], int, str, float]:
    if own.process is None or own.process.poll() is not None:
        own.start()
    spool, experiment = ROOT / unique("spool"), unique("killed")
    marker = ROOT / unique("marker")
    code = f"""
import os, time, mltrail
mltrail.set_tracking_uri({own.url!r})
mltrail.set_experiment({experiment!r})
with mltrail.start_run(run_name="r0"):
    mltrail.log_param("r", 0)
    for i in range(100):
        mltrail.log_metric("loss", float(i), step=i, timestamp={BASE_TS} + i)
    mltrail.flush(30)
    print("half", flush=True)
    for _ in range(600):
        if os.path.exists({str(marker)!r}):
            break
        time.sleep(0.05)
    for i in range(100, 200):
        mltrail.log_metric("loss", float(i), step=i, timestamp={BASE_TS} + i)
print("flushed", mltrail.flush(120))
"""
    env = env_for(spool, MLTRAIL_FLUSH_TIMEOUT="120")
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "half"
    own.stop()
    marker.write_text("go")
    time.sleep(2.0)  # records pile up while the server is dead
    own.start()
    start = time.monotonic()
    proc.communicate(timeout=300)
    return ["r0"], 200, experiment, time.monotonic() - start


def proxy_faults(server_url: str) -> tuple[list[str], int, str, float]:
    spool, experiment = ROOT / unique("spool"), unique("proxy-faults")
    with FaultyProxy(server_url) as proxy:
        proxy.add("runs/create", "drop_after")
        proxy.add("runs/log-batch", ("status", 503, 1))
        proxy.add("runs/log-batch", "drop")
        proxy.add("runs/log-batch", ("delay", 6.0))
        proxy.add("runs/log-batch", ("status", 429, None))
        proxy.add("runs/update", ("status", 500, None))
        proxy.add("experiments/get-by-name", ("status", 503, None), times=2)
        start = time.monotonic()
        done = run_py(
            trainer(proxy.url, experiment, 2, 300, "print('flushed', mltrail.flush(120))"),
            env_for(spool, MLTRAIL_HTTP_TIMEOUT="3"),
        )
        if "flushed True" not in done.stdout:
            sync_until_done(proxy.url, spool)
        return ["r0", "r1"], 300, experiment, time.monotonic() - start


def sigkill_then_sync(server_url: str) -> tuple[list[str], int, str, float]:
    spool, experiment = ROOT / unique("spool"), unique("sigkill")
    with FaultyProxy(server_url) as proxy:
        proxy.add("runs/log-batch", ("delay", 2.0), times=None)  # records still unsent
        run_py(
            trainer(proxy.url, experiment, 2, 300, "os.kill(os.getpid(), signal.SIGKILL)"),
            env_for(spool),
        )
        proxy.rules.clear()
        start = time.monotonic()
        sync_until_done(proxy.url, spool)
        return ["r0", "r1"], 300, experiment, time.monotonic() - start


def eight_processes(server_url: str) -> tuple[list[str], int, str, float]:
    spool, experiment = ROOT / unique("spool"), unique("crowd")
    env = env_for(spool, MLTRAIL_FLUSH_TIMEOUT="60")
    start = time.monotonic()
    procs = []
    for w in range(8):
        code = trainer(server_url, experiment, 3, 40).replace('"r" + str(r)', f'"w{w}-" + str(r)')
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env))
    for proc in procs:
        proc.wait(timeout=300)
    names = [f"w{w}-{r}" for w in range(8) for r in range(3)]
    return names, 40, experiment, time.monotonic() - start


def disk_full(server_url: str) -> tuple[list[str], int, str, float]:
    from test_remote_promise import _full_disk_script

    spool, experiment = ROOT / unique("spool"), unique("full")
    spool.mkdir()
    start = time.monotonic()
    subprocess.run(
        [
            "unshare", "-rm", "sh", "-c",
            'mount -t tmpfs -o size=1m tmpfs "$0" && exec "$1" -c "$2"',
            str(spool), sys.executable, _full_disk_script(server_url, experiment),
        ],
        env=env_for(spool), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return ["A"], 300, experiment, time.monotonic() - start


def blackhole(server_url: str) -> tuple[list[str], int, str, float]:
    spool, experiment = ROOT / unique("spool"), unique("blackhole")
    with FaultyProxy(server_url) as proxy:
        proxy.add("/api/", ("hang", 120.0), times=None)
        run_py(trainer(proxy.url, experiment, 1, 200), env_for(spool, MLTRAIL_CREATE_TIMEOUT="1"))
        proxy.rules.clear()
        proxy.release_hung()
        start = time.monotonic()
        sync_until_done(proxy.url, spool)
        return ["r0"], 200, experiment, time.monotonic() - start


def creates_held_3s(server_url: str) -> tuple[list[str], int, str, float]:
    spool, experiment = ROOT / unique("spool"), unique("slow-create")
    with FaultyProxy(server_url) as proxy:
        proxy.add("runs/create", ("delay_before", 3.0), times=None)
        start = time.monotonic()
        done = run_py(
            trainer(proxy.url, experiment, 3, 50, "print('flushed', mltrail.flush(120))"),
            env_for(spool, MLTRAIL_CREATE_TIMEOUT="2"),
        )
        if "flushed True" not in done.stdout:
            sync_until_done(proxy.url, spool)
        return ["r0", "r1", "r2"], 50, experiment, time.monotonic() - start


def log_batch_held_8s_at_exit(server_url: str) -> tuple[list[str], int, str, float]:
    spool, experiment = ROOT / unique("spool"), unique("held")
    with FaultyProxy(server_url) as proxy:
        proxy.add("runs/log-batch", ("delay", 8.0), times=None)
        run_py(trainer(proxy.url, experiment, 2, 200), env_for(spool))
        proxy.rules.clear()
        start = time.monotonic()
        sync_until_done(proxy.url, spool)
        return ["r0", "r1"], 200, experiment, time.monotonic() - start


def main() -> int:
    shared = MlflowServer(ROOT / "server", free_port())
    (ROOT / "server").mkdir()
    own = MlflowServer(ROOT / "own", free_port())
    (ROOT / "own").mkdir()
    shared.start()
    rows = []
    scenarios: list[tuple[str, Callable[[], tuple[list[str], int, str, float]], str]] = [
        ("server down at start, then mltrail sync", lambda: server_down_at_start(own), "own"),
        ("server killed mid-run, restarted", lambda: killed_mid_run(own), "own"),
        (
            "proxy: 503+Retry-After, drop, drop_after, 6 s delay, 429, 500",
            lambda: proxy_faults(shared.url),
            "shared",
        ),
        ("trainer SIGKILLed, then mltrail sync", lambda: sigkill_then_sync(shared.url), "shared"),
        ("8 processes at once, one new experiment", lambda: eight_processes(shared.url), "shared"),
        ("spool disk full (1 MB tmpfs)", lambda: disk_full(shared.url), "shared"),
        ("blackhole server, then mltrail sync", lambda: blackhole(shared.url), "shared"),
        ("runs/create held 3 s (budget 2 s)", lambda: creates_held_3s(shared.url), "shared"),
        (
            "log-batch answers held 8 s at exit, then sync",
            lambda: log_batch_held_8s_at_exit(shared.url),
            "shared",
        ),
    ]
    try:
        for title, scenario, which in scenarios:
            names, points, experiment, seconds = scenario()
            url = own.url if which == "own" else shared.url
            if which == "own" and (own.process is None or own.process.poll() is not None):
                own.start()
            row = {"scenario": title, **count(url, experiment, names, points)}
            row["converge_s"] = round(seconds, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        shared.stop()
        own.stop()
    print()
    print("| scenario | expected | delivered | lost | doubled | seconds to converge |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['scenario']} | {row['expected']} | {row['delivered']} | {row['lost']} "
            f"| {row['doubled']} | {row['converge_s']} |"
        )
    return 0 if all(r["lost"] == 0 and r["doubled"] == 0 for r in rows) else 1


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="It takes no options."
    ).parse_args()
    sys.exit(main())
