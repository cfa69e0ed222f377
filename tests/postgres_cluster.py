"""A real PostgreSQL cluster from Debian's `postgresql` package, in a temporary folder.

`initdb` refuses to run as root, so as root the cluster belongs to the `postgres`
user (`runuser -u postgres --`) and lives in a folder it owns. It listens on
127.0.0.1 on a free port, with its unix socket inside that folder, trusts local
connections, and is stopped with `pg_ctl stop` (then by the pid in
`postmaster.pid` if that fails).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlflow_server import free_port
from system_parts import executable


@dataclass
class Cluster:
    folder: Path
    port: int
    bin_dir: Path

    @property
    def uri(self) -> str:
        """Plain ``postgresql://``, as MLflow users write it."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return [str(executable("runuser", "util-linux")), "-u", "postgres", "--", *cmd]
    return cmd


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Cluster]:
    """Start a cluster, yield it, stop it (see the module docstring)."""
    dirs = tuple(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
    initdb = executable("initdb", "postgresql", also=dirs)
    pg_ctl = executable("pg_ctl", "postgresql", also=dirs)
    bin_dir = Path(os.path.realpath(initdb)).parent
    folder = Path(tempfile.mkdtemp(prefix="mltrail-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data = folder / "data"
    port = free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "timeout": 120}
    done = subprocess.run(
        _as_owner([str(initdb), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
        check=False, **quiet,  # type: ignore[arg-type]
    )
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {done.stderr!r}")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = [str(pg_ctl), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"]
    try:
        done = subprocess.run(_as_owner(start), check=False, **quiet)  # type: ignore[arg-type]
        if done.returncode != 0:
            log = (folder / "log").read_text() if (folder / "log").exists() else ""
            raise RuntimeError(f"postgres did not start: {done.stderr!r} {log[-2000:]}")
        yield Cluster(folder, port, bin_dir)
    finally:
        stopped = subprocess.run(
            _as_owner([str(pg_ctl), "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False, **quiet,  # type: ignore[arg-type]
        )
        pid_file = data / "postmaster.pid"
        if stopped.returncode != 0 and pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
