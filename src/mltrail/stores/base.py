"""The Store protocol: the few operations every tracking backend provides.

The TrackingClient is the only caller. Values reaching a store are already
validated (see `mltrail.validation`), so a store only enforces what needs its
state: param conflicts, unknown ids, deleted runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..entities import (
    DatasetInput,
    Experiment,
    FileInfo,
    LoggedModel,
    Metric,
    PagedList,
    Param,
    Run,
    RunInfo,
    RunTag,
)


@runtime_checkable
class Store(Protocol):
    """A tracking backend, addressed by a tracking URI."""

    uri: str

    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: dict[str, str] | None = None
    ) -> str: ...

    def get_experiment(self, experiment_id: str) -> Experiment: ...

    def get_experiment_by_name(self, name: str) -> Experiment | None: ...

    def search_experiments(self, view_type: int) -> list[Experiment]: ...

    def create_run(
        self,
        experiment_id: str,
        user_id: str,
        start_time: int,
        tags: Sequence[RunTag],
        run_name: str,
        *,
        defer: bool = False,
    ) -> Run:
        """Create a run; `defer` lets a remote store give it its id later (see
        `TrackingClient.create_run`)."""
        ...

    def get_run(self, run_id: str) -> Run: ...

    def update_run_info(
        self, run_id: str, status: str, end_time: int | None, run_name: str | None = None
    ) -> RunInfo: ...

    def set_lifecycle(self, run_id: str, deleted: bool) -> None: ...

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric],
        params: Sequence[Param],
        tags: Sequence[RunTag],
    ) -> None: ...

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None: ...

    def delete_tag(self, run_id: str, key: str) -> None: ...

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]: ...

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None,
        run_view_type: int,
        max_results: int,
        order_by: Sequence[str] | None,
        page_token: str | None,
    ) -> PagedList: ...

    def stage_artifacts(
        self, run_id: str, artifact_path: str | None
    ) -> AbstractContextManager[Path]:
        """An empty local folder; what is in it when the block ends without error
        becomes the run's artifacts under `artifact_path` (files of the same name are
        replaced). Writing straight into it spares a model folder a second copy."""
        ...

    def list_artifacts(self, run_id: str, path: str | None) -> list[FileInfo]: ...

    def download_artifacts(self, run_id: str, path: str, dst_path: Path) -> Path: ...

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver pending records; True when nothing is left undelivered."""
        ...


@runtime_checkable
class ExperimentResolver(Protocol):
    """Optional: a store that finds-or-creates an experiment by name its own way.

    The remote store bounds this by its start budget and falls back to the spool;
    stores without it get the generic get, create, get-again sequence.
    """

    def resolve_experiment(self, name: str) -> Experiment: ...


@runtime_checkable
class LoggedModelStore(Protocol):
    """Optional: a store that gives each logged model its own id (`models:/<model_id>`).

    The local store keeps the model in its run's artifacts and an index from the id to
    the run; the remote store makes it an MLflow 3 LoggedModel where the server has
    them. Stores without this capability log models as plain run artifacts.
    """

    def stage_logged_model(
        self, run_id: str, model_id: str, name: str, artifact_path: str
    ) -> AbstractContextManager[Path]:
        """An empty folder for the model's files; when the block ends without error the
        files are published and the model is recorded as an output of the run, never
        blocking on the network."""
        ...

    def get_logged_model(self, model_id: str) -> LoggedModel: ...

    def run_logged_models(self, run_id: str) -> list[LoggedModel]: ...

    def download_logged_model(self, model_id: str, dst_path: Path | None) -> Path:
        """A local folder with the model's files: in place where the store is local and
        `dst_path` is None, else downloaded or copied into `dst_path` (a new folder by
        default)."""
        ...
