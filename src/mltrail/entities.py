"""The records mltrail reads and writes, named and shaped as MLflow's entities.

They are frozen dataclasses so a `Run` handed to user code can never be mutated
behind a store's back; stores build new ones instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ViewType:
    """Which runs or experiments a search returns, with MLflow's numeric values."""

    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3


class RunStatus:
    """A run's status names, as the MLflow REST API spells them."""

    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    ALL = (RUNNING, SCHEDULED, FINISHED, FAILED, KILLED)
    TERMINAL = (FINISHED, FAILED, KILLED)

    @staticmethod
    def is_terminated(status: str) -> bool:
        return status in RunStatus.TERMINAL


class LifecycleStage:
    ACTIVE = "active"
    DELETED = "deleted"

    @staticmethod
    def matches_view_type(view_type: int, stage: str) -> bool:
        if view_type == ViewType.ALL:
            return True
        if view_type == ViewType.DELETED_ONLY:
            return stage == LifecycleStage.DELETED
        return stage == LifecycleStage.ACTIVE


@dataclass(frozen=True)
class Metric:
    key: str
    value: float
    timestamp: int
    step: int = 0


@dataclass(frozen=True)
class Param:
    key: str
    value: str


@dataclass(frozen=True)
class RunTag:
    key: str
    value: str


# MLflow names experiment tags the same way as run tags.
ExperimentTag = RunTag


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str = LifecycleStage.ACTIVE
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: int | None = None
    last_update_time: int | None = None


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: str
    start_time: int
    end_time: int | None
    artifact_uri: str
    lifecycle_stage: str = LifecycleStage.ACTIVE

    @property
    def run_uuid(self) -> str:
        """The older MLflow name of `run_id`, still used in course material."""
        return self.run_id


@dataclass(frozen=True)
class RunData:
    """Params, tags and the latest value of each metric."""

    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    """A dataset a run consumed: enough to recognise it again, not its content."""

    name: str
    digest: str
    source_type: str
    source: str
    schema: str = ""
    profile: str = ""


@dataclass(frozen=True)
class InputTag:
    key: str
    value: str


@dataclass(frozen=True)
class DatasetInput:
    dataset: Dataset
    tags: tuple[InputTag, ...] = ()


@dataclass(frozen=True)
class RunInputs:
    dataset_inputs: tuple[DatasetInput, ...] = ()


@dataclass(frozen=True)
class Run:
    info: RunInfo
    data: RunData
    inputs: RunInputs = field(default_factory=RunInputs)


@dataclass(frozen=True)
class LoggedModel:
    """A model logged from a run, with its own id (MLflow 3's LoggedModel, in brief).

    Attributes:
        model_id: `m-<32 hex>`; `models:/<model_id>` loads it.
        experiment_id: the experiment of its source run.
        name: its name (the artifact path it was logged under).
        source_run_id: the run that logged it.
        artifact_location: where its files are: a `file:` URI locally, the model's own
            `mlflow-artifacts:` location on an MLflow 3 server, the run's artifact folder
            on an older server.
        status: "READY" once its files are in place, "PENDING" before.
        params: the run's params when it was logged.
        creation_timestamp: ms since the epoch.
    """

    model_id: str
    experiment_id: str
    name: str
    source_run_id: str | None
    artifact_location: str
    status: str = "READY"
    params: dict[str, str] = field(default_factory=dict)
    creation_timestamp: int | None = None


@dataclass(frozen=True)
class FileInfo:
    """One entry of a run's artifact listing; `file_size` is None for a folder."""

    path: str
    is_dir: bool
    file_size: int | None = None


class PagedList(list):  # type: ignore[type-arg]
    """A page of results plus the token that fetches the next page (None at the end)."""

    def __init__(self, items: list[Any], token: str | None) -> None:
        super().__init__(items)
        self.token = token


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    creation_timestamp: int | None = None
    last_updated_timestamp: int | None = None
    description: str = ""
    latest_versions: tuple[ModelVersion, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    creation_timestamp: int | None = None
    last_updated_timestamp: int | None = None
    current_stage: str = "None"
    description: str = ""
    source: str = ""
    run_id: str = ""
    status: str = "READY"
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
