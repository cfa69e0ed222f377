"""`estimator.html`, scikit-learn's HTML view of a fitted estimator, off the training path.

`sklearn.utils.estimator_html_repr` took 15-45 ms for a 10-tree forest on the
benchmark machine (it cleans every parameter's docstring and prints every
fitted attribute): longer than the fit. A thread would not help, the work holds
the GIL; so one helper process per tracking process draws it. The training
thread pickles the estimator (well under a millisecond for small models; the
same bytes `log_models` writes) and queues it; a writer thread feeds the helper,
so a training thread never waits on a full pipe while the helper is still
loading scikit-learn (that stalled a script's third small fit for 1.4 s), and a
reader thread writes the page into the run when the helper answers.

`mltrail.flush()` and the exit path wait for pages not yet written (bounded by
the flush timeout). The helper starts with the first fit and needs about a
second to load scikit-learn; a script that ends sooner (ten small fits) would
wait that long, so when the helper has not said it is ready, flush draws the
pages still waiting itself (10-15 ms each) and the helper's answers for them are
dropped.

The helper is this module run as a script: a fresh interpreter where autolog is
off, so unpickling and drawing record nothing. An estimator it cannot load or
draw leaves a `mltrail.note.estimator_html` tag on its run instead of the page.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

import mltrail.autologging as autologging

FILE_NAME = "estimator.html"
NOTE_TAG = "mltrail.note.estimator_html"
_HEADER = struct.Struct("!I")
_MAX_RESTARTS = 3


def page(fragment: str) -> str:
    """The full page MLflow logs: UTF-8 declared, so the toggles' triangles show."""
    return ('<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="UTF-8"/></head>\n'
            f"<body>\n{fragment}\n</body>\n</html>\n")


