"""Facts about the process a run comes from: user, source, git, package versions.

Everything here is computed once per process and cached: these facts cannot
change while a script runs, and gathering them for each of thousands of runs
(hyperopt trials, CV candidates) would cost more than the logging itself. Git
facts are read from the `.git` folder directly, never by starting `git`.
"""

from __future__ import annotations

import functools
import getpass
import os
import re
import sys
from importlib import metadata
from pathlib import Path

SOURCE_NAME = "mlflow.source.name"
SOURCE_TYPE = "mlflow.source.type"
USER = "mlflow.user"
GIT_COMMIT = "mlflow.source.git.commit"
GIT_BRANCH = "mlflow.source.git.branch"
GIT_REPO_URL = "mlflow.source.git.repoURL"


@functools.cache
def user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = getattr(shell, "get_ipython", lambda: None)()
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


@functools.cache
def source() -> tuple[str, str]:
    """The script that is running and its MLflow source type (LOCAL or NOTEBOOK)."""
    if _in_notebook():
        return os.environ.get("JPY_SESSION_NAME", "notebook"), "NOTEBOOK"
    main = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if main in ("", "-", "-c", "-m"):
        return "<interactive>", "LOCAL"
    return str(Path(main).resolve()), "LOCAL"


def _find_git_dir(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        dot_git = folder / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = dot_git.read_text().strip()
            if text.startswith("gitdir:"):
                return (folder / text[len("gitdir:") :].strip()).resolve()
    return None


def _resolve_ref(git_dir: Path, ref: str) -> str | None:
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        common = (git_dir / commondir.read_text().strip()).resolve()
    for base in (git_dir, common):
        loose = base / ref
        if loose.is_file():
            return loose.read_text().strip()
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            parts = line.split(" ", 1)
            if len(parts) == 2 and parts[1] == ref:
                return parts[0]
    return None


_CREDENTIALS = re.compile(r"(?<=://)[^/@]+@")


def strip_credentials(url: str) -> str:
    """Remove `user:token@` from a URL: a credential must never land in a tag."""
    return _CREDENTIALS.sub("", url)


def _origin_url(git_dir: Path) -> str | None:
    config = git_dir / "config"
    commondir = git_dir / "commondir"
    if commondir.is_file():
        config = (git_dir / commondir.read_text().strip()).resolve() / "config"
    if not config.is_file():
        return None
    in_origin = False
    for raw in config.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            in_origin = line.replace(" ", "") in ('[remote"origin"]',)
        elif in_origin and line.startswith("url"):
            return strip_credentials(line.split("=", 1)[1].strip())
    return None


def git_facts(start: Path) -> dict[str, str]:
    """Commit, branch and origin URL of the checkout that holds `start`, if any."""
    try:
        git_dir = _find_git_dir(start.resolve())
        if git_dir is None:
            return {}
        head = (git_dir / "HEAD").read_text().strip()
        facts: dict[str, str] = {}
        if head.startswith("ref:"):
            ref = head[4:].strip()
            facts[GIT_BRANCH] = ref.removeprefix("refs/heads/")
            commit = _resolve_ref(git_dir, ref)
        else:
            commit = head
        if commit:
            facts[GIT_COMMIT] = commit
        url = _origin_url(git_dir)
        if url:
            facts[GIT_REPO_URL] = url
        return facts
    except OSError:
        return {}


@functools.cache
def system_tags() -> dict[str, str]:
    """The tags the MLflow UI reads, for every run this process creates."""
    name, kind = source()
    tags = {USER: user(), SOURCE_NAME: name, SOURCE_TYPE: kind}
    tags.update(git_facts(_code_folder(name, kind)))
    return tags


def _code_folder(name: str, kind: str) -> Path:
    """Where the user's code is: the script's folder, else the working directory.

    A console script (`mltrail demo`, a tool's entry point) lives in the
    interpreter's own folders; the git checkout that matters is then the one the
    user works in, not the one the interpreter was installed from.
    """
    if kind != "LOCAL" or name == "<interactive>":
        return Path.cwd()
    script = Path(name)
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    if any(script.is_relative_to(prefix) for prefix in prefixes):
        return Path.cwd()
    return script.parent


@functools.cache
def _distributions_by_module() -> dict[str, list[str]]:
    return metadata.packages_distributions()


@functools.cache
def distribution_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def requirement(module: str) -> str | None:
    """A pinned requirement line (`scikit-learn==1.9.0`) for an importable module name."""
    top = module.split(".", 1)[0]
    for dist in _distributions_by_module().get(top, [top]):
        version = distribution_version(dist)
        if version is not None:
            return f"{dist}=={version}"
    return None


def python_version() -> str:
    return ".".join(str(part) for part in sys.version_info[:3])
