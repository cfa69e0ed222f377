#!/usr/bin/env python3
"""Peer suites: the libraries' own tests, run with autolog off and with autolog on.

Usage (from anywhere; uses whatever ``mltrail`` the Python running it imports):

    python3 tests/peer/run.py                     # every suite, both modes
    python3 tests/peer/run.py sklearn hyperopt    # only these suites
    python3 tests/peer/run.py --tree /work/main   # that checkout's src/ and integrations/
    python3 tests/peer/run.py --jobs 1            # one pytest process at a time
    python3 tests/peer/run.py --list              # the suites and what they run

Each suite is run twice by pytest (``-q -p no:cacheprovider``, the project's own
pytest settings and conftest left out): once plainly ("off") and once with the
plugin ``peer_autolog`` ("on"), which sets MLTRAIL_STRICT=1 and a temporary
MLTRAIL_TRACKING_URI and calls ``mltrail.autolog()`` before the framework is
imported. The plugin ``peer_outcomes`` records each test's outcome in both modes.
The script exits 1 if any test passes with autolog off and fails, errors or is
missing with it on (each one is printed with the error's first line), if a module
fails to collect only with autolog on, if a pytest run breaks down, or if an entry
of KNOWN_DIFFERENT no longer differs (so that list stays true).

Suites (SUITES below): scikit-learn's test_search.py, test_validation.py and
test_pipeline.py from the installed package (its own conftest applies);
scikit-learn's estimator checks over 15 common estimators (peer_sklearn_checks.py);
hyperopt's shipped hyperopt/tests minus the deselections in HYPEROPT_DESELECT;
Optuna's test_optimize.py and test_trial.py, from the sdist of the installed
version, which the script downloads with pip (OPTUNA_TESTS; they need fakeredis);
xgboost (peer_xgboost.py: its tests are in neither wheel nor sdist); and n_jobs=2
paths under the loky, threading and multiprocessing backends (peer_parallel.py).

Wall time of the whole comparison, --jobs 2 on the 2-core machine with other work
loading it (load average 4-6), scikit-learn 1.9.1, hyperopt 0.3.0, xgboost 3.2.0:
433 s with the issue-12 fixes, no differences (off/on per suite: sklearn 232/286 s,
sklearn-checks 31/48 s, hyperopt 76/116 s, xgboost 5/6 s, parallel 22/37 s); 589 s
before them, with 260 differences (runs with many differences are slower: failing
pools, tracebacks). Alone on an idle machine, autolog off: sklearn 61 s,
sklearn-checks 11 s, parallel 11 s, xgboost 5 s. The optuna suite alone (Optuna
5.1.0, 139 tests, the other suites' runs not measured with it): 56 s off, 57 s on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

HERE = Path(__file__).resolve().parent

def _package_dir(name: str) -> Path:
    spec = find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"peer suites: {name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


# hyperopt/tests deselections, applied identically in both modes. Each one is a
# test that cannot run here or is too slow for the budget, never one that differs.
HYPEROPT_IGNORE = {
    # imports bson (pymongo), not installed; it only defines Mongo-era helpers
    "tests/test_base.py": "needs bson (pymongo), not installed",
    # imports hyperopt.tests.test_base, so bson as well
    "tests/unit/test_rand.py": "imports test_base, which needs bson (pymongo)",
    "tests/integration/test_mongoexp.py": "needs a MongoDB server and pymongo",
    "tests/integration/test_spark.py": "needs pyspark/py4j and a Spark session",
}
HYPEROPT_DESELECT = {
    # 36 s alone with autolog off (a third of the suite's time); the other
    # *Tester::test_basic domains cover the same fmin/tpe paths
    "tests/unit/test_domains.py::gauss_wave2Tester::test_basic": "slow (36 s off)",
}


# Optuna's tests are in its sdist only: the script downloads the sdist of the installed
# version (pip, as CI can) and runs this focused subset: the optimize loop (catch,
# callbacks, n_jobs, timeouts, storages) and the Trial API (suggest_*, report,
# should_prune, user attrs), the two things autolog patches.
OPTUNA_TESTS = ["tests/study_tests/test_optimize.py", "tests/trial_tests/test_trial.py"]
# Deselected in both modes, each with its reason (never a test that differs).
OPTUNA_DESELECT = {
    "not grpc": "the storage modes through a gRPC proxy need grpcio, not installed",
    "not journal_redis": "fakeredis without its Lua extra (lupa) has no EVAL, which "
    "Optuna's Redis journal needs: these fail with autolog off too",
}


def _optuna_root() -> Path:
    return Path(tempfile.gettempdir()) / f"mltrail-peer-optuna-{version('optuna')}"


def _fetch_optuna_tests() -> None:
    """Extract the installed Optuna version's tests/ from its sdist, once per version."""
    root = _optuna_root()
    if (root / "tests" / "conftest.py").exists():
        return
    with tempfile.TemporaryDirectory(prefix="mltrail-peer-sdist-") as download:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             f"optuna=={version('optuna')}", "-d", download],
            check=True,
        )
        (sdist,) = Path(download).glob("optuna-*.tar.gz")
        staging = Path(tempfile.mkdtemp(prefix="mltrail-peer-optuna-", dir=root.parent))
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.split("/")[1:2] == ["tests"]]
            tar.extractall(staging, members=members, filter="data")
        (top,) = staging.iterdir()
        if root.exists():
            shutil.rmtree(root)
        top.rename(root)
        shutil.rmtree(staging, ignore_errors=True)


