"""mltrail: one-line autologging for classic ML, to local files or an MLflow server.

The public API keeps MLflow's names, so code written for MLflow's tracking API
runs with `import mltrail as mlflow`. Integrations are plugins: `mltrail.sklearn`,
`mltrail.xgboost` and `mltrail.hyperopt` are the modules registered under those
names in the `mltrail.integrations` entry-point group.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from . import entities, exceptions, plugins
from .autologging import autolog
from .client import MlflowClient, TrackingClient
from .entities import Run, RunStatus, ViewType
from .exceptions import MlflowException, MltrailError
from .fluent import (
    ActiveRun,
    active_run,
    create_experiment,
    delete_run,
    delete_tag,
    end_run,
    flush,
    get_artifact_uri,
    get_experiment,
    get_experiment_by_name,
    get_run,
    last_active_run,
    log_artifact,
    log_artifacts,
    log_dict,
    log_input,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_text,
    register_model,
    search_experiments,
    search_runs,
    set_experiment,
    set_tag,
    set_tags,
    start_run,
)
from .uri import get_tracking_uri, is_tracking_uri_set, set_tracking_uri

__version__ = "0.1.0"

__all__ = [
    "ActiveRun",
    "MlflowClient",
    "MlflowException",
    "MltrailError",
    "Run",
    "RunStatus",
    "TrackingClient",
    "ViewType",
    "__version__",
    "active_run",
    "autolog",
    "create_experiment",
    "delete_run",
    "delete_tag",
    "end_run",
    "entities",
    "exceptions",
    "flush",
    "get_artifact_uri",
    "get_experiment",
    "get_experiment_by_name",
    "get_run",
    "get_tracking_uri",
    "is_tracking_uri_set",
    "last_active_run",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_text",
    "models",
    "pyfunc",
    "register_model",
    "search_experiments",
    "search_runs",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
]

plugins.install_alias_finder()


# Imported on first use (`mltrail.tracking.MlflowClient` works as `mlflow.tracking...`):
# writing and loading models is not needed to log a run.
_LAZY_SUBMODULES = frozenset(("artifacts", "data", "models", "pyfunc", "tracking"))


def __getattr__(name: str) -> ModuleType:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"mltrail.{name}")
    return plugins.integration_attribute(name)
