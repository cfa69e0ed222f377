"""The model registry of the local store: registered models as folders of small JSON files.

Layout under `<store root>/registry`::

    models/<sha1 of name>/model.json          name, description, tags, aliases, times
    models/<sha1 of name>/versions/<n>/version.json

A registered model or a version comes into being by renaming a complete scratch
folder onto its final name. The rename fails when the name is taken, so two
processes creating the same model, or registering versions of it at once, never
get the same folder: the loser of a race for version `n` moves on to `n + 1`.
Readers therefore never see a half-written entry. Changes to an existing entry
(stage, description, tags, aliases) rewrite its JSON file atomically under a
per-model lock, so concurrent transitions cannot lose each other's update.
Deleted versions keep their folder, marked deleted, so a number is never reused.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .. import search
from ..entities import ModelVersion, PagedList, RegisteredModel
from ..exceptions import AlreadyExistsError, InvalidParameterError, NotFoundError
from .registry import ACTIVE_STAGES, ALL_STAGES, STAGE_ARCHIVED, STAGE_NONE

_MODEL_FILE = "model.json"
_VERSION_FILE = "version.json"
_LOCK_FILE = ".lock"
_MAX_VERSION_ATTEMPTS = 100_000  # bounds the claim loop; far above any real contention


def _now_ms() -> int:
    return int(time.time() * 1000)


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (and, with the thread lock, across threads)."""
    with _thread_lock, open(path, "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # Windows
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


_thread_lock = threading.RLock()


def _taken(exc: OSError) -> bool:
    """True when a rename failed because its target already exists."""
    return isinstance(exc, FileExistsError) or exc.errno in (errno.EEXIST, errno.ENOTEMPTY)


class LocalRegistry:
    """A ModelRegistry in a folder (see the module docstring for the layout)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        self.models_dir = self.root / "models"

    # registered models -----------------------------------------------------

    def _model_dir(self, name: str) -> Path:
        return self.models_dir / hashlib.sha1(name.encode()).hexdigest()

    def _model_meta(self, name: str) -> dict[str, Any]:
        meta = _read_json(self._model_dir(name) / _MODEL_FILE)
        if meta is None or meta.get("name") != name:
            raise NotFoundError(f"Registered model {name!r} does not exist", resource_id=name)
        return meta

    @contextlib.contextmanager
    def _edit_model(self, name: str) -> Iterator[dict[str, Any]]:
        """The model's metadata, locked; changes made to the dict are saved on exit."""
        folder = self._model_dir(name)
        self._model_meta(name)  # fail before creating a lock file for an unknown name
        with _file_lock(folder / _LOCK_FILE):
            meta = self._model_meta(name)
            yield meta
            meta["last_updated_timestamp"] = _now_ms()
            _write_json_atomic(folder / _MODEL_FILE, meta)

    def create_registered_model(
        self, name: str, tags: dict[str, str], description: str
    ) -> RegisteredModel:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        now = _now_ms()
        meta = {
            "name": name,
            "creation_timestamp": now,
            "last_updated_timestamp": now,
            "description": description or "",
            "tags": dict(tags),
            "aliases": {},
        }
        scratch = self.models_dir / f".new-{uuid.uuid4().hex}"
        scratch.mkdir()
        (scratch / "versions").mkdir()
        _write_json_atomic(scratch / _MODEL_FILE, meta)
        try:
            os.rename(scratch, self._model_dir(name))
        except OSError as exc:
            shutil.rmtree(scratch, ignore_errors=True)
            if _taken(exc):
                raise AlreadyExistsError(
                    f"Registered model {name!r} already exists", resource_id=name
                ) from None
            raise
        return self.get_registered_model(name)

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self._registered_model(self._model_meta(name))

    def _registered_model(self, meta: dict[str, Any]) -> RegisteredModel:
        versions = self._versions(meta)
        latest: dict[str, ModelVersion] = {}
        for mv in versions:
            current = latest.get(mv.current_stage)
            if current is None or int(mv.version) > int(current.version):
                latest[mv.current_stage] = mv
        return RegisteredModel(
            name=meta["name"],
            creation_timestamp=meta["creation_timestamp"],
            last_updated_timestamp=meta["last_updated_timestamp"],
            description=meta.get("description", ""),
            latest_versions=tuple(latest[s] for s in ALL_STAGES if s in latest),
            tags=dict(meta.get("tags", {})),
            aliases=dict(meta.get("aliases", {})),
        )

    def _all_model_metas(self) -> list[dict[str, Any]]:
        if not self.models_dir.is_dir():
            return []
        metas = []
        for entry in os.scandir(self.models_dir):
            if entry.name.startswith("."):
                continue
            meta = _read_json(Path(entry.path) / _MODEL_FILE)
            if meta is not None:
                metas.append(meta)
        return metas

    def search_registered_models(
        self,
        filter_string: str | None,
        max_results: int,
        order_by: Sequence[str] | None,
        page_token: str | None,
    ) -> PagedList:
        query = search.Query(filter_string, order_by, search.REGISTERED_MODELS)
        models = [self._registered_model(m) for m in self._all_model_metas()]
        found = query.order(m for m in models if query.accepts(m))
        return _page(found, max_results, page_token)

    def update_registered_model(self, name: str, description: str) -> RegisteredModel:
        with self._edit_model(name) as meta:
            meta["description"] = description or ""
        return self.get_registered_model(name)

    def delete_registered_model(self, name: str) -> None:
        folder = self._model_dir(name)
        self._model_meta(name)
        trash = self.models_dir / f".deleted-{uuid.uuid4().hex}"
        try:
            os.rename(folder, trash)  # atomic: readers see the whole model or nothing
        except FileNotFoundError:
            raise NotFoundError(
                f"Registered model {name!r} does not exist", resource_id=name
            ) from None
        shutil.rmtree(trash, ignore_errors=True)

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        with self._edit_model(name) as meta:
            meta.setdefault("tags", {})[key] = value

    # versions --------------------------------------------------------------

    def _version_dir(self, name: str, version: str) -> Path:
        return self._model_dir(name) / "versions" / version

    def _version_meta(self, name: str, version: str) -> dict[str, Any]:
        self._model_meta(name)
        meta = _read_json(self._version_dir(name, version) / _VERSION_FILE)
        if meta is None or meta.get("deleted"):
            raise NotFoundError(
                f"Registered model {name!r} has no version {version}",
                resource_id=f"{name}/{version}",
            )
        return meta

    def _model_version(
        self, name: str, version: str, meta: dict[str, Any], aliases: dict[str, str]
    ) -> ModelVersion:
        return ModelVersion(
            name=name,
            version=version,
            creation_timestamp=meta["creation_timestamp"],
            last_updated_timestamp=meta["last_updated_timestamp"],
            current_stage=meta.get("current_stage", STAGE_NONE),
            description=meta.get("description", ""),
            source=meta.get("source", ""),
            run_id=meta.get("run_id") or "",
            status=meta.get("status", "READY"),
            aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
            tags=dict(meta.get("tags", {})),
        )

    def _versions(self, model_meta: dict[str, Any]) -> list[ModelVersion]:
        name = model_meta["name"]
        folder = self._model_dir(name) / "versions"
        if not folder.is_dir():
            return []
        aliases = model_meta.get("aliases", {})
        found = []
        for entry in os.scandir(folder):
            if not entry.name.isdigit():
                continue
            meta = _read_json(Path(entry.path) / _VERSION_FILE)
            if meta is not None and not meta.get("deleted"):
                found.append(self._model_version(name, entry.name, meta, aliases))
        return sorted(found, key=lambda mv: int(mv.version))

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None,
        tags: dict[str, str],
        description: str,
    ) -> ModelVersion:
        self._model_meta(name)
        versions_dir = self._model_dir(name) / "versions"
        versions_dir.mkdir(exist_ok=True)
        now = _now_ms()
        meta = {
            "creation_timestamp": now,
            "last_updated_timestamp": now,
            "current_stage": STAGE_NONE,
            "description": description or "",
            "source": source,
            "run_id": run_id or "",
            "status": "READY",
            "tags": dict(tags),
        }
        scratch = versions_dir / f".new-{uuid.uuid4().hex}"
        scratch.mkdir()
        _write_json_atomic(scratch / _VERSION_FILE, meta)
        number = 1 + max(
            (int(e.name) for e in os.scandir(versions_dir) if e.name.isdigit()), default=0
        )
        for _ in range(_MAX_VERSION_ATTEMPTS):
            try:
                os.rename(scratch, versions_dir / str(number))
                break
            except OSError as exc:
                if not _taken(exc):
                    shutil.rmtree(scratch, ignore_errors=True)
                    raise
                number += 1  # another process took this number first
        else:  # pragma: no cover - needs 100,000 concurrent registrations
            shutil.rmtree(scratch, ignore_errors=True)
            raise InvalidParameterError(
                f"Could not claim a version number for {name!r}", key="name"
            )
        with self._edit_model(name):
            pass  # a new version updates the model's last_updated_timestamp, as in MLflow
        return self.get_model_version(name, str(number))

    def get_model_version(self, name: str, version: str) -> ModelVersion:
        meta = self._version_meta(name, version)
        return self._model_version(name, version, meta, self._model_meta(name).get("aliases", {}))

    def _edit_version(
        self, name: str, version: str, change: Callable[[dict[str, Any], dict[str, Any]], None]
    ) -> ModelVersion:
        """Apply `change(version_meta, model_meta)` under the model's lock and save both."""
        self._version_meta(name, version)
        with self._edit_model(name) as model_meta:
            meta = self._version_meta(name, version)
            change(meta, model_meta)
            meta["last_updated_timestamp"] = _now_ms()
            _write_json_atomic(self._version_dir(name, version) / _VERSION_FILE, meta)
        return self.get_model_version(name, version)

    def get_latest_versions(self, name: str, stages: Sequence[str]) -> list[ModelVersion]:
        wanted = set(stages) if stages else set(ALL_STAGES)
        model = self.get_registered_model(name)
        return [mv for mv in model.latest_versions if mv.current_stage in wanted]

    def search_model_versions(
        self,
        filter_string: str | None,
        max_results: int,
        order_by: Sequence[str] | None,
        page_token: str | None,
    ) -> PagedList:
        query = search.Query(filter_string, order_by, search.MODEL_VERSIONS)
        versions = (mv for meta in self._all_model_metas() for mv in self._versions(meta))
        found = query.order(mv for mv in versions if query.accepts(mv))
        return _page(found, max_results, page_token)

    def transition_model_version_stage(
        self, name: str, version: str, stage: str, archive_existing_versions: bool
    ) -> ModelVersion:
        if archive_existing_versions and stage not in ACTIVE_STAGES:
            raise InvalidParameterError(
                f"archive_existing_versions applies to moves into {' or '.join(ACTIVE_STAGES)}, "
                f"not {stage!r}",
                key="archive_existing_versions",
            )

        def change(meta: dict[str, Any], model_meta: dict[str, Any]) -> None:
            meta["current_stage"] = stage
            if not archive_existing_versions:
                return
            for other in self._versions(model_meta):
                if other.version != version and other.current_stage == stage:
                    path = self._version_dir(name, other.version) / _VERSION_FILE
                    other_meta = _read_json(path)
                    if other_meta is not None:
                        other_meta["current_stage"] = STAGE_ARCHIVED
                        other_meta["last_updated_timestamp"] = _now_ms()
                        _write_json_atomic(path, other_meta)

        return self._edit_version(name, version, change)

    def update_model_version(self, name: str, version: str, description: str) -> ModelVersion:
        def change(meta: dict[str, Any], model_meta: dict[str, Any]) -> None:
            meta["description"] = description or ""

        return self._edit_version(name, version, change)

    def delete_model_version(self, name: str, version: str) -> None:
        def change(meta: dict[str, Any], model_meta: dict[str, Any]) -> None:
            meta["deleted"] = True
            aliases = model_meta.get("aliases", {})
            model_meta["aliases"] = {a: v for a, v in aliases.items() if v != version}

        self._version_meta(name, version)
        with self._edit_model(name) as model_meta:
            meta = self._version_meta(name, version)
            change(meta, model_meta)
            _write_json_atomic(self._version_dir(name, version) / _VERSION_FILE, meta)

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        def change(meta: dict[str, Any], model_meta: dict[str, Any]) -> None:
            meta.setdefault("tags", {})[key] = value

        self._edit_version(name, version, change)

    # aliases ---------------------------------------------------------------

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self._version_meta(name, version)
        with self._edit_model(name) as meta:
            self._version_meta(name, version)  # not deleted meanwhile
            meta.setdefault("aliases", {})[alias] = version

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        with self._edit_model(name) as meta:
            if alias not in meta.get("aliases", {}):
                raise NotFoundError(
                    f"Registered model {name!r} has no alias {alias!r}",
                    resource_id=f"{name}@{alias}",
                )
            del meta["aliases"][alias]

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        version = self._model_meta(name).get("aliases", {}).get(alias)
        if version is None:
            raise NotFoundError(
                f"Registered model {name!r} has no alias {alias!r}", resource_id=f"{name}@{alias}"
            )
        return self.get_model_version(name, version)


# paging -----------------------------------------------------------------------


def _page(items: list[Any], max_results: int, page_token: str | None) -> PagedList:
    offset = 0
    if page_token:
        try:
            offset = int(json.loads(base64.urlsafe_b64decode(page_token.encode()))["offset"])
        except (ValueError, KeyError, TypeError):
            raise InvalidParameterError(
                f"Invalid page token {page_token!r}", key="page_token"
            ) from None
    page = items[offset : offset + max_results]
    more = offset + max_results < len(items)
    token = base64.urlsafe_b64encode(json.dumps({"offset": offset + max_results}).encode())
    return PagedList(page, token.decode() if more else None)
