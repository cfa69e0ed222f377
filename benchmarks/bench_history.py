"""Reading one key's metric history back from a big local run.

Logs one run of `--keys` keys x `--steps` steps through `TrackingClient.log_metric`
(one call a point, as a training loop does), ends it, then reads one key back in
fresh processes, alternating two ways side by side:

- index: `get_metric_history`, served by the run's per-key index (`history.idx`);
- replay: a full replay of the journal filtered to the key, what every read cost
  before the index (and still the cost of the one read that rebuilds a lost index).

Each way runs `--repeat` times; it prints the median, min-max spread and peak RSS
of the reading process, and the ratio of medians. The machine may be loaded: quote
the spread with the median.

Run: python benchmarks/bench_history.py [--keys 10] [--steps 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from mltrail import TrackingClient

READ = textwrap.dedent(
    """
    import json, resource, sys, time
    start = time.perf_counter()
    from mltrail import TrackingClient
    from mltrail.stores import journal
    root, run_id, key, way = sys.argv[1:5]
    client = TrackingClient(root)
    begin = time.perf_counter()
    if way == "index":
        points = client.get_metric_history(run_id, key)
    else:
        path = client.store.run_dir(run_id) / journal.JOURNAL
        points = [
            (value, ts, step)
            for record, _ in journal.iter_lines(path, 0)
            if record and record["k"] == "b"
            for k, value, ts, step in record.get("m", ())
            if k == key
        ]
    took = time.perf_counter() - begin
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": took, "points": len(points), "rss_mb": rss}))
    """
)


def log_run(root: Path, keys: int, steps: int) -> str:
    client = TrackingClient(str(root))
    run_id = client.create_run("0").info.run_id
    start = time.perf_counter()
    for step in range(steps):
        for k in range(keys):
            client.log_metric(run_id, f"key{k}", step * 0.001 + k, step=step)
    client.set_terminated(run_id)
    client.flush()
    took = time.perf_counter() - start
    each = 1e6 * took / (keys * steps)
    print(f"logged {keys * steps:,} points in {took:.1f} s ({each:.1f} µs a point)")
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    temp = Path(tempfile.mkdtemp(prefix="mltrail-history-"))
    try:
        run_id = log_run(temp, args.keys, args.steps)
        results: dict[str, list[dict[str, float]]] = {"index": [], "replay": []}
        for _ in range(args.repeat):
            for way in results:
                out = subprocess.run(
                    [sys.executable, "-c", READ, str(temp), run_id, "key3", way],
                    check=True, capture_output=True, text=True,
                ).stdout
                results[way].append(json.loads(out))
        print(f"one key of {args.keys * args.steps:,} points, fresh process, {args.repeat} each:")
        medians = {}
        for way, rows in results.items():
            seconds = [r["seconds"] for r in rows]
            rss = [r["rss_mb"] for r in rows]
            medians[way] = statistics.median(seconds)
            print(
                f"  {way:7s} {medians[way]:.3f} s (spread {min(seconds):.3f}-{max(seconds):.3f}), "
                f"{rows[0]['points']:,} points, peak RSS {max(rss):.0f} MB"
            )
        print(f"  replay / index: {medians['replay'] / medians['index']:.0f}x")
    finally:
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
