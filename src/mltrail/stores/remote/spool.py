"""The spool: where records for a tracking server wait, on disk, until they are shipped.

One folder per server under the spool root (``MLTRAIL_SPOOL_DIR``, default
``~/.mltrail/spool``), named from the server's scheme, host, port and path,
never from its credentials. Inside, a local store (the same journals as
`mltrail.stores.local`) holds the runs, plus::

    server.json                        the server's address, for `mltrail sync`
    experiments.json                   spool experiment id -> server experiment id
    <exp>/<run>/ship.json              what of this run the server already has
    <exp>/<run>/.ship.lock             held (flock) by whoever ships the run
    <exp>/<run>/refused.jsonl          records the server refused, set aside with why
    <exp>/<run>/models/<model_id>/     a logged model's files, until the sender uploads
                                       them (to the LoggedModel, or to an older server's run)

`ship.json` is replaced atomically after each request that the server accepted,
so shipping resumes exactly where it stopped, whichever process stopped.
Artifact copies wait in the run's ``artifacts/`` folder and are removed once
uploaded: whatever file is there is still to be sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ...entities import RunStatus
from ...exceptions import StorageError
from .. import journal
from ..local import LocalStore

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one shipper per run is not enforced
    fcntl = None  # type: ignore[assignment]

SHIP_STATE = "ship.json"
SERVER_FILE = "server.json"
EXPERIMENT_MAP = "experiments.json"
LOCK_FILE = ".ship.lock"
ARTIFACTS = journal.ARTIFACTS  # the same run-folder layout as the local store
MODELS = journal.MODELS
CLIENT_RUN_ID_TAG = "mltrail.clientRunId"
CLIENT_MODEL_ID_TAG = "mltrail.clientModelId"  # a LoggedModel's id in the spool, for lookups
REFUSED = "refused.jsonl"  # records the server refused, set aside (see Shipper._set_aside)


def placeholder_experiment_name(server_experiment_id: str) -> str:
    """The name of a spool experiment mirroring a server experiment whose name could not
    be asked: it stands for that id."""
    return f"server-experiment-{server_experiment_id}"


def folder_name(server_url: str) -> str:
    """A folder name for a server: scheme, host, port and path, nothing secret."""
    parsed = urlparse(server_url)
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        raw = f"{parsed.scheme}_{parsed.hostname or 'localhost'}_{port}{parsed.path.rstrip('/')}"
    else:  # a database URI (`mltrail.stores.bridge`): its path or query names the database
        host = parsed.netloc.rpartition("@")[2]
        raw = f"{parsed.scheme}_{host}{parsed.path}_{parsed.query}"
    return re.sub(r"[^\w.-]+", "_", raw).strip("_")


_write_json_atomic = journal.write_json_atomic


def append_line(path: Path, data: bytes) -> None:
    """Append `data` (whole lines) to `path` with O_APPEND, every byte written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        journal.write_all(fd, data)
    finally:
        os.close(fd)


