"""Headless Chromium (Debian's `chromium`) for tests: a page's DOM after its scripts ran,
its console messages, a screenshot, and whether it made any network request.

Every request Chromium makes goes to a proxy on 127.0.0.1 that notes the host asked for
and answers nothing, so a page that reaches for a CDN shows up in a list, never as
traffic. Chromium's own calls home (seen with a blank page, whatever the flags above) are
left out of that list.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from system_parts import executable

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
    # plotly.js draws parallel coordinates with WebGL: the software renderer, opted into.
    "--enable-unsafe-swiftshader",
)
# What headless Chromium asks for by itself, even for an empty page.
CHROMIUM_OWN_HOSTS = frozenset(
    ("clients2.google.com", "update.googleapis.com", "accounts.google.com",
     "optimizationguide-pa.googleapis.com"))
# Console lines that are a page's own errors: an uncaught exception, a failed load.
_ERROR = re.compile(r"Uncaught|TypeError|ReferenceError|SyntaxError|Failed to load|net::ERR")


class _CountingProxy:
    """Accepts connections on 127.0.0.1, notes the host each asked for, closes them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.hosts: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(2)
            try:
                first = conn.recv(512).split(b"\r\n", 1)[0].decode("latin-1")
            except OSError:
                first = ""
            conn.close()
            # "CONNECT host:443 HTTP/1.1" or "GET http://host/path HTTP/1.1"
            target = first.split(" ")[1] if " " in first else "?"
            self.hosts.append(re.sub(r"^\w+://", "", target).split("/")[0].split(":")[0])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@dataclass
class Visit:
    dom: str
    console: list[str]
    errors: list[str]
    requests: list[str]  # hosts the page asked for


def open_page(url: str, workdir: Path, *, screenshot: Path | None = None,
              size: str = "1280,2000", budget_ms: int = 8000, proxy: bool = True) -> Visit:
    """Load `url`, let its scripts run for `budget_ms` of virtual time, and report."""
    exe = executable("chromium", "chromium")
    workdir.mkdir(parents=True, exist_ok=True)
    counter = _CountingProxy() if proxy else None
    args = [str(exe), *FLAGS, f"--user-data-dir={workdir / 'profile'}",
            f"--window-size={size}", f"--virtual-time-budget={budget_ms}"]
    if counter is not None:
        args += [f"--proxy-server=http://127.0.0.1:{counter.port}",
                 "--proxy-bypass-list=<-loopback>"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    try:
        done = subprocess.run([*args, url], capture_output=True, text=True, timeout=180)
    finally:
        if counter is not None:
            counter.close()
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    errors = [line for line in console if _ERROR.search(line)]
    hosts = [h for h in (counter.hosts if counter else []) if h not in CHROMIUM_OWN_HOSTS]
    return Visit(done.stdout, console, errors, hosts)


def distinct_colours(png: Path) -> int:
    """How many colours a screenshot has (a blank page has one)."""
    from PIL import Image

    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(colours) if colours is not None else 1 << 20


def screenshot_after(url: str, png: Path, workdir: Path, *, seconds: float = 20.0,
                     size: tuple[int, int] = (1400, 1000),
                     until: Callable[[Path], bool] | None = None) -> bool:
    """A screenshot of `url` taken after `seconds` of real time, or, with `until`, the first
    one (every 3 s, for at most `seconds`) for which `until(png)` holds; returns that.

    For pages that load more inside (a web app fetching an artifact into an iframe),
    where `--screenshot` shoots too early: Chromium is driven over its DevTools pipe
    (`--remote-debugging-pipe`, JSON messages ending in a NUL byte on fds 3 and 4).
    """
    import base64
    import json
    import os
    import time

    exe = executable("chromium", "chromium")
    workdir.mkdir(parents=True, exist_ok=True)
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()

    def child_fds() -> None:  # Chromium reads commands on fd 3 and answers on fd 4
        os.dup2(to_chrome_r, 3)
        os.dup2(from_chrome_w, 4)

    proc = subprocess.Popen(
        [str(exe), *FLAGS, f"--user-data-dir={workdir / 'profile'}",
         f"--window-size={size[0]},{size[1]}", "--remote-debugging-pipe", "about:blank"],
        # close_fds would close fds 3 and 4 again after child_fds set them up
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=child_fds,
        close_fds=False)
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    buffer = b""
    next_id = 0

    def call(method: str, session: str | None = None, **params: object) -> dict:
        nonlocal buffer, next_id
        next_id += 1
        message: dict[str, object] = {"id": next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(to_chrome_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            chunk = os.read(from_chrome_r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            buffer += chunk
        raise TimeoutError(method)

    try:
        target = call("Target.createTarget", url="about:blank")["targetId"]
        session = call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        call("Emulation.setDeviceMetricsOverride", session, width=size[0], height=size[1],
             deviceScaleFactor=1, mobile=False)
        call("Page.navigate", session, url=url)
        deadline = time.monotonic() + seconds
        while True:
            time.sleep(3 if until is not None else seconds)
            shot = call("Page.captureScreenshot", session, format="png")
            png.write_bytes(base64.b64decode(shot["data"]))
            if until is None:
                return True
            if until(png):
                return True
            if time.monotonic() > deadline:
                return False
    finally:
        os.close(to_chrome_w)
        os.close(from_chrome_r)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
