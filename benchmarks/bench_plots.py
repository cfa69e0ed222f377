"""What the plots, estimator.html and post-training metrics cost, and the options weighed.

    python benchmarks/bench_plots.py [--repeat 15]

Measured side by side in this one process (medians, with the quartiles):

1. drawing one run's three classifier figures (confusion matrix, ROC, PR on the
   breast-cancer data): mltrail's SVG writer vs matplotlib through scikit-learn's
   Display classes saved as PNG (what MLflow does), plus matplotlib's import time
   in a fresh interpreter;
2. the xgboost importance plot (data, SVG and plots.json written) per train;
3. estimator.html for a fitted 10-tree forest: `estimator_html_repr` in the
   training thread vs what the training thread pays now (pickling the estimator
   for the helper process);
4. one post-training metric call, `accuracy_score(y_test, y_pred)`: autolog off,
   autolog on with `y_pred` from a logged model (logs a metric and rewrites
   metric_info.json), and autolog on with an array no logged model produced;
5. the wine forest workload (10 fits): CPU time of this process, bare vs
   defaults vs `log_plots=False`, paired repetitions. CPU time leaves out the
   helper process by design (it is off the training path) and is steadier than
   wall time on a loaded machine; run.py gives the wall-time ratios.

It measures; it asserts nothing. The machine is shared: say how loaded it was.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]


def timed(func: Callable[[], Any], repeat: int, clock: Callable[[], float] = time.perf_counter
          ) -> list[float]:
    times = []
    for _ in range(repeat):
        start = clock()
        func()
        times.append(clock() - start)
    return times


def summary(times: list[float], unit: float = 1e3, suffix: str = "ms") -> str:
    ordered = sorted(times)
    q1, q3 = ordered[len(ordered) // 4], ordered[(3 * len(ordered)) // 4]
    return (f"{statistics.median(times) * unit:.3f} {suffix} "
            f"(q1 {q1 * unit:.3f}, q3 {q3 * unit:.3f}, n={len(times)})")


def figures(repeat: int) -> None:
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    from mltrail import plots

    x, y = load_breast_cancer(return_X_y=True)
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    y_pred, score = model.predict(x), model.predict_proba(x)[:, 1]

    def ours() -> None:
        found = [plots.confusion_matrix("cm", y, y_pred),
                 plots.roc_curve("roc", y, score, 1, estimator="RF"),
                 plots.precision_recall_curve("pr", y, score, 1, estimator="RF")]
        for plot in found:
            plots.render_svg(plot)

    code = ("import time; t = time.perf_counter(); import matplotlib; matplotlib.use('Agg'); "
            "import matplotlib.pyplot; print(time.perf_counter() - t)")
    imports = [float(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                    text=True, check=True).stdout) for _ in range(3)]
    print(f"matplotlib import (fresh interpreter): {summary(imports, 1, 's')}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    def theirs() -> None:
        for display in (ConfusionMatrixDisplay.from_predictions(y, y_pred, normalize="true",
                                                                cmap="Blues"),
                        RocCurveDisplay.from_predictions(y, score),
                        PrecisionRecallDisplay.from_predictions(y, score)):
            display.figure_.savefig(io.BytesIO(), format="png", dpi=175)
            plt.close(display.figure_)

    theirs()
    ours_times, theirs_times = [], []
    for _ in range(repeat):
        ours_times += timed(ours, 1)
        theirs_times += timed(theirs, 1)
    print(f"three classifier figures, mltrail data + SVG: {summary(ours_times)}")
    print(f"three classifier figures, matplotlib PNG:     {summary(theirs_times)}")
    np.asarray(0)


def importance_plot(repeat: int) -> None:
    """What `log_plots` adds to each xgboost train: the importance data and its SVG."""
    import numpy as np
    import xgboost as xgb

    from mltrail import plots

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2_000, 20))
    booster = xgb.train({"max_depth": 6, "nthread": 1}, xgb.DMatrix(x, label=x[:, 0]), 50)
    scores = booster.get_score(importance_type="weight")
    folder = Path(tempfile.mkdtemp(prefix="mltrail-bench-"))
    times = timed(lambda: plots.write(folder, [plots.feature_importance("weight", scores)]),
                  repeat)
    print(f"xgboost importance plot + plots.json, 20 features, per train: {summary(times)}")


def estimator_html(repeat: int) -> None:
    import pickle

    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.utils import estimator_html_repr

    x, y = load_wine(return_X_y=True)
    model = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(x, y)
    try:
        import cloudpickle

        dumps = cloudpickle.dumps
    except ImportError:
        dumps = pickle.dumps
    estimator_html_repr(model)
    html, handoff = [], []
    for _ in range(repeat):
        html += timed(lambda: estimator_html_repr(model), 1)
        handoff += timed(lambda: dumps(model), 1)
    print(f"estimator_html_repr, 10-tree forest (in the training thread): {summary(html)}")
    print(f"pickling it for the helper process (what the thread pays):    {summary(handoff)}")


def metric_calls(repeat: int) -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    import mltrail

    mltrail.set_tracking_uri(tempfile.mkdtemp(prefix="mltrail-bench-"))
    mltrail.autolog()
    import sklearn.metrics as metrics  # patched on import

    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=0)
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(x_train, y_train)
    y_pred = model.predict(x_test)  # from a logged model
    other = y_pred.copy()  # the same numbers, from no logged model
    calls = 20
    off, logged, unlogged = [], [], []
    for _ in range(repeat):
        mltrail.autolog(disable=True)
        off += [t / calls for t in timed(
            lambda: [metrics.accuracy_score(y_test, other) for _ in range(calls)], 1)]
        mltrail.autolog()
        unlogged += [t / calls for t in timed(
            lambda: [metrics.accuracy_score(y_test, other) for _ in range(calls)], 1)]
        logged += [t / calls for t in timed(
            lambda: [metrics.accuracy_score(y_test, y_pred) for _ in range(calls)], 1)]
    mltrail.flush()
    print(f"accuracy_score call, autolog off:                 {summary(off, 1e6, 'us')}")
    print(f"accuracy_score call, on, array from no model:     {summary(unlogged, 1e6, 'us')}")
    print(f"accuracy_score call, on, logged model's predict:  {summary(logged, 1e6, 'us')}")
    mltrail.autolog(disable=True)


def forest_cpu(repeat: int) -> None:
    from workloads import WORKLOADS

    import mltrail

    train = WORKLOADS["rf_wine_x10"]()
    mltrail.set_tracking_uri(tempfile.mkdtemp(prefix="mltrail-bench-"))
    modes = {"bare": None, "defaults": {}, "log_plots=False": {"log_plots": False}}
    result: dict[str, list[float]] = {m: [] for m in modes}

    def run(options: dict[str, Any] | None) -> float:
        if options is None:
            mltrail.autolog(disable=True)
        else:
            mltrail.autolog(**options)
        start = time.process_time()
        train(None)
        mltrail.flush()
        return time.process_time() - start

    for options in modes.values():
        run(options)  # warm-up: imports, the helper process's start
    for _ in range(repeat):
        for mode, options in modes.items():
            result[mode].append(run(options))
    for mode, times in result.items():
        ratios = [t / b for t, b in zip(times, result["bare"], strict=True)]
        print(f"rf_wine_x10 CPU, {mode:16}: {summary(times)}, "
              f"ratio to bare {statistics.median(ratios):.2f}")
    mltrail.autolog(disable=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with open("/proc/loadavg") as handle:
        print(f"load average at start: {handle.read().split()[:3]}")
    figures(args.repeat)
    importance_plot(args.repeat)
    estimator_html(args.repeat)
    metric_calls(args.repeat)
    forest_cpu(args.repeat)


if __name__ == "__main__":
    main()
