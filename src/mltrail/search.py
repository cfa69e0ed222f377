"""Run search for stores that evaluate it themselves: MLflow's filter grammar and order_by.

A tracking server does this work on its side; a local file store has only a list of runs,
so it parses the same filter strings and order_by items here and applies them in Python.
Errors point at the offending token with its position and a caret, because filter strings
are typed by hand and a bare "syntax error" leaves the user guessing.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple, NoReturn

from mltrail.entities import Run
from mltrail.exceptions import FilterSyntaxError

__all__ = ["Clause", "OrderKey", "matches", "parse_filter", "parse_order_by", "search", "sort_runs"]

_ENTITY_TYPES = {
    **dict.fromkeys(["metric", "metrics"], "metric"),
    **dict.fromkeys(["param", "params", "parameter", "parameters"], "param"),
    **dict.fromkeys(["tag", "tags"], "tag"),
    **dict.fromkeys(["attribute", "attributes", "attr", "run"], "attribute"),
    **dict.fromkeys(["dataset", "datasets"], "dataset"),
}
_STRING_ATTRIBUTES = {"run_id", "run_name", "status", "artifact_uri", "user_id", "lifecycle_stage"}
_NUMERIC_ATTRIBUTES = {"start_time", "end_time"}
_ATTRIBUTE_ALIASES = {"created": "start_time"}
_ORDER_KINDS = ("metric", "param", "tag", "attribute")  # datasets can filter, not sort
_DATASET_KEYS = {"name", "digest", "context"}
_DATASET_CONTEXT_TAG = "mlflow.data.context"

_NUMERIC_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_STRING_COMPARATORS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
_NULL_COMPARATORS = ("IS NULL", "IS NOT NULL")

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
    | (?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_\-./:]*)
    | (?P<squote>'[^']*')
    | (?P<dquote>"[^"]*")
    | (?P<bquote>`[^`]*`)
    | (?P<op>!=|<=|>=|=|<|>)
    | (?P<punct>[(),])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Clause:
    """One `<entity> <comparator> <value>` condition; a filter is the AND of its clauses.

    Attributes:
        kind: "metric", "param", "tag", "attribute" or "dataset".
        key: the metric/param/tag name, attribute name, or dataset field.
        comparator: upper-case, e.g. "<=", "LIKE", "NOT IN", "IS NULL".
        value: a float for numeric comparisons, a str, a tuple of str for IN / NOT IN,
            or None for IS [NOT] NULL.
    """

    kind: str
    key: str
    comparator: str
    value: float | str | tuple[str, ...] | None


@dataclass(frozen=True)
class OrderKey:
    """One order_by item: what to sort on and in which direction."""

    kind: str
    key: str
    ascending: bool = True


class _Token(NamedTuple):
    kind: str  # a _TOKEN_RE group name, or "end"
    text: str
    pos: int


def _tokenize(text: str, label: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            rest = text[pos:]
            if rest[0] in "'\"`":
                _fail(label, text, _Token("bad", rest, pos), "unterminated string", "missing quote")
            hint = f"not part of the {label} syntax"
            _fail(label, text, _Token("bad", rest[0], pos), "unexpected character", hint)
        assert m.lastgroup is not None
        if m.lastgroup != "ws":
            tokens.append(_Token(m.lastgroup, m.group(), pos))
        pos = m.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _fail(label: str, text: str, tok: _Token, problem: str, hint: str) -> NoReturn:
    what = f"unexpected end of {label}" if tok.kind == "end" else f"{problem} {tok.text!r}"
    shown = re.sub(r"\s", " ", text)
    message = f"Invalid {label}: {what} at position {tok.pos} ({hint})\n  {shown}\n  "
    raise FilterSyntaxError(message + " " * tok.pos + "^", position=tok.pos)


class _Parser:
    """Walks the tokens of one filter or order_by item, failing with a pointed message."""

    def __init__(self, text: str, label: str) -> None:
        self.text, self.label = text, label
        self.tokens = _tokenize(text, label)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        tok = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def fail(self, tok: _Token, hint: str, problem: str = "unexpected token") -> NoReturn:
        _fail(self.label, self.text, tok, problem, hint)

    def keyword(self) -> str:
        tok = self.peek()
        return tok.text.upper() if tok.kind == "ident" else ""

    def entity(self) -> tuple[_Token, str, str | None]:
        """Read `<type>.<key>`; returns (token, type, key), key None when there is no dot."""
        tok = self.next()
        if tok.kind != "ident":
            self.fail(tok, "expected an entity such as metrics.rmse")
        type_name, dot, key = tok.text.partition(".")
        quoted = self.peek()
        glued = quoted.pos == tok.pos + len(tok.text)  # `metrics.` directly before a quote
        if dot and not key and glued and quoted.kind in ("bquote", "dquote"):
            self.next()
            key = quoted.text[1:-1]
        return tok, type_name, key if dot else None

    def check_entity(
        self, tok: _Token, type_name: str, key: str | None, kinds: tuple[str, ...]
    ) -> Clause:
        """Resolve type aliases and known attribute names; `kinds` lists the allowed kinds."""
        if key is None:  # a bare name is an attribute, as in MLflow: `status = 'FINISHED'`
            type_name, key = "attributes", type_name
        kind = _ENTITY_TYPES.get(type_name.lower())
        if kind is None or kind not in kinds:
            allowed = ", ".join(f"{k}s" for k in kinds)
            self.fail(tok, f"entity type must be one of: {allowed}", "invalid entity")
        if not key:
            self.fail(tok, "missing key after the dot", "invalid entity")
        if kind == "attribute":
            key = _ATTRIBUTE_ALIASES.get(key, key)
            if key not in _STRING_ATTRIBUTES | _NUMERIC_ATTRIBUTES:
                known = ", ".join(sorted(_STRING_ATTRIBUTES | _NUMERIC_ATTRIBUTES))
                self.fail(tok, f"known attributes: {known}; other keys take a type, "
                               "e.g. metrics.rmse", "unknown attribute")
        if kind == "dataset" and key not in _DATASET_KEYS:
            self.fail(tok, "dataset keys are name, digest and context", "unknown dataset key")
        return Clause(kind, key, "", None)

    def comparator(self) -> tuple[_Token, str]:
        tok = self.next()
        word = tok.text.upper() if tok.kind == "ident" else ""
        if tok.kind == "op":
            return tok, tok.text
        if word in ("LIKE", "ILIKE", "IN"):
            return tok, word
        if word == "NOT":
            if self.keyword() != "IN":
                self.fail(self.peek(), "expected IN after NOT")
            self.next()
            return tok, "NOT IN"
        if word == "IS":
            negate = self.keyword() == "NOT"
            if negate:
                self.next()
            if self.keyword() != "NULL":
                self.fail(self.peek(), "expected NULL")
            self.next()
            return tok, "IS NOT NULL" if negate else "IS NULL"
        self.fail(tok, "expected a comparator")

    def string_list(self) -> tuple[str, ...]:
        if self.peek().text != "(":
            self.fail(self.peek(), "expected a parenthesized list like ('a', 'b')")
        self.next()
        items: list[str] = []
        while True:
            tok = self.next()
            if tok.kind not in ("squote", "dquote"):
                self.fail(tok, "expected a quoted string")
            items.append(tok.text[1:-1])
            sep = self.next()
            if sep.text == ")":
                return tuple(items)
            if sep.text != ",":
                self.fail(sep, "expected ',' or ')'")

    def clause(self) -> Clause:
        ent_tok, type_name, key = self.entity()
        comp_tok, comparator = self.comparator()
        base = self.check_entity(ent_tok, type_name, key, (*_ORDER_KINDS, "dataset"))
        numeric = base.kind == "metric" or base.key in _NUMERIC_ATTRIBUTES
        allowed = tuple(_NUMERIC_OPS) if numeric else _STRING_COMPARATORS
        if base.kind in ("metric", "param", "tag"):
            allowed += _NULL_COMPARATORS
        if comparator not in allowed:
            hint = f"{ent_tok.text} allows {', '.join(allowed)}"
            self.fail(comp_tok, hint, "invalid comparator")
        value: float | str | tuple[str, ...] | None = None
        if comparator in ("IN", "NOT IN"):
            value = self.string_list()
        elif comparator not in _NULL_COMPARATORS:
            tok = self.next()
            if numeric and tok.kind != "number":
                self.fail(tok, f"expected a number to compare {ent_tok.text} with")
            if not numeric and tok.kind not in ("squote", "dquote"):
                self.fail(tok, f"expected a quoted string to compare {ent_tok.text} with")
            value = float(tok.text) if numeric else tok.text[1:-1]
        return Clause(base.kind, base.key, comparator, value)


def parse_filter(filter_string: str | None) -> list[Clause]:
    """Parse an MLflow search filter into clauses, so a bad filter fails before any run is read.

    Args:
        filter_string: e.g. ``"metrics.rmse < 0.5 and params.model = 'rf'"``; None or blank
            means no filter.

    Returns:
        The clauses, all of which a run must satisfy.

    Raises:
        FilterSyntaxError: the filter is malformed; the message shows where.
    """
    if not filter_string or not filter_string.strip():
        return []
    parser = _Parser(filter_string, "filter")
    clauses = [parser.clause()]
    while (tok := parser.peek()).kind != "end":
        word = parser.keyword()
        if word == "OR":
            parser.fail(tok, "only AND is supported between clauses", "unsupported operator")
        if word != "AND":
            parser.fail(tok, "expected AND or the end of the filter")
        parser.next()
        clauses.append(parser.clause())
    return clauses


def _run_values(run: Run, kind: str, key: str) -> list[Any]:
    """The run's value(s) for an entity; [None] when missing. Datasets may give several."""
    if kind == "metric":
        return [run.data.metrics.get(key)]
    if kind == "param":
        return [run.data.params.get(key)]
    if kind == "tag":
        return [run.data.tags.get(key)]
    if kind == "attribute":
        return [getattr(run.info, key)]
    values = []
    for dataset_input in run.inputs.dataset_inputs:
        if key == "context":
            tags = {t.key: t.value for t in dataset_input.tags}
            values.append(tags.get(_DATASET_CONTEXT_TAG))
        else:
            values.append(getattr(dataset_input.dataset, key))
    return values


