"""Autolog options per integration, and which of them the user set explicitly.

Options keep MLflow's names and meanings. A call for one framework
(`mltrail.sklearn.autolog(...)`) wins over the global `mltrail.autolog(...)`,
whichever came first, so a global call never undoes a specific one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any

from ..exceptions import InvalidParameterError


@dataclass(frozen=True)
class AutologOptions:
    """What an integration records; `extra` holds the integration's own options."""

    disable: bool = False
    exclusive: bool = False
    log_models: bool = True
    log_datasets: bool = True
    log_plots: bool = True
    silent: bool = False
    extra_tags: dict[str, str] = field(default_factory=dict)
    disable_for_unsupported_versions: bool = False
    # A search's parent run gets `search_report.html` when the search ends (see
    # `autologging.log_search_report`); integrations without searches ignore it.
    log_search_report: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


COMMON = frozenset(
    (
        "disable",
        "exclusive",
        "log_models",
        "log_datasets",
        "log_plots",
        "silent",
        "extra_tags",
        "disable_for_unsupported_versions",
        "log_search_report",
    )
)

_lock = threading.Lock()
_options: dict[str, AutologOptions] = {}
_explicit: set[str] = set()


def build(flavor: str, defaults: dict[str, Any], given: dict[str, Any]) -> AutologOptions:
    """Validate `given` against the common options and the integration's `defaults`."""
    unknown = set(given) - COMMON - set(defaults)
    if unknown:
        name = sorted(unknown)[0]
        allowed = ", ".join(sorted(COMMON | set(defaults)))
        raise InvalidParameterError(
            f"Unknown autolog option {name!r} for {flavor}; known options: {allowed}", key=name
        )
    common = {k: v for k, v in given.items() if k in COMMON}
    if common.get("extra_tags") is None:
        common.pop("extra_tags", None)
    extra = {**defaults, **{k: v for k, v in given.items() if k not in COMMON}}
    return replace(AutologOptions(), **common, extra=extra)


def store(flavor: str, options: AutologOptions, *, from_global: bool) -> bool:
    """Record options for `flavor`; False when a global call defers to a specific one."""
    with _lock:
        if from_global and flavor in _explicit:
            return False
        if not from_global:
            _explicit.add(flavor)
        _options[flavor] = options
        return True


def get(flavor: str) -> AutologOptions | None:
    """The options in force for `flavor`, or None if autolog was never turned on for it."""
    return _options.get(flavor)


def is_enabled(flavor: str) -> bool:
    current = _options.get(flavor)
    return current is not None and not current.disable


def reset() -> None:
    """Forget every autolog setting, as in a new process: installed patches call straight
    through until autolog is turned on again. For test suites, between tests."""
    with _lock:
        _options.clear()
        _explicit.clear()
