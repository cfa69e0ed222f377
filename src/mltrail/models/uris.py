"""Model URIs: which local folder a `runs:/`, `models:/`, path or `file:` URI names.

- `runs:/<run_id>/<path>`: a folder in the artifacts of a run;
- `models:/<name>/<version>`, `models:/<name>/<stage>`, `models:/<name>@<alias>`:
  a version of the model registry, resolved to the source it was registered from;
- `models:/<model_id>` (`m-` and 32 hex digits): a logged model, by the id the store
  gave it (a remote store also takes the id mltrail assigned before the server's);
- a local path or `file:` URI.

Loading a model may execute code: pickled models run code while they are
unpickled. Load only models you trust. Loading from a local folder that is not
inside a run of a local mltrail store, and that this process did not write or
download, warns once per folder.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from ..artifacts import split_runs_uri
from ..exceptions import InvalidParameterError, NotFoundError
from .layout import MLMODEL, read_mlmodel

if TYPE_CHECKING:
    from ..client import TrackingClient
    from ..entities import ModelVersion

_MODEL_ID_URI = re.compile(r"^models:/+(m-[0-9a-f]{32})/?$")
_known: set[Path] = set()  # folders this process wrote or downloaded: loading them is silent
_warned: set[Path] = set()
_known_lock = threading.Lock()


def mark_known(folder: Path) -> None:
    with _known_lock:
        _known.add(folder.resolve())


def _inside_local_run(folder: Path) -> bool:
    """True for a folder inside the artifacts of a run of a local store."""
    from ..stores.journal import in_run_artifacts

    return in_run_artifacts(folder)


def _check_local_origin(folder: Path) -> None:
    resolved = folder.resolve()
    with _known_lock:
        if any(p in _known for p in (resolved, *resolved.parents)) or resolved in _warned:
            return
        _warned.add(resolved)
    if _inside_local_run(resolved):
        return
    warnings.warn(
        f"mltrail: loading the model at {str(folder)!r}, which no run of a local mltrail "
        "store holds. Loading a model can execute code from its files (pickles do): load "
        "only models you trust.",
        UserWarning,
        stacklevel=4,
    )


def local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and uri[1:3] in (":\\", ":/")):
        return Path(uri)
    return None


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """(name, version or stage, alias) of `models:/<name>/<version|stage|latest>` or `@alias`."""
    rest = uri[len("models:/") :].lstrip("/")
    if "@" in rest and "/" not in rest.split("@", 1)[1]:
        name, _, alias = rest.rpartition("@")
        if name and alias:
            return name, None, alias
    name, sep, version = rest.rpartition("/")
    if not (name and sep and version):
        raise InvalidParameterError(
            f"Invalid model URI {uri!r}: expected models:/<name>/<version>, "
            "models:/<name>/<stage> or models:/<name>@<alias>",
            key="model_uri",
        )
    return name, version, None


def logged_model_id(uri: str) -> str | None:
    """The model id of a `models:/<model_id>` URI, None for any other URI."""
    found = _MODEL_ID_URI.match(uri)
    return found.group(1) if found else None


def model_version_for(uri: str, client: TrackingClient | None = None) -> ModelVersion:
    """The registry entry a `models:/` URI points at.

    Raises:
        NotFoundError: the name, version, stage or alias does not exist.
    """
    from ..stores.registry import ALL_STAGES, canonical_stage

    client = client or _default_client()
    name, version, alias = parse_models_uri(uri)
    if alias is not None:
        return client.get_model_version_by_alias(name, alias)
    assert version is not None
    if version.isdigit():
        return client.get_model_version(name, version)
    if version.lower() == "latest":
        stages: list[str] | None = None
    elif version.lower() in (s.lower() for s in ALL_STAGES):
        stages = [canonical_stage(version)]
    else:
        raise InvalidParameterError(
            f"Invalid model URI {uri!r}: {version!r} is neither a version number, a stage "
            f"({', '.join(ALL_STAGES)}) nor 'latest'",
            key="model_uri",
        )
    latest = client.get_latest_versions(name, stages)
    if not latest:
        raise NotFoundError(
            f"Registered model {name!r} has no version in stage {version!r}", resource_id=uri
        )
    return max(latest, key=lambda mv: int(mv.version))


def source_uri(version: ModelVersion) -> str:
    """A URI mltrail can download for a version's source.

    A server may store the source as the artifact location it resolved a
    `runs:/` URI to; the run id it keeps with the version turns that back
    into a `runs:/` URI.
    """
    source = version.source
    if source.startswith("runs:/") or local_path(source) is not None:
        return source
    marker = f"/{version.run_id}/artifacts" if version.run_id else None
    if marker and marker in source:
        rest = source.split(marker, 1)[1].strip("/")
        return f"runs:/{version.run_id}/{rest}"
    return source


def _default_client() -> TrackingClient:
    from .. import fluent

    return fluent.current_client()


def _file_uri_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def download_model(
    model_uri: str | os.PathLike[str],
    dst_path: str | os.PathLike[str] | None = None,
    client: TrackingClient | None = None,
) -> Path:
    """A local folder holding the model `model_uri` names.

    A model of a local store is read in place (no copy) unless `dst_path` is given;
    a remote one is downloaded file by file into `dst_path` (a new temporary
    folder by default).

    Args:
        model_uri: `runs:/<run_id>/<path>`, `models:/<name>/<version|stage|latest>`,
            `models:/<name>@<alias>`, a local path or a `file:` URI.
        dst_path: an existing folder to download into.
        client: the client whose store and registry resolve the URI; default: the
            current tracking URI's.

    Raises:
        NotFoundError: the run, registered model, version, alias or path does not exist,
            or holds no MLmodel file.
        InvalidParameterError: the URI is malformed or of a scheme mltrail cannot read.
    """
    uri = os.fspath(model_uri)
    for _ in range(8):  # a registry source is itself a URI; bounded in case of a cycle
        model_id = logged_model_id(uri)
        if model_id is not None:
            return _download_logged_model(model_id, dst_path, client or _default_client())
        if uri.startswith("models:/"):
            uri = source_uri(model_version_for(uri, client))
            continue
        if uri.startswith("runs:/"):
            return _download_run_model(uri, dst_path, client or _default_client())
        local = local_path(uri)
        if local is None:
            raise InvalidParameterError(
                f"Cannot load a model from {uri!r}: use runs:/, models:/, a local path or a "
                "file: URI",
                key="model_uri",
            )
        if not local.exists():
            raise NotFoundError(
                f"No model at {str(local)!r}: the path does not exist", resource_id=str(local)
            )
        read_mlmodel(local)
        _check_local_origin(local)
        if dst_path is None:
            return local
        target = Path(dst_path) / local.name
        shutil.copytree(local, target, dirs_exist_ok=True)
        mark_known(target)
        return target
    raise InvalidParameterError(
        f"Model URI {os.fspath(model_uri)!r} does not resolve to a model", key="model_uri"
    )


def _download_run_model(
    uri: str, dst_path: str | os.PathLike[str] | None, client: TrackingClient
) -> Path:
    run_id, path = split_runs_uri(uri, key="model_uri")
    run = client.get_run(run_id)
    base = _file_uri_path(run.info.artifact_uri)
    if base is not None and dst_path is None:
        folder = base / path if path else base
        if not (folder / MLMODEL).is_file():
            raise NotFoundError(
                f"No model at {uri}: the run has no {MLMODEL} file under {path or '/'!r}",
                resource_id=uri,
            )
        mark_known(folder)
        return folder
    client.flush()  # a remote store uploads in the background: this process's files first
    target = (
        Path(dst_path) if dst_path is not None else Path(tempfile.mkdtemp(prefix="mltrail-model-"))
    )
    target.mkdir(parents=True, exist_ok=True)
    try:
        local = Path(client.download_artifacts(run_id, path, str(target)))
    except NotFoundError:
        raise NotFoundError(
            f"No model at {uri}: the run has no artifact {path!r}", resource_id=uri
        ) from None
    if not (local / MLMODEL).is_file():
        raise NotFoundError(
            f"No model at {uri}: the run has no {MLMODEL} file under {path or '/'!r}",
            resource_id=uri,
        )
    mark_known(local)
    return local


def _download_logged_model(
    model_id: str, dst_path: str | os.PathLike[str] | None, client: TrackingClient
) -> Path:
    if dst_path is not None:
        Path(dst_path).mkdir(parents=True, exist_ok=True)
    folder = Path(
        client.download_logged_model(model_id, os.fspath(dst_path) if dst_path else None)
    )
    if not (folder / MLMODEL).is_file():
        raise NotFoundError(
            f"No model at models:/{model_id}: it has no {MLMODEL} file", resource_id=model_id
        )
    mark_known(folder)
    return folder
