"""The report's charts as plotly.js figure specs: plain dicts of `data` and `layout`.

They are written as JSON into the page and drawn there by plotly.js, so building a report
never imports plotly's Python graph objects (whose validation would cost more than the
rest of the report at 1,000 runs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .data import RunRow, SearchData, as_number, varying_params

Figure = dict[str, Any]
MAX_PARCOORDS_PARAMS = 15
MAX_PARCOORDS_METRICS = 12
_MARGIN = {"l": 60, "r": 20, "t": 40, "b": 50}


def _num(value: float | None) -> float | None:
    """JSON has no NaN: a missing or non-finite value is a gap."""
    return value if value is not None and math.isfinite(value) else None


def _dimension(label: str, values: Sequence[Any]) -> dict[str, Any]:
    """A parallel-coordinates axis: numbers as they are, anything else as named ticks."""
    numbers = [as_number(v) for v in values]
    if all(n is not None for n in numbers):
        return {"label": label, "values": numbers}
    categories = sorted({str(v) for v in values})
    code = {c: i for i, c in enumerate(categories)}
    return {"label": label, "values": [code[str(v)] for v in values],
            "tickvals": list(range(len(categories))), "ticktext": categories}


def parallel_coordinates(
    items: Sequence[dict[str, Any]], metrics: Sequence[dict[str, float]], keys: Sequence[str],
    title: str,
) -> Figure | None:
    """Params -> a metric, one line per run; a menu picks the metric (`keys`)."""
    choices = []
    for key in keys[:MAX_PARCOORDS_METRICS]:
        chosen = [i for i, m in enumerate(metrics) if _num(m.get(key)) is not None]
        params = varying_params(items[i] for i in chosen)
        params = [p for p in params if all(p in items[i] for i in chosen)]
        if len(chosen) < 2 or not params:
            continue
        dims = [_dimension(p, [items[i][p] for i in chosen]) for p in params[:MAX_PARCOORDS_PARAMS]]
        values = [metrics[i][key] for i in chosen]
        dims.append({"label": key, "values": values})
        choices.append((key, dims, values))
    if not choices:
        return None
    key, dims, values = choices[0]
    trace = {"type": "parcoords", "dimensions": dims,
             "line": {"color": values, "colorscale": "Viridis", "showscale": True,
                      "colorbar": {"title": {"text": key}}}}
    layout: dict[str, Any] = {"title": {"text": title}, "margin": {**_MARGIN, "l": 80, "t": 90},
                              "height": 460}
    if len(choices) > 1:
        layout["updatemenus"] = [{
            "x": 0, "y": 1.22, "xanchor": "left", "yanchor": "top",
            "buttons": [{"label": k, "method": "restyle",
                         "args": [{"dimensions": [d], "line.color": [v],
                                   "line.colorbar.title.text": k}]}
                        for k, d, v in choices],
        }]
    return {"data": [trace], "layout": layout}


def runs_parallel_coordinates(runs: Sequence[RunRow]) -> Figure | None:
    counts: dict[str, int] = {}
    for run in runs:
        for key in run.metrics:
            counts[key] = counts.get(key, 0) + 1
    keys = sorted(counts, key=lambda k: (-counts[k], k))
    return parallel_coordinates([r.params for r in runs], [r.metrics for r in runs], keys,
                                "Params against a metric (pick it in the menu)")


def metric_curves(key: str, series: dict[str, list[tuple[int, float]]],
                  names: dict[str, str]) -> Figure:
    """One metric's history per step, a line per run."""
    data = [{"type": "scattergl" if len(points) > 2000 else "scatter", "mode": "lines",
             "name": names.get(run_id, run_id[:8]),
             "x": [s for s, _ in points], "y": [_num(v) for _, v in points]}
            for run_id, points in series.items()]
    layout = {"title": {"text": key}, "xaxis": {"title": {"text": "step"}},
              "yaxis": {"title": {"text": key}}, "margin": _MARGIN, "height": 360,
              "showlegend": len(data) <= 20}
    return {"data": data, "layout": layout}


def optimization_history(search: SearchData) -> Figure:
    """Each trial's objective, and the best so far."""
    xs, ys, best, text = [], [], [], []
    current: float | None = None
    better = (lambda a, b: a < b) if search.direction == "minimize" else (lambda a, b: a > b)
    for trial in sorted(search.trials, key=lambda t: t.number):
        value = _num(trial.value)
        xs.append(trial.number)
        ys.append(value)
        text.append(", ".join(f"{k}={v}" for k, v in sorted(trial.params.items())))
        if value is not None and (current is None or better(value, current)):
            current = value
        best.append(current)
    data = [
        {"type": "scatter", "mode": "markers", "name": search.objective, "x": xs, "y": ys,
         "text": text, "hovertemplate": "trial %{x}: %{y}<br>%{text}<extra></extra>"},
        {"type": "scatter", "mode": "lines", "name": "best so far", "x": xs, "y": best,
         "line": {"shape": "hv"}},
    ]
    layout = {"title": {"text": f"Optimization history ({search.direction} {search.objective})"},
              "xaxis": {"title": {"text": "trial"}},
              "yaxis": {"title": {"text": search.objective}}, "margin": _MARGIN, "height": 360}
    return {"data": data, "layout": layout}


