"""Integrations as entry-point plugins, and `mltrail.<name>` as their public name.

An integration is any module registered in the entry-point group
`mltrail.integrations`; the built-in ones are registered exactly as a
third-party plugin would be. `import mltrail.sklearn` (or `mltrail.sklearn`
after `import mltrail`) reaches the module registered as `sklearn`, through a
small alias module, so no table of integrations is written into the core.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import sys
from importlib import metadata
from types import ModuleType

from . import notices

GROUP = "mltrail.integrations"

_failed: set[str] = set()
_loaded: dict[str, ModuleType] = {}


@functools.cache
def entry_points() -> dict[str, metadata.EntryPoint]:
    """Registered integrations by name (looked up once: it scans installed packages)."""
    return {ep.name: ep for ep in metadata.entry_points(group=GROUP)}


def load(name: str) -> ModuleType | None:
    """The integration module registered as `name`, or None (warned once) if it is broken."""
    if name in _loaded:
        return _loaded[name]
    entry = entry_points().get(name)
    if entry is None or name in _failed:
        return None
    try:
        module = entry.load()
    except Exception as exc:
        _failed.add(name)
        notices.warn(
            f"mltrail: the integration {name!r} ({entry.value}) could not be loaded and is "
            f"skipped: {type(exc).__name__}: {exc}"
        )
        return None
    if not isinstance(module, ModuleType):
        _failed.add(name)
        notices.warn(f"mltrail: the integration {name!r} must name a module, not {entry.value}")
        return None
    _loaded[name] = module
    return module


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: ModuleType) -> None:
        self.target = target

    def exec_module(self, module: ModuleType) -> None:
        module.__dict__["__doc__"] = self.target.__doc__
        module.__dict__["__all__"] = getattr(self.target, "__all__", [])
        module.__dict__["__getattr__"] = functools.partial(getattr, self.target)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Answers `import mltrail.<name>` for every registered integration."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        prefix, _, name = fullname.partition(".")
        if prefix != "mltrail" or not name or "." in name or name not in entry_points():
            return None
        module = load(name)
        if module is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(module))


def install_alias_finder() -> None:
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())


def integration_attribute(name: str) -> ModuleType:
    """`mltrail.<name>` for a module-level __getattr__: the alias of an integration."""
    if name.startswith("_") or name not in entry_points():
        raise AttributeError(f"module 'mltrail' has no attribute {name!r}")
    return importlib.import_module(f"mltrail.{name}")
