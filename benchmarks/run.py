"""What autolog costs: bare training vs mltrail (local, server) vs MLflow's autolog.

    python benchmarks/run.py [--reps 3] [--min-seconds 3] [--mlflow-reps 1] [--no-server]
        [--workloads NAME ...] [--out FILE]
    python benchmarks/run.py --fresh 3 [--workloads NAME ...]   # fresh-process mode

Starts its own `mlflow server` on 127.0.0.1 (when mlflow is installed) behind a
counting proxy and warms it up, runs every cell of the table in a fresh process
(benchmarks/cell.py), prints a Markdown table and writes it as JSON (default
benchmarks/results/latest.json). Each time is the median of the repetitions after
one warm-up, including the final flush; a short workload repeats until it has run
`--min-seconds`. Ratios are to bare training. It measures; it asserts nothing.
With `--fresh N` it instead times what a script pays in a new interpreter, bare and
mltrail alternating (`fresh_mode`), beside the warmed, paired in-process figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from counting_proxy import CountingProxy  # noqa: E402
from workloads import WORKLOADS  # noqa: E402

# MLflow sends one request per log_metric call: 10,000 of them take minutes, so its
# cell makes this many and its time is scaled to 10,000 (the table says so).
MLFLOW_LOG_METRIC_CALLS = 1000


def run_cell(workload: str, mode: str, *, models: bool, reps: int, warmup: int,
             min_seconds: float, uri: str | None, proxy: CountingProxy | None,
             env: dict[str, str], plots: bool = True) -> dict[str, Any]:
    scale = 1.0
    if workload == "log_metric_10k" and mode == "mlflow-server":
        env = {**env, "BENCH_LOG_METRIC_CALLS": str(MLFLOW_LOG_METRIC_CALLS)}
        scale = 10_000 / MLFLOW_LOG_METRIC_CALLS
    cmd = [sys.executable, str(HERE / "cell.py"), workload, mode, "--reps", str(reps),
           "--warmup", str(warmup), "--min-seconds", str(min_seconds),
           "--models", "on" if models else "off", "--plots", "on" if plots else "off"]
    if uri:
        cmd += ["--uri", uri]
    if proxy is not None:
        proxy.reset()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    requests = proxy.reset() if proxy is not None and mode.endswith("server") else None
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["?"]
        return {"error": tail[0]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if requests is not None:
        requests = requests / (len(result["times"]) + warmup)  # per run of the workload
    if not result["times"]:
        return result  # warm-up only
    result["median_s"] = statistics.median(result["times"]) * scale
    pairs = list(zip(result["times"], result["bare_times"], strict=False))
    if pairs:
        result["bare_median_s"] = statistics.median(result["bare_times"])
        result["added_s"] = statistics.median(t * scale - b for t, b in pairs)
        if result["bare_median_s"] > 0.001:  # log_metric's bare run does nothing
            result["ratio"] = statistics.median(t / b for t, b in pairs)
    result["requests"] = None if requests is None else round(requests * scale)
    if scale != 1.0:
        result["scaled_from_calls"] = MLFLOW_LOG_METRIC_CALLS
    print(f"  {workload} {mode} models={'on' if models else 'off'} "
          f"plots={'on' if plots else 'off'}: "
          f"{result['median_s']:.2f}s", file=sys.stderr)
    return result


def import_time(module: str, repeats: int = 5) -> float | None:
    if importlib.util.find_spec(module) is None:
        return None
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  check=True).stdout) for _ in range(repeats)]
    return statistics.median(times)


def installed_size_mb(distribution: str) -> float | None:
    """Size on disk of a distribution and everything it requires, transitively."""
    seen: set[str] = set()
    todo = [distribution]
    total = 0
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for file in dist.files or []:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                total += path.stat().st_size
        if name == "mltrail":  # an editable install: count the source folders instead
            for folder in (HERE.parent / "src", HERE.parent / "integrations"):
                total += sum(p.stat().st_size for p in folder.rglob("*.py"))
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            match = re.match(r"[A-Za-z0-9._-]+", req)
            if match:
                todo.append(match.group(0))
    return round(total / 1e6, 1) if seen else None


def fmt(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "-"
    if "error" in cell:
        return f"error: {cell['error'][:40]}"
    text = f"{cell['median_s']:.2f}s"
    if cell.get("ratio") is not None:
        text += f" ({cell['ratio']:.2f}x)"
    if cell.get("requests") is not None:
        text += f", {cell['requests']} req"
    if cell.get("scaled_from_calls"):
        text += f" (from {cell['scaled_from_calls']:,} calls, x10)"
    return text + f", {cell['peak_mb']:.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3,
                        help="timed repetitions per cell, after one warm-up")
    parser.add_argument("--mlflow-reps", type=int, default=1,
                        help="repetitions of MLflow's cells (they are slow), no warm-up")
    parser.add_argument("--min-seconds", type=float, default=3.0,
                        help="repeat a short cell until it has run this long (mltrail, bare)")
    parser.add_argument("--no-server", action="store_true", help="skip the server columns")
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latest.json")
    parser.add_argument("--fresh", type=int, default=0, metavar="N",
                        help="instead: fresh-process mode, bare and mltrail-local alternating "
                             "N times each (default workloads: wine forests, xgboost, hyperopt)")
    args = parser.parse_args()
    if args.fresh:
        chosen = args.workloads if args.workloads != list(WORKLOADS) else list(FRESH_WORKLOADS)
        fresh_mode(chosen, args.fresh)
        return

    started = time.perf_counter()
    env = {**os.environ, "MLTRAIL_SPOOL_DIR": tempfile.mkdtemp(prefix="mltrail-spool-"),
           "MLFLOW_TRACKING_URI": "", "MLTRAIL_TRACKING_URI": ""}
    server = proxy = None
    has_mlflow = importlib.util.find_spec("mlflow") is not None
    if has_mlflow and not args.no_server:
        from mlflow_server import MlflowServer, free_port

        server = MlflowServer(Path(tempfile.mkdtemp(prefix="mlflow-bench-")), free_port())
        server.start()
        proxy = CountingProxy(server.url)
    uri = proxy.url if proxy else None
    if uri:
        # A fresh server answers its first few dozen runs several times slower (its own
        # imports and caches); that is neither tool's cost, so it is paid here, untimed.
        run_cell("rf_wine_x10", "mltrail-server", models=True, reps=0, warmup=3, min_seconds=0,
                 uri=uri, proxy=proxy, env=env)

    results: dict[str, dict[str, Any]] = {}
    try:
        for workload in args.workloads:
            row: dict[str, Any] = {}

            def cell(mode: str, models: bool = True, reps: int = args.reps, warmup: int = 1,
                     min_seconds: float = args.min_seconds,
                     workload: str = workload, plots: bool = True) -> dict[str, Any]:
                return run_cell(workload, mode, models=models, reps=reps, warmup=warmup,
                                min_seconds=min_seconds,
                                uri=uri if mode.endswith("server") else None, proxy=proxy,
                                env=env, plots=plots)

            row["mltrail-local"] = cell("mltrail-local")
            row["mltrail-local models off"] = cell("mltrail-local", models=False)
            row["mltrail-local plots off"] = cell("mltrail-local", plots=False)
            if uri:
                row["mltrail-server"] = cell("mltrail-server")
                if has_mlflow and args.mlflow_reps > 0:
                    row["mlflow-server"] = cell("mlflow-server", reps=args.mlflow_reps, warmup=0,
                                                min_seconds=0)
            results[workload] = row
            print(f"{workload}: done ({time.perf_counter() - started:.0f}s)", file=sys.stderr)
    finally:
        if proxy is not None:
            proxy.close()
        if server is not None:
            server.stop()

    columns = ["mltrail-local", "mltrail-local models off", "mltrail-local plots off",
               "mltrail-server", "mlflow-server"]
    columns = [c for c in columns if any(c in row for row in results.values())]
    print("| workload | bare (tool off) | " + " | ".join(columns)
          + " | MLflow added time / mltrail added time |")
    print("|---" * (len(columns) + 3) + "|")
    for workload, row in results.items():
        local = row.get("mltrail-local", {})
        bare = f"{local['bare_median_s']:.2f}s" if "bare_median_s" in local else "-"
        cells = [fmt(row.get(c)) for c in columns]
        print(f"| {workload} | {bare} | " + " | ".join(cells) + f" | {added_ratio(row)} |")

    extra = {
        "import_s": {"mltrail": import_time("mltrail"), "mlflow": import_time("mlflow")},
        "installed_mb": {"mltrail": installed_size_mb("mltrail"),
                         "mlflow": installed_size_mb("mlflow")},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(extra, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cells": results, **extra}, indent=1))
    print(f"written to {args.out}", file=sys.stderr)


FRESH_WORKLOADS = ("rf_wine_x10", "xgb_train_500", "hyperopt_tpe_20")


def fresh_mode(workloads: list[str], reps: int) -> None:
    """What a user's script pays: every run in a new interpreter, nothing warmed up.

    Bare and mltrail (local store, every default on) alternate, `reps` processes each,
    so both see the same drift of a loaded machine. Three times per process: the
    process from launch to exit (interpreter, imports, data, training, exit path), the
    script's own part (from its first line, `import mltrail; autolog()` included), and
    the first workload call alone. Ratios are of medians; spreads are min-max.
    """
    env = {**os.environ, "MLTRAIL_SPOOL_DIR": tempfile.mkdtemp(prefix="mltrail-spool-"),
           "MLFLOW_TRACKING_URI": "", "MLTRAIL_TRACKING_URI": ""}
    print("fresh processes, bare vs mltrail-local alternating, "
          f"{reps} each (medians, spread min-max; the machine may be loaded):")
    for workload in workloads:
        found: dict[str, dict[str, list[float]]] = {}
        for _ in range(reps):
            for mode in ("bare", "mltrail-local"):
                cmd = [sys.executable, str(HERE / "cell.py"), workload, mode, "--fresh"]
                start = time.perf_counter()
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900,
                                      check=True)
                process_s = time.perf_counter() - start
                got = json.loads(done.stdout.strip().splitlines()[-1])
                row = found.setdefault(mode, {"process": [], "script": [], "fit": []})
                row["process"].append(process_s)
                row["script"].append(got["script_s"])
                row["fit"].append(got["fit_s"])
        parts = []
        for what in ("process", "script", "fit"):
            bare, ours = found["bare"][what], found["mltrail-local"][what]
            ratio = statistics.median(ours) / statistics.median(bare)
            parts.append(f"{what} {statistics.median(bare):.2f}s ({min(bare):.2f}-{max(bare):.2f})"
                         f" -> {statistics.median(ours):.2f}s ({min(ours):.2f}-{max(ours):.2f})"
                         f" = {ratio:.2f}x")
        print(f"  {workload}: " + "; ".join(parts), flush=True)


def added_ratio(row: dict[str, Any]) -> str:
    """How many times more time MLflow's autolog adds than mltrail's, both to the server
    (each added time is the median over repetitions of tool-on minus its paired tool-off)."""
    ours, theirs = row.get("mltrail-server") or {}, row.get("mlflow-server") or {}
    if "added_s" not in ours or "added_s" not in theirs:
        return "-"
    return f"{theirs['added_s'] / max(ours['added_s'], 1e-3):.0f}x"


if __name__ == "__main__":
    main()
