"""A run's append-only journal: the record format and the state it replays into.

One run is one folder holding `journal.jsonl`, one JSON object a line, appended
with a single `write` per logging call, and `summary.json`, the replayed state
as of a byte offset in the journal. A reader loads the summary and replays only
the lines after its offset, so listing thousands of finished runs reads one small
file each, and an unfinished run (even one whose process was killed) is always
read in full. A torn last line, left by a crash, has no newline and is ignored.
A third file, `history.idx`, is a rebuildable cache of every metric point per key
(`HistoryIndex`), so one key's history is read without replaying the journal.

This module is the one owner of that format: the record kinds (`Kind`), the one
reader (`iter_lines`, which `read_records` and the shipper both use), the append
(`write_all`) and the one atomic JSON write (`write_json_atomic`) that the local
store, the spool and the ship state share.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from enum import Enum
from itertools import repeat
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
HISTORY = "history.idx"  # derived: every metric point per key (`HistoryIndex`)
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


def count_after(path: Path, offset: int) -> tuple[int, int]:
    """(complete lines, metric points) after `offset`, counted without parsing a line.

    Fast enough for a progress line over millions of points. A metric point is a
    `[key, value, timestamp, step]` in a batch's `"m"` list: the first follows
    `"m":[[`, each other one follows `],["`. Neither can occur inside a JSON string
    (a quote in a string is escaped), so the count is exact for lines `encode` wrote.
    """
    lines = points = 0
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return 0, 0
    with handle:
        handle.seek(offset)
        carry = b""
        while chunk := handle.read(_READ_CHUNK):
            data = carry + chunk
            end = data.rfind(b"\n") + 1  # only complete lines count
            done, carry = data[:end], data[end:]
            lines += done.count(b"\n")
            points += done.count(b'"m":[[') + done.count(b'],["')
    return lines, points


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


_FIELDS = [f.name for f in fields(RunState)]  # a catalog row's order; `offset` is last


def load_catalog(path: Path) -> dict[str, list[Any]]:
    """The run states a catalog file holds, as field lists by run id ({} when missing,
    damaged, or written with other fields).

    A catalog is a cache of many runs' states in one file, so listing thousands of
    runs in a fresh process reads one file instead of one summary each. An entry
    counts only while its offset equals its journal's size (`current_state`). States
    are stored as lists of field values, which JSON reads twice as fast as objects.
    """
    try:
        found = json.loads(path.read_bytes())
        if found["fields"] != _FIELDS:
            return {}
        return {row[0]: row for row in found["runs"]}
    except (OSError, ValueError, TypeError, KeyError, IndexError):
        return {}


def save_catalog(path: Path, states: Iterable[RunState]) -> None:
    rows = [list(state.__dict__.values()) for state in states]
    write_json_atomic(path, {"fields": _FIELDS, "runs": rows})


def current_state(run_dir: str, cached: list[Any] | RunState | None) -> tuple[RunState, bool]:
    """The run's state, and whether it had to be read from disk: taken from `cached`
    (a state or a catalog row) while the journal has not grown past it, else loaded
    (`load_state`). `run_dir` is a str: listings call this once per run, and a str
    path skips pathlib's cost."""
    if cached is not None:
        offset = cached.offset if isinstance(cached, RunState) else cached[-1]
        try:
            size = os.stat(os.path.join(run_dir, JOURNAL)).st_size
        except FileNotFoundError:
            size = -1
        if size == offset:
            if isinstance(cached, RunState):
                return cached, False
            with contextlib.suppress(TypeError):
                return RunState(*cached), False
    return load_state(Path(run_dir)), True


def write_summary(run_dir: Path, state: RunState | str) -> None:
    """Replace the summary atomically, so a reader sees the old one or the new one."""
    write_json_atomic(run_dir / SUMMARY, state if isinstance(state, str) else state.to_json())


def _history_points(record: dict[str, Any], key: str) -> Iterator[Metric]:
    if record["k"] == Kind.BATCH:
        for k, value, timestamp, step in record.get("m", ()):
            if k == key:
                yield Metric(k, value, timestamp, step)


def drop_history(run_dir: Path) -> None:
    """Remove the run's history index: for whoever removes or replaces its journal."""
    (run_dir / HISTORY).unlink(missing_ok=True)


def _replayed_history(path: Path, key: str) -> list[Metric]:
    return [p for record, _ in iter_lines(path, 0) if record for p in _history_points(record, key)]


