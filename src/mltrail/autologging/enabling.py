"""Turning integrations on: `mltrail.autolog()` and each integration's own `autolog()`.

An integration is a module registered in the `mltrail.integrations` entry-point
group that defines:

- `FLAVOR`: its name, as in `mlflow.autologging` tags and `mltrail.<FLAVOR>`;
- `MODULES`: the framework modules whose import triggers patching;
- `patch(module)`: installs its patches with `safe_patch`, called once per module;
- optionally `OPTIONS` (its own options and defaults) and `SUPPORTED`
  (`{"distribution": ("min", "max-exclusive")}`) for the versions it was tested on;
- `autolog(**options)`, which calls `enable(sys.modules[__name__], **options)`.

Patching waits, through wrapt's post-import hooks, until the framework is
imported, so `autolog()` works before or after `import sklearn`.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

import wrapt

from .. import environment, plugins
from ..exceptions import InvalidParameterError
from . import options as options_module
from .session import warn_once

_lock = threading.Lock()
_hooked: set[str] = set()


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break  # "1rc1": stop at the pre-release marker
    return tuple(parts)


def unsupported_versions(integration: ModuleType) -> list[str]:
    """Installed framework versions outside the range the integration was tested on."""
    found = []
    for dist, (low, high) in getattr(integration, "SUPPORTED", {}).items():
        version = environment.distribution_version(dist)
        if version is None:
            continue
        if not _version_tuple(low) <= _version_tuple(version) < _version_tuple(high):
            found.append(f"{dist} {version} (tested: >={low},<{high})")
    return found


def _on_import(integration: ModuleType) -> Any:
    flavor: str = integration.FLAVOR

    def hook(module: ModuleType) -> None:
        opts = options_module.get(flavor)
        unsupported = unsupported_versions(integration)
        if unsupported and opts is not None and opts.disable_for_unsupported_versions:
            warn_once(flavor, "autolog is off for an untested version", ", ".join(unsupported))
            return
        if unsupported:
            warn_once(flavor, "autolog runs on an untested version", ", ".join(unsupported))
        try:
            integration.patch(module)
        except Exception as exc:  # a broken plugin never breaks the user's import
            warn_once(flavor, "could not patch the framework; autolog is off for it",
                      f"{type(exc).__name__}: {exc}")

    return hook


def enable(integration: ModuleType, *, from_global: bool = False, **given: Any) -> None:
    """Turn autolog on (or off, with disable=True) for one integration.

    Raises:
        InvalidParameterError: an option the integration does not know.
    """
    flavor = getattr(integration, "FLAVOR", None)
    if not isinstance(flavor, str) or not hasattr(integration, "patch"):
        raise InvalidParameterError(
            f"{integration.__name__} is not an mltrail integration (no FLAVOR or patch)",
            key="integration",
        )
    opts = options_module.build(flavor, dict(getattr(integration, "OPTIONS", {})), given)
    if not options_module.store(flavor, opts, from_global=from_global):
        return
    if opts.disable:
        return
    with _lock:
        if flavor in _hooked:
            return
        _hooked.add(flavor)
    for module_name in integration.MODULES:
        wrapt.register_post_import_hook(_on_import(integration), module_name)


def autolog(**given: Any) -> None:
    """Turn on autologging for every installed integration (scikit-learn, xgboost, hyperopt).

    Takes MLflow's common options: `disable`, `exclusive`, `log_models`,
    `log_datasets`, `silent`, `extra_tags`, `disable_for_unsupported_versions`.
    A framework's own `mltrail.<framework>.autolog(...)` takes precedence.
    """
    unknown = set(given) - options_module.COMMON
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidParameterError(
            f"Unknown autolog option {name!r}; mltrail.autolog() takes "
            f"{', '.join(sorted(options_module.COMMON))}; framework options go to "
            "mltrail.<framework>.autolog()",
            key=name,
        )
    for name in sorted(plugins.entry_points()):
        integration = plugins.load(name)
        if integration is None:
            continue
        try:
            enable(integration, from_global=True, **given)
        except Exception as exc:
            warn_once(name, "could not turn on autolog", f"{type(exc).__name__}: {exc}")


def owner_of(module_name: str) -> str | None:
    """The enabled integration that claims classes of `module_name`, if any.

    An integration lists module prefixes in `CLAIMS` for framework classes it
    records itself (xgboost's sklearn wrappers), so a broader integration (the
    sklearn one, which sees every estimator) leaves them alone.
    """
    for name in plugins.entry_points():
        integration = plugins.load(name)
        claims = getattr(integration, "CLAIMS", ())
        if any(module_name == c or module_name.startswith(c + ".") for c in claims):
            flavor = getattr(integration, "FLAVOR", name)
            if options_module.is_enabled(flavor):
                return flavor
    return None
