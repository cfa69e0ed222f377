"""The model registry of an MLflow tracking server: one REST endpoint per method.

Registry calls are synchronous (no spool): registering a model is rare and its
answer, the version number, is what the caller needs. Requests go through the
REST store's `HttpSession`, which retries transient failures and translates
errors; a "does not exist" answer is re-raised naming the model, version or
alias that was looked up. The one request that is not safe to repeat,
`model-versions/create`, is never resent blindly (`RestRegistry._create_version`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from ...entities import ModelVersion, PagedList, RegisteredModel
from ...exceptions import InvalidParameterError, MltrailError, NotFoundError
from .http import HttpSession, is_transient, request_sent
from .store import RestStore

# A version's id on the client, so a create whose answer was lost can be found again.
CLIENT_VERSION_ID_TAG = "mltrail.clientVersionId"


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in tags.items()]


def _tag_dict(items: Any) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in items or []}


def model_version_from_json(data: dict[str, Any]) -> ModelVersion:
    return ModelVersion(
        name=data["name"],
        version=str(data["version"]),
        creation_timestamp=_int(data.get("creation_timestamp")),
        last_updated_timestamp=_int(data.get("last_updated_timestamp")),
        current_stage=data.get("current_stage") or "None",
        description=data.get("description") or "",
        source=data.get("source") or "",
        run_id=data.get("run_id") or "",
        status=data.get("status") or "READY",
        aliases=tuple(data.get("aliases") or ()),
        tags=_tag_dict(data.get("tags")),
    )


def registered_model_from_json(data: dict[str, Any]) -> RegisteredModel:
    return RegisteredModel(
        name=data["name"],
        creation_timestamp=_int(data.get("creation_timestamp")),
        last_updated_timestamp=_int(data.get("last_updated_timestamp")),
        description=data.get("description") or "",
        latest_versions=tuple(
            model_version_from_json(v) for v in data.get("latest_versions") or ()
        ),
        tags=_tag_dict(data.get("tags")),
        aliases={a["alias"]: str(a["version"]) for a in data.get("aliases") or ()},
    )


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


@contextmanager
def _naming(message: str, resource_id: str) -> Iterator[None]:
    """Re-raise the server's "does not exist" as a NotFoundError naming what was looked up."""
    try:
        yield
    except NotFoundError as exc:
        raise NotFoundError(f"{message} ({exc.message})", resource_id=resource_id) from exc
    except InvalidParameterError as exc:
        # MLflow answers an unknown alias with INVALID_PARAMETER_VALUE "... not found".
        if "not found" not in exc.message.lower():
            raise
        raise NotFoundError(f"{message} ({exc.message})", resource_id=resource_id) from exc


