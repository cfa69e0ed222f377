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
