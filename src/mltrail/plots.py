"""Plot data recorded after training, and the images drawn from it without a plotting library.

MLflow's autolog draws its plots with matplotlib: about 0.8 s to import and
60-100 ms per figure, more than a small model takes to fit. Here the training
thread records only the numbers (a confusion matrix is a few counts; a curve is
at most `MAX_POINTS` points, thinned) and writes each image as SVG text, which
takes well under a millisecond, needs no plotting library, and which the MLflow
UI's artifact viewer displays (it shows jpg, jpeg, png, gif, bmp and svg files).
Images keep MLflow's artifact names with the `.svg` extension:
`training_confusion_matrix.svg`, `training_roc_curve.svg`,
`training_precision_recall_curve.svg`, `feature_importance_<type>.svg`.

The same numbers go into one JSON artifact per run, `plots.json`, so a report
draws the curves without computing them again. Its schema (version 1)::

    {"version": 1,
     "plots": [
       {"name": "training_confusion_matrix", "kind": "confusion_matrix",
        "title": "Normalized confusion matrix",
        "labels": ["0", "1", "2"],            # sorted labels of y and predictions
        "counts": [[50.0, 1.0, 0.0], ...],    # rows true, columns predicted (weighted)
        "normalized": [[0.98, 0.02, 0.0], ...]},  # each row divided by its sum
       {"name": "training_roc_curve", "kind": "roc_curve", "title": "ROC curve",
        "estimator": "RandomForestClassifier", "pos_label": "1",
        "x": [...], "y": [...],               # false and true positive rate
        "auc": 0.97},
       {"name": "training_precision_recall_curve", "kind": "precision_recall_curve",
        "title": "Precision recall curve", "estimator": "...", "pos_label": "1",
        "x": [...], "y": [...],               # recall (falling to 0) and precision
        "average_precision": 0.95},
       {"name": "feature_importance_weight", "kind": "feature_importance",
        "title": "Feature Importance (weight)", "importance_type": "weight",
        "features": ["f3", "f0", ...],        # ascending by importance
        "values": [1.0, 4.0, ...]}            # or one list per class
     ]}

Besides these images, `render_svg` draws two chart kinds that are not recorded per run
but composed by other pages (a search's `search_report.html`):
`{"kind": "scatter", "title", "x_label", "y_label", "x": [...], "y": [...]}` with optional
`"shade"` (0..1 per point, light to dark blue), `"line_x"`/`"line_y"`/`"line_label"`
(a step line drawn over the points, orange), `"categories"` (x values are indices into
it, drawn as named ticks), `"log_x"` and `"width"`/`"height"`; and `feature_importance`
above (with an optional `"height"`), for any named bars.

Curves follow scikit-learn's `roc_curve` (with its default `drop_intermediate`)
and `precision_recall_curve`; the tests check the numbers against scikit-learn.
Nothing here imports a framework; numpy is imported when a plot is computed.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

PLOTS_FILE = "plots.json"
SCHEMA_VERSION = 1
MAX_POINTS = 300  # per curve: enough for a smooth line, small enough for a JSON artifact


# data ------------------------------------------------------------------------------


def _weights(sample_weight: Any, n: int) -> Any:
    import numpy as np

    if sample_weight is None:
        return np.ones(n)
    return np.asarray(sample_weight, dtype=np.float64).reshape(-1)


def confusion_matrix(
    name: str, y_true: Any, y_pred: Any, sample_weight: Any = None
) -> dict[str, Any]:
    """Counts of (true, predicted) label pairs over the sorted labels of both, and the
    same counts divided by each row's sum (the normalisation MLflow's image shows)."""
    import numpy as np

    y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    labels = np.union1d(y_true, y_pred)
    k = len(labels)
    index = np.searchsorted(labels, y_true) * k + np.searchsorted(labels, y_pred)
    counts = np.bincount(index, weights=_weights(sample_weight, len(y_true)),
                         minlength=k * k).reshape(k, k)
    totals = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, totals, out=np.zeros_like(counts), where=totals != 0)
    return {"name": name, "kind": "confusion_matrix", "title": "Normalized confusion matrix",
            "labels": [_label(v) for v in labels], "counts": counts.tolist(),
            "normalized": normalized.tolist()}


def _label(value: Any) -> str:
    return str(value.item() if hasattr(value, "item") else value)


def _binary_counts(y_true: Any, score: Any, pos_label: Any, sample_weight: Any) -> Any:
    """Cumulative weighted true and false positives at each distinct score, highest first."""
    import numpy as np

    is_pos = np.asarray(y_true).reshape(-1) == pos_label
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    weights = _weights(sample_weight, len(score))
    order = np.argsort(score, kind="mergesort")[::-1]
    score, is_pos, weights = score[order], is_pos[order], weights[order]
    last = np.r_[np.nonzero(np.diff(score))[0], len(score) - 1]
    tps = np.cumsum(weights * is_pos)[last]
    fps = np.cumsum(weights * ~is_pos)[last]
    return tps, fps


def _thin(*columns: Any) -> list[list[float]]:
    """At most MAX_POINTS evenly spaced points of the curve, its ends kept."""
    import numpy as np

    n = len(columns[0])
    if n > MAX_POINTS:
        keep = np.unique(np.round(np.linspace(0, n - 1, MAX_POINTS)).astype(int))
        columns = tuple(np.asarray(c)[keep] for c in columns)
    return [np.asarray(c, dtype=np.float64).tolist() for c in columns]


def roc_curve(
    name: str, y_true: Any, score: Any, pos_label: Any, sample_weight: Any = None,
    estimator: str = "",
) -> dict[str, Any]:
    """False and true positive rates (points that lie on a straight line dropped), AUC."""
    import numpy as np

    tps, fps = _binary_counts(y_true, score, pos_label, sample_weight)
    if len(fps) > 2:  # keep the corners only
        corners = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        tps, fps = tps[corners], fps[corners]
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    x, y = _thin(fpr, tpr)
    return {"name": name, "kind": "roc_curve", "title": "ROC curve", "estimator": estimator,
            "pos_label": _label(pos_label), "x": x, "y": y, "auc": area}


def precision_recall_curve(
    name: str, y_true: Any, score: Any, pos_label: Any, sample_weight: Any = None,
    estimator: str = "",
) -> dict[str, Any]:
    """Recall and precision at each threshold, recall falling to 0 as scikit-learn returns
    them, and average precision."""
    import numpy as np

    tps, fps = _binary_counts(y_true, score, pos_label, sample_weight)
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted != 0)
    recall = tps / tps[-1] if tps[-1] > 0 else np.ones_like(tps)
    precision, recall = np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0]
    average_precision = float(-np.sum(np.diff(recall) * precision[:-1]))
    x, y = _thin(recall, precision)
    return {"name": name, "kind": "precision_recall_curve", "title": "Precision recall curve",
            "estimator": estimator, "pos_label": _label(pos_label), "x": x, "y": y,
            "average_precision": average_precision}


def feature_importance(importance_type: str, scores: dict[str, Any]) -> dict[str, Any]:
    """Importance per feature (a number, or one per class), features ascending by size."""
    import numpy as np

    features = list(scores)
    values = [scores[f] for f in features]
    size = [float(np.abs(np.asarray(v, dtype=np.float64)).sum()) for v in values]
    order = np.argsort(size, kind="mergesort")
    return {"name": f"feature_importance_{importance_type}", "kind": "feature_importance",
            "title": f"Feature Importance ({importance_type})",
            "importance_type": importance_type,
            "features": [str(features[i]) for i in order],
            "values": [values[i] if not isinstance(values[i], list) else list(values[i])
                       for i in order]}


def write(folder: Path, plots: list[dict[str, Any]]) -> None:
    """Write `<name>.svg` for each plot and `plots.json` with all of them into `folder`."""
    for plot in plots:
        (folder / f"{plot['name']}.svg").write_text(render_svg(plot), encoding="utf-8")
    payload = {"version": SCHEMA_VERSION, "plots": plots}
    (folder / PLOTS_FILE).write_text(json.dumps(payload, allow_nan=True), encoding="utf-8")


# drawing ---------------------------------------------------------------------------

_W, _H = 600, 420
_LEFT, _RIGHT, _TOP, _BOTTOM = 80, 30, 40, 60
_BLUE = "#1f77b4"
_FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'


def render_svg(plot: dict[str, Any]) -> str:
    """The plot as a standalone SVG document."""
    kind = plot["kind"]
    width = int(plot.get("width", _W))
    if kind == "confusion_matrix":
        body, height = _confusion_body(plot), _H
    elif kind == "scatter":
        height = int(plot.get("height", _H))
        body = _scatter_body(plot, width, height)
    elif kind in ("roc_curve", "precision_recall_curve"):
        body, height = _curve_body(plot), _H
    elif kind == "feature_importance":
        body, height = _importance_body(plot)
    else:
        raise ValueError(f"unknown plot kind {kind!r}")
    title = _text(width / 2, 24, plot["title"], size=15 if width >= 500 else 13, anchor="middle")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="white"/>'
            f"{title}{body}</svg>\n")


def _text(x: float, y: float, text: str, *, size: int = 11, anchor: str = "start",
          fill: str = "#222", rotate: bool = False) -> str:
    turn = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{fill}" {_FONT}{turn}>{escape(str(text))}</text>')


def _blues(value: float) -> str:
    """White to dark blue, as matplotlib's "Blues" colour map runs."""
    value = min(max(value, 0.0), 1.0)
    low, high = (247, 251, 255), (8, 48, 107)
    r, g, b = (round(lo + (hi - lo) * value) for lo, hi in zip(low, high, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _number(value: float) -> str:
    return f"{value:.2g}"


def _confusion_body(plot: dict[str, Any]) -> str:
    labels, matrix = plot["labels"], plot["normalized"]
    k = len(labels)
    side = min(_W - _LEFT - _RIGHT - 60, _H - _TOP - _BOTTOM)
    cell = side / max(k, 1)
    x0, y0 = _LEFT + 40, _TOP
    size = max(7, min(12, int(cell / 3)))
    parts = []
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            x, y = x0 + j * cell, y0 + i * cell
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell:.1f}" height="{cell:.1f}" '
                         f'fill="{_blues(value)}"/>')
            ink = "white" if value > 0.5 else "#222"
            parts.append(_text(x + cell / 2, y + cell / 2 + size / 3, _number(value),
                               size=size, anchor="middle", fill=ink))
    for i, label in enumerate(labels):
        parts.append(_text(x0 + (i + 0.5) * cell, y0 + side + 16, label, size=size,
                           anchor="middle"))
        parts.append(_text(x0 - 6, y0 + (i + 0.5) * cell + size / 3, label, size=size,
                           anchor="end"))
    parts.append(_text(x0 + side / 2, y0 + side + 38, "Predicted label", anchor="middle"))
    parts.append(_text(x0 - 44, y0 + side / 2, "True label", anchor="middle", rotate=True))
    return "".join(parts)