def _send(stream: BinaryIO, payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _receive(stream: BinaryIO) -> bytes | None:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    body = stream.read(size)
    return body if len(body) == size else None


def _dumps(estimator: Any) -> bytes:
    try:  # by value where needed: a class defined in the user's __main__ loads in the helper
        import cloudpickle

        return cloudpickle.dumps(estimator)  # type: ignore[no-any-return]
    except ImportError:
        return pickle.dumps(estimator)


class _Helper:
    """The helper process, the reader of its answers, and the pages still to write."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._process: subprocess.Popen[bytes] | None = None
        self._pending: dict[int, tuple[Callable[[str | None, str], None], bytes]] = {}
        self._ready = False  # the running helper has loaded scikit-learn
        self._next = 0
        self._starts = 0
        self._pid = os.getpid()
        self._outbox: queue.SimpleQueue[tuple[subprocess.Popen[bytes], bytes]] = (
            queue.SimpleQueue())
        self._writer: threading.Thread | None = None

    def submit(self, estimator: Any, done: Callable[[str | None, str], None]) -> None:
        """Draw `estimator`'s view in the helper; `done(html or None, error)` is called
        from the reader thread. Raises if the estimator does not pickle."""
        if self._pid != os.getpid():  # a forked child: the parent's helper, lock and pages
            self.__init__()  # type: ignore[misc]  # are not its own
        payload = _dumps(estimator)
        with self._lock:
            process = self._running()
            job, self._next = self._next, self._next + 1
            self._pending[job] = (done, payload)
            self._outbox.put((process, pickle.dumps((job, payload))))

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        if self._starts >= _MAX_RESTARTS:
            raise RuntimeError("the helper process drawing estimator.html stopped too often")
        self._starts += 1
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        process = subprocess.Popen(
            [sys.executable, "-c", "from mltrail_sklearn.html_view import main; main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            start_new_session=True)  # a Ctrl-C meant for the script leaves its pages drawn
        self._process = process
        self._ready = False
        threading.Thread(target=self._read, args=(process,), daemon=True,
                         name="mltrail-estimator-html").start()
        if self._writer is None:
            self._writer = threading.Thread(target=self._write, daemon=True,
                                            name="mltrail-estimator-html-writer")
            self._writer.start()
        autologging.background_work(self.wait)
        return process

    def _write(self) -> None:
        """Send queued requests to the helper they were meant for. One that cannot be
        sent (the helper ended) is left pending: the reader of that helper gives up its
        pages when it sees the end."""
        while True:
            process, request = self._outbox.get()
            with contextlib.suppress(OSError, ValueError):
                _send(process.stdin, request)  # type: ignore[arg-type]

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        while True:
            answer = _receive(process.stdout)  # type: ignore[arg-type]
            if answer is None:
                break
            message = pickle.loads(answer)
            if message is None:  # the helper has loaded scikit-learn
                with self._lock:
                    self._ready = True
                continue
            job, html, error = message
            with self._lock:
                entry = self._pending.pop(job, None)
            if entry is not None:  # else flush drew it already
                with contextlib.suppress(Exception):  # the callback warns itself
                    entry[0](html, error)
            with self._lock:
                self._lock.notify_all()
        with self._lock:  # the helper ended: what it still had is lost
            lost = [done for done, _ in self._pending.values()]
            self._pending.clear()
            self._lock.notify_all()
        for done in lost:
            with contextlib.suppress(Exception):
                done(None, "the helper process ended")

    def wait(self, timeout: float) -> bool:
        """True once every page submitted so far has been written (or given up); pages
        a helper not yet ready would only start on are drawn here instead."""
        with self._lock:
            if self._ready or not self._pending:
                return self._lock.wait_for(lambda: not self._pending, timeout)
            waiting = list(self._pending.values())
            self._pending.clear()
        with autologging.suppressed():
            for done, payload in waiting:
                with contextlib.suppress(Exception):  # the callback warns itself
                    done(*draw(payload))
        return True


_helper = _Helper()


def log_estimator_html(session: autologging.Session, estimator: Any) -> None:
    """Have the helper draw the fitted estimator's view into the session's run."""
    client, run_id, flavor = session.client, session.run_id, session.flavor

    def done(html: str | None, error: str) -> None:
        try:
            if html is None:
                client.set_tag(run_id, NOTE_TAG, f"not drawn: {error}"[:1000])
                return
            with client.stage_artifacts(run_id) as folder:
                (folder / FILE_NAME).write_text(html, encoding="utf-8")
        except Exception as exc:
            autologging.warn_once(flavor, "could not write estimator.html",
                                  f"{type(exc).__name__}: {exc}")

    try:
        _helper.submit(estimator, done)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        # An estimator holding something unpicklable (a generator of CV splits, a
        # lambda) cannot reach the helper; the run says so instead of the page.
        done(None, f"the estimator does not pickle ({type(exc).__name__}: {exc})")


def warm_up() -> None:
    """Start the helper (once) while the first fit trains, so that its interpreter and
    scikit-learn are loaded by the time the fit's page is asked for."""
    if _helper._process is None:
        with _helper._lock:
            _helper._running()


def wait(timeout: float = 30.0) -> bool:
    """Wait for the pages submitted so far (tests; `mltrail.flush()` does it too)."""
    return _helper.wait(timeout)


def draw(payload: bytes) -> tuple[str | None, str]:
    """(page, "") for a pickled estimator, or (None, why not)."""
    from sklearn.utils import estimator_html_repr

    try:
        return page(estimator_html_repr(pickle.loads(payload))), ""
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def main() -> None:
    """The helper: read pickled estimators from stdin, answer their HTML pages on stdout."""
    import sklearn.utils  # noqa: F401  # loaded before saying it is ready

    source, sink = sys.stdin.buffer, sys.stdout.buffer
    _send(sink, pickle.dumps(None))
    while True:
        request = _receive(source)
        if request is None:
            return
        job, payload = pickle.loads(request)
        _send(sink, pickle.dumps((job, *draw(payload))))
