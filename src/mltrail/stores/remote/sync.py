"""`mltrail sync`: ship what earlier processes left in the spool.

A process logging to a tracking server keeps every record in the spool until
the server has it (see `mltrail.stores.remote.store`). When the server was down, or the
process was killed, the rest waits there; this command sends it:

    mltrail sync                      # every server with pending runs
    mltrail sync --uri http://host:5000
    mltrail sync --uri sqlite:///mlflow.db   # a database, through MLflow (mltrail[mlflow])
    mltrail sync --dry-run            # only list what is pending

Each run resumes exactly where shipping stopped (the spool records what the
server accepted), so running the command twice, or after an interruption,
leaves the server in the same state. A record the server refuses (a 4xx answer)
is set aside in the run's ``refused.jsonl`` and named in the report; the run's
other records are still shipped. A run the server refuses altogether (it cannot
be created) is reported and skipped; the others are still shipped. Exit code 0
when nothing is left and nothing was refused.
Credentials come from the same variables as for logging
(``MLFLOW_TRACKING_TOKEN``, ...); the spool never stores them.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...exceptions import AuthError, MltrailError
from ...uri import redact_uri
from ..bridge import database_uri, is_database_uri, require_mlflow, shown_uri
from .http import HttpSession, RemoteSettings, is_transient, public_url
from .shipper import Shipper
from .spool import (
    REFUSED,
    RunLock,
    ShipState,
    Spool,
    folder_name,
    pending,
    prune_delivered,
    spool_folders,
)

_MAX_PASSES = 5  # a run still being written by a live process is not chased forever


@dataclass
class SyncReport:
    """What one `sync` call did."""

    shipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)
    # run -> records the server refused in this call, set aside in the run's refused.jsonl
    refused: dict[str, list[str]] = field(default_factory=dict)
    # run -> journal bytes removed after confirmed delivery (a receipt stays)
    pruned: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.left and not self.refused


def _folders(uri: str | None, root: Path) -> Iterator[tuple[Path, str]]:
    """(spool folder, URI to talk to) for one server or every server with a folder."""
    if uri is not None:
        folder = root / folder_name(spool_key(uri))
        if (folder / "server.json").exists():
            yield folder, uri  # the given URI may carry credentials; the folder never does
        return
    for folder in spool_folders(root):
        yield folder, Spool.open_folder(folder).server_url


def sync(
    uri: str | None = None,
    *,
    settings: RemoteSettings | None = None,
    dry_run: bool = False,
    echo: Callable[[str], Any] = print,
) -> SyncReport:
    """Ship every pending run of the spool (of one server, or of all).

    Args:
        uri: only this server's runs; default: every server in the spool.
        settings: spool root, timeouts and retries; default: from the environment.
        dry_run: list what is pending without sending anything.
        echo: where the one-line progress messages go.

    Returns:
        The runs shipped, those the server refused (with why), those left pending.
    """
    settings = settings or RemoteSettings.from_env()
    report = SyncReport()
    found_any = False
    for folder, server_uri in _folders(uri, settings.spool_dir):
        spool = Spool.open_folder(folder)
        runs = list(spool.pending_runs())
        if not dry_run:
            _prune_folder(spool, report, echo)
        if not runs:
            continue
        found_any = True
        echo(f"{spool.server_url}: {len(runs)} run(s) pending in {folder}")
        if dry_run:
            for run_dir, todo in runs:
                what = f"{todo.records} records, {todo.artifacts} artifact files"
                echo(f"  {run_dir.name}: {what}{'' if todo.created else ', not created yet'}")
                report.left.append(run_dir.name)
            continue
        try:
            http = _session(server_uri, settings)
        except MltrailError as exc:
            echo(f"  skipped: {exc.message}")
            report.left.extend(r.name for r, _ in runs)
            continue
        shipper = Shipper(http, spool, retries=settings.retries, may_prune=lambda _: True)
        try:
            _sync_folder(shipper, runs, report, echo)
        finally:
            http.close()
    if not found_any:
        echo("mltrail sync: nothing to send" + (f" to {spool_key(uri)}" if uri else ""))
    return report


def spool_key(uri: str) -> str:
    """The address a spool folder is named from: a server's without credentials, a
    database URI made absolute (`mltrail.stores.bridge`) without its password."""
    if is_database_uri(uri):
        return shown_uri(database_uri(uri))
    return public_url(uri)


def _session(uri: str, settings: RemoteSettings) -> Any:
    """The session to ship through: HTTP for a server, MLflow's client for a database."""
    if not is_database_uri(uri):
        return HttpSession(uri, settings)
    require_mlflow(uri)
    from ..bridge.session import BridgeSession

    return BridgeSession(uri, settings)


def _prune_folder(spool: Spool, report: SyncReport, echo: Callable[[str], Any]) -> None:
    """Remove the journals of runs already delivered (by any process), keeping receipts."""
    freed = count = 0
    for run_dir in spool.run_dirs():
        lock = RunLock(run_dir)
        if not lock.acquire():
            continue  # being shipped right now
        try:
            state = ShipState.load(run_dir)
            if pending(run_dir, state):
                continue
            size = prune_delivered(run_dir, state)
        except (OSError, MltrailError, ValueError, TypeError):
            continue  # a damaged run folder is reported by the shipping pass, not here
        finally:
            lock.release()
        if size:
            report.pruned[run_dir.name] = size  # the report covers every folder
            freed += size
            count += 1
    if count:
        echo(
            f"{spool.server_url}: pruned the journals of {count} delivered "
            f"run(s), {freed:,} bytes freed; their receipts stay in {spool.folder}"
        )