def slice_plots(search: SearchData) -> Figure | None:
    """The objective against each hyperparameter that varied, one panel each."""
    params = varying_params(t.params for t in search.trials)
    if not params:
        return None
    cols = min(3, len(params))
    rows = math.ceil(len(params) / cols)
    data, layout = [], {"title": {"text": f"Slices: {search.objective} against each "
                                          "hyperparameter"},
                        "showlegend": False, "height": 80 + 260 * rows,
                        "margin": {**_MARGIN, "t": 60}}
    gap = 0.08
    width, height = (1 - gap * (cols - 1)) / cols, (1 - gap * (rows - 1)) / rows
    for index, key in enumerate(params):
        row, col = divmod(index, cols)
        suffix = "" if index == 0 else str(index + 1)
        trials = [t for t in search.trials if key in t.params and _num(t.value) is not None]
        numbers = [as_number(t.params[key]) for t in trials]
        numeric = all(n is not None for n in numbers)
        xs = numbers if numeric else [str(t.params[key]) for t in trials]
        data.append({"type": "scatter", "mode": "markers", "x": xs,
                     "y": [t.value for t in trials], "xaxis": f"x{suffix}",
                     "yaxis": f"y{suffix}", "name": key,
                     "marker": {"color": [t.number for t in trials], "colorscale": "Blues",
                                "size": 7},
                     "text": [f"trial {t.number}" for t in trials]})
        x0 = col * (width + gap)
        y1 = 1 - row * (height + gap)
        layout[f"xaxis{suffix}"] = {"domain": [x0, x0 + width], "anchor": f"y{suffix}",
                                    "title": {"text": key},
                                    "type": "linear" if numeric else "category"}
        layout[f"yaxis{suffix}"] = {"domain": [y1 - height, y1], "anchor": f"x{suffix}",
                                    "title": {"text": search.objective if col == 0 else ""}}
    return {"data": data, "layout": layout}


def importance_bars(importance: dict[str, float], method: str) -> Figure | None:
    if not importance:
        return None
    keys = list(importance)[::-1]  # plotly draws the first bar at the bottom
    data = [{"type": "bar", "orientation": "h", "x": [importance[k] for k in keys], "y": keys}]
    layout = {"title": {"text": "Parameter importance"},
              "xaxis": {"title": {"text": method}, "range": [0, 1]},
              "margin": {**_MARGIN, "l": 140}, "height": 120 + 28 * len(keys)}
    return {"data": data, "layout": layout}


def search_parallel_coordinates(search: SearchData) -> Figure | None:
    return parallel_coordinates(
        [t.params for t in search.trials],
        [{search.objective: t.value} if t.value is not None else {} for t in search.trials],
        [search.objective], f"Trials: hyperparameters against {search.objective}")


def plot_figure(plot: dict[str, Any]) -> Figure | None:
    """A plot recorded as numbers (see `data.read_plot_data`) as a figure; None if malformed."""
    small = {"margin": _MARGIN, "height": 340, "width": 420}
    try:
        kind = plot["kind"]
        title = {"text": str(plot.get("title", kind))}
        if kind == "confusion_matrix":
            labels = [str(x) for x in plot["labels"]]
            counts = plot.get("counts", plot.get("matrix"))
            shown = plot.get("normalized", counts)
            return {"data": [{"type": "heatmap", "z": [[float(v) for v in r] for r in shown],
                              "x": labels, "y": labels, "colorscale": "Blues",
                              "text": [[_fmt_count(v) for v in r] for r in counts],
                              "texttemplate": "%{text}"}],
                    "layout": {"title": title, "xaxis": {"title": {"text": "predicted"}},
                               "yaxis": {"title": {"text": "true"}, "autorange": "reversed"},
                               **small}}
        if kind in ("roc_curve", "precision_recall_curve", "curve"):
            x_label, y_label = {"roc_curve": ("false positive rate", "true positive rate"),
                                "precision_recall_curve": ("recall", "precision")}.get(
                kind, (str(plot.get("x_label", "")), str(plot.get("y_label", ""))))
            score = plot.get("auc", plot.get("average_precision"))
            if score is not None:
                title = {"text": f"{title['text']} ({'AUC' if 'auc' in plot else 'AP'} "
                                 f"{float(score):.3f})"}
            return {"data": [{"type": "scatter", "mode": "lines",
                              "x": [float(v) for v in plot["x"]],
                              "y": [float(v) for v in plot["y"]]}],
                    "layout": {"title": title, "xaxis": {"title": {"text": x_label}},
                               "yaxis": {"title": {"text": y_label}}, **small}}
        if kind == "feature_importance":
            names = [str(x) for x in plot["features"]]
            values = plot["values"]
            series = values if values and isinstance(values[0], list) else [values]
            data = [{"type": "bar", "orientation": "h", "y": names, "name": f"class {i}",
                     "x": [float(v) for v in row]} for i, row in enumerate(series)]
            return {"data": data, "layout": {"title": title, "showlegend": len(series) > 1,
                                             **small, "margin": {**_MARGIN, "l": 120}}}
        if kind == "bar":
            return {"data": [{"type": "bar", "x": [str(x) for x in plot["labels"]],
                              "y": [float(v) for v in plot["values"]]}],
                    "layout": {"title": title, **small}}
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return None


def _fmt_count(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else f"{number:.3g}"
