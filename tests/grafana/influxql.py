"""A small InfluxQL reader for the dashboard tests: what a query touches and returns.

Not a full InfluxQL parser: it reads the subset the dashboards may use (SELECT with
subqueries, functions, math, WHERE, GROUP BY, fill, ORDER BY, LIMIT; SHOW TAG VALUES) and
refuses anything else, which keeps the dashboards inside that subset. For each statement
it checks every identifier against :data:`SCHEMA` (what ingest and alerting write) or the
columns of the subqueries it reads, and it infers the result columns and their kinds
(number, string, bool), so a test can compare them with what InfluxDB returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

NUMBER, STRING, BOOL = "number", "string", "bool"

READING_TAGS = frozenset({"store", "asset", "asset_type", "sensor"})


@dataclass(frozen=True)
class Measurement:
    """Fields (name -> kind) and tag keys of one measurement."""

    fields: dict[str, str]
    tags: frozenset[str]


# DESIGN.md §3 as ingest (ingest/pipeline.py) and alerting (alerting/engine.py) write it.
# ts_corrected=true is appended to readings only.
_READING = Measurement({"value": NUMBER, "ts_corrected": BOOL}, READING_TAGS)
SCHEMA: dict[str, Measurement] = {
    "temperature": _READING,
    "humidity": _READING,
    "door": _READING,
    "battery": _READING,
    "signal": _READING,
    "sensor_fault": Measurement(
        {"value": NUMBER, "raw": STRING}, READING_TAGS | {"quantity", "code"}
    ),
    "device_status": Measurement({"value": NUMBER}, frozenset({"device", "family", "store"})),
    # What unknown ids send: the id a field, so invented ids make no series (issue 13).
    "unregistered": Measurement(
        {
            "value": NUMBER,
            "ts_corrected": BOOL,
            "sensor": STRING,
            "device": STRING,
            "fault": STRING,
            "raw": STRING,
        },
        frozenset({"family", "quantity", "bucket"}),
    ),
    "alert_event": Measurement(
        {"alert_id": STRING, "state": STRING, "level": NUMBER},
        frozenset({"store", "kind", "severity", "asset"}),
    ),
}

_KEYWORDS = frozenset(
    {
        "select", "from", "where", "and", "or", "group", "by", "as", "time", "now", "fill",
        "null", "none", "previous", "linear", "order", "desc", "asc", "limit", "slimit",
        "offset", "true", "false",
    }
)  # fmt: skip
# Function -> result kind; None means "the kind of its argument".
_FUNCTIONS: dict[str, str | None] = {
    "count": NUMBER,
    "mean": NUMBER,
    "sum": NUMBER,
    "median": NUMBER,
    "spread": NUMBER,
    "stddev": NUMBER,
    "elapsed": NUMBER,
    "difference": NUMBER,
    "derivative": NUMBER,
    "non_negative_derivative": NUMBER,
    "max": NUMBER,
    "min": NUMBER,
    "last": None,
    "first": None,
}
_NUMERIC_ONLY = frozenset(_FUNCTIONS) - {"count", "elapsed", "last", "first"}
_CLAUSES = ("from", "where", "group", "order", "limit", "slimit", "offset", "fill")


class QueryError(ValueError):
    """A query outside the schema or outside the subset this reader accepts."""


@dataclass(frozen=True)
class Token:
    """One lexical token: kind is ident, string, regex, number, duration, word or op."""

    kind: str
    text: str

    @property
    def word(self) -> str:
        """Lower-cased text of a bare word ("" for other kinds)."""
        return self.text.lower() if self.kind == "word" else ""


_LEXEMES = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<ident>"(?:[^"\\]|\\.)*")
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<duration>\d+(?:ns|u|µ|ms|s|m|h|d|w)\b)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>=~|!~|<>|!=|>=|<=|[=<>+\-*/(),;])
""",
    re.VERBOSE,
)
_REGEX = re.compile(r"/(?:[^/\\\n]|\\.)*/")


