"""The id map of the remote store: spool run ids and server run ids, both ways.

A run logged while the server answered has the server's id everywhere (its spool
folder is named by it). A run logged offline has a local id (its spool folder name,
also its `mltrail.clientRunId` tag) until the sender creates it on the server; from
then on both ids name the run, in this process (`RunIds.created`) and in any other
(the spool's `ship.json` records the server id). Nothing here talks to the server.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from ...exceptions import NotFoundError
from .spool import ShipState, Spool


@dataclass
class RunRef:
    """A run the store knows: its spool folder and, once created there, its server id."""

    spool_id: str
    run_dir: Path
    server_id: str | None
    artifact_uri: str | None

    @property
    def public_id(self) -> str:
        """The id handed to users: the server's once there is one."""
        return self.server_id or self.spool_id


class RunIds:
    """Run references by either id, filled from the spool on first use.

    Args:
        spool: the spool whose runs are mapped.
    """

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.lock = threading.RLock()
        self._refs: dict[str, RunRef] = {}

    def get(self, run_id: str) -> RunRef | None:
        """The reference already in memory (the hot path of every logging call)."""
        return self._refs.get(run_id)

    def remember(self, ref: RunRef, *ids: str) -> RunRef:
        """Make `ref` known under `ids` (default: its spool id); the first one wins."""
        with self.lock:
            for run_id in ids or (ref.spool_id,):
                self._refs.setdefault(run_id, ref)
            return self._refs[(ids or (ref.spool_id,))[0]]

    def created(self, spool_id: str, server_id: str, artifact_uri: str | None) -> None:
        """The run got its server id: the server id resolves to it from now on."""
        with self.lock:
            ref = self._refs.get(spool_id)
            if ref is not None:
                ref.server_id = server_id
                ref.artifact_uri = artifact_uri
                self._refs[server_id] = ref

    def known(self, run_id: str) -> RunRef | None:
        """The run's reference if the spool has it (in memory, else from its folder)."""
        ref = self._refs.get(run_id)
        if ref is not None:
            return ref
        if not isinstance(run_id, str) or not run_id:
            return None
        try:
            run_dir = self.spool.store.run_dir(run_id)
        except NotFoundError:
            return None
        state = ShipState.load(run_dir)
        ref = RunRef(run_id, run_dir, state.server_run_id, state.artifact_uri)
        with self.lock:
            ref = self._refs.setdefault(run_id, ref)
            if ref.server_id:
                self._refs.setdefault(ref.server_id, ref)
        return ref

    def reset_lock(self) -> None:
        """After a fork: the parent's lock may have been held by a thread gone here."""
        self.lock = threading.RLock()
