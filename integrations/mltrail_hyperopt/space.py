"""Readable names and values for a hyperopt search: its space, its points, its algorithm.

A search space is a pyll graph. Each hyperparameter is a `hyperopt_param(label,
distribution)` node, wrapped by the `hp.*` helpers in `float(...)`, `int(...)` or,
for `hp.choice`/`hp.pchoice`, a `switch(...)` over the options. The space is
described one param per label (`scope.int(hp.quniform(4, 100, 1))`), plus one
per constant of its dict structure. A sampled point, the value the objective
receives, is flattened by its dict keys (`classifier.C`), so the names match
what users log themselves with `log_params(point)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from hyperopt import pyll

PARAM = "hyperopt_param"
_WRAPPERS = ("float", "int")
_BAD_KEY_CHARS = re.compile(r"[^\w.\- :/]")


def clean_key(key: str) -> str:
    """`key` with the characters a tracking server refuses in a key replaced by `_`."""
    key = _BAD_KEY_CHARS.sub("_", key).replace("..", "_.")
    return key.lstrip("/") or "_"


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class SpaceInfo:
    """What the integration needs to know about one space, computed once per search.

    Attributes:
        root: the space as a pyll node.
        label_roots: for each label, the node that stands for the hyperparameter
            (the `hyperopt_param` node with its `float`/`int` wrappers, or the
            `switch` of a choice).
    """

    def __init__(self, space: Any) -> None:
        self.root: pyll.Apply = pyll.as_apply(space)
        nodes = pyll.dfs(self.root)
        clients: dict[int, list[pyll.Apply]] = {}
        for node in nodes:
            for child in node.inputs():
                clients.setdefault(id(child), []).append(node)
        self.label_roots: dict[str, pyll.Apply] = {}
        for node in nodes:
            if node.name == PARAM:
                self.label_roots[_label(node)] = _climb(node, clients)
        self._labels_by_root = {id(node): label for label, node in self.label_roots.items()}
        self._has_param: dict[int, bool] = {}
        for node in nodes:  # dfs lists inputs before the nodes that use them
            self._has_param[id(node)] = node.name == PARAM or any(
                self._has_param.get(id(child), False) for child in node.inputs()
            )

    def label_of(self, node: pyll.Apply | None) -> str | None:
        """The label a node stands for, if it is a hyperparameter's root node."""
        return None if node is None else self._labels_by_root.get(id(node))

    def describe(self) -> dict[str, Any]:
        """One `space.<label>` param per hyperparameter, one `space.<path>` per constant."""
        described: dict[str, Any] = {}
        for label, node in self.label_roots.items():
            described[clean_key(f"space.{label}")] = self._render(node, owner=label)
        for path, value in self._constants(self.root, ""):
            described.setdefault(clean_key(f"space.{path or 'value'}"), value)
        return described

    def _constants(self, node: pyll.Apply, path: str) -> Iterable[tuple[str, Any]]:
        if node.name == "dict" and not node.pos_args and node.named_args:
            for key, child in node.named_args:  # by path, as trial params are flattened
                yield from self._constants(child, join(path, str(key)))
        elif not self._has_param[id(node)]:
            yield path, node.obj if isinstance(node, pyll.Literal) else self._render(node, None)
        elif node.name == "pos_args" and self.label_of(node) is None:
            for index, child in enumerate(node.pos_args):
                yield from self._constants(child, join(path, str(index)))
        # any other node holding hyperparameters is described through their labels

    def _render(self, node: pyll.Apply, owner: str | None) -> str:
        """Source-like text for a node; other hyperparameters appear by their label."""
        label = self.label_of(node)
        if label is not None and label != owner:
            return label
        if isinstance(node, pyll.Literal):
            return repr(node.obj)
        name = node.name
        if name == PARAM:
            return self._call(f"hp.{node.arg['obj'].name}", node.arg["obj"], owner)
        if name == "switch" and node.pos_args and node.pos_args[0].name == PARAM:
            return self._render_choice(node, owner)
        if name in _WRAPPERS and len(node.pos_args) == 1 and not node.named_args:
            inner = node.pos_args[0]
            if name == "float" or _is_param(inner, "randint"):
                return self._render(inner, owner)  # hp.* adds these itself
            return f"scope.int({self._render(inner, owner)})"
        if name == "dict" and not node.pos_args:
            items = ", ".join(f"{k!r}: {self._render(v, owner)}" for k, v in node.named_args)
            return "{" + items + "}"
        if name == "pos_args":
            items = ", ".join(self._render(v, owner) for v in node.pos_args)
            return (
                f"({items}{',' if len(node.pos_args) == 1 else ''})"
                if node.o_len is not None
                else f"[{items}]"
            )
        return self._call(f"scope.{name}", node, owner)

    def _render_choice(self, node: pyll.Apply, owner: str | None) -> str:
        options = [self._render(option, owner) for option in node.pos_args[1:]]
        dist = node.pos_args[0].arg["obj"]
        if dist.name == "categorical" and dist.pos_args and dist.pos_args[0].name == "pos_args":
            probs = [self._render(p, owner) for p in dist.pos_args[0].pos_args]
            pairs = ", ".join(f"({p}, {o})" for p, o in zip(probs, options, strict=False))
            return f"hp.pchoice([{pairs}])"
        return f"hp.choice([{', '.join(options)}])"

    def _call(self, func: str, node: pyll.Apply, owner: str | None) -> str:
        args = [self._render(a, owner) for a in node.pos_args]
        args += [f"{k}={self._render(v, owner)}" for k, v in node.named_args]
        return f"{func}({', '.join(args)})"

    def flatten(self, point: Any, prefix: str = "") -> dict[str, Any]:
        """A point as flat params: dict keys joined by dots, the values as they are.

        A value that is not a dict is named by its hyperparameter's label (so a
        space that is one `hp.uniform('x', ...)` gives `x`), and lists of plain
        values stay one param. Values are kept as the objective got them (an
        `int` stays an int), so their text is what `log_params(point)` writes.
        """
        out: dict[str, Any] = {}
        self._flatten(point, self.root, prefix, out)
        return out

    def _flatten(self, value: Any, node: pyll.Apply | None, name: str, out: dict[str, Any]) -> None:
        if isinstance(value, dict) and value:
            children = dict(node.named_args) if node is not None and node.name == "dict" else {}
            for key, item in value.items():
                self._flatten(item, children.get(key), join(name, str(key)), out)
            return
        items = _sequence_nodes(node, value)
        if (
            isinstance(value, (list, tuple))
            and value
            and (
                any(isinstance(v, (dict, list, tuple)) for v in value)
                or any(self.label_of(n) for n in items)
            )
        ):
            for index, (item, child) in enumerate(zip(value, items, strict=False)):
                self._flatten(item, child, join(name, self.label_of(child) or str(index)), out)
            return
        label = self.label_of(node)
        key = name or label or "point"
        out[clean_key(key)] = value


