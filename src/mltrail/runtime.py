"""Process state of a process that tracks, and its single exit path.

`process` is the one object holding what is process-wide: the open runs (for exit
handling), the clients by tracking URI, the active experiment, how the process is
ending. The fluent API reads and changes it; tests reset it with
`mltrail.fluent.reset_process_state`.

The exit path: end open runs, flush, report.

Interpreter exit used to be three `atexit` hooks registered from different modules
in whatever order they happened to be imported, so a store reporting what it could
not deliver had to call into the fluent API to end the open runs first. Here there is
one hook, installed once, that runs its steps in a fixed order whatever the order of
registration:

1. ``END_RUNS``: the fluent API ends the runs still open (FINISHED, FAILED after an
   uncaught exception, KILLED after Ctrl-C) and flushes;
2. ``REPORT``: each remote store waits for delivery (bounded) and prints one message
   for what is still undelivered.

A module registers a step with `at_exit`; nothing else here is process state.

A child that `multiprocessing` forks leaves through `os._exit`, past atexit: there the
exit path runs as a multiprocessing finalizer instead, so what the child logged is
flushed and reported as in any process (it used to stay in the spool without a word).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


class Process:
    """Process-wide state: open runs (for exit handling), clients and stores by URI, the
    tracking URI set and the active experiment."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open_runs: dict[str, Any] = {}  # run id -> fluent ActiveRun
        self.clients: dict[str, Any] = {}  # tracking uri -> TrackingClient
        self.experiment: tuple[str, str] | None = None  # (tracking uri, experiment id)
        self.tracking_uri: str | None = None  # set_tracking_uri's, before the environment's
        self.stores: dict[str, Any] = {}  # tracking uri -> Store, one per URI
        self.hooks_installed = False
        self.crashed_with: type[BaseException] | None = None
        # Set by the exit path: a store's flush then says how a long wait is going, and
        # after a Ctrl-C during the exit path nothing waits any more, it only reports.
        self.exiting = False
        self.exit_interrupted = False


process = Process()

END_RUNS = 0
REPORT = 1

_lock = threading.Lock()
_steps: list[tuple[int, int, Callable[[], None]]] = []  # (phase, registration order, step)
_installed = False


def at_exit(phase: int, step: Callable[[], None]) -> None:
    """Run `step` at interpreter exit, after every step of an earlier phase.

    Steps of one phase run in registration order. A step that raises is reported on
    stderr and the others still run: a clean exit never becomes a traceback.
    """
    global _installed
    with _lock:
        _steps.append((phase, len(_steps), step))
        if not _installed:
            _installed = True
            atexit.register(run_exit_path)


_background: list[Callable[[float], bool]] = []


def background_work(wait: Callable[[float], bool]) -> None:
    """Register work that runs off the training path (a helper process drawing an artifact).

    `wait(timeout)` returns True once everything handed to that work so far is
    written. `flush()`, and so the exit path, calls it before flushing the
    stores, so what it writes is delivered with the rest.
    """
    with _lock:
        if wait not in _background:
            _background.append(wait)


def wait_for_background(timeout: float) -> bool:
    """Wait (at most `timeout` seconds in all) for the registered background work."""
    with _lock:
        waits = list(_background)
    deadline = time.monotonic() + timeout
    done = True
    for wait in waits:
        done &= wait(max(0.0, deadline - time.monotonic()))
    return done


def run_exit_path() -> None:
    """Run the registered steps once, in phase order (also called by tests).

    A Ctrl-C while a step waits for delivery ends that wait, not the exit path: the
    later steps still run, without waiting (`Process.exit_interrupted`), so what could
    not be delivered is still named with the command that ships it.
    """
    with _lock:
        steps = sorted(_steps)
        _steps.clear()
    process.exiting = True
    for _, _, step in steps:
        try:
            step()
        except KeyboardInterrupt:
            process.exit_interrupted = True
        except Exception as exc:
            print(f"mltrail: at exit: {exc}", file=sys.stderr)


_child_exit_armed = False


def _arm_child_exit() -> None:
    """Before a fork: if multiprocessing is in use, have its forked children run the exit
    path (multiprocessing calls `_child_exit_path` in each child it starts)."""
    global _child_exit_armed
    util = sys.modules.get("multiprocessing.util")
    if util is None or _child_exit_armed:
        return
    _child_exit_armed = True
    util.register_after_fork(process, _child_exit_path)


def _child_exit_path(_: Process) -> None:
    util = sys.modules["multiprocessing.util"]
    util.Finalize(None, run_exit_path, exitpriority=0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_arm_child_exit)