def tokenize(query: str) -> list[Token]:
    """Tokens of ``query``; a ``/`` after ``=~`` or ``!~`` starts a regex literal."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(query):
        if tokens and tokens[-1].text in ("=~", "!~") and query[pos] == "/":
            regex = _REGEX.match(query, pos)
            if regex is None:
                raise QueryError(f"unterminated regex at {pos}: {query[pos : pos + 30]!r}")
            tokens.append(Token("regex", regex.group()))
            pos = regex.end()
            continue
        match = _LEXEMES.match(query, pos)
        if match is None:
            raise QueryError(f"unexpected text at {pos}: {query[pos : pos + 30]!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            text = match.group()
            if kind == "ident":
                text = text[1:-1].replace('\\"', '"')
            tokens.append(Token(kind, text))
        pos = match.end()
    return tokens


@dataclass
class Column:
    """A result column of a statement."""

    name: str
    kind: str


@dataclass
class Scope:
    """What identifiers a statement may use: name -> kind, and which of them are tags."""

    names: dict[str, str] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)
    # (measurement, identifier) pairs that resolved to the schema, for reports.
    origin: dict[str, set[str]] = field(default_factory=dict)

    def add(self, name: str, kind: str, *, tag: bool = False, measurement: str = "") -> None:
        """Register a name; the same name with two kinds becomes kind 'any'."""
        previous = self.names.get(name)
        self.names[name] = kind if previous in (None, kind) else "any"
        if tag:
            self.tags.add(name)
        if measurement:
            self.origin.setdefault(name, set()).add(measurement)


@dataclass
class Analysis:
    """What a statement reads and returns."""

    columns: list[Column]
    group_tags: list[str]
    measurements: set[str] = field(default_factory=set)
    has_time: bool = True  # SELECT results start with a time column, SHOW results do not
    # measurement -> identifiers (fields and tags) the statement uses from it.
    used: dict[str, set[str]] = field(default_factory=dict)

    def merge_used(self, other: Analysis) -> None:
        """Fold a subquery's measurements and identifiers into this analysis."""
        self.measurements |= other.measurements
        for measurement, names in other.used.items():
            self.used.setdefault(measurement, set()).update(names)


