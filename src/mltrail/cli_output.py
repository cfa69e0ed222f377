"""How `mltrail` commands print records: a table for people, JSON and CSV for programs.

A run or experiment becomes a flat record (`run_id`, `name`, ..., `params.<key>`,
`metrics.<key>`), so `--columns` names the same columns in every format, with shell-style
patterns (`params.*`). JSON without `--columns` keeps the nested form (`"params": {...}`),
which `jq` reads best; times are MLflow's int64 milliseconds in JSON and CSV.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from .entities import Experiment, Metric, Run

FORMATS = ("table", "json", "csv")
PARENT_TAG = "mlflow.parentRunId"
_BARS = "▁▂▃▄▅▆▇█"
_ASCII_BARS = "_.-:=+*#"
SPARK_WIDTH = 60


def run_record(run: Run) -> dict[str, Any]:
    """A run as one flat record: info, then its params and metrics (sorted)."""
    info = run.info
    duration = ((info.end_time - info.start_time) / 1000
                if info.end_time and info.start_time else None)
    record: dict[str, Any] = {
        "run_id": info.run_id,
        "name": info.run_name,
        "experiment_id": info.experiment_id,
        "parent_run_id": run.data.tags.get(PARENT_TAG),
        "status": info.status,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "duration_s": duration,
    }
    record.update({f"params.{k}": v for k, v in sorted(run.data.params.items())})
    record.update({f"metrics.{k}": v for k, v in sorted(run.data.metrics.items())})
    return record


def run_nested(run: Run) -> dict[str, Any]:
    """A run as nested JSON: info fields, then `params`, `metrics`, `tags` objects."""
    flat = {k: v for k, v in run_record(run).items() if "." not in k}
    return {**flat, "params": dict(run.data.params), "metrics": dict(run.data.metrics),
            "tags": dict(run.data.tags)}


def experiment_record(exp: Experiment) -> dict[str, Any]:
    return {"experiment_id": exp.experiment_id, "name": exp.name,
            "lifecycle_stage": exp.lifecycle_stage, "creation_time": exp.creation_time,
            "artifact_location": exp.artifact_location}


def choose_columns(records: Sequence[dict[str, Any]], wanted: Sequence[str]) -> list[str]:
    """The columns `wanted` names (exact names or patterns such as `params.*`), in order;
    a name no record has is kept (it prints empty), so a typo shows as an empty column."""
    present: list[str] = []
    for record in records:
        present.extend(k for k in record if k not in present)
    columns: list[str] = []
    for item in wanted:
        matched = [k for k in present if fnmatch.fnmatchcase(k, item)] if any(
            c in item for c in "*?[") else [item]
        columns.extend(k for k in matched if k not in columns)
    return columns


def parse_columns(values: Sequence[str] | None) -> list[str]:
    """`--columns a,b --columns c` as [a, b, c]."""
    return [c.strip() for v in values or [] for c in v.split(",") if c.strip()]


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN: "nan", "inf" as MLflow's REST API writes them
    return value


def dump_json(value: Any) -> str:
    def clean(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: clean(v) for k, v in item.items()}
        if isinstance(item, list):
            return [clean(v) for v in item]
        return _plain(item)

    return json.dumps(clean(value), indent=2, default=str)


def dump_csv(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow(["" if record.get(c) is None else record.get(c) for c in columns])
    return out.getvalue().rstrip("\n")


def all_columns(records: Sequence[dict[str, Any]]) -> list[str]:
    """Every column of the records: plain fields as they come, then params, then metrics."""
    seen: dict[str, None] = {}
    for record in records:
        seen.update(dict.fromkeys(record))
    plain = [k for k in seen if "." not in k]
    return plain + sorted(k for k in seen if "." in k)  # "metrics." sorts before "params."


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """The values as one line of bar characters, at most `width` wide (means of buckets);
    a NaN or infinite value is a space. ASCII where the terminal cannot print blocks."""
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        _BARS.encode(encoding)
        bars = _BARS
    except (UnicodeEncodeError, LookupError):
        bars = _ASCII_BARS
    if not values:
        return ""
    buckets: list[float] = []
    count = min(width, len(values))
    for i in range(count):
        chunk = values[i * len(values) // count:(i + 1) * len(values) // count]
        finite = [v for v in chunk if math.isfinite(v)]
        buckets.append(sum(finite) / len(finite) if finite else math.nan)
    finite = [v for v in buckets if math.isfinite(v)]
    if not finite:
        return " " * len(buckets)
    low, high = min(finite), max(finite)
    span = high - low
    return "".join(
        " " if not math.isfinite(v)
        else bars[0 if span == 0 else min(len(bars) - 1, int((v - low) / span * len(bars)))]
        for v in buckets)


def history_records(history: Sequence[Metric]) -> list[dict[str, Any]]:
    return [{"step": m.step, "value": m.value, "timestamp": m.timestamp}
            for m in sorted(history, key=lambda m: (m.step, m.timestamp))]
