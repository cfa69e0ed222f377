"""The local store: experiments and runs as folders of append-only journals.

Layout under the root folder::

    names/<sha1 of name>        experiment id, linked into place whole (race-free)
    <experiment_id>/meta.json   the experiment
    <experiment_id>/<run_id>/   journal.jsonl, summary.json, artifacts/
    logged_models/<model_id>.json   a logged model's run, experiment and artifact path

Each logging call appends one line with one `write` on an `O_APPEND` descriptor
before it returns, so a crash or SIGKILL loses nothing already logged, and
processes writing different runs of one experiment never touch the same file.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import gc
import hashlib
import json
import os
import queue
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import notices, search
from ..entities import (
    DatasetInput,
    Experiment,
    FileInfo,
    LifecycleStage,
    LoggedModel,
    Metric,
    PagedList,
    Param,
    Run,
    RunInfo,
    RunStatus,
    RunTag,
    ViewType,
)
from ..exceptions import (
    AlreadyExistsError,
    DamagedRunError,
    InvalidParameterError,
    NotFoundError,
    ParamConflictError,
    RunStateError,
    StorageError,
)
from . import journal
from .journal import Kind, RunState

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
_META = "meta.json"
_CATALOG = "runs.catalog"  # in an experiment folder: its runs' states, a listing cache
_SNAPSHOTS = 4  # listings kept for their next pages
STAGING = "staging"  # inside a run folder: artifacts being written (`stage_artifacts`)
LOGGED_MODELS = "logged_models"  # under the root: one small JSON file per logged model id
_MODEL_ID_RE = re.compile(r"^m-[0-9a-f]{32}$")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _OpenRun:
    """A run this process writes to: its descriptor and its state kept in memory."""

    run_dir: Path
    fd: int
    state: RunState
    torn: bool = False  # a failed append left part of a line: end it before the next
    # Every metric point since the journal began, when this process wrote all of it;
    # None once another process appended too (then readers rebuild it from the journal).
    history: journal.HistoryIndex | None = None


@contextlib.contextmanager
def _writing(path: Path, what: str = "write") -> Iterator[None]:
    """Turn an OSError (disk full, read-only folder) into mltrail's StorageError."""
    try:
        yield
    except OSError as exc:
        raise StorageError.wrap(exc, path, what) from exc


_write_json_atomic = journal.write_json_atomic


