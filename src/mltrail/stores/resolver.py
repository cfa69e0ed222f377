"""Pick the Store for a tracking URI.

A plain path or `file:` URI is the local store; `http(s)://` is the MLflow REST
store. Any other scheme is looked up in the entry-point group `mltrail.stores`,
where a plugin registers a callable taking the URI and returning a Store.
"""

from __future__ import annotations

import threading
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from .. import runtime
from ..exceptions import UnsupportedUriError
from ..uri import redact_uri
from .base import Store

ENTRY_POINT_GROUP = "mltrail.stores"

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
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == scheme:
            return entry.load()(uri)
    hint = ""
    if scheme in ("sqlite", "postgresql", "mysql", "mssql"):
        hint = (
            f" mltrail talks to databases through an MLflow tracking server: run "
            f"`mlflow server --backend-store-uri {redact_uri(uri)}` and set the tracking URI "
            "to its address, e.g. http://127.0.0.1:5000."
        )
    raise UnsupportedUriError(
        f"No mltrail store handles the tracking URI {redact_uri(uri)!r} (scheme {scheme!r}). Use a "
        f"folder path, a file: URI or an http(s):// server address, or install a plugin "
        f"registering {scheme!r} in the {ENTRY_POINT_GROUP!r} entry-point group.{hint}",
        key="tracking_uri",
    )


def resolve_store(uri: str) -> Store:
    """The Store for `uri`, one instance per URI per process."""
    with _lock:
        store = runtime.process.stores.get(uri)
        if store is None:
            store = runtime.process.stores[uri] = _build(uri)
        return store