@dataclass
class Suite:
    name: str
    what: str
    rootdir: Path
    paths: list[str]  # relative to rootdir
    extra: list[str] = field(default_factory=list)
    prepare: Callable[[], None] | None = None  # fetches the tests before the runs


def suites() -> list[Suite]:
    sk = _package_dir("sklearn")
    hyp = _package_dir("hyperopt")
    hyperopt_extra = [f"--ignore={hyp / p}" for p in HYPEROPT_IGNORE]
    hyperopt_extra += [f"--deselect={p}" for p in HYPEROPT_DESELECT]
    return [
        Suite(
            "sklearn",
            "scikit-learn's model_selection/tests/test_search.py, test_validation.py, "
            "tests/test_pipeline.py",
            sk,
            [
                "model_selection/tests/test_search.py",
                "model_selection/tests/test_validation.py",
                "tests/test_pipeline.py",
            ],
        ),
        Suite(
            "sklearn-checks",
            "parametrize_with_checks over 15 common estimators (peer_sklearn_checks.py)",
            HERE,
            ["peer_sklearn_checks.py"],
        ),
        Suite(
            "hyperopt",
            "hyperopt's hyperopt/tests, minus HYPEROPT_IGNORE/HYPEROPT_DESELECT",
            hyp,
            ["tests"],
            hyperopt_extra,
        ),
        Suite(
            "xgboost",
            "callbacks, early stopping, cv, eval_set, xgb_model=, pickling, "
            "positional-args warning, xgboost.testing helpers (peer_xgboost.py)",
            HERE,
            ["peer_xgboost.py"],
        ),
        Suite(
            "optuna",
            "Optuna's tests/study_tests/test_optimize.py and tests/trial_tests/test_trial.py "
            "from the installed version's sdist (downloaded with pip)",
            _optuna_root(),
            OPTUNA_TESTS,
            [f"-k={' and '.join(OPTUNA_DESELECT)}"],
            prepare=_fetch_optuna_tests,
        ),
        Suite(
            "parallel",
            "n_jobs=2 vs sequential under loky/threading/multiprocessing (peer_parallel.py)",
            HERE,
            ["peer_parallel.py"],
        ),
    ]


