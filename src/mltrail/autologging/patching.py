"""The one safe-patch helper: wrapt wrappers installed once, switched by state.

A patch is installed the first time its integration is enabled and stays; when
autolog is disabled for the flavour the wrapper calls straight through, so
turning autolog off and on never stacks wrappers or loses a user's own patch.

Two guarantees live here rather than in each integration:

- The user's call happens exactly once. An integration's wrapper receives a
  `call_original` that runs the original at most once and keeps what it returned
  or raised. Whatever mltrail's own code raises before or after it is warned
  about once; the user then gets the original's result or exception as it was,
  and an original the wrapper never reached is called then.
- A patched object still pickles, copies and compares as what it was. Worker
  processes (joblib's loky and multiprocessing backends) receive functions and
  bound methods by pickle; a wrapper reduces to the import path of the attribute
  it replaced (`getattr(owner, name)`), so the worker, where autolog is off,
  gets the framework's own object, and unpickling needs no mltrail. Reading a
  patched method from its class gives the same wrapper every time, as reading a
  plain function does; a function known under several names gets one wrapper.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import wrapt

from . import options
from .session import strict, warn_once

_lock = threading.Lock()
_installed: set[tuple[int, str, str]] = set()
# Per flavour, the patch made for each original: a function reachable under several
# names (`xgboost.train` is `xgboost.training.train`) gets one patch, so the names
# stay the same object, and pickle finds the patch where its name says it lives.
_patches: dict[tuple[int, str], _Patch] = {}


class OriginalCall:
    """The user's call to the patched original, made at most once.

    An integration calls it where the original would run, with the arguments to
    pass (its own callbacks added, say). The outcome stays on the object, so the
    patch can hand it to the user whatever the integration does afterwards.

    Attributes:
        func: the original as this call reaches it (a method bound to its instance),
            for reading its signature.
        called: True once the original has run (returned or raised).
        result: what it returned.
        error: what it raised, or None.
    """

    __slots__ = ("called", "error", "func", "result")

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.called = False
        self.result: Any = None
        self.error: BaseException | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.called:
            raise RuntimeError("mltrail: an integration called the original a second time")
        self.called = True
        try:
            self.result = self.func(*args, **kwargs)
        except BaseException as exc:
            self.error = exc
            raise
        return self.result


Wrapper = Callable[[OriginalCall, Any, tuple[Any, ...], dict[str, Any]], Any]


class _ModuleRef:
    """Pickles as `importlib.import_module(name)`: how a reduced wrapper names its module.

    Only the reduction is stored, so unpickling needs the framework, not mltrail.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return importlib.import_module, (self.name,)


class _BoundPatch(wrapt.BoundFunctionWrapper):  # type: ignore[misc]
    """A patched method bound to an instance: pickles and copies as `instance.name`."""

    def __reduce_ex__(self, protocol: int) -> tuple[Any, ...]:
        return getattr, (self._self_instance, self.__name__)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)  # `<bound method ...>`, as in tracebacks and logs

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return getattr(copy.deepcopy(self._self_instance, memo), self.__name__)


class _Patch(wrapt.FunctionWrapper):  # type: ignore[misc]
    """The wrapper `safe_patch` installs as `owner.name`."""

    __bound_function_wrapper__ = _BoundPatch

    def __init__(self, wrapped: Any, wrapper: Any, owner: Any, name: str) -> None:
        super().__init__(wrapped, wrapper)
        self._self_patch_owner = owner
        self._self_patch_name = name

    def __get__(self, instance: Any, owner: Any) -> Any:
        # Read from a class, a plain function is itself; so is its wrapper.
        if instance is None and inspect.isfunction(self.__wrapped__):
            return self
        return super().__get__(instance, owner)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)  # `<function ...>`, as doctests and messages show it

    def __reduce_ex__(self, protocol: int) -> tuple[Any, ...]:
        # (cloudpickle sees a function here, and ships it by reference or by value
        # through the attributes the wrapper forwards to the original.)
        owner = self._self_patch_owner
        if isinstance(owner, ModuleType):
            owner = _ModuleRef(owner.__name__)
        return getattr, (owner, self._self_patch_name)

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self


def _run_patch(
    flavor: str,
    wrapper: Wrapper,
    wrapped: Callable[..., Any],
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Run an integration's wrapper so that the original runs once, and its outcome wins."""
    call = OriginalCall(wrapped)
    try:
        wrapper(call, instance, args, kwargs)
    except BaseException as exc:
        if exc is call.error:
            raise  # the user's own error, unchanged
        if call.error is None and (not isinstance(exc, Exception) or strict()):
            raise  # Ctrl-C during logging; or mltrail's own error, in strict mode
        if call.error is None:
            warn_once(flavor, "autolog failed in this call; the call itself is unchanged",
                      f"{type(exc).__name__}: {exc}")
    if call.error is not None:  # raised outside the handler: no mltrail error chained to it
        raise call.error
    if not call.called:
        return wrapped(*args, **kwargs)
    return call.result


def safe_patch(flavor: str, owner: Any, name: str, wrapper: Wrapper) -> bool:
    """Wrap `owner.name` so that `wrapper(call_original, instance, args, kwargs)` runs instead.

    The wrapper must call `call_original(*args, **kwargs)` once, where the
    original would run; its own return value is ignored: the patched call returns
    what the original returned. While autolog is disabled for `flavor`, the
    original is called unchanged. A method read from its class and called with
    the instance first (`Estimator.fit(est, X)`) reaches the wrapper bound, as
    `est.fit(X)` does.

    Returns:
        False if the attribute was already patched for this flavour, or does not exist.
    """
    key = (id(owner), name, flavor)
    with _lock:
        if key in _installed or not hasattr(owner, name):
            return False
        _installed.add(key)
    method_of_class = isinstance(owner, type) and inspect.isfunction(owner.__dict__.get(name))

    def switch(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Any:
        if not options.is_enabled(flavor):
            return wrapped(*args, **kwargs)
        if instance is None and method_of_class and args:
            instance, args = args[0], args[1:]
            wrapped = wrapped.__get__(instance, type(instance))
        return _run_patch(flavor, wrapper, wrapped, instance, args, kwargs)

    original = owner.__dict__.get(name) if isinstance(owner, type) else None
    original = getattr(owner, name) if original is None else original
    with _lock:
        patch = _patches.get((id(original), flavor))
        if patch is None or patch.__wrapped__ is not original:
            patch = _patches[(id(original), flavor)] = _Patch(original, switch, owner, name)
    setattr(owner, name, patch)
    return True


def is_patched(owner: Any, name: str, flavor: str) -> bool:
    return (id(owner), name, flavor) in _installed


def class_tree(base: type) -> list[type]:
    """`base` and every subclass of it defined so far, for patching a class family."""
    found, todo = [base], [base]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.append(sub)
                todo.append(sub)
    return found
