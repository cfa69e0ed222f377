"""pytest plugin for the peer suites: mltrail's autolog on, before any framework is imported.

Loaded with ``-p peer_autolog`` (tests/peer on sys.path) in the "on" mode of
tests/peer/run.py only. At pytest's earliest configure-time hook, before the
initial conftests (scikit-learn's own conftest imports scikit-learn), it sets
MLTRAIL_STRICT=1 (mltrail's own logging errors are raised, not warned about),
points MLTRAIL_TRACKING_URI and MLTRAIL_SPOOL_DIR into MLTRAIL_PEER_ROOT (run.py
sets it beside its logs) or a fresh temporary folder,
and calls ``mltrail.autolog()``. Environment variables reach joblib's worker
processes; the workers themselves do not call autolog, as a user's would not.
"""

from __future__ import annotations

import os
import sys
import tempfile

import pytest

FRAMEWORKS = ("sklearn", "xgboost", "hyperopt", "optuna")

_state: dict[str, object] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: object, args: list) -> None:
    _state["imported_before"] = [name for name in FRAMEWORKS if name in sys.modules]
    os.environ["MLTRAIL_STRICT"] = "1"
    root = os.environ.get("MLTRAIL_PEER_ROOT") or tempfile.mkdtemp(prefix="mltrail-peer-")
    os.environ["MLTRAIL_TRACKING_URI"] = os.path.join(root, "runs")
    os.environ["MLTRAIL_SPOOL_DIR"] = os.path.join(root, "spool")
    _state["root"] = root

    import mltrail

    mltrail.autolog()
    _state["mltrail"] = os.path.dirname(mltrail.__file__)


def pytest_configure(config: pytest.Config) -> None:
    if _state.get("imported_before"):
        raise pytest.UsageError(
            f"peer_autolog: {_state['imported_before']} imported before autolog() was called"
        )


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"mltrail autolog ON (strict) from {_state.get('mltrail')}, "
        f"tracking under {_state.get('root')}"
    )
