"""Foreground requests with a time budget that outlive it without being repeated.

A training call that needs the server (create a run, find the experiment) must not
wait on a server that accepts connections and never answers: it waits a small
budget (``MLTRAIL_CREATE_TIMEOUT``) and then carries on offline. Abandoning the
request is not an option for a request that is not idempotent (``runs/create``): it
may still land, and sending it again would make a second run. So the request runs
on its own thread with the ordinary read timeout, the caller stops waiting after
the budget, and whoever depends on the outcome registers a callback with `then`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ... import notices

T = TypeVar("T")


class ForegroundCall(Generic[T]):
    """`func()` run on a daemon thread; wait for it for a while, or be called back.

    Args:
        func: the request to make.
        name: the thread's name, for debugging.
    """

    def __init__(self, func: Callable[[], T], name: str = "mltrail-call") -> None:
        self._func = func
        self._name = name
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[ForegroundCall[T]], Any]] = []
        self.value: T | None = None
        self.error: BaseException | None = None

    def start(self) -> ForegroundCall[T]:
        threading.Thread(target=self._run, name=self._name, daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            self.value = self._func()
        except BaseException as exc:  # handed to whoever reads the result
            self.error = exc
        with self._lock:
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._call_back(callback)

    def _call_back(self, callback: Callable[[ForegroundCall[T]], Any]) -> None:
        try:
            callback(self)
        except Exception as exc:  # a background thread has nobody to raise to
            notices.warn(f"mltrail: handling a late answer failed: {exc!r}", stacklevel=1)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True when the call has ended (either way)."""
        return self._done.wait(max(0.0, timeout))

    def result(self) -> T:
        """The call's value, or its exception raised; only once `done`."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]

    def then(self, callback: Callable[[ForegroundCall[T]], Any]) -> None:
        """Call `callback(self)` once the call has ended: now if it has already."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        self._call_back(callback)