class RestRegistry:
    """A ModelRegistry on the server a RestStore talks to."""

    def __init__(self, store: RestStore) -> None:
        self.store = store
        self.http: HttpSession = store.http
        self.uri = store.uri

    def _call(self, method: str, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.http.call(method, endpoint, payload)

    def _model(self, name: str) -> AbstractContextManager[None]:
        return _naming(f"Registered model {name!r} does not exist on {self.uri}", name)

    def _version(self, name: str, version: str) -> AbstractContextManager[None]:
        return _naming(
            f"Registered model {name!r} has no version {version} on {self.uri}",
            f"{name}/{version}",
        )

    # registered models -----------------------------------------------------

    def create_registered_model(
        self, name: str, tags: dict[str, str], description: str
    ) -> RegisteredModel:
        payload: dict[str, Any] = {"name": name, "tags": _tags(tags)}
        if description:
            payload["description"] = description
        answer = self._call("POST", "registered-models/create", payload)
        return registered_model_from_json(answer["registered_model"])

    def get_registered_model(self, name: str) -> RegisteredModel:
        with self._model(name):
            answer = self._call("GET", "registered-models/get", {"name": name})
        return registered_model_from_json(answer["registered_model"])

    def search_registered_models(
        self,
        filter_string: str | None,
        max_results: int,
        order_by: Sequence[str] | None,
        page_token: str | None,
    ) -> PagedList:
        answer = self._call(
            "GET",
            "registered-models/search",
            _search_payload(filter_string, max_results, order_by, page_token),
        )
        models = [registered_model_from_json(m) for m in answer.get("registered_models", [])]
        return PagedList(models, answer.get("next_page_token") or None)

    def update_registered_model(self, name: str, description: str) -> RegisteredModel:
        with self._model(name):
            answer = self._call(
                "PATCH", "registered-models/update", {"name": name, "description": description}
            )
        return registered_model_from_json(answer["registered_model"])

    def delete_registered_model(self, name: str) -> None:
        with self._model(name):
            self._call("DELETE", "registered-models/delete", {"name": name})

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        with self._model(name):
            self._call(
                "POST", "registered-models/set-tag", {"name": name, "key": key, "value": value}
            )

    # versions --------------------------------------------------------------

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None,
        tags: dict[str, str],
        description: str,
    ) -> ModelVersion:
        if run_id:
            # A run logged offline has a local id until it reaches the server, and the
            # model files must be uploaded before the server is told about them.
            server_id = self.store.server_run_id(run_id)
            prefix = f"runs:/{run_id}/"
            if source.startswith(prefix):
                # On an MLflow 3 server the run's model is a LoggedModel with its own
                # files: the version is registered from it, as MLflow 3's client does.
                model = self.store.run_logged_model(server_id, source[len(prefix) :].strip("/"))
                source = f"models:/{model.model_id}" if model else f"runs:/{server_id}/" + (
                    source[len(prefix) :]
                )
            run_id = server_id
        payload: dict[str, Any] = {"name": name, "source": source, "tags": _tags(tags)}
        if run_id:
            payload["run_id"] = run_id
        if source.startswith("models:/m-") and "/" not in source[len("models:/") :]:
            payload["model_id"] = source[len("models:/") :]  # an MLflow 3 logged model
        if description:
            payload["description"] = description
        with self._model(name):
            version = self._create_version(payload)
        return model_version_from_json(version)

    def _create_version(self, payload: dict[str, Any]) -> dict[str, Any]:
        """`model-versions/create`, making one version however many answers are lost.

        The server numbers each create as a new version, so a resend after a lost
        answer would register the model twice. The version carries the
        `mltrail.clientVersionId` tag; after a failure that may have reached the server,
        it is looked up by that tag, and a miss is trusted only once the lost request's
        read timeout has passed (as a run's create, see the shipper), before sending
        the create again.
        """
        client_id = uuid.uuid4().hex
        payload["tags"] = [*payload["tags"], {"key": CLIENT_VERSION_ID_TAG, "value": client_id}]
        settings = self.http.settings
        attempts = 1 + max(0, settings.retries)
        for attempt in range(attempts):
            settles_at = time.monotonic() + settings.settle_time()
            try:
                answer = self.http.call("POST", "model-versions/create", payload, retries=0)
                return answer["model_version"]
            except MltrailError as exc:
                if not is_transient(exc):
                    raise
                if request_sent(exc):
                    # No answer (or a gateway's): the server may still act on it, so a
                    # miss counts once the request's read timeout has passed. The
                    # server's own 5xx/429 answers come after it acted, or instead of it.
                    unanswered = getattr(exc, "status_code", None) in (None, 502, 504)
                    found = self._find_version(client_id, settles_at if unanswered else 0.0)
                    if found is not None:
                        return found
                if attempt == attempts - 1:
                    raise
                time.sleep(settings.retry_delay(attempt, exc))
        raise AssertionError("unreachable")  # pragma: no cover

    def _find_version(self, client_id: str, settles_at: float) -> dict[str, Any] | None:
        """The version carrying `client_id`, looked for until `settles_at` (monotonic)."""
        while True:
            answer = self._call(
                "GET",
                "model-versions/search",
                {"filter": f"tags.`{CLIENT_VERSION_ID_TAG}` = '{client_id}'", "max_results": 1},
            )
            versions = answer.get("model_versions") or []
            if versions:
                return versions[0]
            left = settles_at - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(0.5, left))

    def get_model_version(self, name: str, version: str) -> ModelVersion:
        with self._version(name, version):
            answer = self._call("GET", "model-versions/get", {"name": name, "version": version})
        return model_version_from_json(answer["model_version"])

    def get_latest_versions(self, name: str, stages: Sequence[str]) -> list[ModelVersion]:
        payload: dict[str, Any] = {"name": name}
        if stages:
            payload["stages"] = list(stages)
        with self._model(name):
            answer = self._call("POST", "registered-models/get-latest-versions", payload)
        return [model_version_from_json(v) for v in answer.get("model_versions", [])]

    def search_model_versions(
        self,
        filter_string: str | None,
        max_results: int,
        order_by: Sequence[str] | None,
        page_token: str | None,
    ) -> PagedList:
        answer = self._call(
            "GET",
            "model-versions/search",
            _search_payload(filter_string, max_results, order_by, page_token),
        )
        versions = [model_version_from_json(v) for v in answer.get("model_versions", [])]
        return PagedList(versions, answer.get("next_page_token") or None)

    def transition_model_version_stage(
        self, name: str, version: str, stage: str, archive_existing_versions: bool
    ) -> ModelVersion:
        payload = {
            "name": name,
            "version": version,
            "stage": stage,
            "archive_existing_versions": archive_existing_versions,
        }
        with self._version(name, version):
            answer = self._call("POST", "model-versions/transition-stage", payload)
        return model_version_from_json(answer["model_version"])

    def update_model_version(self, name: str, version: str, description: str) -> ModelVersion:
        payload = {"name": name, "version": version, "description": description}
        with self._version(name, version):
            answer = self._call("PATCH", "model-versions/update", payload)
        return model_version_from_json(answer["model_version"])

    def delete_model_version(self, name: str, version: str) -> None:
        with self._version(name, version):
            self._call("DELETE", "model-versions/delete", {"name": name, "version": version})

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        payload = {"name": name, "version": version, "key": key, "value": value}
        with self._version(name, version):
            self._call("POST", "model-versions/set-tag", payload)

    # aliases ---------------------------------------------------------------

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        payload = {"name": name, "alias": alias, "version": version}
        with self._version(name, version):
            self._call("POST", "registered-models/alias", payload)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        with _naming(
            f"Registered model {name!r} has no alias {alias!r} on {self.uri}", f"{name}@{alias}"
        ):
            self._call("DELETE", "registered-models/alias", {"name": name, "alias": alias})

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        with _naming(
            f"Registered model {name!r} has no alias {alias!r} on {self.uri}", f"{name}@{alias}"
        ):
            answer = self._call("GET", "registered-models/alias", {"name": name, "alias": alias})
        return model_version_from_json(answer["model_version"])


def _search_payload(
    filter_string: str | None,
    max_results: int,
    order_by: Sequence[str] | None,
    page_token: str | None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"max_results": max_results}
    if filter_string:
        payload["filter"] = filter_string
    if order_by:
        payload["order_by"] = list(order_by)  # repeated query parameter
    if page_token:
        payload["page_token"] = page_token
    return payload
