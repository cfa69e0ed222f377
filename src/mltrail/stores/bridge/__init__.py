"""The bridge to MLflow's own store code, for what only MLflow can write.

Database tracking URIs (``sqlite:///mlflow.db``, ``postgresql://``, ``mysql://``,
``mssql://``) hold MLflow's SQL schema, which mltrail does not reimplement. A run
logged to one goes where a run for a tracking server goes: into the spool (records
on disk before the logging call returns, nothing else in the training thread),
and a background sender ships it, through a `BridgeSession` instead of HTTP: the
same requests, answered by `mlflow.MlflowClient` on the database
(`mltrail.stores.bridge.worker`), in a helper process by default
(`mltrail.stores.bridge.transport` says why). The same bridge writes artifacts to
roots only MLflow's artifact repositories reach (``s3://``, ``gs://``, ...).

MLflow is then a runtime dependency, the ``mlflow`` extra
(``pip install "mltrail[mlflow]"``); nothing here imports it: only the worker does.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ...exceptions import UnsupportedUriError

DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
INSTALL_HINT = 'pip install "mltrail[mlflow]"'


def is_database_uri(uri: str) -> bool:
    """True for a URI of a database MLflow's SQL store writes (any driver suffix)."""
    scheme = urlsplit(uri).scheme.lower()
    return scheme.split("+", 1)[0] in DATABASE_SCHEMES


def mlflow_installed() -> bool:
    """Whether mlflow can be imported here (looked up without importing it)."""
    try:
        return importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):
        return False


def require_mlflow(uri: str, what: str = "the tracking URI") -> None:
    """Raise a clear error naming the extra when mlflow is not installed.

    Raises:
        UnsupportedUriError: mlflow is missing.
    """
    if not mlflow_installed():
        from ...uri import redact_uri

        raise UnsupportedUriError(
            f"{what} {redact_uri(uri)!r} is written through MLflow's own store code, and "
            f"mlflow is not installed here. Install it with: {INSTALL_HINT}",
            key="tracking_uri",
        )


def database_uri(uri: str) -> str:
    """`uri` as MLflow should open it, wherever the process that opens it runs.

    - a relative sqlite path (``sqlite:///mlflow.db``) is made absolute, so
      `mltrail sync` run from another folder writes to the same file;
    - plain ``postgresql://`` is given the driver that is installed. SQLAlchemy 2.1
      opens plain ``postgresql://`` with psycopg 3; MLflow users mostly have
      ``psycopg2-binary`` (what MLflow's docs install), so when only psycopg2 can be
      imported the URI becomes ``postgresql+psycopg2://``, as it would have opened
      with SQLAlchemy 1.x and 2.0. An explicit ``+driver`` is kept as given.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
        if path and not path.startswith("/") and path != ":memory:":
            query = ""
            if "?" in path:
                path, _, query = path.partition("?")
            absolute = Path(os.path.abspath(path)).as_posix()
            return f"sqlite:///{absolute}" + (f"?{query}" if query else "")
        return uri
    if scheme == "postgresql" and not _importable("psycopg") and _importable("psycopg2"):
        return urlunsplit(("postgresql+psycopg2", *parts[1:]))
    return uri


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def shown_uri(uri: str) -> str:
    """`uri` safe to store and print: the password dropped, everything else intact
    (a sqlite path, a query naming a socket folder)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}@{hostport}" if user else hostport
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


__all__ = [
    "DATABASE_SCHEMES",
    "INSTALL_HINT",
    "database_uri",
    "is_database_uri",
    "mlflow_installed",
    "require_mlflow",
    "shown_uri",
]
