"""Shipping one spooled run to a tracking server, exactly once: the Shipper.

`Shipper.ship_run` sends what the server does not have of one run yet:
creates the run if it has no server id (looking for the client-id tag first, so
a `runs/create` whose answer was lost is never repeated), sends the journal's
records after the shipped offset in `runs/log-batch` requests within the
server's limits, the other records (status, deletions, datasets) through their
endpoints, then the artifact files. After each accepted request it saves the
new offset, so an interruption at any point only resends records, which the
server treats as no-ops (same metric point, same param value, same tag value).
A record the server refuses is set aside (`refused.jsonl`), never in the way of
the records behind it. The background `Sender` (`mltrail.stores.remote.sender`)
and `mltrail sync` both ship through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import notices
from ...exceptions import (
    AlreadyExistsError,
    AuthError,
    InvalidParameterError,
    MltrailError,
    NotFoundError,
    RemoteError,
)
from .. import journal
from ..journal import Kind
from .artifact_roots import ArtifactRoots

if TYPE_CHECKING:
    from ..bridge.session import BridgeSession
from .http import (
    HttpSession,
    is_transient,
    request_sent,
)
from .spool import (
    ARTIFACTS,
    CLIENT_MODEL_ID_TAG,
    CLIENT_RUN_ID_TAG,
    MODELS,
    REFUSED,
    RunLock,
    ShipState,
    Spool,
    append_line,
    pending_artifacts,
    placeholder_experiment_name,
    prune_delivered,
    unsent_bytes,
)

MAX_METRICS = 1000
MAX_PARAMS = 100
MAX_TAGS = 100
MAX_ENTITIES = 1000
MAX_BYTES = 900_000  # the server takes 1 MB a request; the estimate below leaves a margin
UPLOAD_THREADS = 4  # artifact files of one run sent side by side
SHIP_THREADS = 2  # runs shipped side by side (a search's child runs end together)
BATCHES_IN_FLIGHT = 4  # metric-only log-batch requests of one run sent side by side


def read_journal(path: Path, offset: int) -> Iterator[tuple[dict[str, Any], int]]:
    """Complete, readable records after `offset`, each with the offset just past it."""
    for record, end in journal.iter_lines(path, offset):
        if record is not None:
            yield record, end


def _size(value: str) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


class _Batch:
    """One `runs/log-batch` request being filled."""

    def __init__(self) -> None:
        self.metrics: list[dict[str, Any]] = []
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.metrics) + len(self.params) + len(self.tags)

    def room(self, extra_bytes: int) -> bool:
        return len(self) < MAX_ENTITIES and self.bytes + extra_bytes <= MAX_BYTES

    def payload(self, run_id: str) -> dict[str, Any]:
        return _payload(run_id, self.entities())

    def entities(self) -> list[tuple[str, dict[str, Any]]]:
        """The batch as (field, entity) pairs, which any subset of can be sent alone."""
        found: list[tuple[str, dict[str, Any]]] = [("metrics", m) for m in self.metrics]
        found += [("params", {"key": k, "value": v}) for k, v in self.params.items()]
        found += [("tags", {"key": k, "value": v}) for k, v in self.tags.items()]
        return found


def _payload(run_id: str, entities: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    payload: dict[str, Any] = {"run_id": run_id}
    for name, entity in entities:
        payload.setdefault(name, []).append(entity)
    return payload


def _refusal(exc: BaseException) -> bool:
    """True when the server refused a request for what it carries (a 4xx other than
    auth, or a run that no longer accepts records), so sending it again cannot help."""
    return (
        isinstance(exc, MltrailError)
        and not is_transient(exc)
        and not isinstance(exc, (AuthError, NotFoundError))
    )


@dataclass
class ShipResult:
    """What one `ship_run` call did."""

    server_run_id: str | None
    records: int = 0
    requests: int = 0
    artifacts: int = 0
    complete: bool = False
    busy: bool = False  # another process holds the run's lock
    refused: list[str] = field(default_factory=list)  # why records were set aside
    pruned: int = 0  # journal bytes removed once the run was delivered


class Shipper:
    """Ships spooled runs of one server (see the module docstring).

    Args:
        http: the session to the server (an `HttpSession`, or a `BridgeSession` for a
            database).
        spool: the server's spool folder.
        retries: retries of each request on a transient failure.
        on_created: called with (spool run id, server run id, artifact uri) when a
            run gets its server id, so a store can resolve the local id from then on.
        may_prune: called with a delivered run's spool id; True lets its journal be
            removed (`spool.prune_delivered`). None: journals are kept.
    """

    def __init__(
        self,
        http: HttpSession | BridgeSession,
        spool: Spool,
        *,
        retries: int | None = None,
        on_created: Callable[[str, str, str | None], None] | None = None,
        may_prune: Callable[[str], bool] | None = None,
    ) -> None:
        self.http = http
        self.spool = spool
        self.retries = retries
        self.on_created = on_created
        self.may_prune = may_prune
        self.artifacts = ArtifactRoots(http)
        self.progress = 0  # requests the server accepted: lets a waiting reader see movement
        self.points_sent = 0  # metric points the server accepted (progress on big backlogs)
        self.batches_in_flight = BATCHES_IN_FLIGHT
        self._progress_lock = threading.Lock()  # uploads run on several threads
        self._inputs_lock = threading.Lock()
        # Whether the server has MLflow 3's logged-models API: None until asked, once.
        self.logged_models: bool | None = None
        # Server experiment id -> name, as the server gave it to this process: what a
        # spool's experiment mapping is checked against (`resolve_experiment`).
        self._experiment_names: dict[str, str] = {}
        self._experiments_lock = threading.Lock()

    def _call(self, method: str, endpoint: str, payload: dict[str, Any], **kwargs: Any) -> Any:
        answer = self.http.call(method, endpoint, payload, **kwargs)
        self._moved()
        return answer

    def _moved(self) -> None:
        with self._progress_lock:
            self.progress += 1

    def ship_run(self, run_dir: Path) -> ShipResult:
        """Send what the server lacks of the run in `run_dir`.

        Raises:
            AuthError: the server refused the credentials.
            MltrailError: the server refused a request (recorded in the ship state as
                the run's error), or could not be reached (`is_transient`).
        """
        lock = RunLock(run_dir)
        if not lock.acquire():
            return ShipResult(server_run_id=None, busy=True)
        try:
            state = ShipState.load(run_dir)
            result = ShipResult(server_run_id=state.server_run_id)
            try:
                try:
                    self._ensure_created(run_dir, state, result)
                except NotFoundError:
                    if state.server_run_id is not None:
                        raise
                    # The run's experiment is gone (a new database): found again by
                    # name, once; the refused create made no run, so none is looked up.
                    self.forget_experiment(state.server_experiment_id)
                    self.forget_experiment(self.spool.server_experiment(run_dir.parent.name))
                    state.server_experiment_id = None
                    state.create_sent, state.create_settles_at = False, None
                    state.save(run_dir)
                    self._ensure_created(run_dir, state, result)
                self._ship_records(run_dir, state, result)
                self._ship_artifacts(run_dir, state, result)
            except MltrailError as exc:
                if not is_transient(exc) and not isinstance(exc, AuthError):
                    state.error = exc.message
                    state.save(run_dir)
                raise
            if state.error is not None:
                state.error = None
                state.save(run_dir)
            result.complete = not unsent_bytes(run_dir, state.offset) and not pending_artifacts(
                run_dir
            )
            if (
                result.complete
                and self.may_prune is not None
                and self.may_prune(state.client_run_id)
            ):
                result.pruned = prune_delivered(run_dir, state)
            return result
        finally:
            lock.release()

    # creation ------------------------------------------------------------

    def _ensure_created(self, run_dir: Path, state: ShipState, result: ShipResult) -> None:
        """Create the run on the server, exactly once.

        Why this never makes two server runs of one spooled run:

        - Never two creates in flight for one run. The caller holds the run's flock
          (one shipper per run across processes), and a foreground create that outlived
          its budget keeps the run held in its process's sender until that create ends
          (`Sender.hold`), so no second create is sent beside it.
        - A create whose answer was lost (connection dropped, read timeout, a gateway's
          5xx) may have landed, or may still land. Before any new create the run is
          looked up by its `mltrail.clientRunId` tag (`create_sent`), and a miss counts
          only once `create_settles_at` has passed: the lost request's read timeout
          after it was sent, the time its sender was prepared to wait for the server
          to act on it. MLflow's server commits a run before it answers, so a request
          it has finished with shows in the lookup. Until then the run waits (a
          transient error: the sender backs off, `mltrail sync` leaves it pending).
        - A create that certainly never reached the server (connection refused, connect
          timeout) needs no lookup (`request_sent`).

        What is left: a server that sits on a request for longer than the client's read
        timeout and commits it afterwards. Such a late twin carries the same client id
        tag, so it can be found with one `runs/search`.
        """
        if state.server_run_id is not None:
            return
        experiment_id = self.resolve_experiment(run_dir.parent, state.server_experiment_id)
        create = state.create or _create_info_from_summary(run_dir)
        client_id = state.client_run_id
        runs = []
        if state.create_sent:
            found = self._call(
                "POST",
                "runs/search",
                {
                    "experiment_ids": [experiment_id],
                    "filter": f"tags.`{CLIENT_RUN_ID_TAG}` = '{client_id}'",
                    "run_view_type": "ALL",
                    "max_results": 1,
                },
                retries=self.retries,
            )
            result.requests += 1
            runs = found.get("runs") or []
        if runs:
            info = runs[0]["info"]
        else:
            self._unsettled(f"run {client_id}", state.create_sent, state.create_settles_at)
            before = (state.create_sent, state.create_settles_at)
            # From here on, a lost answer means: look it up first, and trust a miss only
            # once the server has had the read timeout to act on this request.
            state.create_sent = True
            state.create_settles_at = time.time() + self.http.settings.settle_time()
            state.save(run_dir)
            tags = {k: self._server_tag_value(v, run_dir) for k, v in
                    (create.get("tags") or {}).items()}
            tags[CLIENT_RUN_ID_TAG] = client_id
            try:
                answer = self._call(
                    "POST",
                    "runs/create",
                    {
                        "experiment_id": experiment_id,
                        "user_id": create.get("user_id", ""),
                        "run_name": create.get("run_name", ""),
                        "start_time": create.get("start_time"),
                        "tags": [{"key": k, "value": v} for k, v in tags.items()],
                    },
                    retries=0,  # not idempotent: a retry looks the tag up again first
                )
            except MltrailError as exc:
                if is_transient(exc) and not request_sent(exc):
                    state.create_sent, state.create_settles_at = before
                    state.save(run_dir)
                raise
            result.requests += 1
            info = answer["run"]["info"]
        state.server_run_id = info["run_id"]
        state.server_experiment_id = experiment_id
        state.artifact_uri = info.get("artifact_uri")
        state.save(run_dir)
        result.server_run_id = state.server_run_id
        if self.on_created is not None:
            self.on_created(state.client_run_id, state.server_run_id, state.artifact_uri)

    def _unsettled(self, what: str, sent: bool, settles_at: float | None) -> None:
        """Raise `CreateUnconfirmed` while a create of `what` whose answer was lost may
        still land (its `settle_time` has not passed): a lookup's miss proves nothing yet."""
        if sent and settles_at is not None and time.time() < settles_at:
            raise CreateUnconfirmed(
                f"The tracking server at {self.http.base_url} has not shown {what} yet, "
                "whose creation request got no answer; it is looked up again (for up to "
                f"{settles_at - time.time():.0f} s) before it is created anew"
            )

    def _server_tag_value(self, value: Any, run_dir: Path) -> Any:
        """A tag value as the server must hold it: another run of this spool named by
        its local id is named by its server id.

        A run logged offline, or through the database bridge, has a local id until it
        is shipped; its children's `mlflow.parentRunId` and a search's best-trial tag
        were written with that id, which the server has never heard of. Which tags
        hold run ids is the integrations' business, so any value that is the id of a
        run in this spool is translated; the run it names is created on the server
        first if it is not there yet.
        """
        if (
            not isinstance(value, str)
            or not _RUN_ID.fullmatch(value)
            or value == run_dir.name
        ):
            return value
        try:
            other_dir = self.spool.store.run_dir(value)
        except NotFoundError:
            return value  # not a run of this spool: the value is the user's own
        state = ShipState.load(other_dir)
        if state.server_run_id is None:
            lock = RunLock(other_dir)
            if not lock.acquire():
                raise RunBusy(
                    f"run {value}, named by a tag of run {run_dir.name}, is being shipped "
                    "right now; the tag is sent once that run has its server id"
                )
            try:
                state = ShipState.load(other_dir)
                self._ensure_created(other_dir, state, ShipResult(server_run_id=None))
            finally:
                lock.release()
        return state.server_run_id or value

    # experiments ---------------------------------------------------------

    def learn_experiment(self, server_id: str, name: str) -> None:
        """Remember the name the server just gave for one of its experiment ids."""
        with self._experiments_lock:
            self._experiment_names[server_id] = name

    def experiment_name(self, server_id: str) -> str | None:
        """The name the server gave this process for an experiment id, if it did."""
        return self._experiment_names.get(server_id)

    def forget_experiment(self, server_id: str | None) -> None:
        """The server said this experiment does not exist: check it again before use."""
        if server_id is not None:
            with self._experiments_lock:
                self._experiment_names.pop(server_id, None)

    def resolve_experiment(self, exp_dir: Path, hint: str | None = None) -> str:
        """The server id of a spool experiment: `hint` (a run's own) or the spool's
        mapping if it still names this experiment, else found by name or created.

        The one place that decides whether a mapping is still true. A mapping outlives
        the server's database (``rm mlflow.db``, a server restarted on a fresh one),
        where the id may be missing or name another experiment. So an id is used only
        once the server gave this process the spool experiment's name for it: one
        `experiments/get` per experiment per process (or `mltrail sync`), not per run.
        Otherwise the experiment is found by name (or created) and the mapping replaced.
        """
        spool_id = exp_dir.name
        name = json.loads((exp_dir / "meta.json").read_text())["name"]
        with self._experiments_lock:
            mapped = self.spool.server_experiment(spool_id)
            for candidate in dict.fromkeys(c for c in (hint, mapped) if c):
                if self._names_experiment(candidate, name):
                    if candidate != mapped:
                        self.spool.map_experiment(spool_id, candidate)
                    return candidate
                if name == placeholder_experiment_name(candidate):
                    # Named only by that id, which the server does not have: no name
                    # to look for, and none to create.
                    raise NotFoundError(
                        f"No experiment with id {candidate!r} on {self.http.base_url}",
                        resource_id=candidate,
                    )
            server_id = self.experiment_id_by_name(name, create=True)
            assert server_id is not None
            self._experiment_names[server_id] = name
            self.spool.map_experiment(spool_id, server_id)
        if mapped is not None and mapped != server_id:
            notices.warn(
                f"mltrail: experiment id {mapped} on {self.http.base_url} is no longer "
                f"experiment {name!r} (a new database?); its runs go to experiment "
                f"{server_id} there"
            )
        return server_id

    def _names_experiment(self, server_id: str, name: str) -> bool:
        """Whether server experiment `server_id` is called `name` (asked once a process).

        A spool experiment named only by an id (`placeholder_experiment_name`: the server
        could not be asked its name) holds while that id exists.
        """
        known = self._experiment_names.get(server_id)
        if known is None:
            try:
                answer = self._call(
                    "GET", "experiments/get", {"experiment_id": server_id}, retries=self.retries
                )
            except (NotFoundError, InvalidParameterError):
                return False
            known = self._experiment_names[server_id] = str(answer["experiment"]["name"])
        return known == name or name == placeholder_experiment_name(server_id)

    def experiment_id_by_name(self, name: str, *, create: bool) -> str | None:
        for _ in range(2):
            try:
                answer = self._call(
                    "GET",
                    "experiments/get-by-name",
                    {"experiment_name": name},
                    retries=self.retries,
                )
                return str(answer["experiment"]["experiment_id"])
            except NotFoundError:
                if not create:
                    return None
            try:
                answer = self._call(
                    "POST", "experiments/create", {"name": name}, retries=self.retries
                )
                return str(answer["experiment_id"])
            except AlreadyExistsError:
                continue  # created by someone else meanwhile (or by our lost answer)
        raise NotFoundError(f"Experiment {name!r} could not be found or created", resource_id=name)

    # records -------------------------------------------------------------

    def _ship_records(self, run_dir: Path, state: ShipState, result: ShipResult) -> None:
        run_id = state.server_run_id
        assert run_id is not None
        batch = _Batch()
        # Dataset records wait for the batch to be sent rather than cutting it in two:
        # a dataset commutes with metrics, params and tags, so sending it later keeps
        # the run's content the same with one request fewer.
        datasets: list[dict[str, Any]] = []
        done = state.offset  # just past the last record wholly inside sent or open batches

        def commit(offset: int) -> None:
            if offset != state.offset:
                state.offset = offset
                state.save(run_dir)

        def ship_metrics(entities: list[tuple[str, dict[str, Any]]]) -> ShipResult:
            alone = ShipResult(server_run_id=run_id)
            self._send_entities(run_dir, run_id, entities, alone)
            return alone

        flight = _InFlight(ship_metrics, result, self.batches_in_flight)

        def send() -> None:
            nonlocal batch
            if len(batch) and not (batch.params or batch.tags or datasets):
                # Metric points commute: this batch may go beside the ones before it.
                flight.submit(batch.entities(), done)
                batch = _Batch()
                commit(flight.accepted(state.offset))
                return
            commit(flight.drain(state.offset))  # everything else keeps its order
            if len(batch):
                self._send_entities(run_dir, run_id, batch.entities(), result)
                batch = _Batch()
            for record in datasets:
                self._send_record(Kind.INPUTS, record, run_dir, run_id, result)
            datasets.clear()
            commit(done)

        try:
            for record, end in read_journal(run_dir / journal.JOURNAL, state.offset):
                kind = record.get("k")
                if kind == Kind.BATCH:
                    for key, value, timestamp, step in record.get("m", ()):
                        if len(batch.metrics) >= MAX_METRICS or not batch.room(len(key) + 80):
                            send()
                        batch.metrics.append(
                            {"key": key, "value": value, "timestamp": timestamp, "step": step}
                        )
                        batch.bytes += len(key) + 80
                    for key, value in record.get("p", {}).items():
                        if key in batch.params:
                            if batch.params[key] == value:
                                continue
                            send()  # one request may not carry a key twice
                        extra = _size(key) + _size(value) + 20
                        if len(batch.params) >= MAX_PARAMS or not batch.room(extra):
                            send()
                        batch.params[key] = value
                        batch.bytes += extra
                    for key, value in record.get("t", {}).items():
                        extra = _size(key) + _size(value) + 20
                        if key not in batch.tags and (
                            len(batch.tags) >= MAX_TAGS or not batch.room(extra)
                        ):
                            send()
                        # a later value of the same key wins
                        batch.tags[key] = self._server_tag_value(value, run_dir)
                        batch.bytes += extra
                elif kind == Kind.INPUTS:
                    datasets.append(record)
                elif kind == Kind.LOGGED_MODEL:
                    send()
                    commit(flight.drain(state.offset))
                    self._ship_logged_model(run_dir, state, record, result)
                else:
                    send()
                    commit(flight.drain(state.offset))
                    self._send_record(kind, record, run_dir, run_id, result)
                done = end
                result.records += 1
            send()
            commit(flight.drain(state.offset))
        finally:
            # An error (here or in a batch in flight): keep what the server accepted in
            # order, so the next attempt resends only from the first batch not accepted.
            with contextlib.suppress(Exception):
                commit(flight.drain(state.offset, raise_error=False))

    def _send_entities(
        self,
        run_dir: Path,
        run_id: str,
        entities: list[tuple[str, dict[str, Any]]],
        result: ShipResult,
    ) -> None:
        """One `runs/log-batch`; what the server refuses is set aside, the rest is sent.

        A refused batch is split in halves until the refused entities are alone, so
        one bad metric point costs a few requests, not the run (about 2 log2(n)
        requests for one bad entity among n). A run that no longer takes records at
        all (deleted on the server) is checked once instead of splitting.
        """
        try:
            self._call("POST", "runs/log-batch", _payload(run_id, entities), retries=self.retries)
            result.requests += 1
            points = sum(1 for name, _ in entities if name == "metrics")
            with self._progress_lock:
                self.points_sent += points
            return
        except MltrailError as exc:
            result.requests += 1
            if not _refusal(exc):
                raise
            refusal = exc
        if len(entities) > 1 and not self._run_is_deleted(run_id, result):
            half = len(entities) // 2
            self._send_entities(run_dir, run_id, entities[:half], result)
            self._send_entities(run_dir, run_id, entities[half:], result)
            return
        record = {"k": Kind.BATCH.value, "log-batch": _payload(run_id, entities)}
        self._set_aside(run_dir, run_id, record, len(entities), refusal, result)

    def _run_is_deleted(self, run_id: str, result: ShipResult) -> bool:
        answer = self._call("GET", "runs/get", {"run_id": run_id}, retries=self.retries)
        result.requests += 1
        return answer.get("run", {}).get("info", {}).get("lifecycle_stage") == "deleted"

    def _send_record(
        self, kind: Any, record: dict[str, Any], run_dir: Path, run_id: str, result: ShipResult
    ) -> None:
        """A record sent through its own endpoint; set aside if the server refuses it."""
        try:
            self._ship_other(kind, record, run_id)
        except MltrailError as exc:
            result.requests += 1
            if not _refusal(exc):
                raise
            self._set_aside(run_dir, run_id, record, 1, exc, result)
            return
        result.requests += 1

    def _set_aside(
        self,
        run_dir: Path,
        run_id: str,
        record: dict[str, Any],
        count: int,
        exc: MltrailError,
        result: ShipResult,
    ) -> None:
        """Keep a refused record out of the way of the records behind it.

        It is appended to the run's `refused.jsonl` in the spool, with the server's
        reason, and named in a warning; shipping goes on after it. Sending it again
        cannot succeed (the server refused what it carries), and leaving it at the head
        of the journal used to block every later record of the run for good.
        """
        entry = {"record": record, "entities": count, "error": exc.message, "at": _now_ms()}
        append_line(run_dir / REFUSED, json.dumps(entry).encode() + b"\n")
        note = (
            f"{count} record{'' if count == 1 else 's'} ({_describe(record)}) refused: "
            f"{exc.message}"
        )
        result.refused.append(note)
        notices.warn(
            f"mltrail: the server at {self.http.base_url} refused {note}. Set aside in "
            f"{run_dir / REFUSED} (run {run_id}); the run's other records are shipped",
            stacklevel=1,
        )

    def _ship_other(self, kind: Any, record: dict[str, Any], run_id: str) -> None:
        if kind == Kind.UPDATE:
            payload: dict[str, Any] = {"run_id": run_id, "status": record["status"]}
            if record.get("end_time") is not None:
                payload["end_time"] = record["end_time"]
            if record.get("run_name"):
                payload["run_name"] = record["run_name"]
            self._call("POST", "runs/update", payload, retries=self.retries)
        elif kind == Kind.DELETE_TAG:
            # NotFound: deleted already, by this record sent before an interruption.
            with contextlib.suppress(NotFoundError):
                self._call(
                    "POST",
                    "runs/delete-tag",
                    {"run_id": run_id, "key": record["key"]},
                    retries=self.retries,
                )
        elif kind == Kind.LIFECYCLE:
            endpoint = "runs/delete" if record["stage"] == "deleted" else "runs/restore"
            self._call("POST", endpoint, {"run_id": run_id}, retries=self.retries)
        elif kind == Kind.INPUTS:
            datasets = []
            for item in record["d"]:
                dataset = {k: v for k, v in item["dataset"].items() if v not in ("", None)}
                tags = [{"key": k, "value": v} for k, v in item.get("tags", {}).items()]
                datasets.append({"tags": tags, "dataset": dataset})
            self._log_inputs({"run_id": run_id, "datasets": datasets})

    def _log_inputs(self, payload: dict[str, Any]) -> None:
        """`runs/log-inputs`, one at a time, and tried twice if refused.

        The server inserts a dataset it has not seen under a unique key; two runs
        logging the same new dataset at once make one insert fail (refused with a
        constraint error). Runs shipped side by side therefore take turns here, and
        a refusal, which can still come from another process's race, is retried
        once: by then the dataset exists and the second call links it.
        """
        with self._inputs_lock:
            try:
                self._call("POST", "runs/log-inputs", payload, retries=self.retries)
            except (AuthError, NotFoundError):
                raise
            except MltrailError as exc:
                if is_transient(exc):
                    raise
                time.sleep(0.2)
                self._call("POST", "runs/log-inputs", payload, retries=self.retries)

    # logged models -------------------------------------------------------

    def _ship_logged_model(
        self, run_dir: Path, state: ShipState, record: dict[str, Any], result: ShipResult
    ) -> None:
        """A logged model, as MLflow 3's `log_model` makes it, where the server can.

        On a server with the logged-models API: the LoggedModel is created (once, see
        `_create_logged_model`) with the run as its source and the run's params, the
        run's latest metrics are logged for it, its files are uploaded to its own
        artifact location, it is linked as the run's output and finalized READY. On an
        older server the files become run artifacts under the model's path, as before.
        Every step is safe to repeat, so an interruption anywhere only repeats steps.
        """
        model_id = record["id"]
        entry = state.models.setdefault(model_id, {})
        run_id = state.server_run_id
        assert run_id is not None
        folder = f"{MODELS}/{model_id}"
        try:
            if entry.get("server_id") is None and self.logged_models is not False:
                self._create_logged_model(run_dir, state, record, entry, result)
            server_id = entry.get("server_id")
            if server_id is None:  # an older server: the run's artifacts, as before
                root = self._run_artifact_uri(run_dir, state)
                self._upload_files(run_dir, folder, f"{root}/{record['path']}", state, result)
                entry["run_artifacts"] = True
                state.save(run_dir)
                return
            if not entry.get("filled"):
                self._fill_logged_model(run_dir, state, record, entry, result)
            self._upload_files(run_dir, folder, entry["artifact_uri"], state, result)
            if not entry.get("linked"):
                self._link_output(run_id, server_id, result)
                entry["linked"] = True
                state.save(run_dir)
            self._call(
                "PATCH",
                f"logged-models/{server_id}",
                {"model_id": server_id, "status": "LOGGED_MODEL_READY"},
                retries=self.retries,
            )
            result.requests += 1
        except MltrailError as exc:
            if not _refusal(exc):
                raise
            # A refused LoggedModel still has files the user logged: they go where an
            # older server keeps models, the run's artifacts, before the record is set
            # aside (so they are neither lost nor left pending for ever).
            root = self._run_artifact_uri(run_dir, state)
            self._upload_files(run_dir, folder, f"{root}/{record['path']}", state, result)
            entry["run_artifacts"] = True
            state.save(run_dir)
            self._set_aside(run_dir, run_id, record, 1, exc, result)
        finally:
            with contextlib.suppress(OSError):  # empty once every file is uploaded
                for path in sorted((run_dir / folder).glob("**/"), reverse=True):
                    path.rmdir()

    def _create_logged_model(
        self,
        run_dir: Path,
        state: ShipState,
        record: dict[str, Any],
        entry: dict[str, Any],
        result: ShipResult,
    ) -> None:
        """Create the LoggedModel exactly once, or learn that the server has no such API.

        The model carries the `mltrail.clientModelId` tag. A create whose answer may have
        been lost (`create_sent`) is looked up by that tag first, and so is the first
        model this shipper sends: a server without the API answers the lookup 404
        (Flask's page for an unknown route), which is remembered for the process. As for
        a run (`_ensure_created`), a miss proves nothing until `create_settles_at`, the
        lost request's read timeout after it was sent: a server that answered too late
        for the client may still commit the first model, and a second create would
        leave two models (one never READY) on the run.
        """
        model_id = record["id"]
        experiment_id = state.server_experiment_id or self.resolve_experiment(run_dir.parent)
        if entry.get("create_sent") or self.logged_models is None:
            try:
                found = self._call(
                    "POST",
                    "logged-models/search",
                    {
                        "experiment_ids": [experiment_id],
                        "filter": f"tags.`{CLIENT_MODEL_ID_TAG}` = '{model_id}'",
                        "max_results": 1,
                    },
                    retries=self.retries,
                )
            except NotFoundError:
                self.logged_models = False
                return
            result.requests += 1
            self.logged_models = True
            models = found.get("models") or []
            if models:
                self._learn_model(run_dir, state, entry, models[0]["info"])
                return
            self._unsettled(f"logged model {model_id}", bool(entry.get("create_sent")),
                            entry.get("create_settles_at"))
        before = dict(entry)
        entry["create_sent"] = True
        entry["create_settles_at"] = time.time() + self.http.settings.settle_time()
        state.save(run_dir)
        params = [{"key": k, "value": v} for k, v in (record.get("p") or {}).items()]
        # The run's context tags (user, source, git), as MLflow 3 gives a model its
        # context: the UI's "Logged from" reads them.
        tags = {
            k: v
            for k, v in (state.create.get("tags") or {}).items()
            if k == "mlflow.user" or k.startswith("mlflow.source.")
        }
        tags[CLIENT_MODEL_ID_TAG] = model_id
        try:
            answer = self._call(
                "POST",
                "logged-models",
                {
                    "experiment_id": experiment_id,
                    "name": record["name"],
                    "source_run_id": state.server_run_id,
                    "params": params[:MAX_PARAMS],
                    "tags": [{"key": k, "value": v} for k, v in tags.items()],
                },
                retries=0,  # not idempotent: a retry looks the tag up again first
            )
        except MltrailError as exc:
            if is_transient(exc) and not request_sent(exc):
                entry.clear()
                entry.update(before)
                state.save(run_dir)
            raise
        result.requests += 1
        self._learn_model(run_dir, state, entry, answer["model"]["info"])

    def _fill_logged_model(
        self, run_dir: Path, state: ShipState, record: dict[str, Any], entry: dict[str, Any],
        result: ShipResult,
    ) -> None:
        """The params beyond the create's first 100 and the run's latest metrics, logged
        for the model once (again only if their answer was lost: the server keeps one
        copy of a param value or a metric point)."""
        server_id = entry["server_id"]
        params = [{"key": k, "value": v} for k, v in (record.get("p") or {}).items()]
        for start in range(MAX_PARAMS, len(params), MAX_PARAMS):
            self._call(
                "POST",
                f"logged-models/{server_id}/params",
                {"model_id": server_id, "params": params[start : start + MAX_PARAMS]},
                retries=self.retries,
            )
            result.requests += 1
        metrics = [
            {"key": k, "value": v, "timestamp": ts, "step": step, "model_id": server_id}
            for k, v, ts, step in record.get("m") or []
        ]
        for start in range(0, len(metrics), MAX_METRICS):
            # The same points as the run's, now also the model's: the server keeps one
            # copy of a point in the run's history and links it to the model.
            self._call(
                "POST",
                "runs/log-batch",
                {"run_id": state.server_run_id, "metrics": metrics[start : start + MAX_METRICS]},
                retries=self.retries,
            )
            result.requests += 1
        entry["filled"] = True
        state.save(run_dir)

    def _learn_model(
        self, run_dir: Path, state: ShipState, entry: dict[str, Any], info: dict[str, Any]
    ) -> None:
        entry["server_id"] = info["model_id"]
        entry["artifact_uri"] = info["artifact_uri"]
        state.save(run_dir)

    def _link_output(self, run_id: str, server_id: str, result: ShipResult) -> None:
        """`runs/outputs`, which the server refuses when the link exists already (a
        repeat after a lost answer): then the run's outputs are read to tell."""
        payload = {"run_id": run_id, "models": [{"model_id": server_id, "step": 0}]}
        try:
            self._call("POST", "runs/outputs", payload, retries=self.retries)
        except InvalidParameterError:
            answer = self._call("GET", "runs/get", {"run_id": run_id}, retries=self.retries)
            outputs = (answer.get("run", {}).get("outputs") or {}).get("model_outputs") or []
            if not any(o.get("model_id") == server_id for o in outputs):
                raise
        result.requests += 1

    def _run_artifact_uri(self, run_dir: Path, state: ShipState) -> str:
        if state.artifact_uri is None:
            answer = self._call(
                "GET", "runs/get", {"run_id": state.server_run_id}, retries=self.retries
            )
            state.artifact_uri = answer["run"]["info"]["artifact_uri"]
            state.save(run_dir)
        return state.artifact_uri

    # artifacts -----------------------------------------------------------

    def _ship_artifacts(self, run_dir: Path, state: ShipState, result: ShipResult) -> None:
        if not pending_artifacts(run_dir):
            return
        self._upload_files(
            run_dir, ARTIFACTS, self._run_artifact_uri(run_dir, state), state, result
        )

    def _upload_files(
        self, run_dir: Path, folder: str, artifact_uri: str, state: ShipState, result: ShipResult
    ) -> None:
        """Upload the files under the run folder's `folder` to `artifact_uri` (written
        wherever it says, `ArtifactRoots`), removing each once it is there."""
        files = pending_artifacts(run_dir, folder)
        if not files:
            return
        counted = threading.Lock()

        def upload(item: tuple[str, Path]) -> None:
            rel, path = item
            before = os.stat(path)
            self.artifacts.write(artifact_uri, rel, path, retries=self.retries)
            self._moved()
            after = os.stat(path)
            # A newer copy logged to the same path meanwhile stays for the next pass.
            if (before.st_ino, before.st_size, before.st_mtime_ns) == (
                after.st_ino,
                after.st_size,
                after.st_mtime_ns,
            ):
                path.unlink()
            with counted:
                state.uploaded += 1
                result.artifacts += 1
                result.requests += 1

        try:
            run_parallel(upload, files, UPLOAD_THREADS)
        finally:
            state.save(run_dir)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _describe(record: dict[str, Any]) -> str:
    """A short name for a set-aside record, for a warning or sync's report."""
    kind = record.get("k")
    if kind == Kind.BATCH:
        payload = record.get("log-batch", {})
        keys = [
            e.get("key", "")
            for name in ("metrics", "params", "tags")
            for e in payload.get(name, [])
        ]
        shown = ", ".join(repr(k[:60]) for k in keys[:3]) + (", ..." if len(keys) > 3 else "")
        return f"log-batch of {shown}"
    if kind == Kind.UPDATE:
        return f"status {record.get('status')}"
    if kind == Kind.LIFECYCLE:
        return f"lifecycle {record.get('stage')}"
    if kind == Kind.DELETE_TAG:
        return f"delete tag {record.get('key')!r}"
    if kind == Kind.INPUTS:
        return "dataset inputs"
    if kind == Kind.LOGGED_MODEL:
        return f"logged model {record.get('name')!r}"
    return f"record {kind!r}"


def run_parallel(func: Callable[[Any], None], items: list[Any], workers: int) -> None:
    """Call `func` on each item from up to `workers` threads; raise the first error.

    A model is several small files and each upload is mostly waiting for the
    server, so sending them side by side cuts a run's shipping time. After an
    error no new item is started (a down server fails them all). Daemon threads,
    not an executor: an upload stuck on a dead server must not hold up exit.
    """
    if len(items) <= 1 or workers <= 1:
        for item in items:
            func(item)
        return
    queue = iter(items)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while True:
            with lock:
                item = next(queue, _NONE) if not errors else _NONE
            if item is _NONE:
                return
            try:
                func(item)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                return

    threads = [
        threading.Thread(target=work, name="mltrail-upload", daemon=True)
        for _ in range(min(workers, len(items)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


_NONE = object()
# A run id as MLflow and mltrail make them: 32 hex digits.
_RUN_ID = re.compile(r"[0-9a-f]{32}")


class _InFlight:
    """Metric-only batches of one run, sent side by side from daemon threads.

    Metric points append (the server keeps each point, and an identical point sent
    again is a no-op), so their batches may land in any order. What must hold is the
    shipped offset: it only moves past a batch once every batch before it was
    accepted (`accepted`), so an interruption resends from the first batch not
    accepted, never skips one. Anything else the run holds waits for `drain`.
    """

    def __init__(
        self,
        send: Callable[[list[tuple[str, dict[str, Any]]]], ShipResult],
        result: ShipResult,
        width: int,
    ) -> None:
        self._send = send
        self._result = result
        self._width = max(1, width)
        self._cond = threading.Condition()
        self._running = 0
        self._tickets = 0
        self._ends: dict[int, int | None] = {}  # ticket -> end offset once accepted
        self._next = 0  # the first ticket not yet accepted in order
        self._error: BaseException | None = None

    def submit(self, entities: list[tuple[str, dict[str, Any]]], end: int) -> None:
        """Send a batch whose acceptance lets the offset reach `end`; raises the first
        error of a batch in flight (after the others finished)."""
        with self._cond:
            self._cond.wait_for(lambda: self._running < self._width or self._error is not None)
            if self._error is not None:
                raise self._error
            ticket = self._tickets
            self._tickets += 1
            self._ends[ticket] = None
            self._running += 1
        if self._width == 1:
            self._run(ticket, entities, end)
            if self._error is not None:
                raise self._error
            return
        threading.Thread(
            target=self._run, args=(ticket, entities, end), name="mltrail-batch", daemon=True
        ).start()

    def _run(self, ticket: int, entities: list[tuple[str, dict[str, Any]]], end: int) -> None:
        try:
            alone = self._send(entities)
        except BaseException as exc:
            with self._cond:
                self._error = self._error or exc
                self._running -= 1
                self._cond.notify_all()
            return
        with self._cond:
            self._ends[ticket] = end
            self._result.requests += alone.requests
            self._result.refused += alone.refused
            self._running -= 1
            self._cond.notify_all()

    def accepted(self, offset: int) -> int:
        """The offset past every batch accepted in order (else `offset`)."""
        with self._cond:
            while (end := self._ends.get(self._next)) is not None:
                del self._ends[self._next]
                offset = end
                self._next += 1
            return offset

    def drain(self, offset: int, *, raise_error: bool = True) -> int:
        """Wait for every batch in flight; the offset past those accepted in order."""
        with self._cond:
            self._cond.wait_for(lambda: self._running == 0)
        offset = self.accepted(offset)
        if raise_error and self._error is not None:
            raise self._error
        return offset


class RunBusy(RemoteError):
    """A run this one refers to is being shipped by another thread or process: try again."""

    transient = True

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="TEMPORARILY_UNAVAILABLE")


class CreateUnconfirmed(RemoteError):
    """An earlier create (a run's, a logged model's) got no answer and may still land:
    wait, then look."""

    transient = True

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="TEMPORARILY_UNAVAILABLE")


def _create_info_from_summary(run_dir: Path) -> dict[str, Any]:
    """Creation facts of a run whose ship state lacks them (written by an older client)."""
    summary = json.loads((run_dir / journal.SUMMARY).read_text())
    return {
        "start_time": summary.get("start_time"),
        "user_id": summary.get("user_id", ""),
        "run_name": summary.get("run_name", ""),
        "tags": {},
    }
