"""The autolog engine and the public API that integrations are written against.

An integration (see `enabling` for what it defines) patches its framework with
`safe_patch`, opens a `training_run` in each patched training call, and logs
through the `Session` it gets. A search integration runs each trial in its own
child run, under `isolated()` (what the trial trains logs into the trial's run)
and `adoptable(run)` (a `start_run` in the user's objective reuses that run).
Nothing here knows any framework.
"""

from __future__ import annotations

from ..fluent import adoptable
from .enabling import autolog, enable, owner_of, unsupported_versions
from .options import AutologOptions
from .patching import class_tree, is_patched, safe_patch
from .session import (
    AUTOLOGGING_TAG,
    MltrailWarning,
    Session,
    current_session,
    in_training,
    isolated,
    strict,
    suppressed,
    training_run,
    warn_once,
)

__all__ = [
    "AUTOLOGGING_TAG",
    "AutologOptions",
    "MltrailWarning",
    "Session",
    "adoptable",
    "autolog",
    "class_tree",
    "current_session",
    "enable",
    "in_training",
    "is_patched",
    "isolated",
    "owner_of",
    "safe_patch",
    "strict",
    "suppressed",
    "training_run",
    "unsupported_versions",
    "warn_once",
]