@lru_cache(maxsize=256)
def _like_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _compare(actual: Any, clause: Clause) -> bool:
    comparator, value = clause.comparator, clause.value
    if comparator in _NULL_COMPARATORS:
        return (actual is None) == (comparator == "IS NULL")
    if actual is None:
        return False
    if comparator in ("IN", "NOT IN"):
        assert isinstance(value, tuple)
        return (actual in value) == (comparator == "IN")
    if comparator in ("LIKE", "ILIKE"):
        assert isinstance(value, str)
        return _like_regex(value, comparator == "ILIKE").fullmatch(str(actual)) is not None
    return _NUMERIC_OPS[comparator](actual, value)


def matches(run: Run, clauses: list[Clause]) -> bool:
    """Whether a run satisfies every clause (an empty list matches every run).

    A missing metric, param, tag or unset end_time matches only ``IS NULL``; a dataset
    clause holds when any of the run's dataset inputs satisfies it.
    """
    return all(any(_compare(v, c) for v in _run_values(run, c.kind, c.key)) for c in clauses)


def parse_order_by(order_by: list[str] | None) -> list[OrderKey]:
    """Parse order_by items like ``"metrics.rmse DESC"`` up front so a typo fails loudly.

    Args:
        order_by: items ``<type>.<key> [ASC|DESC]``; a bare name is an attribute, as
            in MLflow (``start_time DESC`` is ``attributes.start_time DESC``).

    Returns:
        One OrderKey per item, most significant first.

    Raises:
        FilterSyntaxError: an item is malformed; the message shows where.
    """
    keys: list[OrderKey] = []
    for item in order_by or []:
        parser = _Parser(item, "order_by")
        ent_tok, type_name, key = parser.entity()
        base = parser.check_entity(ent_tok, type_name, key, _ORDER_KINDS)
        ascending = True
        if parser.keyword() in ("ASC", "DESC"):
            ascending = parser.next().text.upper() == "ASC"
        if parser.peek().kind != "end":
            parser.fail(parser.peek(), "expected ASC, DESC or the end of the item")
        keys.append(OrderKey(base.kind, base.key, ascending))
    return keys