def _axes(x_label: str, y_label: str, width: float, height: float) -> str:
    parts = [f'<rect x="{_LEFT}" y="{_TOP}" width="{width}" height="{height}" fill="none" '
             'stroke="#444"/>']
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        x, y = _LEFT + tick * width, _TOP + (1 - tick) * height
        parts.append(f'<line x1="{x:.1f}" y1="{_TOP + height}" x2="{x:.1f}" '
                     f'y2="{_TOP + height + 4}" stroke="#444"/>')
        parts.append(_text(x, _TOP + height + 16, f"{tick:.1f}", size=10, anchor="middle"))
        parts.append(f'<line x1="{_LEFT - 4}" y1="{y:.1f}" x2="{_LEFT}" y2="{y:.1f}" '
                     'stroke="#444"/>')
        parts.append(_text(_LEFT - 7, y + 3, f"{tick:.1f}", size=10, anchor="end"))
    parts.append(_text(_LEFT + width / 2, _TOP + height + 38, x_label, anchor="middle"))
    parts.append(_text(24, _TOP + height / 2, y_label, anchor="middle", rotate=True))
    return "".join(parts)


def _curve_body(plot: dict[str, Any]) -> str:
    width, height = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    positive = f" (Positive label: {plot['pos_label']})"
    if plot["kind"] == "roc_curve":
        labels = ("False Positive Rate" + positive, "True Positive Rate" + positive)
        legend = f"{plot['estimator']} (AUC = {plot['auc']:.2f})"
        points = list(zip(plot["x"], plot["y"], strict=True))
    else:
        labels = ("Recall" + positive, "Precision" + positive)
        legend = f"{plot['estimator']} (AP = {plot['average_precision']:.2f})"
        points = []
        for i, (x, y) in enumerate(zip(plot["x"], plot["y"], strict=True)):
            if i:  # steps: precision holds until recall moves, as scikit-learn draws it
                points.append((x, points[-1][1]))
            points.append((x, y))
    path = " ".join(f"{_LEFT + x * width:.1f},{_TOP + (1 - y) * height:.1f}"
                    for x, y in points if x == x and y == y)  # NaN-free
    legend_box = (f'<rect x="{_LEFT + width - 250}" y="{_TOP + height - 34}" width="240" '
                  f'height="24" fill="white" stroke="#ccc"/><line x1="{_LEFT + width - 242}" '
                  f'y1="{_TOP + height - 22}" x2="{_LEFT + width - 218}" '
                  f'y2="{_TOP + height - 22}" stroke="{_BLUE}" stroke-width="2"/>'
                  + _text(_LEFT + width - 212, _TOP + height - 18, legend.strip(), size=10))
    return (_axes(*labels, width, height)
            + f'<polyline points="{path}" fill="none" stroke="{_BLUE}" stroke-width="2"/>'
            + legend_box)


_CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _importance_body(plot: dict[str, Any]) -> tuple[str, int]:
    features, values = plot["features"], plot["values"]
    rows = [v if isinstance(v, list) else [v] for v in values]
    classes = max((len(r) for r in rows), default=1)
    row_height = 22 if classes == 1 else 10 * classes + 8
    left = min(200, 20 + 7 * max((len(f) for f in features), default=4))
    height = max(int(plot.get("height", _H)), _TOP + _BOTTOM + row_height * len(features))
    row_height = (height - _TOP - _BOTTOM) / max(len(features), 1)  # bars fill the axes
    width = _W - left - _RIGHT
    top = max((max(r) for r in rows if r), default=0.0) or 1.0
    low = min(0.0, min((min(r) for r in rows if r), default=0.0))
    span = (top - low) or 1.0
    zero = left + (-low / span) * width
    parts = [f'<line x1="{zero:.1f}" y1="{_TOP}" x2="{zero:.1f}" '
             f'y2="{height - _BOTTOM}" stroke="#444"/>']
    bar = (row_height - 6) / classes
    for i, (feature, row) in enumerate(zip(reversed(features), reversed(rows), strict=True)):
        y = _TOP + i * row_height + 3
        for c, value in enumerate(row):
            x1 = left + ((min(value, 0.0) - low) / span) * width
            parts.append(f'<rect x="{x1:.1f}" y="{y + c * bar:.1f}" '
                         f'width="{abs(value) / span * width:.1f}" height="{bar:.1f}" '
                         f'fill="{_CLASS_COLOURS[c % len(_CLASS_COLOURS)]}"/>')
        parts.append(_text(left - 6, y + row_height / 2, feature, size=10, anchor="end"))
    for tick in range(6):
        value = low + span * tick / 5
        x = left + tick / 5 * width
        parts.append(_text(x, height - _BOTTOM + 16, _number(value), size=10, anchor="middle"))
    parts.append(_text(left + width / 2, height - _BOTTOM + 38, "Importance", anchor="middle"))
    if classes > 1:
        for c in range(classes):
            parts.append(_text(_W - _RIGHT - 60, _TOP + 14 * (c + 1), f"Class {c}", size=10,
                               fill=_CLASS_COLOURS[c % len(_CLASS_COLOURS)]))
    return "".join(parts), height


