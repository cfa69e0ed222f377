"""Cost of hyperopt autolog per trial: fmin with 1,000 trials of a trivial objective.

The objective does almost nothing, so the times are hyperopt's own per-trial
cost (suggesting a point, bookkeeping) against the same plus autolog's (a
child run per trial: create, params, metrics, end with its fsync, to a local
store). Bare and autologged searches alternate in one process, with the same
rstate seed, so drift hits both alike; the median of the repetitions is
compared, and the added time per trial printed: wall time, and the process's
CPU time (user + system), which other load on the machine disturbs less.

Run: python benchmarks/bench_hyperopt.py [--trials 1000] [--repeat 3] [--algo tpe|rand]
     [--profile]   (one autologged search under cProfile, top functions by own time)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any


def _space() -> dict[str, Any]:
    from hyperopt import hp
    from hyperopt.pyll import scope

    return {
        "x": hp.uniform("x", -5, 5),
        "lr": hp.loguniform("lr", -3, 0),
        "depth": scope.int(hp.quniform("depth", 2, 12, 1)),
        "kind": hp.choice("kind", ["a", "b", "c"]),
        "seed": 0,
    }


def _objective(point: dict[str, Any]) -> dict[str, Any]:
    loss = (point["x"] - 1.0) ** 2 + point["lr"] + 0.01 * point["depth"]
    return {"loss": loss, "status": "ok"}


def _search(trials: int, algo_name: str, seed: int) -> Any:
    import numpy as np
    from hyperopt import Trials, fmin, rand, tpe

    algo = {"tpe": tpe.suggest, "rand": rand.suggest}[algo_name]
    found = Trials()
    fmin(
        _objective,
        _space(),
        algo=algo,
        max_evals=trials,
        trials=found,
        rstate=np.random.default_rng(seed),
        show_progressbar=False,
    )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--algo", choices=("tpe", "rand"), default="tpe")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    import mltrail

    with tempfile.TemporaryDirectory(prefix="mltrail-bench-") as root:
        mltrail.set_tracking_uri(root)
        mltrail.set_experiment("bench-hyperopt")
        if args.profile:
            _profile(args)
            return
        times: dict[str, list[tuple[float, float]]] = {"bare": [], "autolog": []}
        _search(20, args.algo, 1)  # untimed: imports, the store's folders, first-use caches
        for rep in range(args.repeat):
            for mode in ("bare", "autolog") if rep % 2 else ("autolog", "bare"):
                mltrail.hyperopt.autolog(disable=(mode == "bare"))
                wall, cpu = time.perf_counter(), time.process_time()
                trials = _search(args.trials, args.algo, seed=rep)
                times[mode].append((time.perf_counter() - wall, time.process_time() - cpu))
                assert len(trials.trials) == args.trials
        runs = mltrail.search_runs(
            filter_string="tags.`hyperopt.trial_id` = '0'", output_format="list"
        )
    print(f"trials={args.trials} algo={args.algo} repeat={args.repeat} (local store)")
    print(f"searches logged: {len(runs)} (one trial-0 child run each)")
    for index, kind in enumerate(("wall", "cpu")):
        bare = [t[index] for t in times["bare"]]
        logged = [t[index] for t in times["autolog"]]
        print(f"{kind}: bare    s:", " ".join(f"{t:.3f}" for t in bare))
        print(f"{kind}: autolog s:", " ".join(f"{t:.3f}" for t in logged))
        _report(kind, statistics.median(bare), statistics.median(logged), args.trials)


def _report(kind: str, bare_median: float, logged_median: float, trials: int) -> None:
    per_trial_bare = bare_median / trials * 1000
    per_trial_added = (logged_median - bare_median) / trials * 1000
    print(
        f"{kind}: median bare {bare_median:.3f} s, autolog {logged_median:.3f} s, "
        f"ratio {logged_median / bare_median:.3f}; per trial: hyperopt {per_trial_bare:.3f} ms, "
        f"autolog adds {per_trial_added:.3f} ms "
        f"({per_trial_added / per_trial_bare * 100:.1f}% of hyperopt's own)"
    )


def _profile(args: argparse.Namespace) -> None:
    import cProfile
    import pstats

    import mltrail

    mltrail.hyperopt.autolog()
    _search(20, args.algo, 1)
    profiler = cProfile.Profile()
    profiler.enable()
    _search(args.trials, args.algo, 0)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