def _label(node: pyll.Apply) -> str:
    return str(node.arg["label"].obj)


def _is_param(node: pyll.Apply, dist: str) -> bool:
    return node.name == PARAM and node.arg["obj"].name == dist


def _climb(node: pyll.Apply, clients: dict[int, list[pyll.Apply]]) -> pyll.Apply:
    """From a hyperopt_param node up to the node that stands for the hyperparameter."""
    users = clients.get(id(node), [])
    if len(users) == 1 and users[0].name == "switch" and users[0].pos_args[0] is node:
        return users[0]
    while len(users) == 1 and users[0].name in _WRAPPERS and len(users[0].pos_args) == 1:
        node = users[0]
        users = clients.get(id(node), [])
    return node


def _sequence_nodes(node: pyll.Apply | None, value: Any) -> list[pyll.Apply | None]:
    if (
        node is not None
        and node.name == "pos_args"
        and isinstance(value, (list, tuple))
        and len(node.pos_args) == len(value)
    ):
        return list(node.pos_args)
    return [None] * (len(value) if isinstance(value, (list, tuple)) else 0)


def qualified_name(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None) or ""
    name = getattr(func, "__qualname__", None) or type(func).__name__
    return f"{module}.{name}" if module else name


def algo_params(algo: Any) -> dict[str, Any]:
    """`algo` as `tpe`, `rand`, `anneal`, `atpe`, `mix`, with a partial's keywords."""
    keywords: dict[str, Any] = {}
    while isinstance(algo, partial):
        keywords = {**algo.keywords, **keywords}
        algo = algo.func
    module = getattr(algo, "__module__", "") or ""
    if module.startswith("hyperopt.") and getattr(algo, "__name__", "") == "suggest":
        name = module.rsplit(".", 1)[1]
    else:
        name = qualified_name(algo)
    params = {"algo": name}
    params.update({clean_key(f"algo.{k}"): _algo_value(v) for k, v in keywords.items()})
    return params


def _algo_value(value: Any) -> Any:
    return qualified_name(value) if callable(value) else value


def rstate_params(rstate: Any) -> dict[str, Any]:
    """The seed of a numpy Generator, when the seed alone reproduces it.

    hyperopt draws one seed per suggestion from `rstate`. A Generator still in
    the state its seed gave it (hyperopt's default, `default_rng()`, included)
    is logged as `rstate_seed`: `np.random.default_rng(seed)` replays the
    search. One already drawn from cannot be rebuilt from its seed, so only its
    kind and origin are logged, as `rstate`.
    """
    bit_generator = getattr(rstate, "bit_generator", None)
    seed_seq = getattr(bit_generator, "seed_seq", None)
    entropy = getattr(seed_seq, "entropy", None)
    kind = f"{type(rstate).__name__}({type(bit_generator).__name__})"
    if bit_generator is None or not isinstance(entropy, int) or getattr(seed_seq, "spawn_key", ()):
        return {"rstate": kind}
    try:
        fresh = type(bit_generator)(seed_seq).state == bit_generator.state
    except Exception:  # an exotic bit generator that cannot be rebuilt from its seed
        fresh = False
    if fresh:
        return {"rstate_seed": entropy}
    return {"rstate": f"{kind} seeded with {entropy}, already drawn from"}