def refused_records(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run that the server refused and the shipper set aside."""
    records, _ = journal.read_records(run_dir / REFUSED, 0)
    return records


@dataclass
class ShipState:
    """What the server has of one spooled run.

    Attributes:
        client_run_id: the run's id in the spool (its folder name).
        server_run_id: the run's id on the server; None until it is created there.
        server_experiment_id: the server experiment, when known at creation.
        create: what `runs/create` needs (start_time, user_id, run_name, tags).
        create_sent: a `runs/create` for the run may have reached the server (its
            answer lost), so the sender looks the run up by its client id before
            creating it; False only for a run never offered to the server.
        create_settles_at: when (seconds since the epoch) a `runs/create` whose answer
            was lost has surely either landed or been given up by the server: until
            then a lookup that misses the run proves nothing, and no new create is sent.
        offset: the journal byte offset up to which every record was accepted.
        artifact_uri: the run's artifact URI on the server.
        uploaded: artifact files uploaded so far.
        error: the last permanent refusal by the server, for `mltrail sync` to report.
        pruned: once the run was delivered and its journal removed, how many bytes that
            freed and when (ms): the rest of the folder is the run's receipt.
        models: per logged model (by the id mltrail gave it): `server_id` and
            `artifact_uri` once the server made it a LoggedModel, `create_sent` while
            its creation may have reached the server (and `create_settles_at`, as for
            the run's create), `linked` once it is the run's
            output, `run_artifacts` when an older server got it as run artifacts.
    """

    client_run_id: str
    server_run_id: str | None = None
    server_experiment_id: str | None = None
    create: dict[str, Any] = field(default_factory=dict)
    create_sent: bool = True
    create_settles_at: float | None = None
    offset: int = 0
    artifact_uri: str | None = None
    uploaded: int = 0
    error: str | None = None
    pruned: dict[str, int] | None = None
    models: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: Path) -> ShipState:
        """The run's ship state; a run without one (never seen by a sender) starts empty."""
        try:
            raw = json.loads((run_dir / SHIP_STATE).read_text())
        except FileNotFoundError:
            return cls(client_run_id=run_dir.name)
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self, run_dir: Path) -> None:
        _write_json_atomic(run_dir / SHIP_STATE, asdict(self))


@dataclass
class Pending:
    """What of a run is not on the server yet."""

    records: int = 0
    artifacts: int = 0
    created: bool = True
    points: int = 0  # metric points among the records

    def __bool__(self) -> bool:
        return bool(self.records or self.artifacts or not self.created)


def unsent_bytes(run_dir: Path, offset: int) -> bool:
    """True when the journal holds a complete record after `offset`.

    A torn last line (a crashed writer) has no newline and does not count.
    """
    path = run_dir / journal.JOURNAL
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return False
    if size <= offset:
        return False
    with open(path, "rb") as handle:
        handle.seek(offset)
        while chunk := handle.read(1 << 16):
            if b"\n" in chunk:
                return True
    return False


def pending_artifacts(run_dir: Path, folder: str = ARTIFACTS) -> list[tuple[str, Path]]:
    """Files still waiting for upload: (path relative to `folder` of the run, file).

    `folder` is the run's artifacts, or `models/<model_id>` for a logged model's files.
    """
    root = run_dir / folder
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            found.append((path.relative_to(root).as_posix(), path))
    return found


def pending(run_dir: Path, state: ShipState | None = None) -> Pending:
    """What of the run in `run_dir` is not on the server yet."""
    state = state or ShipState.load(run_dir)
    records, points = journal.count_after(run_dir / journal.JOURNAL, state.offset)
    return Pending(
        records=records,
        artifacts=len(pending_artifacts(run_dir)) + len(pending_artifacts(run_dir, MODELS)),
        created=state.server_run_id is not None,
        points=points,
    )


PRUNING = ".journal.pruning"  # a journal being removed after delivery


def prune_delivered(run_dir: Path, state: ShipState) -> int:
    """Remove a delivered run's journal, keeping a receipt; return the bytes freed.

    Only a run that ended, whose every record and artifact the server confirmed, is
    pruned (0 is returned otherwise). What stays is the receipt: `summary.json` (the
    run's final state, so the spool can still list it and read it offline, all but
    metric histories) and `ship.json` (its server id, so the local id keeps resolving
    and `mltrail sync` knows there is nothing to send). The caller holds the run's
    ship lock and makes sure no process of its own still writes to the run.

    The journal is renamed away first, then the summary is rewritten as the whole
    state at offset 0, then the ship state's offset set to 0, then the renamed file
    removed. A crash at any step leaves a run that reads complete and ships nothing
    twice; a later call finishes the job.
    """
    journal_path = run_dir / journal.JOURNAL
    leftover = run_dir / PRUNING
    if state.server_run_id is None:
        return 0
    try:
        size = os.stat(journal_path).st_size
    except FileNotFoundError:
        size = 0
    if size == 0 and not leftover.exists():
        return 0
    if size and (unsent_bytes(run_dir, state.offset) or state.offset != size):
        return 0
    if pending_artifacts(run_dir) or pending_artifacts(run_dir, MODELS):
        return 0
    run_state = journal.load_state(run_dir)
    if not RunStatus.is_terminated(run_state.status):
        return 0
    if size:
        os.replace(journal_path, leftover)
    journal.drop_history(run_dir)
    run_state.offset = 0
    journal.write_summary(run_dir, run_state)
    state.offset = 0
    freed = size or (leftover.stat().st_size if leftover.exists() else 0)
    state.pruned = {"bytes": freed, "at": int(time.time() * 1000)}
    state.save(run_dir)
    leftover.unlink(missing_ok=True)
    return freed


class RunLock:
    """An exclusive, non-blocking lock on shipping one run, released if its holder dies."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


class Spool:
    """The spool folder of one tracking server.

    Args:
        root: the spool root holding one folder per server.
        server_url: the server's address without credentials.
    """

    def __init__(self, root: Path, server_url: str) -> None:
        self.server_url = server_url
        self.folder = Path(root).expanduser().absolute() / folder_name(server_url)
        self.store = LocalStore(self.folder)
        self._map_lock = threading.Lock()

    @classmethod
    def open_folder(cls, folder: Path) -> Spool:
        """The spool in `folder`, with the server address recorded there."""
        url = json.loads((folder / SERVER_FILE).read_text())["url"]
        spool = cls.__new__(cls)
        spool.server_url = url
        spool.folder = folder.absolute()
        spool.store = LocalStore(spool.folder)
        spool._map_lock = threading.Lock()
        return spool

    def ensure_folder(self) -> None:
        """Create the folder and record which server it belongs to.

        Raises:
            StorageError: the folder cannot be written.
        """
        marker = self.folder / SERVER_FILE
        if not marker.exists():
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                _write_json_atomic(marker, {"url": self.server_url})
            except OSError as exc:
                raise StorageError.wrap(exc, self.folder, "write the spool folder") from exc

    def probe(self, spool_experiment_id: str) -> None:
        """Check that a run can be written in the spool experiment, before the server is
        asked for one: a run the spool cannot hold would stay empty and RUNNING there.

        Raises:
            StorageError: the spool is full or not writable.
        """
        folder = self.folder / spool_experiment_id
        probe = folder / f".probe.{os.getpid()}.{threading.get_ident()}"
        try:
            with open(probe, "wb") as handle:
                handle.write(b"x" * 512)  # a full disk refuses data, not only new names
            probe.unlink()
        except OSError as exc:
            probe.unlink(missing_ok=True)
            raise StorageError.wrap(exc, folder, "write a run in the spool folder") from exc

    # experiment mapping --------------------------------------------------

    def experiment_map(self) -> dict[str, str]:
        try:
            return dict(json.loads((self.folder / EXPERIMENT_MAP).read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def server_experiment(self, spool_experiment_id: str) -> str | None:
        return self.experiment_map().get(spool_experiment_id)

    def map_experiment(self, spool_experiment_id: str, server_experiment_id: str) -> None:
        """Remember that a spool experiment is this server experiment, and no other one.

        Two processes updating the map at once may lose one entry; it is then
        looked up by name again, so nothing depends on the map being complete.
        A server id was another spool experiment's only while the server had another
        database (`Shipper.resolve_experiment` checks): that stale entry is dropped.
        """
        with self._map_lock:
            current = self.experiment_map()
            stale = [k for k, v in current.items() if v == server_experiment_id]
            if stale == [spool_experiment_id]:
                return
            for key in stale:
                del current[key]
            current[spool_experiment_id] = server_experiment_id
            self.ensure_folder()
            _write_json_atomic(self.folder / EXPERIMENT_MAP, current)

    def spool_experiment_for(self, server_experiment_id: str) -> str | None:
        for spool_id, server_id in self.experiment_map().items():
            if server_id == server_experiment_id:
                return spool_id
        return None

    # runs ----------------------------------------------------------------

    def run_dirs(self) -> Iterator[Path]:
        """Every run folder of the spool."""
        if not self.folder.is_dir():
            return
        for exp in sorted(os.scandir(self.folder), key=lambda e: e.name):
            if not (exp.name.isdigit() and exp.is_dir()):
                continue
            for entry in sorted(os.scandir(exp.path), key=lambda e: e.name):
                if entry.is_dir() and os.path.exists(os.path.join(entry.path, journal.SUMMARY)):
                    yield Path(entry.path)

    def pending_runs(self) -> Iterator[tuple[Path, Pending]]:
        """Run folders with anything not yet on the server, and what that is."""
        for run_dir in self.run_dirs():
            with contextlib.suppress(OSError, ValueError, TypeError):
                todo = pending(run_dir)
                if todo:
                    yield run_dir, todo


def spool_folders(root: Path) -> Iterator[Path]:
    """The per-server folders under a spool root."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir() and os.path.exists(os.path.join(entry.path, SERVER_FILE)):
            yield Path(entry.path)
