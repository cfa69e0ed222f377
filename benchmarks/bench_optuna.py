"""Cost of Optuna autolog per trial: a study of a trivial objective, bare and autologged.

The objective does almost nothing, so the times are Optuna's own per-trial cost
(sampling, the in-memory storage) against the same plus autolog's (a child run
per trial: create, params, the value, an intermediate value, end with its fsync,
to a local store). Bare and autologged studies alternate in one process, with the
same sampler seed, so drift hits both alike; the median of the repetitions is
compared, and the added time per trial printed: wall time, and the process's CPU
time (user + system), which other load on the machine disturbs less.

Run: python benchmarks/bench_optuna.py [--trials 500] [--repeat 3] [--sampler random|tpe]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any


def _objective(trial: Any) -> float:
    x = trial.suggest_float("x", -5, 5)
    lr = trial.suggest_float("lr", 0.05, 1.0, log=True)
    depth = trial.suggest_int("depth", 2, 12)
    kind = trial.suggest_categorical("kind", ["a", "b", "c"])
    value = (x - 1.0) ** 2 + lr + 0.01 * depth + (0.1 if kind == "b" else 0.0)
    trial.report(value, 0)
    return value


def _study(trials: int, sampler_name: str, seed: int) -> Any:
    import optuna

    sampler = {"random": optuna.samplers.RandomSampler,
               "tpe": optuna.samplers.TPESampler}[sampler_name](seed=seed)
    study = optuna.create_study(sampler=sampler)
    study.optimize(_objective, n_trials=trials)
    return study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sampler", choices=("random", "tpe"), default="random")
    args = parser.parse_args()

    import optuna

    import mltrail

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="mltrail-bench-") as root:
        mltrail.set_tracking_uri(root)
        mltrail.set_experiment("bench-optuna")
        times: dict[str, list[tuple[float, float]]] = {"bare": [], "autolog": []}
        mltrail.optuna.autolog()
        _study(20, args.sampler, 1)  # untimed: imports, the store's folders, first-use caches
        for rep in range(args.repeat):
            for mode in ("bare", "autolog") if rep % 2 else ("autolog", "bare"):
                mltrail.optuna.autolog(disable=(mode == "bare"))
                wall, cpu = time.perf_counter(), time.process_time()
                study = _study(args.trials, args.sampler, seed=rep)
                times[mode].append((time.perf_counter() - wall, time.process_time() - cpu))
                assert len(study.trials) == args.trials
        runs = mltrail.search_runs(
            filter_string="tags.`optuna.trial_number` = '0'", output_format="list"
        )
    print(f"trials={args.trials} sampler={args.sampler} repeat={args.repeat} (local store)")
    print(f"studies logged: {len(runs)} (one trial-0 child run each)")
    for index, kind in enumerate(("wall", "cpu")):
        bare = [t[index] for t in times["bare"]]
        logged = [t[index] for t in times["autolog"]]
        print(f"{kind}: bare    s:", " ".join(f"{t:.3f}" for t in bare))
        print(f"{kind}: autolog s:", " ".join(f"{t:.3f}" for t in logged))
        bare_median, logged_median = statistics.median(bare), statistics.median(logged)
        per_trial_bare = bare_median / args.trials * 1000
        per_trial_added = (logged_median - bare_median) / args.trials * 1000
        print(
            f"{kind}: median bare {bare_median:.3f} s, autolog {logged_median:.3f} s, "
            f"ratio {logged_median / bare_median:.3f}; per trial: optuna {per_trial_bare:.3f} ms,"
            f" autolog adds {per_trial_added:.3f} ms"
        )


if __name__ == "__main__":
    main()
