"""The one safe-patch helper: wrapt wrappers installed once, switched by state.

A patch is installed the first time its integration is enabled and stays; when
autolog is disabled for the flavour the wrapper calls straight through, so
turning autolog off and on never stacks wrappers or loses a user's own patch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import wrapt

from . import options

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]

_lock = threading.Lock()
_installed: set[tuple[int, str, str]] = set()


def safe_patch(flavor: str, owner: Any, name: str, wrapper: Wrapper) -> bool:
    """Wrap `owner.name` with `wrapper(wrapped, instance, args, kwargs)`, once.

    The wrapper runs only while autolog is enabled for `flavor`; otherwise the
    original is called unchanged. Returns False if the attribute was already
    patched for this flavour (or does not exist).
    """
    key = (id(owner), name, flavor)
    with _lock:
        if key in _installed or not hasattr(owner, name):
            return False
        _installed.add(key)

    def switch(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Any:
        if not options.is_enabled(flavor):
            return wrapped(*args, **kwargs)
        return wrapper(wrapped, instance, args, kwargs)

    wrapt.wrap_function_wrapper(owner, name, switch)
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
