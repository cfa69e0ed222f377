"""Warnings mltrail gives about its own work, which never become the user's exceptions.

Test suites (and careful users) run with `warnings.simplefilter("error")`; a
warning of ours raised there would turn a tracking problem into a failure of the
user's code, the one thing tracking must never do. Where a filter makes the
warning an error, the message goes to the `mltrail` logger instead.
"""

from __future__ import annotations

import logging
import warnings


def warn(message: str, category: type[Warning] = UserWarning, stacklevel: int = 2) -> None:
    """`warnings.warn`, except that a filter turning it into an error only logs it."""
    try:
        warnings.warn(message, category, stacklevel=stacklevel + 1)
    except Exception:
        logging.getLogger("mltrail").warning(message)