def _publish_exclusive(path: Path, content: bytes) -> bool:
    """Create `path` holding `content`, unless it exists; False when it did.

    The content is written to a private temporary file first and then hard-linked into
    place: `link` fails if the name exists (the O_EXCL guarantee) and the name never
    appears empty, so a process reading it while another creates it sees the whole id
    or nothing. (Creating with O_EXCL and writing afterwards let a concurrent reader
    find an empty name file and fail with "No experiment with id ''".)
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(content)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


class LocalStore:
    """A Store on the local file system (see the module docstring for the layout)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        self.uri = self.root.as_uri()
        self._lock = threading.RLock()
        self._open: dict[str, _OpenRun] = {}
        self._run_dirs: dict[str, Path] = {}
        self._syncer = _Syncer()
        # Per experiment folder: run id -> (state, its Run), reused while the run's
        # journal has not grown; and recent multi-page listings by snapshot id.
        self._listed: dict[str, dict[str, tuple[RunState, Run]]] = {}
        self._snapshots: dict[str, tuple[Any, list[Run]]] = {}

    # experiments ---------------------------------------------------------

    def _name_file(self, name: str) -> Path:
        return self.root / "names" / hashlib.sha1(name.encode()).hexdigest()

    def _ensure_default_experiment(self) -> None:
        if not (self.root / DEFAULT_EXPERIMENT_ID / _META).exists():
            self._create_experiment(DEFAULT_EXPERIMENT_NAME, None, {}, DEFAULT_EXPERIMENT_ID)

    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: dict[str, str] | None = None
    ) -> str:
        if not name or not isinstance(name, str):
            raise InvalidParameterError("Experiment name must be a non-empty string", key="name")
        self._ensure_default_experiment()
        return self._create_experiment(name, artifact_location, tags or {}, None)

    def _create_experiment(
        self, name: str, artifact_location: str | None, tags: dict[str, str], fixed_id: str | None
    ) -> str:
        with _writing(self.root, "create an experiment in"):
            return self._create_experiment_files(name, artifact_location, tags, fixed_id)

    def _create_experiment_files(
        self, name: str, artifact_location: str | None, tags: dict[str, str], fixed_id: str | None
    ) -> str:
        (self.root / "names").mkdir(parents=True, exist_ok=True)
        exp_dir = self._claim_experiment_dir(fixed_id)
        experiment_id = exp_dir.name
        meta = {
            "experiment_id": experiment_id,
            "name": name,
            "artifact_location": artifact_location or exp_dir.as_uri(),
            "lifecycle_stage": LifecycleStage.ACTIVE,
            "tags": tags,
            "creation_time": now_ms(),
            "last_update_time": now_ms(),
        }
        _write_json_atomic(exp_dir / _META, meta)
        if not _publish_exclusive(self._name_file(name), experiment_id.encode()):
            if fixed_id is not None:
                # Another process created the default first. Its folder is this one: keep it.
                return fixed_id
            shutil.rmtree(exp_dir, ignore_errors=True)
            raise AlreadyExistsError(f"Experiment {name!r} already exists", resource_id=name)
        return experiment_id

    def _claim_experiment_dir(self, fixed_id: str | None) -> Path:
        if fixed_id is not None:
            path = self.root / fixed_id
            path.mkdir(parents=True, exist_ok=True)
            return path
        next_id = 1 + max((int(p.name) for p in self._experiment_dirs()), default=0)
        while True:  # mkdir is atomic: the process that makes the folder owns the id
            path = self.root / str(next_id)
            try:
                path.mkdir()
                return path
            except FileExistsError:
                next_id += 1

    def _experiment_dirs(self) -> Iterator[Path]:
        if not self.root.is_dir():
            return
        for entry in os.scandir(self.root):
            if entry.name.isdigit() and entry.is_dir():
                yield Path(entry.path)

    def get_experiment(self, experiment_id: str) -> Experiment:
        experiment_id = str(experiment_id)
        if experiment_id == DEFAULT_EXPERIMENT_ID:
            self._ensure_default_experiment()
        try:
            meta = json.loads((self.root / experiment_id / _META).read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise NotFoundError(
                f"No experiment with id {experiment_id!r} in {self.root}",
                resource_id=experiment_id,
            ) from None
        return Experiment(**meta)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        if name == DEFAULT_EXPERIMENT_NAME:
            self._ensure_default_experiment()
        try:
            experiment_id = self._name_file(name).read_text().strip()
        except FileNotFoundError:
            return None
        return self.get_experiment(experiment_id)

    def search_experiments(self, view_type: int = ViewType.ACTIVE_ONLY) -> list[Experiment]:
        self._ensure_default_experiment()
        found = []
        for exp_dir in self._experiment_dirs():
            try:
                experiment = self.get_experiment(exp_dir.name)
            except NotFoundError:
                continue  # a folder claimed by a creation still under way
            if LifecycleStage.matches_view_type(view_type, experiment.lifecycle_stage):
                found.append(experiment)
        return sorted(found, key=lambda e: int(e.experiment_id))

    def set_experiment_lifecycle(self, experiment_id: str, deleted: bool) -> None:
        experiment = self.get_experiment(experiment_id)
        meta = dict(experiment.__dict__)
        meta["lifecycle_stage"] = LifecycleStage.DELETED if deleted else LifecycleStage.ACTIVE
        meta["last_update_time"] = now_ms()
        _write_json_atomic(self.root / experiment.experiment_id / _META, meta)

    # runs ----------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        user_id: str,
        start_time: int,
        tags: Sequence[RunTag],
        run_name: str,
        run_id: str | None = None,
        *,
        defer: bool = False,  # a local run's id is final at once
    ) -> Run:
        experiment = self.get_experiment(experiment_id)
        if experiment.lifecycle_stage != LifecycleStage.ACTIVE:
            raise RunStateError(
                f"Experiment {experiment_id!r} is deleted; restore it before logging runs to it"
            )
        run_id = run_id or uuid.uuid4().hex
        run_dir = self.root / experiment.experiment_id / run_id
        with _writing(run_dir, "create the run folder"):
            run_dir.mkdir()
            try:
                self._create_run_files(
                    run_dir, experiment.experiment_id, run_id, user_id, start_time, tags, run_name
                )
            except OSError:
                shutil.rmtree(run_dir, ignore_errors=True)  # no half-made run is left
                raise
        with self._lock:
            return self._open[run_id].state.to_run()

    def _create_run_files(
        self,
        run_dir: Path,
        experiment_id: str,
        run_id: str,
        user_id: str,
        start_time: int,
        tags: Sequence[RunTag],
        run_name: str,
    ) -> None:
        (run_dir / journal.ARTIFACTS).mkdir()
        state = RunState(
            run_id=run_id,
            experiment_id=experiment_id,
            run_name=run_name,
            user_id=user_id,
            status=RunStatus.RUNNING,
            start_time=start_time,
            end_time=None,
            artifact_uri=(run_dir / journal.ARTIFACTS).as_uri(),
            tags={t.key: t.value for t in tags} | {"mlflow.runName": run_name},
        )
        journal.write_summary(run_dir, state)
        fd = os.open(run_dir / journal.JOURNAL, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        with self._lock:
            self._open[run_id] = _OpenRun(run_dir, fd, state, history=journal.HistoryIndex())
            self._run_dirs[run_id] = run_dir

    def is_open(self, run_id: str) -> bool:
        """Whether this process still writes to the run (it has not ended here)."""
        return run_id in self._open

    def run_dir(self, run_id: str) -> Path:
        """The folder of a run, wherever its experiment is."""
        found = self._run_dirs.get(run_id)
        if found is not None:
            return found
        if isinstance(run_id, str) and run_id and "/" not in run_id and not run_id.startswith("."):
            for exp_dir in self._experiment_dirs():
                candidate = exp_dir / run_id
                if (candidate / journal.SUMMARY).is_file():
                    self._run_dirs[run_id] = candidate
                    return candidate
        raise NotFoundError(f"No run with id {run_id!r} in {self.root}", resource_id=str(run_id))

    def _state(self, run_id: str) -> RunState:
        opened = self._open.get(run_id)
        if opened is not None:
            self._catch_up(opened)
            return opened.state
        return journal.load_state(self.run_dir(run_id))

    @staticmethod
    def _catch_up(opened: _OpenRun) -> None:
        """Replay lines another process appended to a run this process also writes."""
        size = os.fstat(opened.fd).st_size
        if size != opened.state.offset:
            records, offset = journal.read_records(
                opened.run_dir / journal.JOURNAL, opened.state.offset
            )
            for record in records:
                opened.state.apply(record)
            opened.state.offset = offset
            opened.history = None  # another writer: this process no longer saw every line

    def _opened(self, run_id: str) -> _OpenRun:
        opened = self._open.get(run_id)
        if opened is None:
            run_dir = self.run_dir(run_id)
            path = run_dir / journal.JOURNAL
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                journal.write_all(fd, b"\n")  # close a torn line left by a crashed writer
            opened = _OpenRun(run_dir, fd, journal.load_state(run_dir))
            saved = journal.HistoryIndex.load(run_dir)
            if saved is not None and saved[1] == opened.state.offset == os.fstat(fd).st_size:
                opened.history = saved[0]  # current: keep it current as this process appends
            self._open[run_id] = opened
        else:
            self._catch_up(opened)
        return opened

    def _append(
        self, run_id: str, record: dict[str, Any], *, check_active: bool = True
    ) -> RunState:
        with self._lock:
            opened = self._opened(run_id)
            state = opened.state
            if check_active and state.lifecycle_stage == LifecycleStage.DELETED:
                raise RunStateError(
                    f"Run {run_id!r} is deleted; restore it before logging to it", run_id=run_id
                )
            data = journal.encode(record)
            with _writing(opened.run_dir / journal.JOURNAL, "append to"):
                if opened.torn:
                    # The part of a line a failed append left would swallow this record:
                    # end it first (readers skip it as a torn fragment).
                    journal.write_all(opened.fd, b"\n")
                    opened.torn = False
                    state.offset = os.fstat(opened.fd).st_size
                    opened.history = None
                before = state.offset
                try:
                    journal.write_all(opened.fd, data)
                except OSError:
                    opened.torn = os.fstat(opened.fd).st_size != before
                    raise
            state.offset += len(data)
            state.apply(record)
            if opened.history is not None:
                opened.history.add(record)
            return state

    def get_run(self, run_id: str) -> Run:
        with self._lock:
            return self._state(run_id).to_run()

    def update_run_info(
        self, run_id: str, status: str, end_time: int | None, run_name: str | None = None
    ) -> RunInfo:
        record: dict[str, Any] = {"k": Kind.UPDATE.value, "status": status, "end_time": end_time}
        if run_name:
            record["run_name"] = run_name
        with self._lock:
            state = self._append(run_id, record, check_active=False)
            if RunStatus.is_terminated(status):
                self._close(run_id)
            return state.to_run().info

    def _close(self, run_id: str) -> None:
        """Hand a finished run to the syncer, which makes it durable in the background."""
        opened = self._open.pop(run_id, None)
        if opened is not None:
            history = opened.history
            if history is not None and os.fstat(opened.fd).st_size != opened.state.offset:
                history = None  # bytes this process did not write: leave it to readers
            self._syncer.submit(
                opened.fd, opened.run_dir, opened.state.to_json(), history, opened.state.offset
            )

    def set_lifecycle(self, run_id: str, deleted: bool) -> None:
        stage = LifecycleStage.DELETED if deleted else LifecycleStage.ACTIVE
        self._append(run_id, {"k": Kind.LIFECYCLE.value, "stage": stage}, check_active=False)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric],
        params: Sequence[Param],
        tags: Sequence[RunTag],
    ) -> None:
        with self._lock:
            new_params: dict[str, str] = {}
            if params:
                known = self._opened(run_id).state.params
                for param in params:
                    before = new_params.get(param.key, known.get(param.key))
                    if before is not None and before != param.value:
                        raise ParamConflictError(
                            f"Param {param.key!r} of run {run_id} was logged as {before!r}; "
                            f"it cannot be changed to {param.value!r}",
                            key=param.key,
                        )
                    if param.key not in known:
                        new_params[param.key] = param.value
            if not (metrics or new_params or tags):
                return
            record = journal.batch_record(list(metrics), new_params, {t.key: t.value for t in tags})
            self._append(run_id, record)

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        if datasets:
            self._append(
                run_id, {"k": Kind.INPUTS.value, "d": [journal.encode_input(d) for d in datasets]}
            )

    def delete_tag(self, run_id: str, key: str) -> None:
        with self._lock:
            if key not in self._state(run_id).tags:
                raise NotFoundError(f"Run {run_id} has no tag {key!r}", resource_id=key)
            self._append(run_id, {"k": Kind.DELETE_TAG.value, "key": key})

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        with self._lock:
            opened = self._open.get(run_id)
            if opened is not None:
                self._catch_up(opened)
                if opened.history is not None and opened.history.valid:
                    return opened.history.history(key)
        return journal.metric_history(self.run_dir(run_id), key)

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None,
        run_view_type: int,
        max_results: int,
        order_by: Sequence[str] | None,
        page_token: str | None,
    ) -> PagedList:
        search_query = search.Query(filter_string, order_by)  # a bad one fails before any read
        order = list(order_by or [])
        offset, snapshot = _decode_token(page_token)
        query = (tuple(map(str, experiment_ids)), filter_string or "", run_view_type, tuple(order))
        kept = self._snapshots.get(snapshot) if snapshot else None
        ordered = kept[1] if kept is not None and kept[0] == query else None
        if ordered is None:
            runs = []
            with _collector_paused():
                for experiment_id in experiment_ids:
                    exp_dir = self.root / str(experiment_id)
                    if not exp_dir.is_dir():
                        self.get_experiment(str(experiment_id))  # raises NotFoundError
                        continue
                    for stage, run in self._runs_in(str(exp_dir)):
                        if LifecycleStage.matches_view_type(run_view_type, stage) and (
                            search_query.accepts(run)
                        ):
                            runs.append(run)
                ordered = search_query.order(runs)
            snapshot = None
        more = offset + max_results < len(ordered)
        if more and snapshot is None:
            # The next pages come from this listing, so each costs only its own size
            # and pages neither repeat nor skip runs created meanwhile.
            snapshot = uuid.uuid4().hex
            self._snapshots[snapshot] = (query, ordered)
            while len(self._snapshots) > _SNAPSHOTS:
                del self._snapshots[next(iter(self._snapshots))]
        page = ordered[offset : offset + max_results]
        return PagedList(page, _encode_token(offset + max_results, snapshot) if more else None)

    def _runs_in(self, exp_dir: str) -> Iterator[tuple[str, Run]]:
        """(lifecycle stage, Run) of every readable run in an experiment folder.

        A run is read from its summary only when neither this store's memory nor the
        folder's catalog holds its state at its journal's current size; a listing
        that had to read many rewrites the catalog for the next process.
        """
        known = self._listed.get(exp_dir)
        catalog: dict[str, Any] = {}
        if known is None:
            known = self._listed[exp_dir] = {}
            catalog = journal.load_catalog(Path(exp_dir, _CATALOG))
        found: dict[str, tuple[RunState, Run]] = {}
        read = 0
        for entry in os.scandir(exp_dir):
            if not entry.is_dir():
                continue
            run_id = entry.name
            if run_id in self._open:
                with self._lock:
                    opened = self._open.get(run_id)
                    if opened is not None:
                        self._catch_up(opened)
                        yield opened.state.lifecycle_stage, opened.state.to_run()
                        continue
            before = known.get(run_id)
            cached = before[0] if before is not None else catalog.get(run_id)
            try:
                state, fresh = journal.current_state(entry.path, cached)
            except FileNotFoundError:
                continue  # a run folder whose creation is still under way
            except DamagedRunError as exc:
                # One damaged run must not hide the others (nor read as "No runs").
                notices.warn(f"mltrail: skipped in the listing: {exc.message}", stacklevel=3)
                continue
            if before is not None and state is before[0]:
                found[run_id] = before
            else:
                found[run_id] = (state, state.to_run())
                read += fresh
            yield state.lifecycle_stage, found[run_id][1]
        self._listed[exp_dir] = found
        if read >= max(50, len(found) // 20):
            with contextlib.suppress(OSError):  # a read-only store still lists
                journal.save_catalog(Path(exp_dir, _CATALOG), (v[0] for v in found.values()))

    # artifacts -----------------------------------------------------------

    def _artifact_root(self, run_id: str) -> Path:
        return self.run_dir(run_id) / journal.ARTIFACTS

    @contextlib.contextmanager
    def stage_artifacts(self, run_id: str, artifact_path: str | None) -> Iterator[Path]:
        """An empty folder whose files become the run's artifacts under `artifact_path`.

        The folder sits inside the run's own folder, so when the block ends without
        error its content is moved into place by renames (replacing files of the same
        name), never copied: a model is written once, where it stays, and a reader or
        the sender never sees half a file. On error nothing is published.
        """
        target = _safe_join(self._artifact_root(run_id), artifact_path)
        staging = self.run_dir(run_id) / STAGING / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            yield staging
            _move_into(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    # logged models ---------------------------------------------------------

    @contextlib.contextmanager
    def stage_logged_model(
        self, run_id: str, model_id: str, name: str, artifact_path: str, *, apart: bool = False
    ) -> Iterator[Path]:
        """A model with its own id, kept where a run's artifacts are (MLflow's run layout).

        The files are published first, then the run's journal records the model (its
        id, name, path, and the run's params and latest metrics as they are now), then
        the index file that resolves `models:/<model_id>` is written. With `apart` (the
        remote store's spool), the files go to the run folder's `models/<model_id>/`
        instead of its artifacts: the sender uploads them to where the server wants
        the model, once it has read the record.
        """
        if not _MODEL_ID_RE.match(model_id):
            raise InvalidParameterError(
                f"Invalid logged model id {model_id!r}: expected m-<32 hex digits>",
                key="model_id",
            )
        run_dir = self.run_dir(run_id)
        if apart:
            target = run_dir / journal.MODELS / model_id
            if target.exists():
                raise AlreadyExistsError(
                    f"Run {run_id} already has a model {model_id}", resource_id=model_id
                )
            staging = run_dir / STAGING / uuid.uuid4().hex
            staging.mkdir(parents=True)
            try:
                yield staging
                target.parent.mkdir(exist_ok=True)
                staging.rename(target)
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
        else:
            with self.stage_artifacts(run_id, artifact_path) as folder:
                yield folder
        with self._lock:
            state = self._opened(run_id).state
            record = {
                "k": Kind.LOGGED_MODEL.value,
                "id": model_id,
                "name": name,
                "path": artifact_path,
                "time": now_ms(),
                "p": dict(state.params),
                "m": [[k, v, ts, step] for k, (v, ts, step) in state.metrics.items()],
            }
            self._append(run_id, record)
        index = self.root / LOGGED_MODELS
        index.mkdir(exist_ok=True)
        entry = {
            "model_id": model_id,
            "run_id": run_id,
            "experiment_id": state.experiment_id,
            "name": name,
            "artifact_path": artifact_path,
            "params": record["p"],
            "creation_timestamp": record["time"],
        }
        journal.write_json_atomic(index / f"{model_id}.json", entry)

    def logged_model_entry(self, model_id: str) -> dict[str, Any] | None:
        """The index entry of a model logged here (run_id, artifact_path, ...), or None."""
        if not isinstance(model_id, str) or not _MODEL_ID_RE.match(model_id):
            return None
        try:
            return json.loads((self.root / LOGGED_MODELS / f"{model_id}.json").read_text())
        except FileNotFoundError:
            return None

    def _model_entry(self, model_id: str) -> dict[str, Any]:
        entry = self.logged_model_entry(model_id)
        if entry is None:
            raise NotFoundError(
                f"No logged model {model_id!r} in {self.root}", resource_id=model_id
            )
        return entry

    def get_logged_model(self, model_id: str) -> LoggedModel:
        entry = self._model_entry(model_id)
        folder = self._artifact_root(entry["run_id"]) / entry["artifact_path"]
        return LoggedModel(
            model_id=model_id,
            experiment_id=entry["experiment_id"],
            name=entry["name"],
            source_run_id=entry["run_id"],
            artifact_location=folder.as_uri(),
            params=dict(entry.get("params") or {}),
            creation_timestamp=entry.get("creation_timestamp"),
        )

    def run_logged_models(self, run_id: str) -> list[LoggedModel]:
        with self._lock:
            logged = list(self._state(run_id).models)
        return [self.get_logged_model(m["id"]) for m in logged]

    def download_logged_model(self, model_id: str, dst_path: Path | None) -> Path:
        entry = self._model_entry(model_id)
        if dst_path is None:
            return self._artifact_root(entry["run_id"]) / entry["artifact_path"]
        return self.download_artifacts(entry["run_id"], entry["artifact_path"], dst_path)

    def list_artifacts(self, run_id: str, path: str | None) -> list[FileInfo]:
        root = self._artifact_root(run_id)
        folder = _safe_join(root, path)
        if not folder.is_dir():
            return []
        infos = []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            rel = Path(entry.path).relative_to(root).as_posix()
            if entry.is_dir():
                infos.append(FileInfo(rel, True, None))
            else:
                infos.append(FileInfo(rel, False, entry.stat().st_size))
        return infos

    def download_artifacts(self, run_id: str, path: str, dst_path: Path) -> Path:
        source = _safe_join(self._artifact_root(run_id), path)
        if not source.exists():
            raise NotFoundError(f"Run {run_id} has no artifact {path!r}", resource_id=path)
        target = Path(dst_path) / source.name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        return target

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until finished runs are fsynced; every record already reached the OS."""
        return self._syncer.wait(timeout)


_Finished = tuple[int, Path, str, "journal.HistoryIndex | None", int]


class _Syncer:
    """Fsyncs, closes and summarises finished runs on a background thread.

    An fsync costs milliseconds, more than everything else about a small run, so
    `end_run` does not wait for it: each record already reached the OS when it
    was logged (a crash of the process loses nothing), and the fsync that guards
    against a crash of the machine follows at once. `flush()` and interpreter
    exit wait for it. A summary written late is still correct: a reader replays
    whatever the journal holds past the summary's offset.
    """

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._queue: queue.Queue[_Finished] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _after_fork(self) -> None:
        """In a forked child (a multiprocessing worker) start afresh: the parent's
        thread did not come along, and its lock and queue may be mid-use."""
        if self._pid != os.getpid():
            self.__init__()  # type: ignore[misc]

    def submit(
        self,
        fd: int,
        run_dir: Path,
        summary: str,
        history: journal.HistoryIndex | None = None,
        offset: int = 0,
    ) -> None:
        self._after_fork()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="mltrail-local-sync", daemon=True
                )
                self._thread.start()
                atexit.register(self.wait, 30.0)
        self._queue.put((fd, run_dir, summary, history, offset))

    def _work(self) -> None:
        while True:
            fd, run_dir, summary, history, offset = self._queue.get()
            try:
                os.fsync(fd)
                os.close(fd)
                journal.write_summary(run_dir, summary)
                if history is not None:
                    history.save(run_dir, offset)
            except OSError as exc:  # a folder removed under us: the journal is what counts
                notices.warn(f"mltrail: could not finish writing {run_dir}: {exc}", stacklevel=1)
            finally:
                self._queue.task_done()

    def wait(self, timeout: float | None = None) -> bool:
        self._after_fork()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.002)
        return True


def _move_into(source: Path, target: Path) -> None:
    """Move the files under `source` to the same places under `target`, by renames."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        source.rename(target)  # the common case: nothing is there yet, one rename
        return
    except OSError:
        pass  # the folder exists (a file or model logged there before): merge
    for dirpath, _, filenames in os.walk(source):
        rel = Path(dirpath).relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            os.replace(Path(dirpath) / name, target / rel / name)


def _safe_join(root: Path, rel: str | None) -> Path:
    if not rel:
        return root
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise InvalidParameterError(
            f"Artifact path {rel!r} points outside the run's artifacts", key=rel
        )
    return target


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a listing builds its runs.

    Listing 10,000 runs allocates some 300,000 containers in a few hundred
    milliseconds, and the allocations keep triggering collections that rescan
    every object alive in the process: 0.36-0.62 s against 0.27-0.32 s paused, on
    the benchmark machine. Reference counting still frees what is dropped, and the
    collector runs again as before once the listing is built.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _encode_token(offset: int, snapshot: str | None) -> str:
    payload: dict[str, Any] = {"offset": offset}
    if snapshot:
        payload["snapshot"] = snapshot
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def _decode_token(token: str | None) -> tuple[int, str | None]:
    if not token:
        return 0, None
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(payload["offset"]), payload.get("snapshot")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidParameterError(f"Invalid page token {token!r}", key="page_token") from None
