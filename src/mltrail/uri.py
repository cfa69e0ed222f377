"""Which tracking URI is in force: set_tracking_uri, else the environment, else local."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from . import runtime
from .stores.bridge import is_database_uri, require_mlflow

DEFAULT_ROOT = "mltrail-runs"  # not named like the package, so it cannot shadow the import
ENV_VARS = ("MLTRAIL_TRACKING_URI", "MLFLOW_TRACKING_URI")


def set_tracking_uri(uri: str | os.PathLike[str] | None) -> None:
    """Send every later run to `uri`: a folder, a `file:` URI, an http(s) server or a
    database (``sqlite:///mlflow.db``, ``postgresql://...``, written through MLflow).

    `None` goes back to the environment variables or the local default.

    Raises:
        UnsupportedUriError: a database URI and mlflow is not installed (the message
            names ``pip install "mltrail[mlflow]"``).
    """
    if uri is not None and is_database_uri(os.fspath(uri)):
        require_mlflow(os.fspath(uri))
    runtime.process.tracking_uri = None if uri is None else os.fspath(uri)


def get_tracking_uri() -> str:
    """The URI in force: the one set, else MLTRAIL_TRACKING_URI, else
    MLFLOW_TRACKING_URI, else `./mltrail-runs` in the working directory."""
    explicit = runtime.process.tracking_uri
    if explicit:
        return explicit
    for name in ENV_VARS:
        value = os.environ.get(name)
        if value:
            return value
    return (Path.cwd() / DEFAULT_ROOT).as_uri()


def is_tracking_uri_set() -> bool:
    return bool(runtime.process.tracking_uri) or any(os.environ.get(name) for name in ENV_VARS)


def redact_uri(uri: str | os.PathLike[str] | None) -> str:
    """`uri` safe to print: a password in it (``user:password@``) becomes ``***``.

    The one helper every message, CLI line and report uses before showing a URI, so a
    credential given in the URI (``http://ana:secret@host``) never reaches a terminal
    or a log. The user name stays: it tells which account is in use.
    """
    if uri is None:
        return ""
    text = os.fspath(uri)
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if "@" not in parts.netloc:
        return text
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    shown = f"{user}:***@{hostport}" if has_password else f"***@{hostport}"
    return urlunsplit((parts.scheme, shown, parts.path, parts.query, parts.fragment))