_ORANGE = "#ff7f0e"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round numbers (1, 2 or 5 times a power of ten apart) covering low..high."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else [0.0]
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    return [round(i * step, 12) for i in range(first, math.floor(high / step + 1e-9) + 1)]


def _finite_pairs(xs: list[Any], ys: list[Any]) -> list[tuple[float, float]]:
    out = []
    for x, y in zip(xs, ys, strict=True):
        if x is None or y is None:
            continue
        x, y = float(x), float(y)
        if math.isfinite(x) and math.isfinite(y):
            out.append((x, y))
    return out


def _scatter_body(plot: dict[str, Any], width: int, height: int) -> str:
    """Axes fitted to the data, the points, and an optional orange step line over them."""
    left, right, top, bottom = (70, 16, 40, 50) if width >= 500 else (58, 10, 36, 46)
    inner_w, inner_h = width - left - right, height - top - bottom
    categories = plot.get("categories")
    log_x = bool(plot.get("log_x")) and not categories
    points = _finite_pairs(plot["x"], plot["y"])
    line = _finite_pairs(plot.get("line_x", []), plot.get("line_y", []))
    if log_x:
        points = [(math.log10(x), y) for x, y in points if x > 0]
        line = [(math.log10(x), y) for x, y in line if x > 0]
    shade = plot.get("shade") or []
    xs = [x for x, _ in points + line] or [0.0]
    ys = [y for _, y in points + line] or [0.0]
    if categories:
        x_lo, x_hi = -0.5, len(categories) - 0.5
    else:
        x_lo, x_hi = min(xs), max(xs)
        pad = (x_hi - x_lo) * 0.04 or 0.5
        x_lo, x_hi = x_lo - pad, x_hi + pad
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.06 or (abs(y_lo) * 0.1 or 0.5)
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def px(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * inner_w

    def py(y: float) -> float:
        return top + (1 - (y - y_lo) / (y_hi - y_lo)) * inner_h

    parts = [f'<rect x="{left}" y="{top}" width="{inner_w}" height="{inner_h}" fill="none" '
             'stroke="#444"/>']
    for tick in nice_ticks(y_lo, y_hi, max(2, inner_h // 50)):
        y = py(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + inner_w}" y2="{y:.1f}" '
                     'stroke="#eee"/>')
        parts.append(_text(left - 5, y + 3, f"{tick:.4g}", size=10, anchor="end"))
    if categories:
        x_ticks = [(float(i), str(c)) for i, c in enumerate(categories)]
    else:
        x_ticks = [(t, f"{10 ** t:.2g}" if log_x else f"{t:.4g}")
                   for t in nice_ticks(x_lo, x_hi, max(2, inner_w // 70))]
    for tick, label in x_ticks:
        x = px(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{top + inner_h}" x2="{x:.1f}" '
                     f'y2="{top + inner_h + 4}" stroke="#444"/>')
        parts.append(_text(x, top + inner_h + 15, label[:14], size=10, anchor="middle"))
    parts.append(_text(left + inner_w / 2, height - 8,
                       plot.get("x_label", "") + (" (log scale)" if log_x else ""),
                       anchor="middle"))
    parts.append(_text(14, top + inner_h / 2, plot.get("y_label", ""), anchor="middle",
                       rotate=True))
    for i, (x, y) in enumerate(points):
        colour = _blues(0.35 + 0.65 * float(shade[i])) if i < len(shade) else _BLUE
        parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{colour}" '
                     'fill-opacity="0.85"/>')
    if line:
        steps = [line[0]]
        for x, y in line[1:]:
            steps += [(x, steps[-1][1]), (x, y)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in steps)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{_ORANGE}" '
                     'stroke-width="2.5"/>')
        if plot.get("line_label"):
            parts.append(f'<line x1="{left + inner_w - 100}" y1="{top - 8}" '
                         f'x2="{left + inner_w - 80}" y2="{top - 8}" stroke="{_ORANGE}" '
                         'stroke-width="2.5"/>')
            parts.append(_text(left + inner_w - 75, top - 4, plot["line_label"], size=10))
    return "".join(parts)
