"""Turning integrations on: `mltrail.autolog()` and each integration's own `autolog()`.

An integration is a module registered in the `mltrail.integrations` entry-point
group whose `INTEGRATION` is an `Integration` (see `integration`), and whose own
`autolog(**options)` calls `enable(sys.modules[__name__], **options)`.

Patching waits, through wrapt's post-import hooks, until the framework is
imported, so `autolog()` works before or after `import sklearn`.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

import wrapt

from .. import environment, notices, plugins
from ..exceptions import InvalidParameterError
from . import options as options_module
from .integration import Integration, IntegrationError, integration_of
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


_broken: set[str] = set()


def registered() -> dict[str, Integration]:
    """Every installed integration plugin that loads and meets the contract, by name.

    A plugin that fails to import or to meet the contract is left out with one
    warning naming it; the others are unaffected.
    """
    found = {}
    for name in sorted(plugins.entry_points()):
        module = plugins.load(name)
        if module is None:
            continue
        try:
            found[name] = integration_of(module, name)
        except IntegrationError as exc:
            if name not in _broken:
                _broken.add(name)
                notices.warn(f"mltrail: the integration {name!r} is skipped: {exc}")
    return found


def unsupported_versions(integration: Integration) -> list[str]:
    """Installed framework versions outside the range the integration was tested on."""
    found = []
    for dist, (low, high) in integration.supported.items():
        version = environment.distribution_version(dist)
        if version is None:
            continue
        if not _version_tuple(low) <= _version_tuple(version) < _version_tuple(high):
            found.append(f"{dist} {version} (tested: >={low},<{high})")
    return found


def _on_import(integration: Integration) -> Any:
    flavor = integration.flavor

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


def enable(module: ModuleType, *, from_global: bool = False, **given: Any) -> None:
    """Turn autolog on (or off, with disable=True) for one integration plugin module.

    Raises:
        IntegrationError: the module registers no valid `INTEGRATION`.
        InvalidParameterError: an option the integration does not know.
    """
    integration = integration_of(module)
    flavor = integration.flavor
    opts = options_module.build(flavor, dict(integration.options), given)
    if not options_module.store(flavor, opts, from_global=from_global):
        return
    if opts.disable:
        return
    with _lock:
        if flavor in _hooked:
            return
        _hooked.add(flavor)
    for module_name in integration.modules:
        wrapt.register_post_import_hook(_on_import(integration), module_name)


def autolog(**given: Any) -> None:
    """Turn on autologging for every installed integration (scikit-learn, xgboost, hyperopt).

    Takes MLflow's common options: `disable`, `exclusive`, `log_models`,
    `log_datasets`, `silent`, `extra_tags`, `disable_for_unsupported_versions`, and
    mltrail's `log_plots`.
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
    for name in registered():
        try:
            enable(plugins.load(name), from_global=True, **given)  # type: ignore[arg-type]
        except Exception as exc:
            warn_once(name, "could not turn on autolog", f"{type(exc).__name__}: {exc}")


def owner_of(module_name: str) -> str | None:
    """The enabled integration that claims classes of `module_name`, if any.

    An integration lists module prefixes in `claims` for framework classes it
    records itself (xgboost's sklearn wrappers), so a broader integration (the
    sklearn one, which sees every estimator) leaves them alone.
    """
    for integration in registered().values():
        claimed = any(module_name == c or module_name.startswith(c + ".")
                      for c in integration.claims)
        if claimed and options_module.is_enabled(integration.flavor):
            return integration.flavor
    return None


def settings() -> dict[str, dict[str, Any]]:
    """The autolog options in force, per integration, as `enable` takes them back.

    A worker process the user never configures (a Spark executor running a search's
    trial) gets these from the driver and passes them to `apply_settings`, so it
    autologs what the driver would.
    """
    found: dict[str, dict[str, Any]] = {}
    for name, integration in registered().items():
        opts = options_module.get(integration.flavor)
        if opts is not None:
            found[name] = {**{k: getattr(opts, k) for k in options_module.COMMON}, **opts.extra}
    return found


def apply_settings(given: dict[str, dict[str, Any]]) -> None:
    """Turn autolog on (or off) per integration as `settings()` gave it in another process.

    An integration that is not installed here is skipped; one that refuses its options
    is warned about once and left as it was.
    """
    installed = registered()
    for name, options in given.items():
        if name not in installed:
            continue
        try:
            enable(plugins.load(name), **options)  # type: ignore[arg-type]
        except Exception as exc:
            warn_once(name, "could not turn on autolog", f"{type(exc).__name__}: {exc}")
