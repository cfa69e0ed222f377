"""The JSON of MLflow's REST API, both ways: requests encoded, answers read as entities.

Kept apart from the transport (`http`) and the store's logic (`store`) so that what a
server's answer means is written down once: how a metric value arrives ("NaN" as a
string, +-inf as the largest float on a SQL backend), which run fields may be missing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ...entities import (
    Dataset,
    DatasetInput,
    Experiment,
    InputTag,
    LoggedModel,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunStatus,
)


def encode_json(payload: Mapping[str, Any]) -> bytes:
    """JSON with non-finite floats as the strings "NaN", "Infinity", "-Infinity",
    which is how the REST API spells them (bare NaN tokens are not JSON)."""
    return json.dumps(_finite(payload), ensure_ascii=False, separators=(",", ":")).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def metric_value(raw: Any) -> float:
    return float(raw)  # float() reads "NaN", "Infinity" and "-Infinity" too


def parse_run(raw: dict[str, Any]) -> Run:
    """A Run from the REST API's JSON."""
    info = raw["info"]
    data = raw.get("data") or {}
    latest: dict[str, tuple[int, int, float]] = {}
    for m in data.get("metrics", []):
        point = (int(m.get("step", 0)), int(m.get("timestamp", 0)), metric_value(m["value"]))
        if m["key"] not in latest or point[:2] >= latest[m["key"]][:2]:
            latest[m["key"]] = point
    inputs = []
    for item in (raw.get("inputs") or {}).get("dataset_inputs", []):
        ds = item["dataset"]
        inputs.append(
            DatasetInput(
                Dataset(
                    name=ds.get("name", ""),
                    digest=ds.get("digest", ""),
                    source_type=ds.get("source_type", ""),
                    source=ds.get("source", ""),
                    schema=ds.get("schema", ""),
                    profile=ds.get("profile", ""),
                ),
                tuple(InputTag(t["key"], t.get("value", "")) for t in item.get("tags", [])),
            )
        )
    return Run(
        info=RunInfo(
            run_id=info["run_id"],
            experiment_id=str(info["experiment_id"]),
            run_name=info.get("run_name", ""),
            user_id=info.get("user_id", ""),
            status=info.get("status", RunStatus.RUNNING),
            start_time=int(info.get("start_time") or 0),
            end_time=int(info["end_time"]) if info.get("end_time") else None,
            artifact_uri=info.get("artifact_uri", ""),
            lifecycle_stage=info.get("lifecycle_stage", "active"),
        ),
        data=RunData(
            metrics={k: v[2] for k, v in latest.items()},
            params={p["key"]: p.get("value", "") for p in data.get("params", [])},
            tags={t["key"]: t.get("value", "") for t in data.get("tags", [])},
        ),
        inputs=RunInputs(tuple(inputs)),
    )


def parse_experiment(raw: dict[str, Any]) -> Experiment:
    return Experiment(
        experiment_id=str(raw["experiment_id"]),
        name=raw["name"],
        artifact_location=raw.get("artifact_location", ""),
        lifecycle_stage=raw.get("lifecycle_stage", "active"),
        tags={t["key"]: t.get("value", "") for t in raw.get("tags", [])},
        creation_time=raw.get("creation_time"),
        last_update_time=raw.get("last_update_time"),
    )


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in tags.items()]


__all__ = ["encode_json", "metric_value", "parse_experiment", "parse_run", "tag_list"]


def parse_logged_model(raw: dict[str, Any]) -> LoggedModel:
    """A LoggedModel from MLflow 3's JSON (`info` and `data.params`)."""
    info = raw.get("info", {})
    params = {p["key"]: p.get("value", "") for p in raw.get("data", {}).get("params", [])}
    status = str(info.get("status", ""))
    return LoggedModel(
        model_id=info["model_id"],
        experiment_id=str(info.get("experiment_id", "")),
        name=info.get("name", ""),
        source_run_id=info.get("source_run_id") or None,
        artifact_location=info.get("artifact_uri", ""),
        status=status.removeprefix("LOGGED_MODEL_") or "PENDING",
        params=params,
        creation_timestamp=info.get("creation_timestamp_ms"),
    )
