"""The model registry: an optional capability of a tracking backend, as a small protocol.

A store that can hold registered models provides a `ModelRegistry` beside its
`Store`. Each method is one endpoint of MLflow's registry REST API, with the
same arguments, so a server-backed registry is a thin mapping and the local one
behaves the same way. The TrackingClient validates and canonicalises arguments
(names, version numbers, stages, aliases) before a registry sees them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..entities import ModelVersion, PagedList, RegisteredModel
from ..exceptions import InvalidParameterError, MltrailError
from .base import Store

STAGE_NONE = "None"
STAGE_STAGING = "Staging"
STAGE_PRODUCTION = "Production"
STAGE_ARCHIVED = "Archived"
ALL_STAGES = (STAGE_NONE, STAGE_STAGING, STAGE_PRODUCTION, STAGE_ARCHIVED)
ACTIVE_STAGES = (STAGE_STAGING, STAGE_PRODUCTION)  # the ones `archive_existing_versions` clears

MAX_ALIAS_LENGTH = 255
_ALIAS_RE = re.compile(r"^[\w\-]+$")
_VERSION_ALIAS_RE = re.compile(r"^[vV]\d+$")  # `v3` would read as version 3 in a models:/ URI


@runtime_checkable
class ModelRegistry(Protocol):
    """Registered models and their versions, stages, tags and aliases.

    Versions of one name count up from 1 and are never reused, also when two
    processes register the same name at once. Unknown names, versions and
    aliases raise `NotFoundError` naming them.
    """

    def create_registered_model(
        self, name: str, tags: dict[str, str], description: str
    ) -> RegisteredModel: ...

    def get_registered_model(self, name: str) -> RegisteredModel: ...

    def search_registered_models(
        self,
        filter_string: str | None,
        max_results: int,
        order_by: Sequence[str] | None,
        page_token: str | None,
    ) -> PagedList: ...

    def update_registered_model(self, name: str, description: str) -> RegisteredModel: ...

    def delete_registered_model(self, name: str) -> None: ...

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None: ...

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None,
        tags: dict[str, str],
        description: str,
    ) -> ModelVersion: ...

    def get_model_version(self, name: str, version: str) -> ModelVersion: ...

    def get_latest_versions(self, name: str, stages: Sequence[str]) -> list[ModelVersion]:
        """The newest version in each of `stages` (every stage when empty), in stage order."""
        ...

    def search_model_versions(
        self,
        filter_string: str | None,
        max_results: int,
        order_by: Sequence[str] | None,
        page_token: str | None,
    ) -> PagedList: ...

    def transition_model_version_stage(
        self, name: str, version: str, stage: str, archive_existing_versions: bool
    ) -> ModelVersion: ...

    def update_model_version(self, name: str, version: str, description: str) -> ModelVersion: ...

    def delete_model_version(self, name: str, version: str) -> None: ...

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None: ...

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None: ...

    def delete_registered_model_alias(self, name: str, alias: str) -> None: ...

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion: ...


def resolve_registry(store: Store) -> ModelRegistry:
    """The registry that goes with a store.

    A store object that implements `ModelRegistry` itself (a plugin, say) is its
    own registry; the local store keeps one in `<root>/registry`; the MLflow REST
    store uses the server's registry endpoints.

    Raises:
        MltrailError: the store has no model registry.
    """
    if isinstance(store, ModelRegistry):
        return store
    from .local import LocalStore

    if isinstance(store, LocalStore):
        from .local_registry import LocalRegistry

        return LocalRegistry(store.root / "registry")
    from .remote.store import RestStore

    if isinstance(store, RestStore):
        from .remote.registry import RestRegistry

        return RestRegistry(store)
    raise MltrailError(
        f"The tracking store at {store.uri!r} ({type(store).__name__}) has no model registry",
        error_code="FEATURE_DISABLED",
    )


# argument checks shared by every registry --------------------------------------


def canonical_stage(stage: str) -> str:
    """A stage name spelled as MLflow spells it ("staging" -> "Staging").

    Raises:
        InvalidParameterError: not one of None, Staging, Production, Archived.
    """
    for known in ALL_STAGES:
        if isinstance(stage, str) and stage.lower() == known.lower():
            return known
    raise InvalidParameterError(
        f"Invalid model version stage {stage!r}; use one of {', '.join(ALL_STAGES)}",
        key="stage",
    )


def check_name(name: str) -> str:
    """A registered model name: non-empty, without '/' or ':' (they would break models:/ URIs)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameterError("Registered model name must be a non-empty string", key="name")
    if "/" in name or ":" in name:
        raise InvalidParameterError(
            f"Invalid registered model name {name!r}: names cannot contain '/' or ':'", key="name"
        )
    return name


def check_version(version: int | str) -> str:
    """A version number as the string MLflow's entities carry."""
    text = str(version).strip()
    if not text.isdigit() or int(text) < 1:
        raise InvalidParameterError(
            f"Invalid model version {version!r}: expected a positive integer", key="version"
        )
    return str(int(text))


def check_alias(alias: str) -> str:
    """An alias: letters, digits, `_` and `-`; not `latest` nor `v<digits>` (reserved)."""
    if not isinstance(alias, str) or not alias:
        raise InvalidParameterError("Alias must be a non-empty string", key="alias")
    if not _ALIAS_RE.match(alias) or len(alias) > MAX_ALIAS_LENGTH:
        raise InvalidParameterError(
            f"Invalid alias {alias!r}: use at most {MAX_ALIAS_LENGTH} letters, digits, "
            "underscores and dashes",
            key="alias",
        )
    if alias.lower() == "latest" or _VERSION_ALIAS_RE.match(alias):
        raise InvalidParameterError(
            f"Alias {alias!r} is reserved: 'latest' and 'v<number>' name versions already",
            key="alias",
        )
    return alias
