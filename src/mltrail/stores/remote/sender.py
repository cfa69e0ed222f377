"""The background Sender: the daemon thread of one RestStore that ships its runs.

It calls `Shipper.ship_run` (`mltrail.stores.remote.shipper`) for runs this process
wrote to (two runs at a time, each run's artifact files four at a time), backing off
while the server is unreachable, and knows which runs are not confirmed delivered
(pending, being created, in flight, refused) for the exit message.
`mltrail sync` calls `ship_run` directly for what earlier processes left.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from ... import notices
from ...exceptions import (
    AuthError,
    MltrailError,
    StorageError,
)
from .http import (
    RemoteSettings,
    is_transient,
)
from .shipper import SHIP_THREADS, Shipper, run_parallel


class _Unreachable(Exception):
    """The server could not be reached: the sender's pass stops."""


class Sender:
    """The daemon thread that ships this process's spooled runs of one server.

    Args:
        shipper: does the shipping of one run.
        settings: backoff and batching settings.
    """

    def __init__(self, shipper: Shipper, settings: RemoteSettings) -> None:
        self.shipper = shipper
        self.settings = settings
        self._cond = threading.Condition()
        self._pending: dict[str, Path] = {}  # spool run id -> run folder
        self._broken: dict[str, str] = {}  # spool run id -> why the server refused it
        self._busy: set[str] = set()  # runs being shipped right now
        self._busy_dirs: dict[str, Path] = {}
        # Runs whose `runs/create` sent in the foreground is still unanswered: not
        # shipped (which could create them a second time) until it ends (`release`).
        self._creating: set[str] = set()
        self._urgent = 0
        self._failures = 0  # consecutive failed attempts
        self._failure_count = 0  # every failed attempt, ever
        self._retry_at = 0.0  # monotonic time before which the server is left alone
        self._last_error: str | None = None
        self._warned_down = False
        self._warned_storage = False
        self.auth_error: AuthError | None = None
        self._stopped = False
        self._thread: threading.Thread | None = None

    def stop(self) -> None:
        """Stop sending for good; what is pending stays in the spool for `mltrail sync`."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    # the hot path ----------------------------------------------------------

    def notify(self, run_id: str, run_dir: Path) -> None:
        """Records for `run_id` reached the spool: ship them soon."""
        if run_id in self._pending or run_id in self._broken:
            # Queued already (the next pass reads the journal to its end), or refused by
            # the server: retrying a refusal on every record would be a request storm,
            # so it waits in the spool for `mltrail sync`.
            return
        with self._cond:
            self._pending[run_id] = run_dir
            self._cond.notify_all()
        if self._thread is None or not self._thread.is_alive():
            self._start()

    def hold(self, run_id: str, run_dir: Path) -> None:
        """Keep `run_id` pending but unshipped while its foreground create is in flight."""
        with self._cond:
            self._creating.add(run_id)
            self._pending[run_id] = run_dir

    def release(self, run_id: str) -> None:
        """The run's foreground create ended (answered or failed): ship it now."""
        with self._cond:
            self._creating.discard(run_id)
            self._cond.notify_all()
        self._start()

    def _start(self) -> None:
        with self._cond:
            if self._stopped or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._loop, name="mltrail-sender", daemon=True)
            self._thread.start()

    # state -----------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """The server answered the last attempt (or none failed yet)."""
        return self.auth_error is None and self._failures == 0

    def has_pending(self, run_id: str | None = None) -> bool:
        if run_id is None:
            return bool(self._pending) or bool(self._busy)
        return run_id in self._pending or run_id in self._busy

    def unsent(self) -> dict[str, Path]:
        """Every run not confirmed delivered: pending, being created, in flight right now
        (a request sent but not answered proves nothing), or refused by the server."""
        with self._cond:
            runs = dict(self._pending)
            for run_id, run_dir in self._busy_dirs.items():
                runs.setdefault(run_id, run_dir)
            for run_id in self._broken:
                runs.setdefault(run_id, self.shipper.spool.store.run_dir(run_id))
            return runs

    @property
    def broken(self) -> dict[str, str]:
        return dict(self._broken)

    @property
    def last_error(self) -> str | None:
        return self._last_error

    # flushing --------------------------------------------------------------

    def flush(
        self, timeout: float, runs: list[str] | None = None, *, stall: float | None = None
    ) -> bool:
        """Wait until the runs (default: all) are delivered, for at most `timeout` seconds.

        With `stall`, also stop once `stall` seconds pass without the server accepting
        a request, or as soon as an attempt fails, so a reader waits as long as a slow
        server keeps making progress (up to `timeout`) but not on a dead one. Returns
        True when nothing of the runs is left to send. Returns early when the server
        refused the credentials, or is unreachable and the next attempt falls after
        the deadline.
        """
        start = time.monotonic()
        deadline = start + max(0.0, timeout)

        def delivered() -> bool:
            if runs is None:
                return not self._pending and not self._busy
            return not any(r in self._pending or r in self._busy for r in runs)

        with self._cond:
            if delivered():
                return True
            self._urgent += 1
            self._retry_at = min(self._retry_at, time.monotonic())  # one attempt now
            self._cond.notify_all()
        self._start()
        progress, moved_at = self.shipper.progress, start
        failures = self._failure_count
        with self._cond:
            try:
                while not delivered() and self.auth_error is None and not self._stopped:
                    if stall is not None and self._failure_count != failures:
                        break  # the server is unreachable: a reader falls back at once
                    now = time.monotonic()
                    if self.shipper.progress != progress:
                        progress, moved_at = self.shipper.progress, now
                    end = deadline if stall is None else min(deadline, moved_at + stall)
                    if now >= end or (self._failures and self._retry_at > end):
                        break
                    self._cond.wait(min(end - now, 0.2))
                return delivered()
            finally:
                self._urgent -= 1

    # the thread ------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._ready():
                    if self._stopped:
                        return
                    wait = None
                    if self._shippable() and self.auth_error is None:
                        wait = max(0.01, self._retry_at - time.monotonic())
                    self._cond.wait(wait)
                if not self._urgent and self.settings.send_interval > 0:
                    # Let a tight logging loop fill the batch before the first request.
                    self._cond.wait_for(lambda: self._urgent > 0, self.settings.send_interval)
                queue = self._shippable()
            with contextlib.suppress(_Unreachable):
                run_parallel(self._ship_or_stop, queue, SHIP_THREADS)

    def _ship_or_stop(self, item: tuple[str, Path]) -> None:
        if self._stopped or not self._ship_one(*item):
            raise _Unreachable  # ends this pass: no new run is started

    def _shippable(self) -> list[tuple[str, Path]]:
        return [(r, d) for r, d in self._pending.items() if r not in self._creating]

    def _ready(self) -> bool:
        return (
            bool(self._shippable())
            and self.auth_error is None
            and not self._stopped
            and time.monotonic() >= self._retry_at
        )

    def _ship_one(self, run_id: str, run_dir: Path) -> bool:
        """Ship one run; False when the server is unreachable (stop this pass)."""
        with self._cond:
            if run_id in self._creating or self._pending.pop(run_id, None) is None:
                return True
            self._busy.add(run_id)
            self._busy_dirs[run_id] = run_dir
        keep = True
        requeue = False
        try:
            result = self.shipper.ship_run(run_dir)
            requeue = not result.complete
            if result.busy:  # `mltrail sync` holds it: try again after a pause
                self._note_failure(None)
                keep = False
            else:
                self._note_success()
        except AuthError as exc:
            requeue, keep = True, False
            self.auth_error = exc
            notices.warn(
                f"mltrail: {exc.message}. Sending stopped; the records stay in "
                f"{self.shipper.spool.folder} and `mltrail sync` ships them once the "
                "credentials are fixed",
                stacklevel=1,
            )
        except OSError as exc:
            # The spool could not be written (disk full, read-only): a local problem,
            # not a refusal by the server. The run stays queued and is tried again
            # after a pause; nothing it holds is given up.
            requeue, keep = True, False
            self._note_failure(StorageError.wrap(exc, run_dir, "update the spool of run"))
        except Exception as exc:
            if is_transient(exc):
                requeue, keep = True, False
                self._note_failure(exc)
            else:
                message = exc.message if isinstance(exc, MltrailError) else repr(exc)
                self._broken[run_id] = message
                notices.warn(
                    f"mltrail: the server at {self.shipper.http.base_url} refused records of "
                    f"run {run_id}: {message}. They stay in {run_dir}; see `mltrail sync`",
                    stacklevel=1,
                )
        finally:
            with self._cond:
                self._busy.discard(run_id)
                self._busy_dirs.pop(run_id, None)
                if requeue:
                    self._pending.setdefault(run_id, run_dir)
                self._cond.notify_all()
        return keep

    def _note_success(self) -> None:
        self._failures = 0
        self._retry_at = 0.0
        self._last_error = None

    def _note_failure(self, exc: BaseException | None) -> None:
        delay = self.settings.retry_delay(self._failures, exc)
        self._failures += 1
        self._failure_count += 1
        if exc is not None:
            self._last_error = exc.message if isinstance(exc, MltrailError) else repr(exc)
            if isinstance(exc, StorageError):
                if not self._warned_storage:
                    self._warned_storage = True
                    notices.warn(
                        f"{self._last_error}. Shipping waits and is tried again; free space "
                        f"in {self.shipper.spool.folder}",
                        stacklevel=1,
                    )
            elif not self._warned_down:
                self._warned_down = True
                notices.warn(
                    f"mltrail: {self._last_error}. Training goes on; records wait in "
                    f"{self.shipper.spool.folder} and are sent when the server answers",
                    stacklevel=1,
                )
        with self._cond:
            self._retry_at = time.monotonic() + delay

    def mark_down(self, exc: BaseException) -> None:
        """A foreground call found the server unreachable: back off before sending."""
        self._note_failure(exc)

    def mark_up(self) -> None:
        """A foreground call got an answer: end the backoff, send what waits now."""
        if self._failures:
            with self._cond:
                self._note_success()
                self._cond.notify_all()

    def may_try(self) -> bool:
        """Whether a foreground call should ask the server now rather than go offline at
        once: not while the backoff window after a failed attempt is open."""
        return self._failures == 0 or time.monotonic() >= self._retry_at