# MLflow's own order after (or instead of) the user's keys: newest first, then by run id.
_TIE_BREAKERS = [OrderKey("attribute", "start_time", False), OrderKey("attribute", "run_id")]


def _sorted(runs: list[Run], keys: list[OrderKey]) -> list[Run]:
    # Sort by the least significant key first; each pass is stable, so earlier passes
    # survive as tie-breakers. Missing values go last in both directions, NaN just before.
    for key in reversed(keys + _TIE_BREAKERS):
        present, nans, missing = [], [], []
        for run in runs:
            value = _run_values(run, key.kind, key.key)[0]
            if value is None:
                missing.append(run)
            elif isinstance(value, float) and math.isnan(value):
                nans.append(run)
            else:
                present.append((value, run))
        present.sort(key=lambda pair: pair[0], reverse=not key.ascending)
        runs = [run for _, run in present] + nans + missing
    return runs


def sort_runs(runs: list[Run], order_by: list[str] | None) -> list[Run]:
    """Order runs as an MLflow server would, so local and remote searches agree.

    Args:
        runs: the runs to order (not modified).
        order_by: items as for `parse_order_by`; empty or None gives MLflow's default,
            newest start_time first, then run_id.

    Returns:
        A new, sorted list. Ties on the given keys fall back to the default order.
    """
    return _sorted(list(runs), parse_order_by(order_by))


def search(runs: Iterable[Run], filter_string: str | None, order_by: list[str] | None) -> list[Run]:
    """Filter then sort runs; both arguments are parsed before `runs` is consumed.

    Args:
        runs: candidate runs, e.g. every run of the searched experiments.
        filter_string: an MLflow filter, or None/blank for all runs.
        order_by: order_by items, or None for MLflow's default order.

    Returns:
        The matching runs in order.

    Raises:
        FilterSyntaxError: the filter or an order_by item is malformed.
    """
    clauses = parse_filter(filter_string)
    keys = parse_order_by(order_by)
    return _sorted([run for run in runs if matches(run, clauses)], keys)
