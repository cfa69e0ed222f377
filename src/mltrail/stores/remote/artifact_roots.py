"""Artifacts wherever a run's `artifact_uri` says they live: the one place that decides how.

Three cases, by the URI's scheme:

- ``mlflow-artifacts:`` (a server started with ``--serve-artifacts``, the default):
  uploaded and read through the server's proxied artifact API (`HttpSession`);
- a plain path or a ``file:`` URI (``mlflow ui --default-artifact-root ./mlruns``,
  a sqlite database's default ``./mlruns``): written and read directly, as MLflow's
  own client does; the folder must be reachable from this machine;
- anything else (``s3://``, ``gs://``, ``wasbs://``, ``hdfs://``, ...): through
  MLflow's artifact repositories, over the bridge (`mltrail.stores.bridge`), which
  needs the ``mlflow`` extra. Without it, the files stay in the spool and a
  transient error says why once; `mltrail sync` ships them when it can.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ...exceptions import NotFoundError, RemoteError
from .http import artifact_root

PROXIED, LOCAL, BRIDGE = "proxied", "local", "bridge"


def root_kind(artifact_uri: str) -> str:
    """PROXIED, LOCAL or BRIDGE: how files under `artifact_uri` are written."""
    scheme = urlparse(artifact_uri).scheme
    if scheme == "mlflow-artifacts":
        return PROXIED
    if scheme in ("", "file") or (len(scheme) == 1 and artifact_uri[1:3] in (":\\", ":/")):
        return LOCAL
    return BRIDGE


def local_root(artifact_uri: str) -> Path:
    """The folder of a LOCAL artifact URI."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(artifact_uri)


def describe(artifact_uri: str) -> str:
    """One sentence on how mltrail writes to `artifact_uri` (for `mltrail doctor`)."""
    kind = root_kind(artifact_uri)
    if kind == PROXIED:
        return f"{artifact_uri}: served by the tracking server, uploaded over HTTP"
    if kind == LOCAL:
        return (
            f"a folder, {local_root(artifact_uri)}: written directly (it must be reachable "
            "from this machine, as for MLflow's own client)"
        )
    from ..bridge import INSTALL_HINT, mlflow_installed

    how = "installed" if mlflow_installed() else f"NOT installed: {INSTALL_HINT}"
    return (
        f"{artifact_uri}: written through MLflow's artifact repositories (mlflow {how}; "
        "files wait in the spool until they can be written)"
    )


class ArtifactRoots:
    """Writes and reads run artifacts for one session, whatever the root (module doc).

    Args:
        http: the session of the store: an `HttpSession` for a server, a
            `BridgeSession` for a database (whose MLflow transport is reused).
    """

    def __init__(self, http: Any) -> None:
        self.http = http
        self._transport: Any = getattr(http, "transport", None)
        self._lock = threading.Lock()

    def _bridge(self, artifact_uri: str) -> Any:
        from ..bridge import INSTALL_HINT, mlflow_installed

        with self._lock:
            if self._transport is None:
                if not mlflow_installed():
                    error = RemoteError(
                        f"the artifact location {artifact_uri!r} is written through MLflow's "
                        f"artifact repositories and mlflow is not installed ({INSTALL_HINT}); "
                        "the artifact files stay in the spool until `mltrail sync` can "
                        "write them",
                        error_code="ARTIFACTS_NEED_MLFLOW",
                    )
                    error.transient = True  # type: ignore[attr-defined]
                    raise error
                from ..bridge.transport import open_transport

                self._transport = open_transport(None)
            return self._transport

    def _bridge_request(self, artifact_uri: str, op: str, args: dict[str, Any]) -> Any:
        from ..bridge.session import BridgeFailure, translate

        try:
            return self._bridge(artifact_uri).request(op, args)
        except BridgeFailure as exc:
            raise translate(exc, artifact_uri) from None

    def write(
        self, artifact_uri: str, rel: str, local_file: Path, retries: int | None = None
    ) -> None:
        """Put `local_file` at `rel` under the run's artifact root."""
        kind = root_kind(artifact_uri)
        if kind == PROXIED:
            root = artifact_root(artifact_uri, self.http.base_url)
            self.http.upload(f"{root}/{rel}", local_file, retries=retries)
        elif kind == LOCAL:
            target = local_root(artifact_uri) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
            try:
                shutil.copyfile(local_file, tmp)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            self._bridge_request(
                artifact_uri,
                "log_artifact",
                {"artifact_uri": artifact_uri, "path": rel, "local_file": str(local_file)},
            )

    def list(self, artifact_uri: str, path: str) -> list[dict[str, Any]]:
        """The entries of one folder: ``path`` (a name), ``is_dir``, ``file_size``."""
        kind = root_kind(artifact_uri)
        if kind == PROXIED:
            root = artifact_root(artifact_uri, self.http.base_url)
            return self.http.list_artifacts(f"{root}/{path}" if path else root)
        if kind == LOCAL:
            folder = local_root(artifact_uri) / path
            if not folder.is_dir():
                return []
            return [
                {
                    "path": entry.name,
                    "is_dir": entry.is_dir(),
                    "file_size": None if entry.is_dir() else entry.stat().st_size,
                }
                for entry in sorted(folder.iterdir())
                if not entry.name.endswith(".part")
            ]
        return self._bridge_request(
            artifact_uri, "list_artifacts", {"artifact_uri": artifact_uri, "path": path}
        )

    def download(self, artifact_uri: str, path: str, target: Path) -> None:
        """Copy the file at `path` under the root to `target`."""
        kind = root_kind(artifact_uri)
        if kind == PROXIED:
            root = artifact_root(artifact_uri, self.http.base_url)
            self.http.download(f"{root}/{path}", target)
        elif kind == LOCAL:
            source = local_root(artifact_uri) / path
            if not source.is_file():
                raise NotFoundError(f"No artifact {path!r} in {artifact_uri}", resource_id=path)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        else:
            self._bridge_request(
                artifact_uri,
                "download",
                {"artifact_uri": artifact_uri, "path": path, "target": str(target)},
            )
