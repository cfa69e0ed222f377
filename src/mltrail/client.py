"""TrackingClient: the explicit-id API over one Store.

Every value is validated here, once, so stores only see well-formed records and
a bad key fails the same way whichever backend is configured.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from . import environment, validation
from .entities import (
    DatasetInput,
    Experiment,
    FileInfo,
    LoggedModel,
    Metric,
    ModelVersion,
    PagedList,
    Param,
    RegisteredModel,
    Run,
    RunInfo,
    RunStatus,
    RunTag,
    ViewType,
)
from .exceptions import AlreadyExistsError, InvalidParameterError, NotFoundError, RemoteError
from .stores import Store, resolve_store
from .stores.base import ExperimentResolver, LoggedModelStore
from .stores.registry import (
    ModelRegistry,
    canonical_stage,
    check_alias,
    check_name,
    check_version,
    resolve_registry,
)
from .uri import get_tracking_uri

MAX_RESULTS_DEFAULT = 1000
MAX_RESULTS_LIMIT = 50000

_BATCH_METRICS = 1000  # chunk sizes keep one call within a server's log-batch limits
_BATCH_PARAMS = 100
_BATCH_TAGS = 100


def _now_ms() -> int:
    return int(time.time() * 1000)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class TrackingClient:
    """Create and read experiments and runs by id, on the store of one tracking URI.

    Args:
        tracking_uri: a folder path, `file:` URI or `http(s)://` server address;
            defaults to the current tracking URI (see `mltrail.get_tracking_uri`).
    """

    def __init__(self, tracking_uri: str | None = None, *, store: Store | None = None) -> None:
        """A client of the store for `tracking_uri` (default: the URI in force).

        Args:
            tracking_uri: a folder, `file:` URI, `http(s)://` server or a scheme a
                plugin registers in `mltrail.stores`.
            store: a `Store` to use as it is (a third-party backend, or one a test
                built) instead of resolving `tracking_uri`, which then only names it.
        """
        if store is not None:
            self.tracking_uri = tracking_uri or f"store:{type(store).__name__}"
            self.store: Store = store
            return
        self.tracking_uri = tracking_uri or get_tracking_uri()
        self.store = resolve_store(self.tracking_uri)

    # experiments ---------------------------------------------------------

    def create_experiment(
        self,
        name: str,
        artifact_location: str | None = None,
        tags: dict[str, Any] | None = None,
    ) -> str:
        """Create an experiment and return its id.

        Raises:
            AlreadyExistsError: an experiment of that name exists.
        """
        clean = {
            validation.validate_key(k, "tag"): validation.tag_value(k, v)
            for k, v in (tags or {}).items()
        }
        return self.store.create_experiment(name, artifact_location, clean)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds for this client's records to reach its store.

        Returns:
            True when nothing is left undelivered (always, for a local store once its
            finished runs are on disk); what is left stays in the spool for
            `mltrail sync`.
        """
        return self.store.flush(timeout)

    def get_or_create_experiment(self, name: str) -> Experiment:
        """The experiment called `name`, created when missing (safe when processes race).

        A remote store answers within its start budget, offline if need be (see
        `RestStore.resolve_experiment`).
        """
        if isinstance(self.store, ExperimentResolver):
            return self.store.resolve_experiment(name)
        found = self.store.get_experiment_by_name(name)
        if found is None:
            # Another process may create it first: then use theirs.
            with contextlib.suppress(AlreadyExistsError):
                self.store.create_experiment(name)
            found = self.store.get_experiment_by_name(name)
        if found is None:
            raise NotFoundError(f"Experiment {name!r} could not be created", resource_id=name)
        return found

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self.store.get_experiment(str(experiment_id))

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        return self.store.get_experiment_by_name(name)

    def search_experiments(self, view_type: int = ViewType.ACTIVE_ONLY) -> list[Experiment]:
        return self.store.search_experiments(view_type)

    # runs ----------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: dict[str, Any] | None = None,
        run_name: str | None = None,
        *,
        defer: bool = False,
    ) -> Run:
        """Start a run carrying the system tags (user, source, git) of this process.

        With `defer`, a tracking server is not asked for the run's id now: the run
        starts with a local id, the background sender creates it on the server, and
        this client resolves the local id to the server's from then on. For runs
        whose id nobody reads at once (autolog's child runs of a search), this spares
        a round trip each. A local store ignores it.
        """
        all_tags = dict(environment.system_tags())
        all_tags.update({k: v for k, v in (tags or {}).items()})
        if run_name is None:
            run_name = all_tags.get("mlflow.runName") or _generate_run_name()
        run_name = validation.truncate(
            str(run_name), validation.MAX_RUN_NAME_LENGTH, "run name", "run_name"
        )
        all_tags["mlflow.runName"] = run_name
        run_tags = [
            RunTag(validation.validate_key(k, "tag"), validation.tag_value(k, v))
            for k, v in all_tags.items()
        ]
        return self.store.create_run(
            str(experiment_id),
            all_tags.get(environment.USER, environment.user()),
            start_time or _now_ms(),
            run_tags,
            run_name,
            defer=defer,
        )

    def get_run(self, run_id: str) -> Run:
        return self.store.get_run(run_id)

    def spool_folder(self) -> str | None:
        """Where this client keeps records not yet delivered (`mltrail sync` on this
        machine ships them), or None for a store that writes in place."""
        folder = getattr(getattr(self.store, "spool", None), "folder", None)
        return None if folder is None else str(folder)

    def shared_run_id(self, run_id: str, timeout: float | None = None) -> str | None:
        """The id under which another process can attach to the run, or None.

        A local store's runs have one id. A tracking server's run may still have a
        local id (created while the server did not answer, or with `defer`): this
        waits up to `timeout` seconds (default MLTRAIL_FLUSH_TIMEOUT) for the server
        to create it, and gives None if it has not, since no other process could
        find the run by the local id.
        """
        resolve = getattr(self.store, "server_run_id", None)
        if resolve is None:
            return run_id
        try:
            return str(resolve(run_id, timeout))
        except RemoteError:
            return None

    def set_terminated(
        self, run_id: str, status: str = RunStatus.FINISHED, end_time: int | None = None
    ) -> RunInfo:
        if status not in RunStatus.ALL:
            raise InvalidParameterError(
                f"Unknown run status {status!r}; use one of {', '.join(RunStatus.ALL)}",
                key="status",
            )
        return self.store.update_run_info(run_id, status, end_time or _now_ms())

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        run = self.get_run(run_id)
        self.store.update_run_info(run_id, status or run.info.status, run.info.end_time, name)

    def delete_run(self, run_id: str) -> None:
        self.store.set_lifecycle(run_id, deleted=True)

    def restore_run(self, run_id: str) -> None:
        self.store.set_lifecycle(run_id, deleted=False)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
    ) -> None:
        """Log many records in one call, validated and split within server limits."""
        clean_metrics = [
            Metric(
                validation.validate_key(m.key, "metric"),
                validation.metric_value(m.key, m.value),
                validation.metric_timestamp(m.key, m.timestamp)
                if m.timestamp is not None
                else _now_ms(),
                validation.metric_step(m.key, m.step),
            )
            for m in metrics
        ]
        clean_params = [
            Param(validation.validate_key(p.key, "param"), validation.param_value(p.key, p.value))
            for p in params
        ]
        clean_tags = [
            RunTag(validation.validate_key(t.key, "tag"), validation.tag_value(t.key, t.value))
            for t in tags
        ]
        if (
            len(clean_metrics) <= _BATCH_METRICS
            and len(clean_params) <= _BATCH_PARAMS
            and len(clean_tags) <= _BATCH_TAGS
        ):
            self.store.log_batch(run_id, clean_metrics, clean_params, clean_tags)
            return
        for chunk in _chunks(clean_params, _BATCH_PARAMS):
            self.store.log_batch(run_id, [], chunk, [])
        for chunk in _chunks(clean_tags, _BATCH_TAGS):
            self.store.log_batch(run_id, [], [], chunk)
        for chunk in _chunks(clean_metrics, _BATCH_METRICS):
            self.store.log_batch(run_id, chunk, [], [])

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        timestamp: int | None = None,
        step: int | None = None,
    ) -> None:
        self.log_batch(run_id, metrics=[Metric(key, value, timestamp or _now_ms(), step or 0)])

    def log_param(self, run_id: str, key: str, value: Any) -> Any:
        self.log_batch(run_id, params=[Param(key, value)])
        return value

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, tags=[RunTag(key, value)])

    def delete_tag(self, run_id: str, key: str) -> None:
        self.store.delete_tag(run_id, key)

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None:
        self.store.log_inputs(run_id, list(datasets))

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        return self.store.get_metric_history(run_id, key)

    def search_runs(
        self,
        experiment_ids: str | Sequence[str],
        filter_string: str = "",
        run_view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = MAX_RESULTS_DEFAULT,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        """One page of runs matching an MLflow filter string, in `order_by` order.

        Returns:
            A list of Run with a `.token` attribute: pass it as `page_token` for the
            next page; it is None on the last page.
        """
        if isinstance(experiment_ids, (str, int)):
            experiment_ids = [str(experiment_ids)]
        if not 0 < max_results <= MAX_RESULTS_LIMIT:
            raise InvalidParameterError(
                f"max_results must be between 1 and {MAX_RESULTS_LIMIT}, got {max_results}",
                key="max_results",
            )
        if run_view_type not in (ViewType.ACTIVE_ONLY, ViewType.DELETED_ONLY, ViewType.ALL):
            raise InvalidParameterError(
                f"Unknown run_view_type {run_view_type!r}", key="run_view_type"
            )
        return self.store.search_runs(
            [str(e) for e in experiment_ids],
            filter_string,
            run_view_type,
            max_results,
            list(order_by or []),
            page_token,
        )

    # artifacts -----------------------------------------------------------

    def log_artifact(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        path = Path(local_path)
        if path.is_dir():
            self.log_artifacts(run_id, path, artifact_path)
            return
        if not path.is_file():
            raise NotFoundError(f"No file to log at {str(path)!r}", resource_id=str(path))
        with self.stage_artifacts(run_id, artifact_path) as folder:
            shutil.copyfile(path, folder / path.name)

    def log_artifacts(
        self, run_id: str, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> None:
        root = Path(local_dir)
        if not root.is_dir():
            raise NotFoundError(f"No folder to log at {str(root)!r}", resource_id=str(root))
        with self.stage_artifacts(run_id, artifact_path) as folder:
            shutil.copytree(root, folder, dirs_exist_ok=True)

    def stage_artifacts(
        self, run_id: str, artifact_path: str | None = None
    ) -> AbstractContextManager[Path]:
        """An empty folder to write artifacts into; they are logged under `artifact_path`
        when the block ends without error, all at once, and without being copied.

        Example:
            with client.stage_artifacts(run_id, "report") as folder:
                (folder / "summary.txt").write_text(text)
        """
        return self.store.stage_artifacts(run_id, artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._log_bytes(run_id, text.encode(), artifact_file)

    def log_dict(self, run_id: str, dictionary: dict[str, Any], artifact_file: str) -> None:
        import json

        if artifact_file.endswith((".yaml", ".yml")):
            import yaml

            text = yaml.safe_dump(dictionary, sort_keys=False)
        else:
            text = json.dumps(dictionary, indent=2, default=str)
        self.log_text(run_id, text, artifact_file)

    def _log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> None:
        folder, _, name = artifact_file.rpartition("/")
        with self.stage_artifacts(run_id, folder or None) as staged:
            (staged / name).write_bytes(data)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        return self.store.list_artifacts(run_id, path)

    # logged models -------------------------------------------------------

    @property
    def logs_model_ids(self) -> bool:
        """Whether this client's store gives logged models their own id (`models:/m-...`)."""
        return isinstance(self.store, LoggedModelStore)

    @staticmethod
    def new_model_id() -> str:
        """A fresh logged-model id, shaped as MLflow's (`m-` and 32 hex digits)."""
        return f"m-{uuid.uuid4().hex}"

    def stage_logged_model(
        self, run_id: str, model_id: str, name: str, artifact_path: str
    ) -> AbstractContextManager[Path]:
        """An empty folder for a model's files, logged from `run_id` as `model_id`.

        Where the store has logged models (see `logs_model_ids`), the model is recorded
        with its id; otherwise the files become plain run artifacts under `artifact_path`.
        Never waits on the network: a remote store ships the model in the background.
        """
        if isinstance(self.store, LoggedModelStore):
            return self.store.stage_logged_model(run_id, model_id, name, artifact_path)
        return self.store.stage_artifacts(run_id, artifact_path)

    def get_logged_model(self, model_id: str) -> LoggedModel:
        """The logged model `model_id`, with the id its store knows it by.

        On a remote store this waits for the model to be delivered (up to
        MLTRAIL_FLUSH_TIMEOUT); `LoggedModel.model_id` is then the server's id, the one
        MLflow's own client and UI use.

        Raises:
            NotFoundError: no such model, or the store has no logged models.
        """
        if not isinstance(self.store, LoggedModelStore):
            raise NotFoundError(
                f"No logged model {model_id!r}: the store at {self.tracking_uri} keeps models "
                "as run artifacts (load them by runs:/<run_id>/<path>)",
                resource_id=model_id,
            )
        return self.store.get_logged_model(model_id)

    def run_logged_models(self, run_id: str) -> list[LoggedModel]:
        """The models run `run_id` logged with their own id ([] where the store has none)."""
        if not isinstance(self.store, LoggedModelStore):
            return []
        return self.store.run_logged_models(run_id)

    def download_logged_model(self, model_id: str, dst_path: str | None = None) -> str:
        """A local folder with the files of the logged model `model_id` (see
        `get_logged_model`); a local store's model is returned in place unless
        `dst_path` is given."""
        if not isinstance(self.store, LoggedModelStore):
            self.get_logged_model(model_id)  # raises NotFoundError, saying why
        assert isinstance(self.store, LoggedModelStore)
        return str(self.store.download_logged_model(model_id, Path(dst_path) if dst_path else None))

    def download_artifacts(self, run_id: str, path: str = "", dst_path: str | None = None) -> str:
        """Copy an artifact file or folder to `dst_path` (a new temp folder by default)."""
        target = Path(dst_path) if dst_path else Path(tempfile.mkdtemp(prefix="mltrail-"))
        return str(self.store.download_artifacts(run_id, path, target))

    # model registry --------------------------------------------------------
    # MLflow's names and argument names. Arguments are checked here once; the
    # registry (see stores/registry.py) is the store's optional capability.

    @functools.cached_property
    def registry(self) -> ModelRegistry:
        """The model registry of this client's store (built on first use)."""
        return resolve_registry(self.store)

    def create_registered_model(
        self, name: str, tags: dict[str, Any] | None = None, description: str | None = None
    ) -> RegisteredModel:
        """Raises AlreadyExistsError when the name is taken."""
        return self.registry.create_registered_model(
            check_name(name), _registry_tags(tags), description or ""
        )

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self.registry.get_registered_model(check_name(name))

    def search_registered_models(
        self,
        filter_string: str | None = None,
        max_results: int = 100,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        """Registered models matching e.g. `name LIKE 'nyc%'`, one page at a time."""
        return self.registry.search_registered_models(
            filter_string, _max_results(max_results), list(order_by or []), page_token
        )

    def update_registered_model(self, name: str, description: str | None = None) -> RegisteredModel:
        return self.registry.update_registered_model(check_name(name), description or "")

    def delete_registered_model(self, name: str) -> None:
        self.registry.delete_registered_model(check_name(name))

    def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
        tags = _registry_tags({key: value})
        self.registry.set_registered_model_tag(check_name(name), key, tags[key])

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: dict[str, Any] | None = None,
        run_link: str | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Add a version (numbered from 1 per name) pointing at `source`, e.g. `runs:/<id>/model`.

        `run_link` is accepted for MLflow compatibility and not stored.
        """
        if not isinstance(source, str) or not source:
            raise InvalidParameterError("source must be a non-empty model URI", key="source")
        return self.registry.create_model_version(
            check_name(name), source, run_id, _registry_tags(tags), description or ""
        )

    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        return self.registry.get_model_version(check_name(name), check_version(version))

    def get_latest_versions(
        self, name: str, stages: Sequence[str] | None = None
    ) -> list[ModelVersion]:
        """The newest version in each stage (of `stages`, else of every stage)."""
        if isinstance(stages, str):
            stages = [stages]
        canonical = [canonical_stage(s) for s in stages or []]
        return self.registry.get_latest_versions(check_name(name), canonical)

    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int = 10000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        """Versions matching e.g. `name = 'nyc-taxi-regressor'` or `run_id = '...'`."""
        return self.registry.search_model_versions(
            filter_string, _max_results(max_results), list(order_by or []), page_token
        )

    def transition_model_version_stage(
        self, name: str, version: int | str, stage: str, archive_existing_versions: bool = False
    ) -> ModelVersion:
        """Move a version to None, Staging, Production or Archived.

        With `archive_existing_versions`, the other versions in the target stage
        (Staging or Production only) move to Archived.
        """
        return self.registry.transition_model_version_stage(
            check_name(name),
            check_version(version),
            canonical_stage(stage),
            bool(archive_existing_versions),
        )

    def update_model_version(
        self, name: str, version: int | str, description: str | None = None
    ) -> ModelVersion:
        return self.registry.update_model_version(
            check_name(name), check_version(version), description or ""
        )

    def delete_model_version(self, name: str, version: int | str) -> None:
        self.registry.delete_model_version(check_name(name), check_version(version))

    def set_model_version_tag(self, name: str, version: int | str, key: str, value: Any) -> None:
        tags = _registry_tags({key: value})
        self.registry.set_model_version_tag(
            check_name(name), check_version(version), key, tags[key]
        )

    def set_registered_model_alias(self, name: str, alias: str, version: int | str) -> None:
        """Point `alias` (e.g. "champion") at a version; `models:/<name>@<alias>` loads it."""
        self.registry.set_registered_model_alias(
            check_name(name), check_alias(alias), check_version(version)
        )

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self.registry.delete_registered_model_alias(check_name(name), _alias_key(alias))

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return self.registry.get_model_version_by_alias(check_name(name), _alias_key(alias))


_ADJECTIVES = (
    "amber",
    "brisk",
    "calm",
    "deft",
    "eager",
    "fair",
    "glad",
    "keen",
    "lucid",
    "merry",
    "noble",
    "proud",
    "quick",
    "rare",
    "sly",
    "tidy",
    "vivid",
    "warm",
    "zesty",
    "bold",
)
_NOUNS = (
    "otter",
    "finch",
    "heron",
    "lynx",
    "moth",
    "newt",
    "owl",
    "panda",
    "quail",
    "raven",
    "seal",
    "tern",
    "vole",
    "wren",
    "yak",
    "zebra",
    "crane",
    "dingo",
    "eel",
    "gecko",
)


def _registry_tags(tags: dict[str, Any] | None) -> dict[str, str]:
    return {
        validation.validate_key(k, "tag"): validation.tag_value(k, v)
        for k, v in (tags or {}).items()
    }


def _max_results(max_results: int) -> int:
    if not isinstance(max_results, int) or not 0 < max_results <= MAX_RESULTS_LIMIT:
        raise InvalidParameterError(
            f"max_results must be between 1 and {MAX_RESULTS_LIMIT}, got {max_results!r}",
            key="max_results",
        )
    return max_results


def _alias_key(alias: str) -> str:
    if not isinstance(alias, str) or not alias:
        raise InvalidParameterError("Alias must be a non-empty string", key="alias")
    return alias


def _generate_run_name() -> str:
    """A readable name such as `keen-heron-417`, like the names the MLflow UI shows."""
    import random

    rng = random.Random()
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randrange(1000)}"


# MLflow's name for the same class; the seeds construct `MlflowClient(tracking_uri=...)`.
MlflowClient = TrackingClient
