"""A run's append-only journal: the record format and the state it replays into.

One run is one folder holding `journal.jsonl`, one JSON object a line, appended
with a single `write` per logging call, and `summary.json`, the replayed state
as of a byte offset in the journal. A reader loads the summary and replays only
the lines after its offset, so listing thousands of finished runs reads one small
file each, and an unfinished run (even one whose process was killed) is always
read in full. A torn last line, left by a crash, has no newline and is ignored.

This module is the one owner of that format: the record kinds (`Kind`), the one
reader (`iter_lines`, which `read_records` and the shipper both use), the append
(`write_all`) and the one atomic JSON write (`write_json_atomic`) that the local
store, the spool and the ship state share.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
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
ARTIFACTS = "artifacts"  # a run folder's artifacts, beside its journal and summary
MODELS = "models"  # a spooled run's logged models waiting for their own upload, by id
_READ_CHUNK = 4 << 20


class Kind(str, Enum):
    """The kind of a journal record, its ``"k"`` field (a str, so JSON keeps it short)."""

    BATCH = "b"  # metrics "m", params "p", tags "t"
    UPDATE = "u"  # status, end_time, run_name
    DELETE_TAG = "dt"  # key
    LIFECYCLE = "lc"  # stage
    INPUTS = "in"  # datasets "d"
    LOGGED_MODEL = "lm"  # id, name, path, time, params "p", latest metrics "m"

    def __str__(self) -> str:
        return self.value


def in_run_artifacts(path: Path) -> bool:
    """True for a path inside the artifacts of a run folder (one with a summary): how a
    model folder is known to come from a local store without reading the store."""
    return any(parent.name == ARTIFACTS and (parent.parent / SUMMARY).is_file()
               for parent in path.parents)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Replace `path` atomically with `payload` as JSON (or with `payload` if it is a
    str): a reader sees the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    os.replace(tmp, path)


def iter_lines(path: Path, offset: int) -> Iterator[tuple[dict[str, Any] | None, int]]:
    """Each complete line after `offset`: (record, or None if unreadable; offset past it).

    Read in chunks, so a journal of millions of points is never held whole. A torn
    last line (no newline) is not yielded; a torn fragment that a later append ended
    yields None and is skipped by callers.
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed in the finally below
    except FileNotFoundError:
        return
    try:
        handle.seek(offset)
        carry = b""
        while chunk := handle.read(_READ_CHUNK):
            data = carry + chunk
            start = 0
            while (newline := data.find(b"\n", start)) >= 0:
                line = data[start:newline]
                start = newline + 1
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                yield (record if isinstance(record, dict) else None), offset + start
            offset += start
            carry = data[start:]
    finally:
        handle.close()


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
    models: list[dict[str, Any]] = field(default_factory=list)  # logged models: id, name, path
    offset: int = 0

    def apply(self, record: dict[str, Any]) -> None:
        kind = record["k"]
        if kind == Kind.BATCH:
            for key, value, timestamp, step in record.get("m", ()):
                latest = self.metrics.get(key)
                if latest is None or (step, timestamp) >= (latest[2], latest[1]):
                    self.metrics[key] = [value, timestamp, step]
            self.params.update(record.get("p", {}))
            self.tags.update(record.get("t", {}))
            if "mlflow.runName" in record.get("t", {}):
                self.run_name = record["t"]["mlflow.runName"]
        elif kind == Kind.UPDATE:
            self.status = record["status"]
            self.end_time = record.get("end_time")
            if record.get("run_name"):
                self.run_name = record["run_name"]
                self.tags["mlflow.runName"] = record["run_name"]
        elif kind == Kind.DELETE_TAG:
            self.tags.pop(record["key"], None)
        elif kind == Kind.LIFECYCLE:
            self.lifecycle_stage = record["stage"]
        elif kind == Kind.INPUTS:
            self.inputs.extend(record["d"])
        elif kind == Kind.LOGGED_MODEL:
            self.models.append({k: record[k] for k in ("id", "name", "path")})

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
    record: dict[str, Any] = {"k": Kind.BATCH.value}
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
    """Complete records after `offset`, and the offset just past the last complete line."""
    records = []
    last = offset
    for record, past in iter_lines(path, offset):
        last = past
        if record is not None:
            records.append(record)
    return records, last


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
    write_json_atomic(run_dir / SUMMARY, state if isinstance(state, str) else state.to_json())


def metric_history(run_dir: Path, key: str) -> list[Metric]:
    records, _ = read_records(run_dir / JOURNAL, 0)
    return [
        Metric(k, value, timestamp, step)
        for record in records
        if record["k"] == Kind.BATCH
        for k, value, timestamp, step in record.get("m", ())
        if k == key
    ]
