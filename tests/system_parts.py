"""System parts from Debian's packages (Chromium, PostgreSQL, Java) that some tests need.

`.ci/run` installs them. Where one is missing a test skips with a loud reason, except in
CI (`MLTRAIL_CI=1`), where a missing part is a failure: a skipped check there would pass
a change nobody tested.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def missing(what: str, package: str) -> None:
    """Skip the calling test (fail it in CI) because `what` is missing here."""
    reason = f"{what} is missing: `apt-get install -y {package}` (.ci/run installs it)"
    if os.environ.get("MLTRAIL_CI") == "1":
        pytest.fail(f"MLTRAIL_CI=1 and {reason}", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {reason}")


def executable(name: str, package: str, *, also: tuple[str, ...] = ()) -> Path:
    """The path of a program from Debian's `package`, looked up on PATH and in `also`."""
    found = shutil.which(name)
    if found is None:
        found = next((str(Path(d) / name) for d in also if (Path(d) / name).is_file()), None)
    if found is None:
        missing(f"`{name}`", package)
    return Path(found)  # type: ignore[arg-type]