def _split(tokens: Sequence[Token], separator: str) -> list[list[Token]]:
    """Split at depth-0 occurrences of the op ``separator``."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.text == "(" and token.kind == "op":
            depth += 1
        elif token.text == ")" and token.kind == "op":
            depth -= 1
        if depth == 0 and token.kind == "op" and token.text == separator:
            parts.append([])
        else:
            parts[-1].append(token)
    if depth != 0:
        raise QueryError("unbalanced parentheses")
    return parts


def _clauses(tokens: Sequence[Token]) -> dict[str, list[Token]]:
    """The depth-0 clauses of a SELECT: select, from, where, group, order, limit, fill..."""
    out: dict[str, list[Token]] = {"select": []}
    current = "select"
    depth = 0
    expect_by = False
    for token in tokens[1:]:
        if expect_by:
            if token.word != "by":
                raise QueryError(f"{current.upper()} without BY")
            expect_by = False
            continue
        if token.kind == "op" and token.text == "(":
            depth += 1
        elif token.kind == "op" and token.text == ")":
            depth -= 1
        if depth == 0 and token.word in _CLAUSES:
            current = token.word
            if current in out:
                raise QueryError(f"clause {current.upper()} twice")
            out[current] = [] if current != "fill" else [token]
            expect_by = current in ("group", "order")
            continue
        out[current].append(token)
    return out


def analyze(query: str) -> Analysis:
    """Check ``query`` (one statement, variables already substituted) and describe it."""
    tokens = tokenize(query.strip().rstrip(";"))
    if not tokens or tokens[0].kind != "word":
        raise QueryError("empty query")
    if tokens[0].word == "show":
        return _analyze_show(tokens)
    if tokens[0].word != "select":
        raise QueryError(f"only SELECT and SHOW TAG VALUES are allowed, not {tokens[0].text}")
    return _analyze_select(tokens)


def _analyze_select(tokens: Sequence[Token]) -> Analysis:
    clauses = _clauses(tokens)
    if "from" not in clauses:
        raise QueryError("SELECT without FROM")
    scope = Scope()
    analysis = Analysis(columns=[], group_tags=[])
    for source in _split(clauses["from"], ","):
        _add_source(source, scope, analysis)
    aliases: set[str] = set()
    for item in _split(clauses["select"], ","):
        column = _select_item(item, scope)
        aliases.add(column.name)
        analysis.columns.append(column)
    for clause in ("where", "order"):
        for token in clauses.get(clause, []):
            _check_token(token, scope, set() if clause == "where" else aliases)
    for part in _split(clauses.get("group", []), ","):
        if not part:
            continue
        if part[0].word == "time":
            _check_tokens(part, scope, set())
            continue
        if len(part) != 1 or part[0].kind != "ident":
            raise QueryError(f"GROUP BY {' '.join(t.text for t in part)}: quote tag keys")
        if part[0].text not in scope.tags:
            raise QueryError(f"GROUP BY {part[0].text!r}: not a tag of {sorted(scope.tags)}")
        analysis.group_tags.append(part[0].text)
    for token in clauses.get("limit", []) + clauses.get("fill", []):
        if token.kind not in ("number", "op") and token.word not in _KEYWORDS:
            raise QueryError(f"unexpected {token.text!r} in LIMIT/fill")
    for name, measurements in scope.origin.items():
        if name in _used_names(clauses):
            for measurement in measurements:
                analysis.used.setdefault(measurement, set()).add(name)
    return analysis


def _used_names(clauses: dict[str, list[Token]]) -> set[str]:
    return {t.text for tokens in clauses.values() for t in tokens if t.kind == "ident"}


def _add_source(source: Sequence[Token], scope: Scope, analysis: Analysis) -> None:
    if len(source) == 1 and source[0].kind == "ident":
        name = source[0].text
        measurement = SCHEMA.get(name)
        if measurement is None:
            raise QueryError(f"measurement {name!r} is not written by coldchain")
        for field_name, kind in measurement.fields.items():
            scope.add(field_name, kind, measurement=name)
        for tag in measurement.tags:
            scope.add(tag, STRING, tag=True, measurement=name)
        analysis.measurements.add(name)
        return
    if source and source[0].text == "(" and source[-1].text == ")":
        inner = _analyze_select(source[1:-1])
        for column in inner.columns:
            scope.add(column.name, column.kind)
        for tag in inner.group_tags:
            scope.add(tag, STRING, tag=True)
        analysis.merge_used(inner)
        return
    raise QueryError(f"FROM {' '.join(t.text for t in source)}: quote measurement names")


def _select_item(item: Sequence[Token], scope: Scope) -> Column:
    alias = None
    if len(item) >= 3 and item[-2].word == "as":
        if item[-1].kind != "ident":
            raise QueryError("quote aliases")
        alias, item = item[-1].text, item[:-2]
    if not item:
        raise QueryError("empty select item")
    _check_tokens(item, scope, set())
    if len(item) == 1 and item[0].kind == "ident":
        return Column(alias or item[0].text, scope.names[item[0].text])
    if item[0].kind == "word" and len(item) >= 3 and item[1].text == "(" and item[-1].text == ")":
        inner = item[2:-1]
        if all(t.text not in ("(", ")") for t in inner):  # one call, not call-and-math
            return Column(alias or item[0].word, _call_kind(item[0].word, inner, scope))
    if alias is None:
        raise QueryError(f"expression {' '.join(t.text for t in item)} needs an alias")
    for index, token in enumerate(item):
        if token.word in _FUNCTIONS:
            arguments: list[Token] = []
            for argument in item[index + 2 :]:
                if argument.text == ")":
                    break
                arguments.append(argument)
            _call_kind(token.word, arguments, scope)
    return Column(alias, NUMBER)


def _call_kind(function: str, arguments: Sequence[Token], scope: Scope) -> str:
    if function not in _FUNCTIONS:
        raise QueryError(f"function {function}() is not in the accepted subset")
    first = next((t for t in arguments if t.kind == "ident"), None)
    if first is None:
        raise QueryError(f"{function}() needs a quoted field")
    argument_kind = scope.names[first.text]
    if function in _NUMERIC_ONLY and argument_kind not in (NUMBER, "any"):
        raise QueryError(f"{function}({first.text!r}) of a {argument_kind} field")
    result = _FUNCTIONS[function]
    return argument_kind if result is None else result


def _check_tokens(tokens: Sequence[Token], scope: Scope, aliases: set[str]) -> None:
    for token in tokens:
        _check_token(token, scope, aliases)


def _check_token(token: Token, scope: Scope, aliases: set[str]) -> None:
    if token.kind == "ident":
        if token.text not in scope.names and token.text not in aliases:
            known = sorted(scope.names)
            raise QueryError(f"identifier {token.text!r} is not one of {known}")
    elif token.kind == "word" and token.word not in _KEYWORDS and token.word not in _FUNCTIONS:
        raise QueryError(f"bare word {token.text!r}: quote identifiers")


def _analyze_show(tokens: Sequence[Token]) -> Analysis:
    words = [t.word for t in tokens[:3]]
    if words != ["show", "tag", "values"]:
        raise QueryError("only SHOW TAG VALUES is allowed")
    rest = list(tokens[3:])
    if len(rest) < 6 or rest[0].word != "from" or rest[1].kind != "ident":
        raise QueryError('SHOW TAG VALUES FROM "measurement" WITH KEY = "tag" [WHERE ...]')
    measurement = SCHEMA.get(rest[1].text)
    if measurement is None:
        raise QueryError(f"measurement {rest[1].text!r} is not written by coldchain")
    if [t.text.lower() for t in rest[2:5]] != ["with", "key", "="] or rest[5].kind != "ident":
        raise QueryError('expected WITH KEY = "tag"')
    key = rest[5].text
    if key not in measurement.tags:
        raise QueryError(f"{key!r} is not a tag of {rest[1].text}")
    used = {key}
    if len(rest) > 6:
        if rest[6].word != "where":
            raise QueryError(f"unexpected {rest[6].text!r} after WITH KEY")
        for token in rest[7:]:
            if token.kind == "ident":
                if token.text not in measurement.tags:
                    raise QueryError(f"{token.text!r} is not a tag of {rest[1].text}")
                used.add(token.text)
            elif token.kind == "word" and token.word not in _KEYWORDS:
                raise QueryError(f"bare word {token.text!r}")
    return Analysis(
        columns=[Column("key", STRING), Column("value", STRING)],
        group_tags=[],
        measurements={rest[1].text},
        used={rest[1].text: used},
        has_time=False,
    )


def variables_in(query: str) -> Iterator[tuple[str, int]]:
    """Each ``$name`` / ``${name}`` / ``[[name]]`` in ``query`` with its position."""
    for match in re.finditer(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", query):
        yield next(g for g in match.groups() if g), match.start()
