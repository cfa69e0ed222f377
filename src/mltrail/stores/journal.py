"""A run's append-only journal: the record format and the state it replays into.

One run is one folder holding `journal.jsonl`, one JSON object a line, appended
with a single `write` per logging call, and `summary.json`, the replayed state
as of a byte offset in the journal. A reader loads the summary and replays only
the lines after its offset, so listing thousands of finished runs reads one small
file each, and an unfinished run (even one whose process was killed) is always
read in full. A torn last line, left by a crash, has no newline and is ignored.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..entities import (
    Dataset,
    DatasetInput,
    InputTag,
    LifecycleStage,
    Metric,
    Run,
    RunData,
    RunInfo,
    RunInputs,
)
from ..exceptions import DamagedRunError

JOURNAL = "journal.jsonl"
SUMMARY = "summary.json"


@dataclass
class RunState:
    """Everything known about a run after replaying its journal up to `offset`."""

    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: str
    start_time: int
    end_time: int | None
    artifact_uri: str
    lifecycle_stage: str = LifecycleStage.ACTIVE
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # key -> [value, timestamp, step] of the latest point, ordered as MLflow does
    metrics: dict[str, list[Any]] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    offset: int = 0

    def apply(self, record: dict[str, Any]) -> None:
        kind = record["k"]
        if kind == "b":
            for key, value, timestamp, step in record.get("m", ()):
                latest = self.metrics.get(key)
                if latest is None or (step, timestamp) >= (latest[2], latest[1]):
                    self.metrics[key] = [value, timestamp, step]
            self.params.update(record.get("p", {}))
            self.tags.update(record.get("t", {}))
            if "mlflow.runName" in record.get("t", {}):
                self.run_name = record["t"]["mlflow.runName"]
        elif kind == "u":
            self.status = record["status"]
            self.end_time = record.get("end_time")
            if record.get("run_name"):
                self.run_name = record["run_name"]
                self.tags["mlflow.runName"] = record["run_name"]
        elif kind == "dt":
            self.tags.pop(record["key"], None)
        elif kind == "lc":
            self.lifecycle_stage = record["stage"]
        elif kind == "in":
            self.inputs.extend(record["d"])

    def to_run(self) -> Run:
        info = RunInfo(
            run_id=self.run_id,
            experiment_id=self.experiment_id,
            run_name=self.run_name,
            user_id=self.user_id,
            status=self.status,
            start_time=self.start_time,
            end_time=self.end_time,
            artifact_uri=self.artifact_uri,
            lifecycle_stage=self.lifecycle_stage,
        )
        data = RunData(
            metrics={key: point[0] for key, point in self.metrics.items()},
            params=dict(self.params),
            tags=dict(self.tags),
        )
        return Run(info=info, data=data, inputs=RunInputs(tuple(map(decode_input, self.inputs))))

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> RunState:
        return cls(**json.loads(text))


def encode(record: dict[str, Any]) -> bytes:
    # NaN and inf stay as JSON's non-standard NaN/Infinity tokens, which Python reads back.
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to `fd`, looping on short writes.

    `os.write` may write less than asked (a signal, a nearly full disk); ignoring its
    return value could leave a torn line behind a call that returned normally. A line
    is still one `write` in the common case, which is what keeps concurrent appends
    of whole lines from interleaving.
    """
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - os.write raises rather than return 0
            raise OSError("write returned 0 bytes")
        view = view[written:]


def batch_record(
    metrics: list[Metric], params: dict[str, str], tags: dict[str, str]
) -> dict[str, Any]:
    record: dict[str, Any] = {"k": "b"}
    if metrics:
        record["m"] = [[m.key, m.value, m.timestamp, m.step] for m in metrics]
    if params:
        record["p"] = params
    if tags:
        record["t"] = tags
    return record


def encode_input(item: DatasetInput) -> dict[str, Any]:
    return {"dataset": item.dataset.__dict__, "tags": {t.key: t.value for t in item.tags}}


def decode_input(raw: dict[str, Any]) -> DatasetInput:
    tags = tuple(InputTag(k, v) for k, v in raw.get("tags", {}).items())
    return DatasetInput(dataset=Dataset(**raw["dataset"]), tags=tags)


def read_records(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Complete records after `offset`, and the offset just past the last one."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1  # a torn last line has no newline: leave it
    records = []
    for line in data[:end].splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a torn fragment that a later append terminated
    return records, offset + end


def load_state(run_dir: Path) -> RunState:
    """The run's state: its summary plus whatever the journal holds after it.

    Raises:
        FileNotFoundError: no summary (a run folder still being created).
        DamagedRunError: the summary cannot be read as a run's state.
    """
    path = run_dir / SUMMARY
    text = path.read_text()
    try:
        state = RunState.from_json(text)
    except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise DamagedRunError(
            f"Run {run_dir.name}: {path} is damaged and cannot be read ({exc}); the run's "
            f"records are in {run_dir / JOURNAL}",
            path=str(path),
        ) from exc
    try:
        size = os.stat(run_dir / JOURNAL).st_size
    except FileNotFoundError:
        return state
    if size > state.offset:
        records, state.offset = read_records(run_dir / JOURNAL, state.offset)
        for record in records:
            state.apply(record)
    return state


def write_summary(run_dir: Path, state: RunState | str) -> None:
    """Replace the summary atomically, so a reader sees the old one or the new one."""
    tmp = run_dir / f".{SUMMARY}.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.write_text(state if isinstance(state, str) else state.to_json())
    os.replace(tmp, run_dir / SUMMARY)


def metric_history(run_dir: Path, key: str) -> list[Metric]:
    records, _ = read_records(run_dir / JOURNAL, 0)
    return [
        Metric(k, value, timestamp, step)
        for record in records
        if record["k"] == "b"
        for k, value, timestamp, step in record.get("m", ())
        if k == key
    ]
