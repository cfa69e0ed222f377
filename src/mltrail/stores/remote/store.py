"""The remote store: any MLflow tracking server by its http(s):// address.

Writes never wait on the network. Each logging call lands first in the spool
(`mltrail.stores.remote.spool`: a local journal store, each record on disk before the
call returns); a daemon thread (`mltrail.stores.remote.sender`) ships the records in
`runs/log-batch` requests over one keep-alive session, retrying with backoff
while the server is down, answers 5xx/429 or hangs. What is still unsent when
the process exits stays in the spool, and one message names the command that
ships it: ``mltrail sync``.

Run ids: `create_run` asks the server for the run synchronously, for at most
``MLTRAIL_CREATE_TIMEOUT`` seconds (default 2), so a run normally has the
server's id. When the server does not answer, the run gets a local id and
works offline; the sender creates it on the server later, looking up the
``mltrail.clientRunId`` tag first so a lost answer never makes a second run.
The local id keeps resolving to the server run afterwards (the spool maps it).

Reads go to the server, after waiting briefly (``MLTRAIL_READ_FLUSH_TIMEOUT``)
for this process's unsent records of the run read; with the server
unreachable, runs the spool holds are read from there, with a warning.

Artifacts are staged in the spool and written where the run's artifact URI says
(`mltrail.stores.remote.artifact_roots`): the server's proxied artifact API (the
default of ``mlflow server``), a plain folder directly, an ``s3://``-like root
through MLflow's artifact repositories; never an error in the training script.
Auth, TLS, timeouts, retries and the spool folder are set by environment variables listed in
`mltrail.stores.remote.http`. ``MLTRAIL_FLUSH_TIMEOUT`` (default 5 s) bounds the wait
for delivery at interpreter exit.

Other server features (the model registry) use `RestStore.http`, the one
session to the server, and `RestStore.server_run_id`, which turns a local run
id into the server's.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from ... import notices, runtime
from ...entities import (
    DatasetInput,
    Experiment,
    FileInfo,
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
from ...exceptions import (
    AlreadyExistsError,
    InvalidParameterError,
    NotFoundError,
    RemoteError,
)
from .. import journal
from .artifact_roots import ArtifactRoots
from .budget import ForegroundCall
from .http import HttpSession, RemoteSettings, is_transient, request_sent
from .ids import RunIds, RunRef
from .sender import Sender
from .shipper import Shipper
from .spool import (
    CLIENT_RUN_ID_TAG,
    RunLock,
    ShipState,
    Spool,
    pending,
    placeholder_experiment_name,
)
from .wire import metric_value, parse_experiment, parse_logged_model, parse_run, tag_list

T = TypeVar("T")
LOCAL_EXPERIMENT_PREFIX = "local-"  # an experiment created while the server was down
_VIEW_TYPES = {
    ViewType.ACTIVE_ONLY: "ACTIVE_ONLY",
    ViewType.DELETED_ONLY: "DELETED_ONLY",
    ViewType.ALL: "ALL",
}
_HISTORY_PAGE = 25_000
_EXPERIMENT_PAGE = 1_000
_READ_FLUSH_CAP = 60.0  # a read waits for its run's records while the server makes progress

_stores: weakref.WeakSet[RestStore] = weakref.WeakSet()


class RestStore:
    """A Store on an MLflow tracking server, spooled on local disk (see the module doc).

    Args:
        uri: the server address, ``http(s)://[user:password@]host[:port][/prefix]``.
        settings: timeouts, retry policy and spool root; default: from the environment.
        session_factory: builds the session records are shipped through, from the URI
            and the settings: `HttpSession`, or `BridgeSession` for a database.
        foreground_requests: whether `set_experiment` and a run's creation ask the
            server within ``MLTRAIL_CREATE_TIMEOUT`` (False: they start in the spool).
        flush_timeout: default wait at exit and for `flush` (MLTRAIL_FLUSH_TIMEOUT wins).
    """

    def __init__(
        self,
        uri: str,
        settings: RemoteSettings | None = None,
        *,
        session_factory: Callable[[str, RemoteSettings], Any] = HttpSession,
        foreground_requests: bool = True,
        flush_timeout: float | None = None,
    ) -> None:
        self.settings = settings or RemoteSettings.from_env()
        # A database store (`mltrail.stores.bridge`) passes its own session, and
        # foreground_requests=False: its training thread never waits on MLflow (runs
        # and experiments start in the spool and get database ids when shipped).
        self._session_factory = session_factory
        self._connect_uri = uri
        self._foreground = foreground_requests
        self._flush_default = flush_timeout
        self.http = session_factory(uri, self.settings)
        self.artifacts = ArtifactRoots(self.http)
        self.uri = self.http.base_url
        self.spool = Spool(self.settings.spool_dir, self.uri)
        self._lock = threading.RLock()
        self.ids = RunIds(self.spool)
        # server experiment id -> spool experiment, for the mapped ids handed out here
        self._handed_out: dict[str, str] = {}
        self._last_flush: tuple[float, bool] | None = None
        self._exit_reported = False
        self._stalled = 0  # foreground requests past their budget, still unanswered
        self._warned_inf: set[str] = set()
        self._start_sender()
        _stores.add(self)
        runtime.at_exit(runtime.REPORT, functools.partial(_report_at_exit, weakref.ref(self)))

    def _start_sender(self) -> None:
        shipper = Shipper(
            self.http,
            self.spool,
            retries=min(1, self.settings.retries),
            on_created=self.ids.created,
            may_prune=self._may_prune,
        )
        self.sender = Sender(shipper, self.settings)
        self._exit_started: tuple[float, int] | None = None  # (when, points sent then)

    def _after_fork(self) -> None:
        self._lock = threading.RLock()
        self.ids.reset_lock()
        self._stalled = 0  # the parent's stuck requests have no thread here
        self.http = self._session_factory(self._connect_uri, self.settings)
        self.artifacts = ArtifactRoots(self.http)
        self._start_sender()

    # run ids -------------------------------------------------------------

    def _may_prune(self, spool_id: str) -> bool:
        """A delivered run's journal may go once this process no longer writes to it and
        its final summary is on disk (written in the background when the run ended)."""
        store = self.spool.store
        return not store.is_open(spool_id) and store.flush(5.0)

    def _known(self, run_id: str) -> RunRef | None:
        """The run's reference if the spool has it (without asking the server)."""
        return self.ids.known(run_id)

    def _ref(self, run_id: str) -> RunRef:
        """The run's reference for writing: a run only the server has is adopted."""
        ref = self.ids.get(run_id)
        if ref is not None:
            return ref
        return self.ids.known(run_id) or self._adopt(run_id)

    def _adopt(self, run_id: str) -> RunRef:
        """Mirror a server run (created elsewhere) in the spool so writes can go there."""
        run = self._server_run(run_id)
        spool_exp = self._spool_experiment(run.info.experiment_id)
        self.spool.ensure_folder()
        with self.ids.lock:
            ref = self.ids.get(run_id)
            if ref is not None:
                return ref
            store = self.spool.store
            with contextlib.suppress(FileExistsError):  # another process adopted it first
                store.create_run(
                    spool_exp,
                    run.info.user_id,
                    run.info.start_time,
                    [RunTag(k, v) for k, v in run.data.tags.items()],
                    run.info.run_name,
                    run_id=run_id,
                )
            run_dir = store.run_dir(run_id)
            # What the server has seeds the spool (so a param conflict is caught at once)
            # and is marked shipped.
            if run.data.params and not ShipState.load(run_dir).server_run_id:
                store.log_batch(run_id, [], [Param(k, v) for k, v in run.data.params.items()], [])
            if run.info.lifecycle_stage == "deleted":
                store.set_lifecycle(run_id, deleted=True)
            state = ShipState.load(run_dir)
            if state.server_run_id is None:
                state.server_run_id = run_id
                state.server_experiment_id = run.info.experiment_id
                state.artifact_uri = run.info.artifact_uri
                state.offset = os.stat(run_dir / journal.JOURNAL).st_size
                state.save(run_dir)
            return self.ids.remember(RunRef(run_id, run_dir, run_id, run.info.artifact_uri))

    def server_run_id(self, run_id: str, timeout: float | None = None) -> str:
        """The server's id of a run, for requests that must name it (the model registry).

        Waits first, like a read, for this process's unsent records and artifacts of
        the run (a model logged just before it is registered). A run logged offline
        has a local id until the sender creates it on the server; this waits up to
        `timeout` seconds (default MLTRAIL_FLUSH_TIMEOUT) for that.

        Raises:
            RemoteError: the run is not on the server yet.
        """
        ref = self._known(run_id)
        if ref is None:
            return run_id  # not spooled here: it can only be a server id
        self._flush_for_read(ref)
        if ref.server_id is None:
            self.sender.notify(ref.spool_id, ref.run_dir)
            wait = _flush_timeout(self._flush_default) if timeout is None else timeout
            self.sender.flush(wait, [ref.spool_id])
        if ref.server_id is None:
            raise RemoteError(
                f"Run {run_id} was logged while {self.uri} was unreachable and is not on the "
                "server yet; run `mltrail sync` once the server answers",
                error_code="TEMPORARILY_UNAVAILABLE",
            )
        return ref.server_id

    def _public_id(self, ref: RunRef) -> str:
        return ref.public_id

    # experiments ---------------------------------------------------------

    def _public_experiment_id(self, spool_id: str) -> str:
        mapped = self.spool.server_experiment(spool_id)
        if mapped is None:
            return f"{LOCAL_EXPERIMENT_PREFIX}{spool_id}"
        # A run later created with this id belongs to this spool experiment, even once
        # the sender finds the mapping stale and replaces it.
        self._handed_out[mapped] = spool_id
        return mapped

    def _spool_experiment(self, server_experiment_id: str, name: str | None = None) -> str:
        """The spool experiment mirroring a server experiment, created on first use.

        A mapping to this id found in the spool is taken unless the server gave this
        process another name for the id (the mapping is from an older database); the
        sender checks the id before it creates a run (`Shipper.resolve_experiment`).
        """
        shipper = self.sender.shipper
        name = name or shipper.experiment_name(server_experiment_id)
        for found in (
            self._handed_out.get(server_experiment_id),
            self.spool.spool_experiment_for(server_experiment_id),
        ):
            if found is not None and (
                name is None or self.spool.store.get_experiment(found).name == name
            ):
                return found
        if name is None and self._may_ask():
            try:
                answer = self.http.call(
                    "GET",
                    "experiments/get",
                    {"experiment_id": server_experiment_id},
                    timeout=self.settings.create_timeout,
                    retries=0,
                )
                name = str(answer["experiment"]["name"])
                shipper.learn_experiment(server_experiment_id, name)
            except RemoteError:
                pass  # only the spool folder's name depends on it
        if name is None:
            name = placeholder_experiment_name(server_experiment_id)
        self.spool.ensure_folder()
        store = self.spool.store
        existing = store.get_experiment_by_name(name)
        if existing is None:
            try:
                spool_id = store.create_experiment(name)
            except AlreadyExistsError:
                existing = store.get_experiment_by_name(name)
                assert existing is not None
                spool_id = existing.experiment_id
        else:
            spool_id = existing.experiment_id
        self.spool.map_experiment(spool_id, server_experiment_id)
        return spool_id

    def _learn(self, experiment: Experiment) -> Experiment:
        self.sender.shipper.learn_experiment(experiment.experiment_id, experiment.name)
        return experiment

    def _spool_to_public(self, experiment: Experiment) -> Experiment:
        return replace(
            experiment, experiment_id=self._public_experiment_id(experiment.experiment_id)
        )

    def _offline(self, exc: BaseException, what: str, stacklevel: int = 3) -> None:
        """Note a transient failure of a foreground call, and warn about the fallback."""
        self.sender.mark_down(exc)
        notices.warn(
            f"mltrail: {exc}; {what} from the local spool {self.spool.folder}",
            stacklevel=stacklevel,
        )

    def _read(
        self, from_server: Callable[[], T], from_spool: Callable[[], T] | None, what: str
    ) -> T:
        """The one offline fallback of every read: ask the server; when it cannot be
        reached (a transient failure) and the spool can answer, answer from the spool
        with a warning naming `what` was read. A refusal by the server is raised as is.
        """
        try:
            return from_server()
        except RemoteError as exc:
            if not is_transient(exc) or from_spool is None:
                raise
            self._offline(exc, what, stacklevel=5)
        return from_spool()

    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: dict[str, str] | None = None
    ) -> str:
        if not name or not isinstance(name, str):
            raise InvalidParameterError("Experiment name must be a non-empty string", key="name")
        payload: dict[str, Any] = {"name": name}
        if artifact_location:
            payload["artifact_location"] = artifact_location
        if tags:
            payload["tags"] = tag_list(tags)
        try:
            answer = self.http.call("POST", "experiments/create", payload)
        except AlreadyExistsError:
            raise AlreadyExistsError(
                f"Experiment {name!r} already exists on {self.uri}", resource_id=name
            ) from None
        except RemoteError as exc:
            if not is_transient(exc):
                raise
            self._offline(exc, f"experiment {name!r} is created")
            self.spool.ensure_folder()
            spool_id = self.spool.store.create_experiment(name, artifact_location, tags)
            return f"{LOCAL_EXPERIMENT_PREFIX}{spool_id}"
        experiment_id = str(answer["experiment_id"])
        self.sender.shipper.learn_experiment(experiment_id, name)
        return experiment_id

    def resolve_experiment(self, name: str) -> Experiment:
        """The experiment called `name`, created when missing, within the start budget.

        `set_experiment` is the first thing a training script does, so it gets the
        same small budget as a run's creation (``MLTRAIL_CREATE_TIMEOUT``): past it, or
        with the server unreachable, the experiment is the spool's (an id starting
        with ``local-``) and training starts at once; the sender finds or creates it on
        the server by name when it ships the first run. A lookup still under way when
        the budget runs out carries on and maps the spool's experiment if it succeeds.

        Raises:
            MltrailError: the server refused the lookup or the creation (not a
                transient failure).
        """
        if not name or not isinstance(name, str):
            raise InvalidParameterError("Experiment name must be a non-empty string", key="name")
        if self._may_ask():
            call: ForegroundCall[Experiment] = ForegroundCall(
                lambda: self._find_or_create_experiment(name), name="mltrail-experiment"
            ).start()
            if call.wait(self.settings.create_timeout):
                try:
                    found = call.result()
                    self.sender.mark_up()
                    return self._learn(found)
                except RemoteError as exc:
                    if not is_transient(exc):
                        raise
                    self._offline(exc, f"experiment {name!r} is used")
            else:
                self._stall(call)
                call.then(lambda c: self._experiment_landed(c, name))
                notices.warn(
                    f"mltrail: the tracking server at {self.uri} did not answer within "
                    f"{self.settings.create_timeout:g} s; experiment {name!r} is used from the "
                    f"local spool {self.spool.folder} and found or created on the server "
                    "when runs are shipped. Training goes on",
                    stacklevel=3,
                )
        self.spool.ensure_folder()
        store = self.spool.store
        found_local = store.get_experiment_by_name(name)
        if found_local is None:
            with contextlib.suppress(AlreadyExistsError):  # another process was first
                store.create_experiment(name)
            found_local = store.get_experiment_by_name(name)
        assert found_local is not None
        return self._spool_to_public(found_local)

    def _find_or_create_experiment(self, name: str) -> Experiment:
        """get-by-name, else create, else (created meanwhile) get-by-name again.

        A get-by-name answered 5xx does not prove the experiment missing, but creating
        it is safe either way: a duplicate name is refused (RESOURCE_ALREADY_EXISTS),
        and then it is looked up again. So a flaky lookup beside a working create still
        gives the experiment instead of an error.
        """
        last: RemoteError | None = None
        for _ in range(3):
            try:
                answer = self.http.call("GET", "experiments/get-by-name", {"experiment_name": name})
                return parse_experiment(answer["experiment"])
            except NotFoundError:
                pass
            except RemoteError as exc:
                if not is_transient(exc):
                    raise
                last = exc
            try:
                answer = self.http.call("POST", "experiments/create", {"name": name})
            except AlreadyExistsError:
                continue
            except RemoteError as exc:
                if not is_transient(exc):
                    raise
                last = exc
                continue
            experiment_id = str(answer["experiment_id"])
            try:
                got = self.http.call("GET", "experiments/get", {"experiment_id": experiment_id})
                return parse_experiment(got["experiment"])
            except RemoteError:
                return Experiment(experiment_id=experiment_id, name=name, artifact_location="")
        if last is not None:
            raise last
        raise NotFoundError(f"Experiment {name!r} could not be found or created", resource_id=name)

    def _experiment_landed(self, call: ForegroundCall[Experiment], name: str) -> None:
        """A lookup that outlived the budget succeeded: map the spool's experiment."""
        if call.error is not None or call.value is None:
            return
        self._learn(call.value)
        local = self.spool.store.get_experiment_by_name(name)
        if local is not None:
            self.spool.map_experiment(local.experiment_id, call.value.experiment_id)

    def get_experiment(self, experiment_id: str) -> Experiment:
        experiment_id = str(experiment_id)
        if experiment_id.startswith(LOCAL_EXPERIMENT_PREFIX):
            spool_id = experiment_id[len(LOCAL_EXPERIMENT_PREFIX) :]
            mapped = self.spool.server_experiment(spool_id)
            if mapped is None:
                local = self.spool.store.get_experiment(spool_id)
                return replace(local, experiment_id=experiment_id)
            experiment_id = mapped

        def from_server() -> Experiment:
            try:
                answer = self.http.call("GET", "experiments/get", {"experiment_id": experiment_id})
            except NotFoundError:
                raise NotFoundError(
                    f"No experiment with id {experiment_id!r} on {self.uri}",
                    resource_id=experiment_id,
                ) from None
            return self._learn(parse_experiment(answer["experiment"]))

        spool_id = self.spool.spool_experiment_for(experiment_id)
        from_spool = None
        if spool_id is not None:

            def from_spool() -> Experiment:
                local = self.spool.store.get_experiment(spool_id)
                return replace(local, experiment_id=experiment_id)

        return self._read(from_server, from_spool, f"experiment {experiment_id} is read")

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        def from_server() -> Experiment | None:
            try:
                answer = self.http.call("GET", "experiments/get-by-name", {"experiment_name": name})
            except NotFoundError:
                return None
            return self._learn(parse_experiment(answer["experiment"]))

        def from_spool() -> Experiment | None:
            found = self.spool.store.get_experiment_by_name(name)
            return None if found is None else self._spool_to_public(found)

        return self._read(from_server, from_spool, f"experiment {name!r} is read")

    def search_experiments(self, view_type: int = ViewType.ACTIVE_ONLY) -> list[Experiment]:
        def from_spool() -> list[Experiment]:
            local = self.spool.store.search_experiments(view_type)
            return [self._spool_to_public(e) for e in local]

        return self._read(
            lambda: self._search_server_experiments(view_type),
            from_spool,
            "experiments are listed",
        )

    def _search_server_experiments(self, view_type: int) -> list[Experiment]:
        found: list[Experiment] = []
        token = None
        for _ in range(10_000):  # bounded paging
            payload: dict[str, Any] = {
                "view_type": _VIEW_TYPES.get(view_type, "ACTIVE_ONLY"),
                "max_results": _EXPERIMENT_PAGE,
            }
            if token:
                payload["page_token"] = token
            answer = self.http.call("POST", "experiments/search", payload)
            found.extend(self._learn(parse_experiment(e)) for e in answer.get("experiments", []))
            token = answer.get("next_page_token")
            if not token:
                break
        return found

    # runs ----------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        user_id: str,
        start_time: int,
        tags: Sequence[RunTag],
        run_name: str,
        *,
        defer: bool = False,
    ) -> Run:
        experiment_id = str(experiment_id)
        client_id = uuid.uuid4().hex
        tag_map = {t.key: t.value for t in tags}
        tag_map[CLIENT_RUN_ID_TAG] = client_id
        if experiment_id.startswith(LOCAL_EXPERIMENT_PREFIX):
            spool_exp: str | None = experiment_id[len(LOCAL_EXPERIMENT_PREFIX) :]
            self.spool.store.get_experiment(spool_exp)  # NotFoundError for a bad id
            server_exp = self.spool.server_experiment(spool_exp)
        else:
            spool_exp, server_exp = None, experiment_id
        # The spool must be able to hold the run before the server is asked for one:
        # a run created there that the spool cannot record would stay empty and RUNNING.
        self.spool.ensure_folder()
        if spool_exp is None:
            assert server_exp is not None
            spool_exp = self._spool_experiment(server_exp)
        self.spool.probe(spool_exp)
        answer = None
        in_flight: ForegroundCall[dict[str, Any]] | None = None
        settles_at: float | None = None
        asked = not defer and server_exp is not None and self._may_ask()
        if asked:
            assert server_exp is not None
            checked = self._checked_experiment(spool_exp, server_exp)
            server_exp = checked or server_exp
            asked = checked is not None
        if asked:
            payload = {
                "experiment_id": server_exp,
                "user_id": user_id,
                "start_time": start_time,
                "run_name": run_name,
                "tags": tag_list(tag_map),
            }
            # The request gets the ordinary read timeout on its own thread; this call
            # waits only the start budget. A create that outlives the budget is never
            # abandoned and sent again (it may still land): the run stays held in the
            # sender until its answer or failure (see Shipper._ensure_created).
            settles_at = time.time() + self.settings.settle_time()
            in_flight = ForegroundCall(
                lambda: self.http.call("POST", "runs/create", payload, retries=0),
                name="mltrail-create",
            ).start()
            if in_flight.wait(self.settings.create_timeout):
                try:
                    answer = in_flight.result()
                    self.sender.mark_up()
                except NotFoundError:
                    if self._named_by_id(spool_exp, server_exp):
                        raise NotFoundError(
                            f"No experiment with id {experiment_id!r} on {self.uri}",
                            resource_id=experiment_id,
                        ) from None
                    # The server lost the experiment since it was checked (a new
                    # database): no run was made; the sender finds it again by name.
                    self.sender.shipper.forget_experiment(server_exp)
                    asked = False
                except RemoteError as exc:
                    if not is_transient(exc):
                        raise
                    self.sender.mark_down(exc)
                    asked = request_sent(exc)
                in_flight = None
            else:
                self._stall(in_flight)
        server_run = parse_run(answer["run"]) if answer is not None else None
        spool_id = server_run.info.run_id if server_run is not None else client_id
        run = self.spool.store.create_run(
            spool_exp,
            user_id,
            start_time,
            [RunTag(k, v) for k, v in tag_map.items()],
            run_name,
            run_id=spool_id,
        )
        run_dir = self.spool.store.run_dir(spool_id)
        state = ShipState(
            client_run_id=spool_id,
            server_run_id=spool_id if server_run is not None else None,
            server_experiment_id=(
                server_run.info.experiment_id if server_run is not None else server_exp
            ),
            create_sent=asked,
            create_settles_at=settles_at if asked and server_run is None else None,
            create={
                "start_time": start_time,
                "user_id": user_id,
                "run_name": run_name,
                "tags": tag_map,
            },
            artifact_uri=server_run.info.artifact_uri if server_run is not None else None,
        )
        state.save(run_dir)
        ref = self.ids.remember(RunRef(spool_id, run_dir, state.server_run_id, state.artifact_uri))
        if server_run is not None:
            return server_run
        if in_flight is not None:
            self.sender.hold(spool_id, run_dir)
            in_flight.then(lambda call: self._create_landed(call, spool_id, run_dir))
        else:
            self.sender.notify(spool_id, run_dir)  # to be created on the server
        return self._spool_run_public(run, ref)

    def _checked_experiment(self, spool_exp: str, server_exp: str) -> str | None:
        """The server id for a run's foreground create: `server_exp` once the server gave
        this process the spool experiment's name for it, else checked (found again by
        name if stale: `Shipper.resolve_experiment`) within the start budget; None
        when that did not answer in time (the sender creates the run later).
        """
        shipper = self.sender.shipper
        name = self.spool.store.get_experiment(spool_exp).name
        if name in (shipper.experiment_name(server_exp), placeholder_experiment_name(server_exp)):
            return server_exp  # confirmed, or known only by this id (the create tells)
        check: ForegroundCall[str] = ForegroundCall(
            lambda: shipper.resolve_experiment(self.spool.folder / spool_exp, server_exp),
            name="mltrail-experiment",
        ).start()
        if not check.wait(self.settings.create_timeout):
            self._stall(check)
            return None
        try:
            return check.result()
        except NotFoundError:
            raise NotFoundError(
                f"No experiment with id {server_exp!r} on {self.uri}", resource_id=server_exp
            ) from None
        except RemoteError as exc:
            if not is_transient(exc):
                raise
            self.sender.mark_down(exc)
            return None

    def _named_by_id(self, spool_exp: str, server_exp: str) -> bool:
        """Whether the spool experiment stands for an id whose name was never learned."""
        name = self.spool.store.get_experiment(spool_exp).name
        return name == placeholder_experiment_name(server_exp)

    def _create_landed(
        self, call: ForegroundCall[dict[str, Any]], spool_id: str, run_dir: Path
    ) -> None:
        """A foreground create that outlived its budget has ended: record its outcome,
        then let the sender ship the run (creating it only if this one surely failed)."""
        try:
            if call.error is None:
                assert call.value is not None
                info = call.value["run"]["info"]
                lock = RunLock(run_dir)
                locked = lock.acquire()  # `mltrail sync` elsewhere may be looking it up
                try:
                    state = ShipState.load(run_dir)
                    if state.server_run_id is None:
                        state.server_run_id = info["run_id"]
                        state.server_experiment_id = info.get("experiment_id")
                        state.artifact_uri = info.get("artifact_uri")
                        state.save(run_dir)
                finally:
                    if locked:
                        lock.release()
                self.ids.created(
                    spool_id, state.server_run_id or info["run_id"], state.artifact_uri
                )
                self.sender.mark_up()
            elif is_transient(call.error) and not request_sent(call.error):
                state = ShipState.load(run_dir)
                if state.server_run_id is None:
                    state.create_sent, state.create_settles_at = False, None
                    state.save(run_dir)
        finally:
            self.sender.release(spool_id)
            self.sender.notify(spool_id, run_dir)

    def _stall(self, call: ForegroundCall[Any]) -> None:
        """A foreground request outlived its budget: until it ends, every other call
        that would wait on the server goes offline at once (training starts now)."""
        with self._lock:
            self._stalled += 1

        def unstall(_: ForegroundCall[Any]) -> None:
            with self._lock:
                self._stalled -= 1

        call.then(unstall)

    def _may_ask(self) -> bool:
        """Whether a foreground call should ask the server rather than go offline at
        once: not while another foreground request is stuck past its budget, nor in the
        sender's backoff window after a failure."""
        return self._foreground and self._stalled == 0 and self.sender.may_try()

    def _spool_run_public(self, run: Run, ref: RunRef) -> Run:
        """A spool Run with the ids the user knows (server ids where they exist)."""
        info = replace(
            run.info,
            run_id=self._public_id(ref),
            experiment_id=self._public_experiment_id(run.info.experiment_id),
            artifact_uri=ref.artifact_uri or run.info.artifact_uri,
        )
        return replace(run, info=info)

    def _server_run(self, run_id: str) -> Run:
        try:
            answer = self.http.call("GET", "runs/get", {"run_id": run_id})
            self.sender.mark_up()
        except NotFoundError:
            raise NotFoundError(
                f"No run with id {run_id!r} on {self.uri}", resource_id=run_id
            ) from None
        return parse_run(answer["run"])

    def _flush_for_read(self, ref: RunRef | None) -> None:
        if ref is not None and self.sender.has_pending(ref.spool_id):
            self.sender.flush(
                _READ_FLUSH_CAP, [ref.spool_id], stall=self.settings.read_flush_timeout
            )

    def get_run(self, run_id: str) -> Run:
        ref = self._known(run_id)
        self._flush_for_read(ref)
        server_id = ref.server_id if ref is not None else run_id
        from_spool = None
        if ref is not None:
            known = ref

            def from_spool() -> Run:
                return self._spool_run_public(self.spool.store.get_run(known.spool_id), known)

        if server_id is None:  # not on the server yet: the spool is the only copy
            assert from_spool is not None
            return from_spool()
        return self._read(lambda: self._server_run(server_id), from_spool, f"run {run_id} is read")

    def update_run_info(
        self, run_id: str, status: str, end_time: int | None, run_name: str | None = None
    ) -> RunInfo:
        ref = self._ref(run_id)
        info = self.spool.store.update_run_info(ref.spool_id, status, end_time, run_name)
        self.sender.notify(ref.spool_id, ref.run_dir)
        if RunStatus.is_terminated(status) and self.sender.healthy:
            # The records are on disk; give a healthy server a moment to have them too,
            # so a read right after the run shows everything. Delivery proper is at exit.
            self.sender.flush(self.settings.end_run_timeout, [ref.spool_id])
        return replace(
            info,
            run_id=self._public_id(ref),
            experiment_id=self._public_experiment_id(info.experiment_id),
            artifact_uri=ref.artifact_uri or info.artifact_uri,
        )

    def set_lifecycle(self, run_id: str, deleted: bool) -> None:
        ref = self._ref(run_id)
        self.spool.store.set_lifecycle(ref.spool_id, deleted)
        self.sender.notify(ref.spool_id, ref.run_dir)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric],
        params: Sequence[Param],
        tags: Sequence[RunTag],
    ) -> None:
        ref = self.ids.get(run_id) or self._ref(run_id)
        self.spool.store.log_batch(ref.spool_id, metrics, params, tags)
        self.sender.notify(ref.spool_id, ref.run_dir)
        for metric in metrics:
            if math.isinf(metric.value) and metric.key not in self._warned_inf:
                self._warn_inf(metric.key)

    def _warn_inf(self, key: str) -> None:
        """Say once per key that the server will not keep an infinite value as such.

        An MLflow 3.17 server stores +-inf as +-1.7976931348623157e308 (the largest
        float) and answers that, whatever the client sends ("Infinity" in the JSON, as
        MLflow's own client does). The spool keeps inf; the server's copy cannot.
        """
        with self._lock:
            if key in self._warned_inf:
                return
            self._warned_inf.add(key)
        notices.warn(
            f"mltrail: metric {key!r} is infinite; MLflow tracking servers store +-inf as "
            "+-1.7976931348623157e+308 (the largest float), so that is what the server "
            "will show",
            stacklevel=4,
        )

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        ref = self._ref(run_id)
        self.spool.store.log_inputs(ref.spool_id, datasets)
        self.sender.notify(ref.spool_id, ref.run_dir)

    def delete_tag(self, run_id: str, key: str) -> None:
        ref = self._ref(run_id)
        self.spool.store.delete_tag(ref.spool_id, key)
        self.sender.notify(ref.spool_id, ref.run_dir)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        ref = self._known(run_id)
        self._flush_for_read(ref)
        server_id = ref.server_id if ref is not None else run_id
        from_spool = None
        if ref is not None:
            spool_id = ref.spool_id

            def from_spool() -> list[Metric]:
                return self.spool.store.get_metric_history(spool_id, key)

        if server_id is None:  # not on the server yet: the spool is the only copy
            assert from_spool is not None
            return from_spool()
        return self._read(
            lambda: self._server_history(server_id, key),
            from_spool,
            f"metric {key!r} of run {run_id} is read",
        )

    def _server_history(self, run_id: str, key: str) -> list[Metric]:
        points: list[Metric] = []
        token = None
        for _ in range(100_000):  # bounded paging
            payload: dict[str, Any] = {
                "run_id": run_id,
                "metric_key": key,
                "max_results": _HISTORY_PAGE,
            }
            if token:
                payload["page_token"] = token
            try:
                answer = self.http.call("GET", "metrics/get-history", payload)
            except NotFoundError:
                raise NotFoundError(
                    f"No run with id {run_id!r} on {self.uri}", resource_id=run_id
                ) from None
            points.extend(
                Metric(
                    m["key"],
                    metric_value(m["value"]),
                    int(m.get("timestamp", 0)),
                    int(m.get("step", 0)),
                )
                for m in answer.get("metrics", [])
            )
            token = answer.get("next_page_token")
            if not token:
                break
        return points

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None,
        run_view_type: int,
        max_results: int,
        order_by: Sequence[str] | None,
        page_token: str | None,
    ) -> PagedList:
        if self.sender.has_pending():
            self.sender.flush(_READ_FLUSH_CAP, stall=self.settings.read_flush_timeout)
        server_ids = []
        for exp in experiment_ids:
            exp = str(exp)
            if exp.startswith(LOCAL_EXPERIMENT_PREFIX):
                mapped = self.spool.server_experiment(exp[len(LOCAL_EXPERIMENT_PREFIX) :])
                if mapped is not None:
                    server_ids.append(mapped)
            else:
                server_ids.append(exp)
        payload: dict[str, Any] = {
            "experiment_ids": server_ids,
            "run_view_type": _VIEW_TYPES.get(run_view_type, "ACTIVE_ONLY"),
            "max_results": max_results,
        }
        if filter_string:
            payload["filter"] = filter_string
        if order_by:
            payload["order_by"] = list(order_by)
        if page_token:
            payload["page_token"] = page_token

        def from_server() -> PagedList:
            answer = self.http.call("POST", "runs/search", payload) if server_ids else {}
            runs = [parse_run(r) for r in answer.get("runs", [])]
            return PagedList(runs, answer.get("next_page_token") or None)

        return self._read(
            from_server,
            lambda: self._search_spool(
                experiment_ids, filter_string, run_view_type, max_results, order_by, page_token
            ),
            "runs are searched",
        )

    def _search_spool(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None,
        run_view_type: int,
        max_results: int,
        order_by: Sequence[str] | None,
        page_token: str | None,
    ) -> PagedList:
        spool_ids = []
        for exp in experiment_ids:
            exp = str(exp)
            if exp.startswith(LOCAL_EXPERIMENT_PREFIX):
                spool_ids.append(exp[len(LOCAL_EXPERIMENT_PREFIX) :])
            else:
                found = self.spool.spool_experiment_for(exp)
                if found is not None:
                    spool_ids.append(found)
        page = self.spool.store.search_runs(
            spool_ids, filter_string, run_view_type, max_results, order_by, page_token
        )
        public = []
        for run in page:
            ref = self._known(run.info.run_id)
            public.append(run if ref is None else self._spool_run_public(run, ref))
        return PagedList(public, page.token)

    # artifacts -----------------------------------------------------------

    def _artifact_uri(self, ref: RunRef | None, run_id: str) -> str:
        artifact_uri = ref.artifact_uri if ref is not None else None
        if artifact_uri is None:
            server_id = ref.server_id if ref is not None else run_id
            if server_id is None:
                raise RemoteError(
                    f"Run {run_id} is not on {self.uri} yet; its artifacts cannot be read there",
                    error_code="TEMPORARILY_UNAVAILABLE",
                )
            artifact_uri = self._server_run(server_id).info.artifact_uri
            if ref is not None:
                ref.artifact_uri = artifact_uri
        return artifact_uri

    @contextlib.contextmanager
    def stage_artifacts(self, run_id: str, artifact_path: str | None) -> Iterator[Path]:
        """Artifacts are staged in the run's spool folder, then shipped by the sender."""
        ref = self._ref(run_id)
        with self.spool.store.stage_artifacts(ref.spool_id, artifact_path) as folder:
            yield folder
        self.sender.notify(ref.spool_id, ref.run_dir)

    # logged models ---------------------------------------------------------

    @contextlib.contextmanager
    def stage_logged_model(
        self, run_id: str, model_id: str, name: str, artifact_path: str
    ) -> Iterator[Path]:
        """The model waits in the spool apart from the run's artifacts; the sender makes
        it a LoggedModel where the server has them, run artifacts where it has not."""
        ref = self._ref(run_id)
        with self.spool.store.stage_logged_model(
            ref.spool_id, model_id, name, artifact_path, apart=True
        ) as folder:
            yield folder
        self.sender.notify(ref.spool_id, ref.run_dir)

    def get_logged_model(self, model_id: str) -> LoggedModel:
        """A model by the server's id, or by the id mltrail gave it (waiting, as
        `server_run_id` does, for its delivery)."""
        entry = self.spool.store.logged_model_entry(model_id)
        if entry is None:
            return self._server_logged_model(model_id)
        ref = self._ref(entry["run_id"])
        self._flush_for_read(ref)
        shipped = ShipState.load(ref.run_dir).models.get(model_id, {})
        if not (shipped.get("server_id") or shipped.get("run_artifacts")):
            self.sender.notify(ref.spool_id, ref.run_dir)
            self.sender.flush(_flush_timeout(), [ref.spool_id])
        state = ShipState.load(ref.run_dir)
        shipped = state.models.get(model_id, {})
        if shipped.get("server_id"):
            return self._server_logged_model(shipped["server_id"])
        if shipped.get("run_artifacts") and state.server_run_id and state.artifact_uri:
            return LoggedModel(
                model_id=model_id,
                experiment_id=state.server_experiment_id or "",
                name=entry["name"],
                source_run_id=state.server_run_id,
                artifact_location=f"{state.artifact_uri}/{entry['artifact_path']}",
                params=dict(entry.get("params") or {}),
                creation_timestamp=entry.get("creation_timestamp"),
            )
        raise RemoteError(
            f"Logged model {model_id} is not on {self.uri} yet; run `mltrail sync` once the "
            "server answers",
            error_code="TEMPORARILY_UNAVAILABLE",
        )

    def _server_logged_model(self, model_id: str) -> LoggedModel:
        try:
            answer = self.http.call("GET", f"logged-models/{model_id}")
        except NotFoundError:
            raise NotFoundError(
                f"No logged model {model_id!r} on {self.uri}", resource_id=model_id
            ) from None
        return parse_logged_model(answer["model"])

    def download_logged_model(self, model_id: str, dst_path: Path | None) -> Path:
        model = self.get_logged_model(model_id)
        root = model.artifact_location
        if dst_path is not None:
            target = Path(dst_path) / model.name.rsplit("/", 1)[-1]
        else:
            target = Path(tempfile.mkdtemp(prefix="mltrail-model-"))
        entries = self.artifacts.list(root, "")
        if not entries:
            raise NotFoundError(
                f"Logged model {model_id} has no files on {self.uri}", resource_id=model_id
            )
        self._download_dir(root, "", entries, target)
        return target

    def run_logged_model(self, run_id: str, name: str) -> LoggedModel | None:
        """The latest LoggedModel named `name` that run `run_id` logged, or None (also on
        a server without logged models): how MLflow 3 resolves `runs:/<run>/<name>`."""
        if not name:
            return None
        models = self._search_run_models(run_id, f" AND name = '{name}'", newest_first=True,
                                         max_results=1)
        return models[0] if models else None

    def run_logged_models(self, run_id: str) -> list[LoggedModel]:
        """The LoggedModels a run logged, oldest first (none on an older server)."""
        return self._search_run_models(run_id, "", newest_first=False, max_results=100)

    def _search_run_models(
        self, run_id: str, and_filter: str, *, newest_first: bool, max_results: int
    ) -> list[LoggedModel]:
        """The server's `logged-models/search` over the models run `run_id` logged, with
        `and_filter` appended to the source-run filter; [] on a server without them."""
        if self.sender.shipper.logged_models is False:
            return []
        server_id = self.server_run_id(run_id)
        run = self._server_run(server_id)
        try:
            found = self.http.call(
                "POST",
                "logged-models/search",
                {
                    "experiment_ids": [run.info.experiment_id],
                    "filter": f"source_run_id = '{server_id}'{and_filter}",
                    "order_by": [
                        {"field_name": "creation_timestamp", "ascending": not newest_first}
                    ],
                    "max_results": max_results,
                },
            )
        except NotFoundError:
            return []  # a server without logged models
        return [parse_logged_model(m) for m in found.get("models") or []]

    def _run_model_root(self, run_id: str, path: str) -> tuple[str, str] | None:
        """(artifact URI of the run's LoggedModel, rest of `path` inside it) for
        `runs:/<run>/<name>/...` reads of a model the server keeps apart from the run."""
        name, _, rest = path.partition("/")
        model = self.run_logged_model(run_id, name)
        if model is None:
            return None
        return model.artifact_location, rest

    def list_artifacts(self, run_id: str, path: str | None) -> list[FileInfo]:
        ref = self._known(run_id)
        self._flush_for_read(ref)
        path = (path or "").strip("/")

        def from_server() -> list[FileInfo]:
            root = self._artifact_uri(ref, run_id)
            entries = self.artifacts.list(root, path)
            if not entries and path and (model := self._run_model_root(run_id, path)):
                model_root, rest = model
                entries = self.artifacts.list(model_root, rest)
            infos = []
            for entry in entries:
                rel = f"{path}/{entry['path']}" if path else entry["path"]
                is_dir = bool(entry.get("is_dir"))
                size = None if is_dir else int(entry.get("file_size") or 0)
                infos.append(FileInfo(rel, is_dir, size))
            return sorted(infos, key=lambda f: f.path)

        from_spool = None
        if ref is not None:
            spool_id = ref.spool_id

            def from_spool() -> list[FileInfo]:
                return self.spool.store.list_artifacts(spool_id, path or None)

        return self._read(
            from_server, from_spool, f"artifacts of run {run_id} not yet uploaded are listed"
        )

    def download_artifacts(self, run_id: str, path: str, dst_path: Path) -> Path:
        ref = self._known(run_id)
        self._flush_for_read(ref)
        path = (path or "").strip("/")

        def from_server() -> Path:
            root = self._artifact_uri(ref, run_id)
            target = Path(dst_path) / (path.rsplit("/", 1)[-1] if path else "artifacts")
            entries = self.artifacts.list(root, path)
            if not entries and path and (model := self._run_model_root(run_id, path)):
                root, path_in_model = model
                entries = self.artifacts.list(root, path_in_model)
                if entries:
                    self._download_dir(root, path_in_model, entries, target)
                    return target
            if entries or not path:
                self._download_dir(root, path, entries, target)
            else:
                try:
                    self.artifacts.download(root, path, target)
                except NotFoundError:
                    raise NotFoundError(
                        f"Run {run_id} has no artifact {path!r}", resource_id=path
                    ) from None
            return target

        from_spool = None
        if ref is not None:
            spool_id = ref.spool_id

            def from_spool() -> Path:
                return self.spool.store.download_artifacts(spool_id, path, dst_path)

        return self._read(
            from_server, from_spool, f"artifacts of run {run_id} not yet uploaded are read"
        )

    def _download_dir(
        self, root: str, path: str, entries: list[dict[str, Any]], target: Path
    ) -> None:
        target.mkdir(parents=True, exist_ok=True)
        for entry in entries:
            name = entry["path"].rsplit("/", 1)[-1]
            rel = f"{path}/{name}" if path else name
            if entry.get("is_dir"):
                children = self.artifacts.list(root, rel)
                self._download_dir(root, rel, children, target / name)
            else:
                self.artifacts.download(root, rel, target / name)

    # delivery ------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds (default: MLTRAIL_FLUSH_TIMEOUT) for delivery.

        Returns:
            True when every record this process logged is on the server.
        """
        if timeout is None and runtime.process.exiting:
            return self._flush_at_exit()  # the exit path's wait, with its progress lines
        if timeout is None:
            timeout = _flush_timeout(self._flush_default)
        done = self.sender.flush(timeout)
        done = done and not self.sender.broken
        self._last_flush = (time.monotonic(), done)
        return done

    def close(self) -> None:
        """Stop sending and close the session; whatever is unsent stays in the spool
        (and is still reported at exit)."""
        self.sender.stop()
        self.http.close()

    def unsent_summary(self) -> str | None:
        """One sentence on what this process could not deliver, or None if nothing."""
        unsent = self.sender.unsent()
        if not unsent:
            return None
        records = artifacts = points = 0
        for run_dir in unsent.values():
            try:
                todo = pending(run_dir)
            except (OSError, ValueError):
                continue
            records += todo.records
            artifacts += todo.artifacts
            points += todo.points
        why = ""
        if self.sender.auth_error is not None:
            why = " (the server refused the credentials)"
        elif self.sender.broken:
            why = f" ({len(self.sender.broken)} refused by the server)"
        elif self.sender.last_error:
            why = f" ({self.sender.last_error})"
        parts = [_plural(records, "record")]
        if points >= _BIG_BACKLOG:
            parts.append(self._progress(points))
        if artifacts:
            parts.append(_plural(artifacts, "artifact file"))
        return (
            f"mltrail: {_plural(len(unsent), 'run')} ({', '.join(parts)}) not yet on "
            f"{self.uri}{why}. They are kept in {self.spool.folder}; send them with: "
            "mltrail sync"
        )

    def _progress(self, points_pending: int) -> str:
        """'X of Y points sent (R points/s)': this process's sending, for big backlogs."""
        sent = self.sender.shipper.points_sent
        rate = ""
        if self._exit_started is not None:  # the rate while the exit waits for delivery
            since, sent_then = self._exit_started
            took = time.monotonic() - since
            if took > 0.5 and sent > sent_then:
                rate = f", {(sent - sent_then) / took:,.0f} points/s"
        return f"{sent:,} of {sent + points_pending:,} points sent{rate}"

    def _flush_at_exit(self) -> bool:
        """`flush`, saying every few seconds how far a big backlog got; nothing is waited
        for after a Ctrl-C during the exit path."""
        if runtime.process.exit_interrupted:
            return False
        deadline = time.monotonic() + _flush_timeout(self._flush_default)
        self._exit_started = (time.monotonic(), self.sender.shipper.points_sent)
        while True:
            began = time.monotonic()
            wait = min(_PROGRESS_EVERY, max(0.0, deadline - began))
            done = self.flush(wait)
            if done or time.monotonic() - began < wait or began + wait >= deadline:
                return done  # delivered, given up early (down, refused), or out of time
            points = 0
            for run_dir in self.sender.unsent().values():
                with contextlib.suppress(OSError, ValueError):
                    points += pending(run_dir).points
            if points:
                print(f"mltrail: sending to {self.uri}: {self._progress(points)}", file=sys.stderr)

    def _report_unsent(self) -> None:
        if self._exit_reported:
            return
        recent = self._last_flush
        if recent is None or time.monotonic() - recent[0] > 1.0 or recent[1]:
            try:
                self._flush_at_exit()
            except KeyboardInterrupt:  # stop waiting; still say what is left
                runtime.process.exit_interrupted = True
        message = self.unsent_summary()
        if message is not None:
            self._exit_reported = True
            print(message, file=sys.stderr)


_PROGRESS_EVERY = 5.0  # seconds between progress lines while a big backlog is sent
_BIG_BACKLOG = 10_000  # metric points pending from which the exit message counts points


def _flush_timeout(default: float | None = None) -> float:
    fallback = 5.0 if default is None else default
    try:
        return float(os.environ.get("MLTRAIL_FLUSH_TIMEOUT", fallback))
    except ValueError:
        return fallback


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _report_at_exit(store_ref: weakref.ReferenceType[RestStore]) -> None:
    """The store's step of the exit path (`mltrail.runtime`): the open runs are ended
    by then, so their final status is among what is flushed and reported."""
    store = store_ref()
    if store is None:
        return
    try:
        store._report_unsent()
    except Exception as exc:  # never turn a clean exit into a traceback
        print(f"mltrail: could not report unsent records: {exc}", file=sys.stderr)


def _reset_after_fork() -> None:
    for store in list(_stores):
        store._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)

__all__ = ["RestStore", "parse_experiment", "parse_run"]
