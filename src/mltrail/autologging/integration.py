"""The contract an integration plugin registers, checked when the plugin loads.

An integration is a module registered in the entry-point group
`mltrail.integrations` (under the name users reach as `mltrail.<name>`) whose
attribute `INTEGRATION` is an `Integration`. Building one validates it, and
loading a plugin checks that it has one, so a broken third-party plugin fails
with one message naming it, at load, instead of an AttributeError deep inside
autolog; the other plugins still load.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any

from ..exceptions import MltrailError
from .options import COMMON

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class IntegrationError(MltrailError):
    """An integration plugin does not meet the contract; the message names it."""


@dataclass(frozen=True)
class Integration:
    """What an integration plugin tells mltrail about itself.

    Attributes:
        flavor: its name: the `mlflow.autologging` tag of its runs and `mltrail.<flavor>`;
            the entry point must be registered under the same name.
        modules: the framework modules whose import triggers `patch` (through
            wrapt's post-import hooks, so autolog works before or after the import).
        patch: installs the integration's patches with `safe_patch` for one of
            `modules`, once, when that module has been imported.
        options: the integration's own autolog options and their defaults (MLflow's
            common options, `disable`, `log_models`, ..., are always there).
        supported: `{"distribution": ("min", "max-exclusive")}`, the versions it
            was tested on; outside them autolog warns, or stays off if asked to.
        claims: module prefixes of framework classes it records itself, so that a
            broader integration leaves them alone (xgboost's sklearn wrappers).
    """

    flavor: str
    modules: tuple[str, ...]
    patch: Callable[[ModuleType], None]
    options: Mapping[str, Any] = field(default_factory=dict)
    supported: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    claims: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"integration {self.flavor!r}"
        if not isinstance(self.flavor, str) or not _NAME.match(self.flavor):
            raise IntegrationError(f"{where}: flavor must be a name such as 'sklearn'")
        if (not isinstance(self.modules, tuple) or not self.modules
                or not all(isinstance(m, str) and m for m in self.modules)):
            raise IntegrationError(f"{where}: modules must be a non-empty tuple of module names")
        if not callable(self.patch):
            raise IntegrationError(f"{where}: patch must be callable")
        if not isinstance(self.options, Mapping) or not all(
                isinstance(k, str) for k in self.options):
            raise IntegrationError(f"{where}: options must map option names to defaults")
        shadowed = sorted(set(self.options) & COMMON)
        if shadowed:
            raise IntegrationError(f"{where}: options redefine common ones: {shadowed}")
        if not isinstance(self.supported, Mapping) or not all(
                isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, str) for x in v)
                for v in self.supported.values()):
            raise IntegrationError(
                f"{where}: supported must map distributions to ('min', 'max-exclusive')")
        if not isinstance(self.claims, tuple) or not all(isinstance(c, str) for c in self.claims):
            raise IntegrationError(f"{where}: claims must be a tuple of module prefixes")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "supported", MappingProxyType(dict(self.supported)))


def integration_of(module: ModuleType, name: str | None = None) -> Integration:
    """The `Integration` a plugin module registers.

    Raises:
        IntegrationError: it has none, or registers it under another name.
    """
    spec = getattr(module, "INTEGRATION", None)
    if not isinstance(spec, Integration):
        raise IntegrationError(
            f"{module.__name__} is not an mltrail integration: it defines no INTEGRATION = "
            "mltrail.autologging.Integration(...)")
    if name is not None and spec.flavor != name:
        raise IntegrationError(
            f"{module.__name__} is registered as {name!r} but its flavor is {spec.flavor!r}")
    return spec
