"""pytest plugin for the peer suites: each test's final outcome, written as JSON.

Loaded with ``-p peer_outcomes`` in both modes of tests/peer/run.py. The file named
by MLTRAIL_PEER_OUTCOMES receives ``{nodeid: [outcome, message]}`` where outcome
is passed, failed, error (setup/teardown), skipped, xfailed, xpassed or
collect-error, and message is the first line of the failure (or the skip reason).
"""

from __future__ import annotations

import json
import os

import pytest

_results: dict[str, list[str]] = {}


def _message(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
        return str(longrepr[2])
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        text = crash.message
    else:
        text = str(longrepr).strip().splitlines()[-1] if str(longrepr).strip() else ""
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    nodeid = report.nodeid
    if report.when == "setup":
        if report.failed:
            _results[nodeid] = ["error", _message(report)]
        elif report.skipped:
            outcome = "xfailed" if hasattr(report, "wasxfail") else "skipped"
            _results[nodeid] = [outcome, _message(report)]
    elif report.when == "call":
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
            if report.failed:  # strict xfail that passed
                outcome = "failed"
            _results[nodeid] = [outcome, str(report.wasxfail)]
        elif report.failed:
            _results[nodeid] = ["failed", _message(report)]
        elif report.skipped:
            _results[nodeid] = ["skipped", _message(report)]
        else:
            _results[nodeid] = ["passed", ""]
    elif (
        report.when == "teardown"
        and report.failed
        and _results.get(nodeid, ["passed"])[0] in ("passed", "skipped", "xfailed", "xpassed")
    ):
        _results[nodeid] = ["error", "teardown: " + _message(report)]


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _results[report.nodeid or "<collection>"] = ["collect-error", _message(report)]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get("MLTRAIL_PEER_OUTCOMES")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"exitstatus": int(exitstatus), "tests": _results}, f, indent=0)
