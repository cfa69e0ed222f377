"""`mltrail doctor URI`: is this tracking server usable, and if not, what is wrong?

One line per check, each saying what was found and, when it fails, what to do:

- reachable: the server answers at all (GET /health);
- version: the MLflow version it runs (GET /version);
- auth: the credentials from MLFLOW_TRACKING_USERNAME/PASSWORD or
  MLFLOW_TRACKING_TOKEN are accepted (an experiments search);
- artifacts: where runs' artifacts live and how mltrail writes them there
  (`mltrail.stores.remote.artifact_roots`): proxied by the server, a plain folder
  written directly, or an ``s3://``-like root written through MLflow;
- spool: runs of this server still waiting on this machine (`mltrail sync`).

For a database URI (``sqlite:///mlflow.db``, ``postgresql://...``) the checks are:
mlflow installed (the ``mlflow`` extra), the database opened by MLflow, the default
artifact root, and the spool. The URI is printed as given (a password hidden).

Exit code 0 when every check passes.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from ...exceptions import AuthError, MltrailError
from ...uri import redact_uri
from ..bridge import INSTALL_HINT, database_uri, is_database_uri, mlflow_installed
from .artifact_roots import BRIDGE, PROXIED, describe, root_kind
from .http import (
    ARTIFACTS_API,
    HttpSession,
    RemoteSettings,
    is_transient,
)
from .sync import pending_count

OK, FAIL, WARN, SKIP = "ok", "FAIL", "warn", "skip"


@dataclass(frozen=True)
class Check:
    name: str
    outcome: str  # OK, FAIL, WARN or SKIP
    detail: str

    def line(self) -> str:
        return f"{self.outcome:<4} {self.name:<10} {self.detail}"


def doctor(uri: str, settings: RemoteSettings | None = None) -> list[Check]:
    """Run every check against the server at `uri` (see the module docstring)."""
    settings = settings or RemoteSettings.from_env(retries=0)
    if is_database_uri(uri):
        return _database_checks(uri, settings)
    try:
        http = HttpSession(uri, settings)
    except MltrailError as exc:
        return [Check("setup", FAIL, exc.message)]
    checks = [_reachable(http)]
    if checks[0].outcome == FAIL:
        checks += [Check(n, SKIP, "server not reachable") for n in ("version", "auth", "artifacts")]
    else:
        checks.append(_version(http))
        auth, location = _auth(http)
        checks.append(auth)
        if auth.outcome == FAIL:
            checks.append(Check("artifacts", SKIP, "needs working credentials"))
        else:
            checks.append(_artifacts(http, location))
    checks.append(_spool(uri, settings))
    http.close()
    return checks


def _reachable(http: HttpSession) -> Check:
    started = time.monotonic()
    try:
        response = http.raw("GET", "/health", timeout=10, retries=0)
    except AuthError:
        return Check("reachable", OK, f"{http.base_url} answers (and asks for credentials)")
    except MltrailError as exc:
        status = getattr(exc, "status_code", None)
        if is_transient(exc) and status is None:
            return Check(
                "reachable",
                FAIL,
                f"{exc.message}. Is the server running, and is the address right? "
                "(start one with `mlflow server --host 127.0.0.1 --port 5000`)",
            )
        if is_transient(exc):
            return Check("reachable", FAIL, f"the server answers but is unwell: {exc.message}")
        return Check("reachable", OK, f"{http.base_url} answers (no /health endpoint)")
    elapsed = (time.monotonic() - started) * 1000
    return Check(
        "reachable", OK, f"{http.base_url} answers (HTTP {response.status_code}, {elapsed:.0f} ms)"
    )


def _version(http: HttpSession) -> Check:
    try:
        text = http.raw("GET", "/version", timeout=10, retries=0).text.strip()
    except MltrailError as exc:
        return Check("version", WARN, f"unknown (GET /version: {exc.message})")
    if not text or len(text) > 40 or "<" in text:
        return Check("version", WARN, "unknown (GET /version gave no version number)")
    return Check("version", OK, f"MLflow {text}")


def _auth(http: HttpSession) -> tuple[Check, str | None]:
    try:
        answer = http.call(
            "POST",
            "experiments/search",
            {"max_results": 1, "view_type": "ACTIVE_ONLY"},
            timeout=10,
            retries=0,
        )
    except AuthError as exc:
        return Check("auth", FAIL, exc.message), None
    except MltrailError as exc:
        return Check(
            "auth", FAIL, f"the tracking API did not answer as MLflow's does: {exc.message}"
        ), None
    location = None
    experiments = answer.get("experiments") or []
    if experiments:
        location = experiments[0].get("artifact_location")
    how = "no credentials set" if http.auth_kind == "none" else f"using {http.auth_kind}"
    return Check("auth", OK, f"tracking API answers ({how})"), location


def _artifacts(http: HttpSession, location: str | None) -> Check:
    if location and root_kind(location) != PROXIED:
        return _root_check(location)
    try:
        http.raw("GET", f"{ARTIFACTS_API}?path=", timeout=10, retries=0)
    except MltrailError as exc:
        return Check(
            "artifacts",
            FAIL,
            f"the artifact API does not answer ({exc.message}). Start the server with "
            "`--serve-artifacts` (the default; remove `--no-serve-artifacts`)",
        )
    return Check("artifacts", OK, "served by the tracking server (mlflow-artifacts)")


def _root_check(location: str) -> Check:
    """The artifacts check for a root the server does not proxy."""
    outcome = OK
    if root_kind(location) == BRIDGE and not mlflow_installed():
        outcome = WARN
    return Check("artifacts", outcome, describe(location))


def _database_checks(uri: str, settings: RemoteSettings) -> list[Check]:
    shown = redact_uri(uri)
    if not mlflow_installed():
        return [
            Check(
                "mlflow",
                FAIL,
                f"{shown} is a database, written through MLflow, which is not installed: "
                f"{INSTALL_HINT}",
            ),
            _spool(uri, settings),
        ]
    opened = database_uri(uri)
    via = f" (opened as {redact_uri(opened)})" if opened != uri else ""
    checks = [Check("mlflow", OK, f"{shown} is a database, written through MLflow{via}")]
    from ..bridge.session import BridgeSession

    session = BridgeSession(uri, settings)
    try:
        version = session.transport.request("ping", {})["mlflow"]
        answer = session.call("POST", "experiments/search", {"max_results": 1})
    except MltrailError as exc:
        checks.append(Check("database", FAIL, f"MLflow could not open it: {exc.message}"))
        checks.append(Check("artifacts", SKIP, "needs the database"))
    else:
        checks.append(Check("database", OK, f"MLflow {version} opens it"))
        experiments = answer.get("experiments") or []
        location = experiments[0].get("artifact_location") if experiments else None
        if location:
            checks.append(_root_check(location))
        else:
            checks.append(Check("artifacts", SKIP, "no experiment yet"))
    finally:
        session.close()
    checks.append(_spool(uri, settings))
    return checks


def _spool(uri: str, settings: RemoteSettings) -> Check:
    count, folder = pending_count(uri, settings)
    if count:
        return Check("spool", WARN, f"{count} run(s) waiting in {folder}: run `mltrail sync`")
    return Check("spool", OK, "nothing waiting to be sent")


# command line ------------------------------------------------------------------


def add_doctor_command(subparsers: Any) -> None:
    """Register `mltrail doctor URI` on the `mltrail` command's subparsers."""
    parser = subparsers.add_parser(
        "doctor", help="check that a tracking server is reachable and usable"
    )
    parser.add_argument(
        "uri", help="the server address (http://127.0.0.1:5000) or database (sqlite:///mlflow.db)"
    )
    parser.set_defaults(handler=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = doctor(args.uri)
    for check in checks:
        print(check.line())
    return 1 if any(c.outcome == FAIL for c in checks) else 0
