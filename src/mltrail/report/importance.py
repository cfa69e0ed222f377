"""Parameter importance of a search: how strongly each hyperparameter goes with the objective.

The method, chosen because it needs no library, is fast, and reads the same for few or
many trials:

- a numeric hyperparameter: the absolute Spearman rank correlation between its values and
  the objective (ties get their average rank), so any monotonic relation counts, whatever
  the scale (a log-uniform learning rate as much as a depth);
- a categorical one: the correlation ratio (eta) of the objective's ranks grouped by
  category, the square root of the share of the ranks' variance that the categories
  explain; it is on the same 0..1 scale as |rho| and equals it for two categories.

Only trials with a finite objective value count, and a hyperparameter needs three of them
with at least two distinct values. Like any marginal measure it misses interactions
(a parameter that matters only together with another), and it says nothing about cause.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .data import SearchData, as_number

METHOD = ("Spearman |rho| between a numeric hyperparameter and the objective; for a "
          "categorical one, the correlation ratio (eta) of the objective's ranks by category")


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties given the average of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return 0.0
    return sxy / math.sqrt(sxx * syy)


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    return _pearson(ranks(xs), ranks(ys))


def correlation_ratio(groups: Sequence[Any], ys: Sequence[float]) -> float:
    """eta of `ys`' ranks grouped by `groups`: sqrt(between-group / total sum of squares)."""
    r = ranks(ys)
    mean = sum(r) / len(r)
    total = sum((v - mean) ** 2 for v in r)
    if total == 0:
        return 0.0
    members: dict[Any, list[float]] = {}
    for group, value in zip(groups, r, strict=True):
        members.setdefault(group, []).append(value)
    between = sum(len(v) * (sum(v) / len(v) - mean) ** 2 for v in members.values())
    return math.sqrt(between / total)


def param_importance(search: SearchData) -> dict[str, float]:
    """Importance of each hyperparameter of the search, 0..1, highest first (see module)."""
    scored = [t for t in search.trials if t.value is not None and math.isfinite(t.value)]
    keys = sorted({k for t in scored for k in t.params})
    out: dict[str, float] = {}
    for key in keys:
        pairs = [(t.params[key], float(t.value)) for t in scored if key in t.params]  # type: ignore[arg-type]
        if len(pairs) < 3 or len({str(p) for p, _ in pairs}) < 2:
            continue
        ys = [y for _, y in pairs]
        numbers = [as_number(p) for p, _ in pairs]
        if all(n is not None for n in numbers):
            out[key] = abs(spearman([float(n) for n in numbers], ys))  # type: ignore[arg-type]
        else:
            out[key] = correlation_ratio([str(p) for p, _ in pairs], ys)
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))