# Tests known to pass with autolog off and fail with it on, keyed "suite::nodeid",
# each with the reason it is accepted. Empty: every difference is a bug to fix.
# An entry that no longer differs is reported and fails the run: remove it then.
KNOWN_DIFFERENT: dict[str, str] = {
    # "sklearn::model_selection/tests/test_search.py::test_x": "why it must differ",
}

BAD_ON = {"failed", "error", "collect-error"}
GOOD_OFF = {"passed", "xpassed"}
RUN_TIMEOUT = 1500  # seconds per pytest run; a hang must not stall CI


@dataclass
class Result:
    suite: str
    mode: str
    seconds: float
    returncode: int
    tests: dict[str, list[str]]
    log: Path
    broken: str = ""


def _env(tree: str | None) -> dict[str, str]:
    env = dict(os.environ)
    parts = [str(HERE)]
    if tree:
        parts += [str(Path(tree, "src").resolve()), str(Path(tree, "integrations").resolve())]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    for name in ("MLTRAIL_STRICT", "MLTRAIL_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)  # the "on" plugin sets them; "off" must not see them
    env["PYTHONHASHSEED"] = "0"
    return env


def run_one(suite: Suite, mode: str, out: Path, env: dict[str, str]) -> Result:
    outcomes = out / f"{suite.name}-{mode}.json"
    log = out / f"{suite.name}-{mode}.log"
    cwd = out / f"cwd-{suite.name}-{mode}"
    cwd.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-c",
        str(HERE / "peer.ini"),
        "--rootdir",
        str(suite.rootdir),
        "-p",
        "peer_outcomes",
        "--durations=10",  # the slowest tests, in each log
    ]
    if suite.rootdir == HERE:
        cmd += ["--confcutdir", str(HERE)]  # keep tests/conftest.py (the project's) out
    if mode == "on":
        cmd += ["-p", "peer_autolog"]
    cmd += suite.extra + [str(suite.rootdir / p) for p in suite.paths]
    run_env = dict(
        env,
        MLTRAIL_PEER_OUTCOMES=str(outcomes),
        MLTRAIL_PEER_ROOT=str(out / f"tracking-{suite.name}-{mode}"),
    )
    start = time.monotonic()
    broken = ""
    with open(log, "w", encoding="utf-8") as f:
        f.write(" ".join(cmd) + "\n\n")
        f.flush()
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=run_env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            returncode = proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
            broken = f"timed out after {RUN_TIMEOUT} s"
    seconds = time.monotonic() - start
    tests: dict[str, list[str]] = {}
    if outcomes.exists():
        data = json.loads(outcomes.read_text(encoding="utf-8"))
        tests = data["tests"]
    elif not broken:
        broken = f"no outcomes written (pytest exit {returncode})"
    if not broken and returncode not in (0, 1, 5):
        broken = f"pytest exit {returncode} (interrupted, internal or usage error)"
    print(
        f"  {suite.name:15} {mode:3}  {seconds:6.1f} s  {_counts(tests)}"
        + (f"  BROKEN: {broken}" if broken else ""),
        flush=True,
    )
    return Result(suite.name, mode, seconds, returncode, tests, log, broken)