class HistoryIndex:
    """Every metric point of a run, per key, in journal order, as packed columns.

    A derived cache of the journal, never the record: the file (`history.idx`) says
    which journal prefix it covers (`offset`, just past a complete line), and a reader
    replays only the journal after it. Its columns are float64 values, int64
    timestamps and int64 steps, so one key's history is read as three slices of one
    file, whatever the other keys hold. The writer fills it as it appends and writes it
    when the run ends; a reader that finds it missing, stale by much, or unreadable
    rebuilds it from the journal (the only full scan) and saves it for the next one.
    A torn tail or a crash costs nothing: the index never covers a line that is not
    complete, and the journal stays append-only.
    """

    def __init__(self) -> None:
        self.columns: dict[str, tuple[array, array, array]] = {}
        self.valid = True  # False once a point does not fit the columns (then: no file)

    def add(self, record: dict[str, Any]) -> None:
        if not self.valid or record.get("k") != Kind.BATCH:
            return
        try:
            for key, value, timestamp, step in record.get("m", ()):
                column = self.columns.get(key)
                if column is None:
                    column = self.columns[key] = (array("d"), array("q"), array("q"))
                column[0].append(value)
                column[1].append(timestamp)
                column[2].append(step)
        except (TypeError, ValueError, OverflowError):
            self.valid = False  # a value the columns cannot hold: readers use the journal

    def history(self, key: str) -> list[Metric]:
        column = self.columns.get(key)
        if column is None:
            return []
        return list(map(Metric, repeat(key), *column))

    def save(self, run_dir: Path, offset: int) -> None:
        """Write the index as covering the journal up to `offset` (atomically); not for
        a journal small enough that reading it whole is as quick (most runs)."""
        if not self.valid or offset <= _REBUILD_AFTER:
            return
        keys: dict[str, list[int]] = {}
        blocks = []
        start = 0
        for key, column in self.columns.items():
            keys[key] = [len(column[0]), start]
            for part in column:
                blocks.append(part.tobytes())
                start += len(blocks[-1])
        inode = os.stat(run_dir / JOURNAL).st_ino  # which journal: a replaced one is another
        header = {"v": 1, "order": sys.byteorder, "ino": inode, "offset": offset, "keys": keys}
        tmp = run_dir / f".{HISTORY}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(json.dumps(header).encode() + b"\n")
            handle.writelines(blocks)
        os.replace(tmp, run_dir / HISTORY)

    @classmethod
    def load(cls, run_dir: Path) -> tuple[HistoryIndex, int] | None:
        """The whole saved index and its offset, or None if missing or unreadable."""
        found = _read_index(run_dir, None)
        return None if found is None else (found[0], found[1])


def _read_index(run_dir: Path, only: str | None) -> tuple[HistoryIndex, int] | None:
    """The saved index (all keys, or just `only`) and the journal offset it covers.

    None when it is missing, unreadable, written with another byte order, or written
    for another journal file (inode) or not ending on a line boundary of this one.
    """
    try:
        handle = open(run_dir / HISTORY, "rb")  # noqa: SIM115 - closed below
    except OSError:
        return None
    with handle:
        try:
            header = json.loads(handle.readline())
            offset = int(header["offset"])
            keys = header["keys"]
            if header.get("v") != 1 or header.get("order") != sys.byteorder:
                return None
            with open(run_dir / JOURNAL, "rb") as source:
                if os.fstat(source.fileno()).st_ino != header.get("ino"):
                    return None
                if offset and os.pread(source.fileno(), 1, offset - 1) != b"\n":
                    return None
            base = handle.tell()
            index = HistoryIndex()
            for key, (count, start) in keys.items():
                if only is not None and key != only:
                    continue
                handle.seek(base + start)
                column = (array("d"), array("q"), array("q"))
                for part in column:
                    part.frombytes(handle.read(8 * count))
                    if len(part) != count:
                        return None
                index.columns[key] = column
        except (OSError, ValueError, TypeError, KeyError):
            return None
    return index, offset


_REBUILD_AFTER = 256 << 10  # journal bytes past the index worth saving a new index for


def metric_history(run_dir: Path, key: str) -> list[Metric]:
    """One key's points in logging order, in time proportional to that key's points
    (when the run's index is current, see `HistoryIndex`)."""
    path = run_dir / JOURNAL
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return []
    found = _read_index(run_dir, key)
    if found is not None and found[1] <= size and size - found[1] <= _REBUILD_AFTER:
        index, offset = found
        points = index.history(key)
        for record, _ in iter_lines(path, offset):
            if record is not None:
                points.extend(_history_points(record, key))
        return points
    if found is None and size <= _REBUILD_AFTER:
        return _replayed_history(path, key)
    # Missing or stale by much: extend the saved index (or build it) and save it.
    whole = HistoryIndex.load(run_dir) if found is not None else None
    index, offset = whole if whole is not None and whole[1] <= size else (HistoryIndex(), 0)
    for record, past in iter_lines(path, offset):
        offset = past
        if record is not None:
            index.add(record)
            if not index.valid:
                return _replayed_history(path, key)
    with contextlib.suppress(OSError):  # a read-only folder: answer without saving
        index.save(run_dir, offset)
    return index.history(key)
