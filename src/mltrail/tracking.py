"""MLflow's `mlflow.tracking` names, so `from mltrail.tracking import MlflowClient` works."""

from __future__ import annotations

from .client import MlflowClient, TrackingClient
from .uri import get_tracking_uri, set_tracking_uri

__all__ = ["MlflowClient", "TrackingClient", "get_tracking_uri", "set_tracking_uri"]