def _counts(tests: dict[str, list[str]]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for outcome, _ in tests.values():
        counts[outcome] += 1
    order = ["passed", "failed", "error", "skipped", "xfailed", "xpassed", "collect-error"]
    return f"{len(tests)} tests: " + ", ".join(f"{counts[k]} {k}" for k in order if counts[k])


def compare(off: Result, on: Result) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(differences as (key, on outcome, message), known entries that no longer differ)."""
    diffs = []
    for nodeid, (outcome, _) in sorted(off.tests.items()):
        if outcome not in GOOD_OFF:
            continue
        got, message = on.tests.get(nodeid, ["missing", "not run with autolog on"])
        if got in BAD_ON or got == "missing":
            diffs.append((f"{off.suite}::{nodeid}", got, message))
    for nodeid, (outcome, message) in sorted(on.tests.items()):
        if outcome == "collect-error" and off.tests.get(nodeid, [""])[0] != "collect-error":
            diffs.append((f"{on.suite}::{nodeid}", outcome, message))
    found = {key for key, _, _ in diffs}
    stale = [
        key for key in KNOWN_DIFFERENT if key.split("::", 1)[0] == off.suite and key not in found
    ]
    return diffs, stale


def main(argv: list[str] | None = None) -> int:
    all_suites = suites()
    names = [s.name for s in all_suites]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", nargs="*", help=f"suites to run: {', '.join(names)} (all)")
    parser.add_argument("--tree", help="a checkout whose src/ and integrations/ to test")
    parser.add_argument("--jobs", type=int, default=2, help="pytest runs at once (2)")
    parser.add_argument("--out", help="folder for logs and outcomes (a temporary one)")
    parser.add_argument("--list", action="store_true", help="print the suites and exit")
    args = parser.parse_args(argv)
    unknown = set(args.suite) - set(names)
    if unknown:
        parser.error(f"unknown suite(s) {sorted(unknown)}; choose from {names}")
    chosen = [s for s in all_suites if not args.suite or s.name in args.suite]
    if args.list:
        for s in all_suites:
            print(f"{s.name:15} {s.what}\n{'':15} {s.rootdir}: {' '.join(s.paths)}")
        for path, why in {**HYPEROPT_IGNORE, **HYPEROPT_DESELECT}.items():
            print(f"{'':15} hyperopt deselected: {path} ({why})")
        for expr, why in OPTUNA_DESELECT.items():
            print(f"{'':15} optuna deselected: -k {expr!r} ({why})")
        return 0

    env = _env(args.tree)
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import mltrail, mltrail_sklearn; "
            "print(mltrail.__file__); print(mltrail_sklearn.__file__)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="mltrail-peer-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"peer suites: mltrail from {where[0]}, integrations from {Path(where[1]).parent.parent}")
    print(f"logs and outcomes in {out}; {args.jobs} pytest run(s) at once")

    for s in chosen:
        if s.prepare is not None:
            s.prepare()
    jobs = [(s, mode) for s in chosen for mode in ("off", "on")]
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda job: run_one(job[0], job[1], out, env), jobs))
    total = time.monotonic() - start
    by_key = {(r.suite, r.mode): r for r in results}

    failed = False
    print(f"\n{'suite':15} {'off':>40} {'s':>7}   {'on':>40} {'s':>7}")
    for s in chosen:
        off, on = by_key[(s.name, "off")], by_key[(s.name, "on")]
        print(
            f"{s.name:15} {_counts(off.tests):>40} {off.seconds:7.1f}   "
            f"{_counts(on.tests):>40} {on.seconds:7.1f}"
        )
    print(f"total wall time {total:.1f} s")

    for s in chosen:
        off, on = by_key[(s.name, "off")], by_key[(s.name, "on")]
        for r in (off, on):
            if r.broken:
                failed = True
                print(f"\nBROKEN RUN {r.suite} ({r.mode}): {r.broken}; see {r.log}")
        diffs, stale = compare(off, on)
        known = [d for d in diffs if d[0] in KNOWN_DIFFERENT]
        new = [d for d in diffs if d[0] not in KNOWN_DIFFERENT]
        if new:
            failed = True
            print(
                f"\n{s.name}: {len(new)} test(s) pass with autolog off and not with it on"
                f" (log: {on.log})"
            )
            for key, got, message in new:
                print(f"  {got:13} {key}\n{'':16}{message}")
        for key, got, _ in known:
            print(f"\n{s.name}: known difference ({got}) {key}: {KNOWN_DIFFERENT[key]}")
        for key in stale:
            failed = True
            print(
                f"\n{s.name}: KNOWN_DIFFERENT lists {key}, which no longer differs;"
                " remove the entry"
            )
    print("\npeer suites:", "DIFFERENCES FOUND" if failed else "no differences")
    if not args.out and not failed:
        shutil.rmtree(out, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
