"""Shared helpers of the remote-store tests: fast settings, a store per URL, server reads."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from mltrail import TrackingClient, runtime
from mltrail.stores.remote.http import RemoteSettings
from mltrail.stores.remote.store import RestStore

# Short backoff so fault scenarios play out in seconds (see stores/http.py for what each
# setting means and its default). Timeouts stay generous: a busy test machine can make
# the server slow, and a timeout only ever causes a (harmless) resend.
FAST = {
    "timeout": 10.0,
    "connect_timeout": 2.0,
    "retries": 1,
    "backoff": 0.05,
    "backoff_max": 0.5,
    "create_timeout": 5.0,
    "send_interval": 0.02,
    "end_run_timeout": 1.0,
    "read_flush_timeout": 10.0,
}


def unique(prefix: str = "remote") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class RemoteFactory:
    """Builds a RestStore with test settings for a URL and makes it the URL's store."""

    def __init__(self, spool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.spool = spool
        self.monkeypatch = monkeypatch
        self.stores: list[RestStore] = []

    def __call__(self, url: str, **overrides: Any) -> TrackingClient:
        settings = RemoteSettings(spool_dir=self.spool, **{**FAST, **overrides})
        store = RestStore(url, settings)
        self.stores.append(store)
        self.monkeypatch.setitem(runtime.process.stores, url, store)
        return TrackingClient(url)

    def close(self) -> None:
        for store in self.stores:
            store._exit_reported = True  # a test's leftovers are not the session's to report


def server_runs(mlflow_client: Any, experiment_id: str) -> list[Any]:
    """Every run of an experiment on the server, deleted or not, read by MLflow itself."""
    from mlflow.entities import ViewType

    return list(
        mlflow_client.search_runs([experiment_id], run_view_type=ViewType.ALL, max_results=1000)
    )


def history(mlflow_client: Any, run_id: str, key: str) -> list[tuple[int, int, float]]:
    points = mlflow_client.get_metric_history(run_id, key)
    return sorted((m.step, m.timestamp, m.value) for m in points)
