"""Shared fixtures: a fresh local tracking folder per test, strict mode, a real MLflow server."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import mltrail
import mltrail.autologging as autologging
from mltrail import fluent

pytest_plugins = ["mlflow_server"]

# mltrail's own logging errors are raised, not only warned about, in tests.
os.environ["MLTRAIL_STRICT"] = "1"
# Records spooled for a tracking server stay out of the home folder, in a folder of
# this test session's that goes with it.
_SPOOL = tempfile.mkdtemp(prefix="mltrail-test-spool-")
os.environ["MLTRAIL_SPOOL_DIR"] = _SPOOL


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_SPOOL, ignore_errors=True)


@pytest.fixture(autouse=True)
def _clean_tracking_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No run, experiment, tracking URI or autolog setting leaks into the next test."""
    for name in (
        "MLTRAIL_TRACKING_URI",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_EXPERIMENT_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    yield
    while mltrail.active_run() is not None:
        mltrail.end_run()
    fluent.reset_process_state()  # a test may install its own store for a URI
    mltrail.set_tracking_uri(None)
    autologging.reset_options()  # autolog off again: patches call straight through


@pytest.fixture
def tracking_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local store in a temporary folder, set as the tracking URI; cwd is tmp_path."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    mltrail.set_tracking_uri(str(root))
    return root
