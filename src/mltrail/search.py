"""MLflow's search grammar, in one place: filter strings and order_by items for runs,
registered models and model versions.

A tracking server evaluates these strings on its side; the local store and the local
registry hold their entries in memory, so they parse the same strings here and apply
them in Python. Each searchable thing is described by a `Grammar`: which entity types,
attributes and comparators it accepts, how a value is read off an entry, and the order
ties fall back to. The facts follow what an MLflow server accepts (not only what its
documentation says), so a filter that works against a server works locally and a filter
a server refuses is refused here too. Errors point at the offending token with its
position and a caret, because filter strings are typed by hand.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple, NoReturn

from mltrail.exceptions import FilterSyntaxError

__all__ = [
    "MODEL_VERSIONS",
    "REGISTERED_MODELS",
    "RUNS",
    "Clause",
    "Grammar",
    "OrderKey",
    "Query",
    "matches",
    "parse_filter",
    "parse_order_by",
    "search",
]

Value = float | str | tuple[str, ...] | None

_NUMERIC_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_STRING_OPS = ("=", "!=", "LIKE", "ILIKE")
_LIST_OPS = ("IN", "NOT IN")
_NULL_OPS = ("IS NULL", "IS NOT NULL")

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
_STRINGS = ("squote", "dquote")  # a value in either quote style, as a server accepts


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
    value: Value


@dataclass(frozen=True)
class OrderKey:
    """One order_by item: what to sort on and in which direction."""

    kind: str
    key: str
    ascending: bool = True


Reader = Callable[[Any], Any]


@dataclass(frozen=True)
class Grammar:
    """What one search endpoint accepts, and how it reads values off its entries.

    Attributes:
        name: what is searched, for messages ("runs", "model versions").
        entity_types: prefix -> kind, e.g. "metrics" -> "metric"; a bare name is an attribute.
        string_attributes: attributes compared as strings.
        numeric_attributes: attributes compared as numbers.
        list_attributes: the attributes that take IN / NOT IN.
        quoted_numbers: numeric attributes that also take a quoted number ('2').
        null_kinds: the kinds that take IS NULL / IS NOT NULL.
        aliases: other spellings of attributes (MLflow's "created" is start_time).
        order_kinds: the kinds order_by may name.
        order_attributes: the attributes order_by may name.
        order_prefixes: whether order_by items may carry an entity prefix.
        tie_breakers: the order after the user's keys, as the server's.
        default_order: the order before the tie-breakers when order_by is empty.
        reader: (kind, key) -> a function reading that value off an entry (None if absent).
        many: kinds whose reader gives several values; a clause holds if any does.
    """

    name: str
    entity_types: dict[str, str]
    string_attributes: frozenset[str]
    numeric_attributes: frozenset[str]
    list_attributes: frozenset[str]
    null_kinds: frozenset[str]
    order_kinds: tuple[str, ...]
    order_attributes: frozenset[str]
    tie_breakers: tuple[OrderKey, ...]
    reader: Callable[[str, str], Reader]
    default_order: tuple[OrderKey, ...] = ()
    quoted_numbers: frozenset[str] = frozenset()
    aliases: dict[str, str] = field(default_factory=dict)
    order_prefixes: bool = True
    many: frozenset[str] = frozenset()

    def comparators(self, kind: str, key: str) -> tuple[str, ...]:
        """The comparators a `kind.key` clause may use."""
        if kind == "metric" or (kind == "attribute" and key in self.numeric_attributes):
            return tuple(_NUMERIC_OPS)
        allowed = _STRING_OPS
        if kind == "dataset" or (kind == "attribute" and key in self.list_attributes):
            allowed += _LIST_OPS
        if kind in self.null_kinds:
            allowed += _NULL_OPS
        return allowed


# --- tokens and parsing -------------------------------------------------------------------


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


def _one_of(words: Iterable[str]) -> str:
    return ", ".join(sorted(words))


class _Parser:
    """Walks the tokens of one filter or order_by item, failing with a pointed message."""

    def __init__(self, text: str, label: str, grammar: Grammar) -> None:
        self.text, self.label, self.grammar = text, label, grammar
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

    def entity(self, kinds: tuple[str, ...], prefixes: bool = True) -> tuple[_Token, str, str]:
        """Read `<type>.<key>`, `<type>.\\`<key>\\``, a bare attribute or a \\`bare one\\`.

        Returns the token (for messages), the kind and the key, with aliases resolved.
        """
        tok = self.next()
        if tok.kind == "bquote":  # `Run name` = 'x'
            type_name, key, dotted = "", tok.text[1:-1], False
        elif tok.kind == "ident":
            type_name, dot, key = tok.text.partition(".")
            dotted = bool(dot)
            quoted = self.peek()
            glued = quoted.pos == tok.pos + len(tok.text)  # `metrics.` directly before a quote
            if dotted and not key and glued and quoted.kind in ("bquote", "dquote"):
                self.next()
                key = quoted.text[1:-1]
            elif not dotted:
                key = type_name
        else:
            self.fail(tok, "expected an entity such as metrics.rmse or a quoted `key`")
        grammar = self.grammar
        if not dotted:  # a bare name is an attribute, as in MLflow: `status = 'FINISHED'`
            kind = "attribute"
        else:
            found = grammar.entity_types.get(type_name) if prefixes else None
            if found is None or found not in kinds:
                allowed = [p for p, k in grammar.entity_types.items() if k in kinds]
                hint = (
                    f"entity type must be one of: {_one_of(allowed)}"
                    if prefixes
                    else "order by an attribute name alone, e.g. name DESC"
                )
                self.fail(tok, hint, "invalid entity")
            kind = found
        if not key:
            self.fail(tok, "missing key after the dot", "invalid entity")
        if kind == "attribute":
            key = grammar.aliases.get(key, key)
            known = (
                grammar.order_attributes
                if self.label == "order_by"
                else grammar.string_attributes | grammar.numeric_attributes
            )
            if key not in known:
                hint = f"{grammar.name} attributes are {_one_of(known)}"
                if "metric" in kinds:
                    hint += "; other keys take a type, e.g. metrics.rmse"
                self.fail(tok, hint, "unknown attribute")
        if kind == "dataset" and key not in ("name", "digest", "context"):
            self.fail(tok, "dataset keys are name, digest and context", "unknown dataset key")
        return tok, kind, key

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
            if tok.kind not in _STRINGS:
                self.fail(tok, "expected a quoted string")
            items.append(tok.text[1:-1])
            sep = self.next()
            if sep.text == ")":
                return tuple(items)
            if sep.text != ",":
                self.fail(sep, "expected ',' or ')'")

    def value(self, ent_tok: _Token, kind: str, key: str, comparator: str) -> Value:
        if comparator in _LIST_OPS:
            return self.string_list()
        if comparator in _NULL_OPS:
            return None
        tok = self.next()
        numeric = kind == "metric" or key in self.grammar.numeric_attributes
        if numeric and tok.kind == "number":
            return float(tok.text)
        if numeric and key in self.grammar.quoted_numbers and tok.kind in _STRINGS:
            try:
                return float(tok.text[1:-1])
            except ValueError:
                pass
        if numeric:
            self.fail(tok, f"expected a number to compare {ent_tok.text} with")
        if tok.kind not in _STRINGS:
            self.fail(tok, f"expected a quoted string to compare {ent_tok.text} with")
        return tok.text[1:-1]

    def clause(self) -> Clause:
        kinds = tuple(dict.fromkeys(self.grammar.entity_types.values()))
        ent_tok, kind, key = self.entity(kinds)
        comp_tok, comparator = self.comparator()
        allowed = self.grammar.comparators(kind, key)
        if comparator not in allowed:
            hint = f"{ent_tok.text} allows {', '.join(allowed)}"
            self.fail(comp_tok, hint, "invalid comparator")
        return Clause(kind, key, comparator, self.value(ent_tok, kind, key, comparator))


def parse_filter(filter_string: str | None, grammar: Grammar | None = None) -> list[Clause]:
    """Parse a search filter into clauses, so a bad filter fails before any entry is read.

    Args:
        filter_string: e.g. ``"metrics.rmse < 0.5 and params.model = 'rf'"``; None or blank
            means no filter. A trailing AND is ignored, as an MLflow server ignores it.
        grammar: what is searched; RUNS when not given.

    Returns:
        The clauses, all of which an entry must satisfy.

    Raises:
        FilterSyntaxError: the filter is malformed; the message shows where.
    """
    if not filter_string or not filter_string.strip():
        return []
    parser = _Parser(filter_string, "filter", grammar or RUNS)
    clauses = [parser.clause()]
    while (tok := parser.peek()).kind != "end":
        word = parser.keyword()
        if word == "OR":
            parser.fail(tok, "only AND is supported between clauses", "unsupported operator")
        if word != "AND":
            parser.fail(tok, "expected AND or the end of the filter")
        parser.next()
        if parser.peek().kind != "end":
            clauses.append(parser.clause())
    return clauses


def parse_order_by(
    order_by: Sequence[str] | None, grammar: Grammar | None = None
) -> list[OrderKey]:
    """Parse order_by items like ``"metrics.rmse DESC"`` up front so a typo fails loudly.

    Args:
        order_by: items ``<key> [ASC|DESC]``; for runs a bare name is an attribute, as in
            MLflow (``start_time DESC`` is ``attributes.start_time DESC``).
        grammar: what is searched; RUNS when not given.

    Returns:
        One OrderKey per item, most significant first.

    Raises:
        FilterSyntaxError: an item is malformed or names a key twice where a server
            refuses that; the message shows where.
    """
    grammar = grammar or RUNS
    keys: list[OrderKey] = []
    for item in order_by or []:
        parser = _Parser(item, "order_by", grammar)
        tok, kind, key = parser.entity(grammar.order_kinds, grammar.order_prefixes)
        ascending = True
        if parser.keyword() in ("ASC", "DESC"):
            ascending = parser.next().text.upper() == "ASC"
        if parser.peek().kind != "end":
            parser.fail(parser.peek(), "expected ASC, DESC or the end of the item")
        if not grammar.order_prefixes and any(k.key == key for k in keys):
            parser.fail(tok, f"{key} is already in the order_by list", "duplicate key")
        keys.append(OrderKey(kind, key, ascending))
    return keys


# --- evaluation ---------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _like_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _test(clause: Clause) -> Callable[[Any], bool]:
    """A predicate on one value; an absent value (None) satisfies only IS NULL."""
    comparator, value = clause.comparator, clause.value
    if comparator == "IS NULL":
        return lambda v: v is None
    if comparator == "IS NOT NULL":
        return lambda v: v is not None
    if comparator in _LIST_OPS:
        members = frozenset(value or ())
        if comparator == "IN":
            return lambda v: v is not None and v in members
        return lambda v: v is not None and v not in members
    if comparator in ("LIKE", "ILIKE"):
        fullmatch = _like_regex(str(value), comparator == "ILIKE").fullmatch
        return lambda v: v is not None and fullmatch(str(v)) is not None
    op = _NUMERIC_OPS[comparator]
    return lambda v: v is not None and op(v, value)


def _compile(clauses: list[Clause], grammar: Grammar) -> Callable[[Any], bool]:
    tests = [(grammar.reader(c.kind, c.key), c.kind in grammar.many, _test(c)) for c in clauses]

    def accepts(entry: Any) -> bool:
        for read, many, test in tests:
            value = read(entry)
            if not (any(map(test, value)) if many else test(value)):
                return False
        return True

    return accepts


def _sorted(entries: list[Any], keys: Sequence[OrderKey], grammar: Grammar) -> list[Any]:
    # Sort by the least significant key first; each pass is stable, so earlier passes
    # survive as tie-breakers. Missing values go last in both directions, NaN just before.
    keys = keys or grammar.default_order
    named = {(k.kind, k.key) for k in keys}
    chain = [*keys, *(k for k in grammar.tie_breakers if (k.kind, k.key) not in named)]
    for key in reversed(chain):
        read = grammar.reader(key.kind, key.key)
        present, nans, missing = [], [], []
        for entry in entries:
            value = read(entry)
            if value is None:
                missing.append(entry)
            elif isinstance(value, float) and math.isnan(value):
                nans.append(entry)
            else:
                present.append((value, entry))
        present.sort(key=lambda pair: pair[0], reverse=not key.ascending)
        entries = [entry for _, entry in present] + nans + missing
    return entries


class Query:
    """A parsed filter and order_by, ready to test entries and order the ones kept.

    Parsing happens here, before any entry is read, so a malformed filter fails fast.
    """

    def __init__(
        self,
        filter_string: str | None,
        order_by: Sequence[str] | None,
        grammar: Grammar | None = None,
    ) -> None:
        self.grammar = grammar or RUNS
        self.clauses = parse_filter(filter_string, self.grammar)
        self.order_keys = parse_order_by(order_by, self.grammar)
        self.accepts: Callable[[Any], bool] = _compile(self.clauses, self.grammar)

    def order(self, entries: Iterable[Any]) -> list[Any]:
        """A new list of `entries` in order_by order, ties in the server's default order."""
        return _sorted(list(entries), self.order_keys, self.grammar)


def matches(entry: Any, clauses: list[Clause], grammar: Grammar | None = None) -> bool:
    """Whether an entry satisfies every clause (an empty list matches every entry).

    A missing metric, param, tag or unset end_time matches only ``IS NULL``; a dataset
    clause holds when any of the run's dataset inputs satisfies it.
    """
    return _compile(clauses, grammar or RUNS)(entry)


def search(
    entries: Iterable[Any],
    filter_string: str | None,
    order_by: Sequence[str] | None,
    grammar: Grammar | None = None,
) -> list[Any]:
    """Filter then sort entries; both arguments are parsed before `entries` is consumed.

    Raises:
        FilterSyntaxError: the filter or an order_by item is malformed.
    """
    query = Query(filter_string, order_by, grammar)
    return query.order(e for e in entries if query.accepts(e))


# --- the three grammars -------------------------------------------------------------------

_DATASET_CONTEXT_TAG = "mlflow.data.context"


def _run_reader(kind: str, key: str) -> Reader:
    if kind == "metric":
        return lambda run: run.data.metrics.get(key)
    if kind == "param":
        return lambda run: run.data.params.get(key)
    if kind == "tag":
        return lambda run: run.data.tags.get(key)
    if kind == "attribute":
        return lambda run: getattr(run.info, key)
    if key == "context":
        return lambda run: [
            next((t.value for t in d.tags if t.key == _DATASET_CONTEXT_TAG), None)
            for d in run.inputs.dataset_inputs
        ]
    return lambda run: [getattr(d.dataset, key) for d in run.inputs.dataset_inputs]


_RUN_ATTRIBUTES = frozenset({"run_id", "run_name", "status", "artifact_uri", "user_id"})
_RUN_TIMES = frozenset({"start_time", "end_time"})

RUNS = Grammar(
    name="run",
    entity_types={
        **dict.fromkeys(["metric", "metrics"], "metric"),
        **dict.fromkeys(["param", "params", "parameter", "parameters"], "param"),
        **dict.fromkeys(["tag", "tags"], "tag"),
        **dict.fromkeys(["attribute", "attributes", "attr", "run"], "attribute"),
        **dict.fromkeys(["dataset", "datasets"], "dataset"),
    },
    string_attributes=_RUN_ATTRIBUTES,
    numeric_attributes=_RUN_TIMES,
    list_attributes=frozenset({"run_id"}),
    null_kinds=frozenset({"param", "tag"}),
    aliases={
        **dict.fromkeys(["created", "Created"], "start_time"),
        **dict.fromkeys(["run name", "Run name", "Run Name"], "run_name"),
    },
    order_kinds=("metric", "param", "tag", "attribute"),
    order_attributes=_RUN_ATTRIBUTES | _RUN_TIMES,
    tie_breakers=(OrderKey("attribute", "start_time", False), OrderKey("attribute", "run_id")),
    reader=_run_reader,
    many=frozenset({"dataset"}),
)
"""Runs, as `runs/search` takes them."""


def _registry_reader(attributes: dict[str, Reader]) -> Callable[[str, str], Reader]:
    def reader(kind: str, key: str) -> Reader:
        if kind == "tag":
            return lambda entry: entry.tags.get(key)
        return attributes[key]

    return reader


_REGISTRY_ENTITIES = {"attribute": "attribute", "tag": "tag", "tags": "tag"}

REGISTERED_MODELS = Grammar(
    name="registered model",
    entity_types=_REGISTRY_ENTITIES,
    string_attributes=frozenset({"name"}),
    numeric_attributes=frozenset(),
    list_attributes=frozenset({"name"}),
    null_kinds=frozenset(),
    # A server sorts on `timestamp` and `last_updated_timestamp` alike (both mean the
    # last update) and refuses `creation_timestamp`.
    aliases={"timestamp": "last_updated_timestamp"},
    order_kinds=("attribute",),
    order_attributes=frozenset({"name", "last_updated_timestamp"}),
    order_prefixes=False,
    tie_breakers=(OrderKey("attribute", "name"),),
    reader=_registry_reader(
        {
            "name": lambda m: m.name,
            "last_updated_timestamp": lambda m: m.last_updated_timestamp,
        }
    ),
)
"""Registered models, as `registered-models/search` takes them."""

MODEL_VERSIONS = Grammar(
    name="model version",
    entity_types=_REGISTRY_ENTITIES,
    string_attributes=frozenset({"name", "run_id", "source_path"}),
    numeric_attributes=frozenset({"version_number"}),
    quoted_numbers=frozenset({"version_number"}),
    list_attributes=frozenset({"name", "run_id"}),
    null_kinds=frozenset(),
    order_kinds=("attribute",),
    order_attributes=frozenset(
        {"name", "version_number", "creation_timestamp", "last_updated_timestamp"}
    ),
    order_prefixes=False,
    # a server's order without order_by is latest update first, then the tie-breakers
    default_order=(OrderKey("attribute", "last_updated_timestamp", False),),
    tie_breakers=(
        OrderKey("attribute", "name"),
        OrderKey("attribute", "version_number", False),
    ),
    reader=_registry_reader(
        {
            "name": lambda mv: mv.name,
            "run_id": lambda mv: mv.run_id or "",  # a version without a run has run_id ''
            "source_path": lambda mv: mv.source,
            "version_number": lambda mv: int(mv.version),
            "creation_timestamp": lambda mv: mv.creation_timestamp,
            "last_updated_timestamp": lambda mv: mv.last_updated_timestamp,
        }
    ),
)
"""Model versions, as `model-versions/search` takes them."""
