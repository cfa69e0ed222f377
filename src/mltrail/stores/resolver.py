"""Pick the Store for a tracking URI.

A plain path or `file:` URI is the local store; `http(s)://` is the MLflow REST
store; a database URI (sqlite, postgresql, mysql, mssql) is the same store shipping
through MLflow's own code (`mltrail.stores.bridge`, the ``mlflow`` extra). Any other
scheme is looked up in the entry-point group `mltrail.stores`,
where a plugin registers a callable taking the URI and returning a Store.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from .. import runtime
from ..exceptions import UnsupportedUriError
from ..uri import redact_uri
from .base import Store
from .bridge import DATABASE_SCHEMES, database_uri, is_database_uri, require_mlflow

ENTRY_POINT_GROUP = "mltrail.stores"
DATABASE_FLUSH_TIMEOUT = 60.0  # seconds a process exit waits for a database (MLTRAIL_FLUSH_TIMEOUT)

_lock = threading.Lock()


def _local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and uri[1:3] in (":\\", ":/")):
        return Path(uri)  # a path, including a Windows drive letter
    return None


def _build(uri: str) -> Store:
    path = _local_path(uri)
    if path is not None:
        from .local import LocalStore

        return LocalStore(path)
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        from .remote.store import RestStore

        return RestStore(uri)
    if is_database_uri(uri):
        return _database_store(uri)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == scheme:
            return entry.load()(uri)
    raise UnsupportedUriError(
        f"No mltrail store handles the tracking URI {redact_uri(uri)!r} (scheme {scheme!r}). Use a "
        f"folder path, a file: URI, an http(s):// server address or a database URI "
        f"({', '.join(s + '://' for s in DATABASE_SCHEMES)}), or install a plugin "
        f"registering {scheme!r} in the {ENTRY_POINT_GROUP!r} entry-point group.",
        key="tracking_uri",
    )


def _database_store(uri: str) -> Store:
    """A database URI: the remote store's spool and sender, shipping through MLflow's own
    store code (`mltrail.stores.bridge`) instead of HTTP."""
    require_mlflow(uri)
    from .bridge.session import BridgeSession
    from .remote.http import RemoteSettings
    from .remote.store import RestStore

    settings = RemoteSettings.from_env()
    # A read waits for this process's records of the run; the helper's first request
    # imports mlflow and may migrate a new database, seconds without visible progress.
    settings = replace(
        settings, read_flush_timeout=max(settings.read_flush_timeout, DATABASE_FLUSH_TIMEOUT)
    )
    return RestStore(
        uri,
        settings,
        session_factory=BridgeSession,
        foreground_requests=False,
        # The first contact with a new sqlite file runs MLflow's migrations (seconds).
        flush_timeout=DATABASE_FLUSH_TIMEOUT,
    )


def resolve_store(uri: str) -> Store:
    """The Store for `uri`, one instance per URI per process.

    A database URI is keyed absolute (``sqlite:///mlflow.db`` names a file in the
    working directory of the moment, as it does for MLflow).
    """
    if is_database_uri(uri):
        uri = database_uri(uri)
    with _lock:
        store = runtime.process.stores.get(uri)
        if store is None:
            store = runtime.process.stores[uri] = _build(uri)
        return store