def _sync_folder(
    shipper: Shipper,
    runs: list[tuple[Path, Any]],
    report: SyncReport,
    echo: Callable[[str], Any],
) -> None:
    for index, (run_dir, todo) in enumerate(runs):
        run_id = run_dir.name
        refused: list[str] = []
        sent_before, started = shipper.points_sent, time.monotonic()
        try:
            result = None
            with _progress(shipper, run_id, todo.points, echo):
                for _ in range(_MAX_PASSES):
                    result = shipper.ship_run(run_dir)
                    refused += result.refused
                    if result.complete or result.busy:
                        break
        except AuthError as exc:
            echo(f"  stopped: {exc.message}")
            report.left.extend(r.name for r, _ in runs[index:])
            return
        except MltrailError as exc:
            if is_transient(exc):
                echo(f"  stopped, the server is unreachable: {exc.message}")
                report.left.extend(r.name for r, _ in runs[index:])
                return
            echo(f"  FAILED {run_id}: {exc.message}")
            report.failed[run_id] = exc.message
            continue
        except OSError as exc:
            echo(f"  stopped, the spool cannot be written: {exc}")
            report.left.extend(r.name for r, _ in runs[index:])
            return
        except Exception as exc:  # a damaged spool folder must not stop the others
            echo(f"  FAILED {run_id}: {type(exc).__name__}: {exc}")
            report.failed[run_id] = f"{type(exc).__name__}: {exc}"
            continue
        finally:
            if refused:
                report.refused[run_id] = refused
                echo(
                    f"  {run_id}: {len(refused)} refusal(s) by the server, set aside in "
                    f"{run_dir / REFUSED}:"
                )
                for note in refused:
                    echo(f"    {note}")
        assert result is not None
        if result.busy:
            echo(f"  skipped {run_id}: another process is shipping it right now")
            report.left.append(run_id)
        elif not result.complete:
            echo(f"  {run_id}: still being written by a running process; sent what was there")
            report.left.append(run_id)
        else:
            target = result.server_run_id
            alias = "" if target == run_id else f" (server run id {target})"
            pruned = f", journal pruned ({result.pruned:,} bytes)" if result.pruned else ""
            points = shipper.points_sent - sent_before
            took = time.monotonic() - started
            rate = f" ({_rate(points, took)})" if points else ""
            echo(
                f"  shipped {run_id}{alias}: {result.records} records, {points:,} points{rate}, "
                f"{result.artifacts} artifact files, {result.requests} requests{pruned}"
            )
            report.shipped.append(run_id)
            if result.pruned:
                report.pruned[run_id] = result.pruned


_PROGRESS_EVERY = 5.0  # seconds between progress lines while one run ships


def _rate(points: int, seconds: float) -> str:
    return f"{points / seconds:,.0f} points/s" if seconds > 0 else "instant"


@contextlib.contextmanager
def _progress(
    shipper: Shipper, run_id: str, points: int, echo: Callable[[str], Any]
) -> Iterator[None]:
    """Every few seconds while a run ships: points sent out of those pending, and the
    rate, so a big backlog shows it is moving (a small run ends before the first)."""
    stop = threading.Event()
    base, start = shipper.points_sent, time.monotonic()

    def tick() -> None:
        while not stop.wait(_PROGRESS_EVERY):
            sent = shipper.points_sent - base
            rate = _rate(sent, time.monotonic() - start)
            echo(f"  {run_id}: {sent:,} of {max(points, sent):,} points sent ({rate})")

    thread = threading.Thread(target=tick, name="mltrail-sync-progress", daemon=True)
    if points:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if points:
            thread.join()


def pending_count(uri: str, settings: RemoteSettings | None = None) -> tuple[int, Path]:
    """How many runs of the server at `uri` wait in the spool, and where."""
    settings = settings or RemoteSettings.from_env()
    folder = settings.spool_dir.expanduser() / folder_name(spool_key(uri))
    if not (folder / "server.json").exists():
        return 0, folder
    spool = Spool.open_folder(folder)
    return sum(1 for run_dir in spool.run_dirs() if pending(run_dir)), folder


# command line ------------------------------------------------------------------


def add_sync_command(subparsers: Any) -> None:
    """Register `mltrail sync` on the `mltrail` command's subparsers."""
    parser = subparsers.add_parser(
        "sync",
        help="send runs waiting in the spool to their tracking server",
        description=(
            "Send what earlier processes left in the spool to its tracking server or "
            "database: records kept while the server was down, or when a process was "
            "killed or exited before delivery. Each run resumes where shipping stopped, "
            "so running it twice, or after an interruption, sends nothing twice."
        ),
    )
    parser.add_argument("--uri", help="only this server (default: every server in the spool)")
    parser.add_argument("--dry-run", action="store_true", help="list what is pending, send nothing")
    parser.set_defaults(handler=cmd_sync)


def cmd_sync(args: argparse.Namespace) -> int:
    uri = args.uri or getattr(args, "tracking_uri", None)  # the global option works too
    if uri is not None and not uri.startswith(("http://", "https://")) and not is_database_uri(uri):
        print(
            f"mltrail sync: {redact_uri(uri)!r} is neither an http(s):// server nor a database "
            "URI; nothing to send"
        )
        return 0
    report = sync(uri, dry_run=args.dry_run)
    if args.dry_run:
        return 0
    if report.shipped or report.failed or report.left:
        set_aside = f", {len(report.refused)} with records set aside" if report.refused else ""
        print(
            f"mltrail sync: {len(report.shipped)} shipped, {len(report.failed)} refused, "
            f"{len(report.left)} left pending{set_aside}"
        )
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    """`python -m mltrail.stores.remote.sync`, the same as `mltrail sync`."""
    parser = argparse.ArgumentParser(prog="mltrail")
    add_sync_command(parser.add_subparsers())
    args = parser.parse_args(["sync", *(argv or [])] if argv is not None else None)
    return int(args.handler(args))


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
