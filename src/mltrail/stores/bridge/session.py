"""`BridgeSession`: the tracking-server session the shipper talks to, for a database.

It has the methods of `mltrail.stores.remote.http.HttpSession` that the remote store
and the shipper use (`call`, `close`, `base_url`, `settings`), answered by MLflow on
the database instead of by a server, and the same exceptions (artifacts go through
`mltrail.stores.remote.artifact_roots`, which reuses its `transport`), so the spool,
the sender, exactly-once creation and `mltrail sync` work for databases as they do for servers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ...exceptions import (
    AlreadyExistsError,
    InvalidParameterError,
    MltrailError,
    NotFoundError,
    ParamConflictError,
)
from ..remote.http import RemoteSettings
from . import database_uri, shown_uri
from .transport import BridgeFailure, Transport, open_transport

# How long after a `runs/create` without an answer (the process ended mid-request)
# the run may still show up: the helper finishes the request it carries before it
# exits, and a database commits before it answers.
CREATE_SETTLES = 10.0


class BridgeSession:
    """Requests to one database through MLflow (see the module docstring).

    Args:
        uri: the database URI as the user gave it (a password in it is used, never
            stored or shown).
        settings: the remote store's settings (spool root, flush timeouts).
        transport: how requests reach MLflow; default: `open_transport`.
    """

    def __init__(
        self,
        uri: str,
        settings: RemoteSettings | None = None,
        transport: Transport | None = None,
    ) -> None:
        settings = settings or RemoteSettings.from_env()
        self.settings = replace(settings, timeout=CREATE_SETTLES)
        self.uri = database_uri(uri)
        self.base_url = shown_uri(self.uri)
        self.transport = transport or open_transport(self.uri)
        self.auth_kind = "database"

    def close(self) -> None:
        self.transport.close()

    def call(
        self,
        method: str,
        endpoint: str,
        payload: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> dict[str, Any]:
        """One request in the REST API's shape, answered by MLflow's client.

        Raises:
            NotFoundError, AlreadyExistsError, InvalidParameterError, ParamConflictError:
            MLflow refused the request. RemoteError: any other failure; `is_transient`
            tells whether a later attempt may succeed (a locked or unreachable database).
        """
        body = dict(payload or {})
        if method == "DELETE":  # the one endpoint that differs by method only (an alias)
            body["_method"] = method
        try:
            answer = self.transport.request("call", {"endpoint": endpoint, "payload": body})
        except BridgeFailure as exc:
            raise translate(exc, self.base_url) from None
        return answer or {}


def translate(exc: BridgeFailure, where: str) -> MltrailError:
    """mltrail's exception for what MLflow answered, as `HttpSession.translate` does
    for a server's error JSON (the same codes carry the same meaning)."""
    code, message = exc.error_code, exc.message
    if code == "RESOURCE_DOES_NOT_EXIST":
        return NotFoundError(message)
    if code == "RESOURCE_ALREADY_EXISTS":
        return AlreadyExistsError(message)
    if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE"):
        if "Changing param values is not allowed" in message:
            return ParamConflictError(message)
        return InvalidParameterError(message)
    return BridgeFailure(f"MLflow on {where}: {message}", code, exc.transient)
