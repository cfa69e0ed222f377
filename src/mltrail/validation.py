"""Checks and fix-ups applied to every key and value before any store sees it.

The rules are the MLflow tracking server's, so a run logged locally can later be
shipped to a server without a record being refused there. Over-long values are
truncated the way a server would, but loudly: the user is warned, naming the key.
"""

from __future__ import annotations

import math
import numbers
import re
import warnings
from typing import Any

from .exceptions import InvalidParameterError

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_RUN_NAME_LENGTH = 250

_KEY_PATTERN = re.compile(r"^[/\w.\- :]*$")


def validate_key(key: Any, kind: str) -> str:
    """Return `key` if a tracking server would accept it, else raise naming it."""
    if not isinstance(key, str):
        raise InvalidParameterError(
            f"{kind} key must be a string, got {type(key).__name__}: {key!r}", key=str(key)
        )
    if not key:
        raise InvalidParameterError(f"{kind} key must not be empty", key=key)
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidParameterError(
            f"{kind} key {key[:40]!r}... is {len(key)} characters long; "
            f"the limit is {MAX_KEY_LENGTH}",
            key=key,
        )
    if not _KEY_PATTERN.match(key):
        raise InvalidParameterError(
            f"Invalid {kind} key {key!r}: keys may contain only letters, digits, "
            "underscores, dashes, periods, spaces, colons and slashes",
            key=key,
        )
    if key.startswith("/") or ".." in key.split("/"):
        raise InvalidParameterError(
            f"Invalid {kind} key {key!r}: a key may not start with '/' or contain '..'",
            key=key,
        )
    return key


def truncate(value: str, limit: int, kind: str, key: str) -> str:
    """Cut `value` to the server's limit, marking the cut and warning about it."""
    if len(value) <= limit:
        return value
    marker = f"...[truncated from {len(value)} chars]"
    warnings.warn(
        f"mltrail: {kind} {key!r} is {len(value)} characters long; it is stored cut to "
        f"{limit} characters, as a tracking server would store it",
        stacklevel=4,
    )
    return value[: limit - len(marker)] + marker


def param_value(key: str, value: Any) -> str:
    return truncate(str(value), MAX_PARAM_VALUE_LENGTH, "param", key)


def tag_value(key: str, value: Any) -> str:
    return truncate(str(value), MAX_TAG_VALUE_LENGTH, "tag", key)


def metric_value(key: str, value: Any) -> float:
    """Accept ints, floats, bools and numpy scalars; keep NaN and inf as they are."""
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)  # 0-d numpy arrays and tensors
    if callable(item):
        try:
            scalar = item()
        except (TypeError, ValueError):
            scalar = None
        if isinstance(scalar, numbers.Real):
            return float(scalar)
    raise InvalidParameterError(
        f"Metric {key!r} must be a number, got {type(value).__name__}: {value!r:.80}", key=key
    )


INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _integer(value: Any) -> int | None:
    """`value` as an int if it is an integer (numpy integers and integral floats too)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return None


def metric_step(key: str, step: Any) -> int:
    """The step as an int64, as the server stores it.

    Checked here because a server given a step outside int64 answers 200, stores step 0
    and silently drops the rest of that request (MLflow's own client refuses such steps
    when it serializes them).
    """
    if step is None:
        return 0
    value = _integer(step)
    if value is None:
        raise InvalidParameterError(
            f"Step of metric {key!r} must be an integer, got {step!r}", key=key
        )
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidParameterError(
            f"Step of metric {key!r} is {value}, outside the 64-bit integer range a tracking "
            "server stores",
            key=key,
        )
    return value


def metric_timestamp(key: str, timestamp: Any) -> int:
    """The timestamp (milliseconds since the epoch) as a non-negative int64.

    A tracking server refuses a negative timestamp and mangles one beyond int64 (see
    `metric_step`), so both are refused here, at the call, naming the key.
    """
    value = _integer(timestamp)
    if value is None:
        raise InvalidParameterError(
            f"Timestamp of metric {key!r} must be an integer (milliseconds), got {timestamp!r}",
            key=key,
        )
    if not 0 <= value <= INT64_MAX:
        raise InvalidParameterError(
            f"Timestamp of metric {key!r} is {value}; a tracking server takes only "
            "non-negative 64-bit integers (milliseconds since the epoch)",
            key=key,
        )
    return value
