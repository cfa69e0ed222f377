"""MLflow's `mlflow.artifacts` calls: read a run's artifacts by `runs:/` URI or run id.

`runs:/<run_id>/<path>` names a file or folder among a run's artifacts, on the
local store or a tracking server alike; this module is the one place that parses
it (models and the registry use `split_runs_uri` too). Other artifact URIs
(`s3://`, `mlflow-artifacts:/`) are refused with a clear error: read them through
the run that holds them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .client import TrackingClient
from .entities import FileInfo
from .exceptions import InvalidParameterError

RUNS_SCHEME = "runs:/"


def split_runs_uri(uri: str, key: str = "artifact_uri") -> tuple[str, str]:
    """The run id and the path inside its artifacts of `runs:/<run_id>/<path>`.

    Raises:
        InvalidParameterError: `uri` is not of that form (`key` names the argument).
    """
    if not uri.startswith(RUNS_SCHEME):
        raise InvalidParameterError(f"Invalid URI {uri!r}: expected runs:/<run_id>/<path>",
                                    key=key)
    run_id, _, path = uri[len(RUNS_SCHEME):].lstrip("/").partition("/")
    if not run_id:
        raise InvalidParameterError(f"Invalid URI {uri!r}: expected runs:/<run_id>/<path>",
                                    key=key)
    return run_id, path.strip("/")


def _locate(artifact_uri: str | None, run_id: str | None,
            artifact_path: str | None) -> tuple[str, str]:
    if (artifact_uri is None) == (run_id is None):
        raise InvalidParameterError("Give either artifact_uri or run_id (with artifact_path)",
                                    key="artifact_uri")
    if artifact_uri is not None:
        if artifact_path is not None:
            raise InvalidParameterError("artifact_path goes with run_id, not artifact_uri",
                                        key="artifact_path")
        return split_runs_uri(artifact_uri)
    assert run_id is not None
    return run_id, (artifact_path or "").strip("/")


def download_artifacts(
    artifact_uri: str | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    dst_path: str | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Download a run's artifact (file or folder) and return its local path.

    Args:
        artifact_uri: `runs:/<run_id>/<path>`; or give `run_id` and `artifact_path`.
        run_id: the run, when no `artifact_uri` is given.
        artifact_path: the path inside the run's artifacts ("" for all of them).
        dst_path: a local folder to download into (default: a new temporary one).
        tracking_uri: the store to read (default: the one in force).
    """
    run, path = _locate(artifact_uri, run_id, artifact_path)
    return TrackingClient(tracking_uri).download_artifacts(run, path, dst_path)


def list_artifacts(
    artifact_uri: str | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    tracking_uri: str | None = None,
) -> list[FileInfo]:
    """The files and folders directly under a run's artifact path."""
    run, path = _locate(artifact_uri, run_id, artifact_path)
    return TrackingClient(tracking_uri).list_artifacts(run, path or None)


def load_text(artifact_uri: str) -> str:
    """The text of the artifact file at `runs:/<run_id>/<path>` (UTF-8)."""
    return Path(download_artifacts(artifact_uri)).read_text(encoding="utf-8")


def load_dict(artifact_uri: str) -> dict[str, Any]:
    """The JSON object in the artifact file at `runs:/<run_id>/<path>`.

    Raises:
        InvalidParameterError: the file holds no JSON object.
    """
    try:
        loaded = json.loads(load_text(artifact_uri))
    except json.JSONDecodeError as exc:
        raise InvalidParameterError(f"{artifact_uri} is not JSON: {exc}",
                                    key="artifact_uri") from None
    if not isinstance(loaded, dict):
        raise InvalidParameterError(f"{artifact_uri} holds JSON, but not an object",
                                    key="artifact_uri")
    return loaded


__all__ = ["download_artifacts", "list_artifacts", "load_dict", "load_text", "split_runs_uri"]
