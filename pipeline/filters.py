"""User filters over the annotated output stream (docs/filters.md).

A filter picks annotated alerts (one dict per processed alert, ``pipeline/output.py``) for one audience: young
supernova candidates, fast risers, nuclear transients, ... Each filter has a name, a description and a topic
(default: its name), and is one of

- a **declarative rule**: a boolean expression over the record's fields, e.g.
  ``stamp.SN > 0.6 and ndethist <= 2 and not xmatch.vsx``, written in a ``.toml`` file or given in the config
  as ``{name: expression}``. The text is parsed with :mod:`ast`, checked against a strict whitelist and
  compiled ONCE into a tree of Python closures; nothing is ever passed to ``eval``/``exec``/``compile``;
- a **Python filter**: a ``.py`` file defining ``def accept(record: dict) -> bool`` (optional ``NAME``,
  ``DESCRIPTION``, ``TOPIC``), loaded from its path with :mod:`importlib`.

Semantics of the language (the whole of it):

- a field is a name (``ndethist``), a dotted path for nested dicts (``magstats.g.dmdt_first``,
  ``xmatch.vsx.properties.VType``) or a constant subscript (``xmatch["2mass"]``,
  ``lc.probabilities["Periodic-Other"]``). Python keywords work after a dot (``stamp.class``, ``lc.class``).
  A field that is missing, None or NaN (at any level of the path) is **None**;
- comparisons (``< <= > >= == !=``, chained ``0.5 < x <= 1``, ``in`` / ``not in``) involving None are
  **False**, whichever the operator (so ``x != 3`` and ``x not in (1, 2)`` are False when x is missing, while
  ``not x == 3`` is True). The exceptions test for None on purpose: ``x == None`` / ``x is None`` (True when
  missing) and ``x != None`` / ``x is not None`` / ``exists(x)`` (True when present);
- ``and`` / ``or`` / ``not`` follow Python truthiness: ``not xmatch.vsx`` is True when there is no vsx match;
- arithmetic ``+ - * /`` and unary ``-`` on numbers; None in gives None out, and so does division by zero;
- functions ``abs(x)``, ``len(x)`` (None for None), ``exists(x)``, ``min(...)`` / ``max(...)`` (ignore None
  arguments; None when all are None: ``min(magstats.g.dmdt_first, magstats.r.dmdt_first)`` is "any band");
- constants: numbers, strings, True/False/None; list/tuple/set literals of constants on the right of ``in``.

Anything else (other calls, non-constant subscripts, ``__dunder__`` names, lambdas, comprehensions, ``if``
expressions, ``**``, ``%``, ...) is a :class:`FilterError` at load time naming the line and column.

At run time a filter never raises out of :meth:`FilterSet.evaluate`: an exception on a record (a Python filter's
bug, comparing a string with a number, ...) counts as an error of that filter and the record as not matched;
the first error of each filter is kept (message and the record's candid) and logged once, later ones are only
counted. :meth:`FilterSet.summary` gives matches, errors and cost per filter for the run report.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import io
import keyword
import logging
import operator
import re
import time
import tokenize
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The shipped example filters (package data): young SN candidates, fast risers, nuclear transients, periodic
#: variables, high outlier score. docs/filters.md describes each one.
EXAMPLES_DIR = Path(__file__).with_name("filters_examples")

#: Filter names and topics: Kafka topic characters, and safe as a folder name.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
#: Keys a ``.toml`` filter may have.
TOML_KEYS = frozenset({"name", "description", "expression", "topic", "references"})
#: The functions an expression may call.
FUNCTIONS = ("abs", "exists", "len", "max", "min")

Accept = Callable[[Mapping[str, Any]], Any]


class FilterError(ValueError):
    """A filter that cannot be loaded: a bad expression (with its position), a bad file, a bad name."""


# ============================================================================================ the language
def _step(v: Any, k: str | int) -> Any:
    """One step down a path from a value that is not a plain dict."""
    if v is None:
        return None
    if isinstance(v, Mapping):
        return v.get(k)
    if isinstance(k, int) and isinstance(v, list | tuple):
        return v[k] if -len(v) <= k < len(v) else None
    return None


def _field_getter(path: tuple[str | int, ...]) -> Accept:
    """A closure reading ``path`` from a record: None when any step is missing, None, NaN or not a container.
    Paths of 1-3 steps (nearly all) are unrolled: this is the innermost loop of every filter."""
    if len(path) == 1:
        (a,) = path

        def get1(r):
            v = r.get(a)
            if isinstance(v, float) and v != v:  # NaN (numpy's float64 too)
                return None
            return v

        return get1
    if len(path) == 2:
        a, b = path

        def get2(r):
            v = r.get(a)
            v = v.get(b) if v.__class__ is dict else _step(v, b)
            if isinstance(v, float) and v != v:  # NaN (numpy's float64 too)
                return None
            return v

        return get2
    if len(path) == 3:
        a, b, c = path

        def get3(r):
            v = r.get(a)
            v = v.get(b) if v.__class__ is dict else _step(v, b)
            v = v.get(c) if v.__class__ is dict else _step(v, c)
            if isinstance(v, float) and v != v:  # NaN (numpy's float64 too)
                return None
            return v

        return get3
    head, rest = path[0], path[1:]

    def get(r):
        v = r.get(head)
        for k in rest:
            v = v.get(k) if v.__class__ is dict else _step(v, k)
        if isinstance(v, float) and v != v:  # NaN (numpy's float64 too)
            return None
        return v

    return get


_ORDER = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
_EQUALITY = {ast.Eq: operator.eq, ast.NotEq: operator.ne}
_SYMBOL = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_BINARY_SYMBOLS = {
    ast.Pow: "**",
    ast.Mod: "%",
    ast.FloorDiv: "//",
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitAnd: "&",
    ast.BitXor: "^",
}
_NOT_NUMBERS = (str, bytes, list, tuple, dict, set, frozenset)


def _arith(op: type, a: Any, b: Any) -> Any:
    """``a op b`` on numbers; None when either is None or on division by zero."""
    if a is None or b is None:
        return None
    if isinstance(a, _NOT_NUMBERS) or isinstance(b, _NOT_NUMBERS):
        raise TypeError(f"arithmetic on {type(a).__name__} and {type(b).__name__}: only numbers")
    if op is ast.Div and b == 0:
        return None
    return _ARITH[op](a, b)


def _member(a: Any, container: Any, negate: bool) -> bool:
    if a is None or container is None:
        return False
    try:
        found = a in container
    except TypeError:  # an unhashable value against a frozenset literal: compare one by one
        found = any(a == c for c in container)
    return not found if negate else found


def _nmin(*values: Any) -> Any:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _nmax(*values: Any) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _nabs(v: Any) -> Any:
    return None if v is None else abs(v)


def _nlen(v: Any) -> Any:
    return None if v is None else len(v)


def _exists(v: Any) -> bool:
    return v is not None


_CALLS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    # name: (function, fewest arguments, most arguments)
    "abs": (_nabs, 1, 1),
    "len": (_nlen, 1, 1),
    "exists": (_exists, 1, 1),
    "min": (_nmin, 1, None),
    "max": (_nmax, 1, None),
}

_FORBIDDEN = {
    ast.Lambda: "a lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.IfExp: "a conditional expression (a if c else b)",
    ast.NamedExpr: "an assignment (:=)",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.JoinedStr: "an f-string",
    ast.FormattedValue: "an f-string",
    ast.Starred: "a starred argument",
    ast.Dict: "a dict literal",
    ast.Slice: "a slice",
}


class _Value:
    """A compiled sub-expression: a constant (known at load time) or a closure of the record."""

    __slots__ = ("const", "fn", "path")

    def __init__(self, fn: Accept | None = None, const: Any = None, path: tuple | None = None) -> None:
        self.fn = fn
        self.const = const
        self.path = path  # set for fields (so a subscript can extend them)

    @property
    def is_const(self) -> bool:
        return self.fn is None

    def closure(self) -> Accept:
        if self.fn is not None:
            return self.fn
        c = self.const
        return lambda r: c


class _Source:
    """The expression text as parsed (wrapped in parentheses so it may span lines, keywords after a dot renamed
    ``class`` -> ``class_``) and the way back to positions in the text the user wrote."""

    def __init__(self, text: str) -> None:
        self.original = text
        self.inserted: dict[int, list[int]] = {}  # parsed line -> parsed columns where "_" was inserted
        self.parsed = self._rename_keywords("(\n" + text + "\n)")

    def _rename_keywords(self, wrapped: str) -> str:
        lines = wrapped.split("\n")
        try:  # inside the parentheses there are no NEWLINE/INDENT tokens to trip over
            tokens = list(tokenize.generate_tokens(io.StringIO(wrapped).readline))
        except (tokenize.TokenError, SyntaxError):
            return wrapped  # ast.parse reports the problem
        previous = None
        edits: list[tuple[int, int]] = []  # (line 1-based, end column in characters) of keywords after a dot
        for tok in tokens:
            if (
                tok.type == tokenize.NAME
                and keyword.iskeyword(tok.string)
                and previous is not None
                and previous.type == tokenize.OP
                and previous.string == "."
            ):
                edits.append(tok.end)
            if tok.type not in (tokenize.NL, tokenize.COMMENT):
                previous = tok
        for line, col in sorted(edits, reverse=True):
            s = lines[line - 1]
            lines[line - 1] = s[:col] + "_" + s[col:]
        for line, col in sorted(edits):
            done = self.inserted.setdefault(line, [])
            done.append(col + len(done))  # later insertions on the line sit one further right
        return "\n".join(lines)

    def position(self, line: int, byte_col: int) -> tuple[int, int]:
        """(line, column), both 1-based, in the text the user wrote, of a parsed-text position."""
        parsed_lines = self.parsed.split("\n")
        text_line = parsed_lines[line - 1] if 0 < line <= len(parsed_lines) else ""
        col = len(text_line.encode()[:byte_col].decode(errors="ignore"))
        col -= sum(1 for c in self.inserted.get(line, ()) if c < col)
        return max(line - 1, 1), col + 1

    def describe(self, node: ast.AST) -> str:
        line, col = self.position(node.lineno, node.col_offset)
        where = f"line {line}, column {col}" if "\n" in self.original.strip() else f"column {col}"
        segment = ast.get_source_segment(self.parsed, node) or ""
        for inserted_kw in keyword.kwlist:  # show what the user wrote
            segment = segment.replace(f".{inserted_kw}_", f".{inserted_kw}")
        return f"{where} ({segment.strip()!r})" if segment else where


class _Compiler:
    def __init__(self, source: _Source, name: str) -> None:
        self.source = source
        self.name = name

    def error(self, node: ast.AST, what: str) -> FilterError:
        return FilterError(f"filter {self.name!r}: {self.source.describe(node)}: {what}")

    # -------------------------------------------------------------------------------- dispatch
    def compile(self, node: ast.AST) -> _Value:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            what = _FORBIDDEN.get(type(node), f"{type(node).__name__} nodes")
            raise self.error(node, f"{what} is not allowed in a filter expression")
        return method(node)

    def _Constant(self, node: ast.Constant) -> _Value:
        if not isinstance(node.value, int | float | str | bool | type(None)):
            raise self.error(node, f"constants of type {type(node.value).__name__} are not allowed")
        return _Value(const=node.value)

    def _field_name(self, node: ast.AST, name: str) -> str:
        if name.startswith("__"):
            raise self.error(node, f"the name {name!r} is not allowed (no double-underscore names)")
        if name.endswith("_") and keyword.iskeyword(name[:-1]):
            return name[:-1]  # stamp.class, written or renamed as stamp.class_
        return name

    def _Name(self, node: ast.Name) -> _Value:
        if node.id in _CALLS:
            raise self.error(node, f"{node.id!r} is a function: call it, e.g. {node.id}(x)")
        path = (self._field_name(node, node.id),)
        return _Value(fn=_field_getter(path), path=path)

    def _Attribute(self, node: ast.Attribute) -> _Value:
        base = self.compile(node.value)
        if base.path is None:
            raise self.error(node, "attribute access is only allowed on fields (such as stamp.SN)")
        path = (*base.path, self._field_name(node, node.attr))
        return _Value(fn=_field_getter(path), path=path)

    def _Subscript(self, node: ast.Subscript) -> _Value:
        base = self.compile(node.value)
        if base.path is None:
            raise self.error(node, "subscripts are only allowed on fields (such as xmatch['2mass'])")
        key = self.compile(node.slice) if isinstance(node.slice, ast.Constant | ast.UnaryOp) else None
        if (
            key is None
            or not key.is_const
            or not isinstance(key.const, str | int)
            or isinstance(key.const, bool)
        ):
            raise self.error(
                node, "a subscript must be a constant string or integer, such as xmatch['2mass']"
            )
        if isinstance(key.const, str) and key.const.startswith("__"):
            raise self.error(node, f"the key {key.const!r} is not allowed (no double-underscore names)")
        path = (*base.path, key.const)
        return _Value(fn=_field_getter(path), path=path)

    def _BoolOp(self, node: ast.BoolOp) -> _Value:
        parts = [self.compile(v).closure() for v in node.values]
        if isinstance(node.op, ast.And):
            if len(parts) == 2:
                a, b = parts
                return _Value(fn=lambda r: a(r) and b(r))

            def all_(r):
                v = True
                for p in parts:
                    v = p(r)
                    if not v:
                        return v
                return v

            return _Value(fn=all_)
        if len(parts) == 2:
            a, b = parts
            return _Value(fn=lambda r: a(r) or b(r))

        def any_(r):
            v = False
            for p in parts:
                v = p(r)
                if v:
                    return v
            return v

        return _Value(fn=any_)

    def _UnaryOp(self, node: ast.UnaryOp) -> _Value:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            if operand.is_const:
                return _Value(const=not operand.const)
            f = operand.fn
            return _Value(fn=lambda r: not f(r))
        if isinstance(node.op, ast.USub | ast.UAdd):
            sign = -1 if isinstance(node.op, ast.USub) else 1
            if operand.is_const:
                if not isinstance(operand.const, int | float) or isinstance(operand.const, bool):
                    raise self.error(node, "unary minus/plus applies to numbers only")
                return _Value(const=sign * operand.const)
            f = operand.fn
            return _Value(fn=lambda r: _arith(ast.Mult, f(r), sign))
        raise self.error(node, "the operator ~ is not allowed (use not for logic)")

    def _BinOp(self, node: ast.BinOp) -> _Value:
        op = type(node.op)
        if op not in _ARITH:
            symbol = _BINARY_SYMBOLS.get(op, op.__name__)
            raise self.error(node, f"the operator {symbol} is not allowed; the arithmetic is + - * /")
        left, right = self.compile(node.left), self.compile(node.right)
        if left.is_const and right.is_const:
            try:
                value = _arith(op, left.const, right.const)
            except Exception as exc:
                raise self.error(node, f"{type(exc).__name__}: {exc}") from None
            return _Value(const=value)
        if right.is_const:
            f, c = left.fn, right.const
            return _Value(fn=lambda r: _arith(op, f(r), c))
        lf, rf = left.closure(), right.fn
        return _Value(fn=lambda r: _arith(op, lf(r), rf(r)))

    def _Call(self, node: ast.Call) -> _Value:
        if not isinstance(node.func, ast.Name) or node.func.id not in _CALLS:
            what = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise self.error(
                node, f"calling {what!r} is not allowed; the functions are {', '.join(FUNCTIONS)}"
            )
        name = node.func.id
        if node.keywords:
            raise self.error(node, f"{name}() takes no keyword arguments")
        fn, lo, hi = _CALLS[name]
        if len(node.args) < lo or (hi is not None and len(node.args) > hi):
            wanted = f"{lo}" if hi == lo else f"at least {lo}"
            raise self.error(node, f"{name}() takes {wanted} argument(s), got {len(node.args)}")
        args = [self.compile(a) for a in node.args]
        if all(a.is_const for a in args):
            try:
                return _Value(const=fn(*(a.const for a in args)))
            except Exception as exc:
                raise self.error(node, f"{type(exc).__name__}: {exc}") from None
        if len(args) == 1:
            f = args[0].fn
            return _Value(fn=lambda r: fn(f(r)))
        closures = [a.closure() for a in args]
        if name in ("min", "max"):  # the same as _nmin/_nmax, without building lists per record
            better = operator.lt if name == "min" else operator.gt

            def extreme(r):
                best = None
                for c in closures:
                    v = c(r)
                    if v is not None and (best is None or better(v, best)):
                        best = v
                return best

            return _Value(fn=extreme)
        return _Value(fn=lambda r: fn(*[c(r) for c in closures]))

    def _literal_container(self, node: ast.AST) -> _Value | None:
        """A list/tuple/set literal of constants (the right of ``in``), as a frozenset when it can be one."""
        if not isinstance(node, ast.List | ast.Tuple | ast.Set):
            return None
        items = []
        for elt in node.elts:
            value = self.compile(elt)
            if not value.is_const:
                raise self.error(elt, "a list after 'in' must hold constants only")
            items.append(value.const)
        try:
            return _Value(const=frozenset(items))
        except TypeError:
            return _Value(const=tuple(items))

    def _List(self, node: ast.AST) -> _Value:
        raise self.error(node, "a list/tuple/set literal is only allowed on the right of 'in' / 'not in'")

    _Tuple = _Set = _List

    def _Compare(self, node: ast.Compare) -> _Value:
        operands = [node.left, *node.comparators]
        ops = [type(o) for o in node.ops]
        values: list[_Value] = []
        for i, operand in enumerate(operands):
            container = None
            if i > 0 and ops[i - 1] in (ast.In, ast.NotIn):
                container = self._literal_container(operand)
            values.append(container if container is not None else self.compile(operand))
        pairs = []
        for i, op in enumerate(ops):
            left, right = values[i], values[i + 1]
            if op in (ast.Is, ast.IsNot) and not (right.is_const and right.const is None):
                raise self.error(node, "'is' / 'is not' only test for None (x is None, x is not None)")
            if (
                op in (ast.In, ast.NotIn)
                and right.is_const
                and not isinstance(right.const, frozenset | tuple | str)
            ):
                raise self.error(
                    node, "the right of 'in' must be a list/tuple/set literal, a string or a field"
                )
            pair = self._pair(op, left, right)
            if left.is_const and right.is_const:
                try:
                    pair = _Value(const=bool(pair.closure()({})))
                except Exception as exc:
                    raise self.error(node, f"{type(exc).__name__}: {exc}") from None
            pairs.append(pair)
        if len(pairs) == 1:
            return pairs[0]
        # a chain, a < b <= c: (a < b) and (b <= c), stopping at the first False (fields are cheap and pure,
        # so a middle operand read twice gives the same value)
        if any(p.is_const and not p.const for p in pairs):
            return _Value(const=False)
        closures = [p.fn for p in pairs if not p.is_const]
        if not closures:
            return _Value(const=True)

        def chain(r):
            for c in closures:  # noqa: SIM110 (a loop: no generator per record)
                if not c(r):
                    return False
            return True

        return _Value(fn=chain)

    def _pair(self, op: type, left: _Value, right: _Value) -> _Value:
        """One comparison as a closure, specialised for a constant side and the explicit None tests."""
        # x == None, x is None, x != None, x is not None (either side for ==/!=): the tests for a missing value
        if op in (ast.Eq, ast.Is, ast.NotEq, ast.IsNot):
            other = None
            if right.is_const and right.const is None:
                other = left
            elif left.is_const and left.const is None and op in (ast.Eq, ast.NotEq):
                other = right
            if other is not None:
                f = other.closure()
                if op in (ast.Eq, ast.Is):
                    return _Value(fn=lambda r: f(r) is None)
                return _Value(fn=lambda r: f(r) is not None)
        if op in (ast.In, ast.NotIn):
            negate = op is ast.NotIn
            lf, rf = left.closure(), right.closure()
            if right.is_const:
                s = right.const
                return _Value(fn=lambda r: _member(lf(r), s, negate))
            return _Value(fn=lambda r: _member(lf(r), rf(r), negate))
        fn = _ORDER.get(op) or _EQUALITY[op]
        if right.is_const:
            f, c = left.closure(), right.const
            if c is None:  # x < None: never
                return _Value(const=False)

            def cmp_const(r):
                v = f(r)
                return v is not None and fn(v, c)

            return _Value(fn=cmp_const)
        if left.is_const:
            c, g = left.const, right.fn
            if c is None:  # None < x: never
                return _Value(const=False)

            def const_cmp(r):
                v = g(r)
                return v is not None and fn(c, v)

            return _Value(fn=const_cmp)
        f, g = left.fn, right.fn

        def cmp(r):
            a = f(r)
            if a is None:
                return False
            b = g(r)
            return b is not None and fn(a, b)

        return _Value(fn=cmp)


def compile_expression(text: str, name: str = "<expression>") -> Accept:
    """Compile a filter expression once into ``accept(record) -> bool``; :class:`FilterError` (with the line and
    column) when it is not valid Python syntax or uses anything outside the language (module docstring)."""
    if not isinstance(text, str) or not text.strip():
        raise FilterError(f"filter {name!r}: the expression is empty")
    source = _Source(text)
    try:
        tree = ast.parse(source.parsed, mode="eval")
    except SyntaxError as exc:
        if (exc.lineno or 1) > len(source.parsed.split("\n")) - 1:  # on the closing parenthesis we added
            where = "the end of the expression"
        else:
            line, col = source.position(exc.lineno or 1, max((exc.offset or 1) - 1, 0))
            where = f"line {line}, column {col}"
        raise FilterError(f"filter {name!r}: syntax error at {where}: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise FilterError(f"filter {name!r}: cannot parse the expression: {type(exc).__name__}") from None
    try:
        value = _Compiler(source, name).compile(tree.body)
    except RecursionError:
        raise FilterError(f"filter {name!r}: the expression is nested too deeply") from None
    if value.is_const:
        result = bool(value.const)
        return lambda r: result
    fn = value.fn
    return lambda r: bool(fn(r))


# ============================================================================================ filters
@dataclass(frozen=True, eq=False)
class Filter:
    """One loaded filter. ``accept(record)`` says whether the annotated record matches (it may raise: the
    :class:`FilterSet` counts that). Pickles by its definition (the expression, or the ``.py`` path), so a
    Dask worker rebuilds it; a Python filter's file must be readable there too."""

    name: str
    topic: str
    description: str
    kind: str  # "expression" or "python"
    source: str  # the expression text, or the .py file's path
    origin: str  # where it was defined: a file path or "config"
    accept: Accept = field(repr=False, compare=False)
    references: tuple[str, ...] = ()

    def __reduce__(self):
        return (
            _rebuild,
            (self.kind, self.name, self.topic, self.description, self.source, self.origin, self.references),
        )


#: Python filters rebuilt in this process, by (path, mtime, size): a worker unpickling the same FilterSet for
#: every task runs the file once.
_REBUILT: dict[tuple[str, int, int], Filter] = {}


def _rebuild(kind, name, topic, description, source, origin, references) -> Filter:
    if kind == "python":
        try:
            st = Path(source).stat()
            key = (source, st.st_mtime_ns, st.st_size)
        except OSError:
            return load_python_filter(source)  # says the file is missing
        if key not in _REBUILT:
            _REBUILT[key] = load_python_filter(source)
        return _REBUILT[key]
    return expression_filter(
        name, source, description=description, topic=topic, origin=origin, references=references
    )


def _check_name(what: str, value: Any, where: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise FilterError(
            f"{where}: {what} {value!r} must be 1-200 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def expression_filter(
    name: str,
    expression: str,
    *,
    description: str = "",
    topic: str | None = None,
    origin: str = "config",
    references: Sequence[str] = (),
) -> Filter:
    """A declarative filter: ``expression`` compiled once (:func:`compile_expression`)."""
    _check_name("the name", name, origin)
    topic = _check_name("the topic", topic if topic is not None else name, origin)
    accept = compile_expression(expression, name)
    return Filter(name, topic, str(description), "expression", expression, origin, accept, tuple(references))


def load_toml_filter(path: str | Path) -> Filter:
    """A ``.toml`` filter: ``name`` (default: the file's stem), ``description``, ``expression``, ``topic``
    (default: the name), ``references`` (a list of strings). Unknown keys are an error (typos)."""
    path = Path(path)
    try:
        spec = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FilterError(f"{path}: cannot read the filter: {exc}") from None
    unknown = set(spec) - TOML_KEYS
    if unknown:
        raise FilterError(f"{path}: unknown keys {sorted(unknown)}; a filter has {sorted(TOML_KEYS)}")
    if "expression" not in spec:
        raise FilterError(f"{path}: no 'expression'")
    for key in ("description", "expression"):
        if not isinstance(spec.get(key, ""), str):
            raise FilterError(f"{path}: {key!r} must be a string")
    references = spec.get("references", [])
    if not isinstance(references, list) or not all(isinstance(x, str) for x in references):
        raise FilterError(f"{path}: 'references' must be a list of strings")
    try:
        return expression_filter(
            spec.get("name", path.stem),
            spec["expression"],
            description=spec.get("description", ""),
            topic=spec.get("topic"),
            origin=str(path),
            references=references,
        )
    except FilterError as exc:
        raise FilterError(f"{path}: {exc}") from None


def load_python_filter(path: str | Path) -> Filter:
    """A ``.py`` filter: the module defines ``accept(record) -> bool`` and optionally ``NAME`` (default: the
    file's stem), ``DESCRIPTION`` (default: the docstring's first line), ``TOPIC`` (default: the name) and
    ``REFERENCES``. Loaded from its path, without touching ``sys.modules``; errors at import are a FilterError."""
    path = Path(path).resolve()
    spec = importlib.util.spec_from_file_location(f"alert_broker_user_filter_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise FilterError(f"{path}: not a loadable Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise FilterError(f"{path}: loading the filter failed: {type(exc).__name__}: {exc}") from None
    accept = getattr(module, "accept", None)
    if not callable(accept):
        raise FilterError(f"{path}: defines no function accept(record) -> bool")
    try:
        inspect.signature(accept).bind({})
    except (TypeError, ValueError):
        raise FilterError(f"{path}: accept must take exactly one argument, the record") from None
    name = _check_name("NAME", getattr(module, "NAME", path.stem), str(path))
    topic = _check_name("TOPIC", getattr(module, "TOPIC", name), str(path))
    doc = (module.__doc__ or "").strip().splitlines()
    description = getattr(module, "DESCRIPTION", doc[0] if doc else "")
    references = tuple(getattr(module, "REFERENCES", ()))
    return Filter(name, topic, str(description), "python", str(path), str(path), accept, references)


def load_filters(path: str | Path) -> list[Filter]:
    """The filters in a file (``.toml`` or ``.py``) or a folder (every ``*.toml`` and ``*.py`` in it, sorted by
    name, not recursing; files starting with ``_`` or ``.`` skipped). Every broken file is reported in one
    :class:`FilterError`."""
    path = Path(path)
    if path.is_file():
        if path.suffix == ".toml":
            return [load_toml_filter(path)]
        if path.suffix == ".py":
            return [load_python_filter(path)]
        raise FilterError(f"{path}: a filter file ends in .toml or .py")
    if not path.is_dir():
        raise FilterError(f"{path}: no such filter file or folder")
    filters, problems = [], []
    for item in sorted(path.iterdir()):
        if item.name.startswith(("_", ".")) or item.suffix not in (".toml", ".py") or not item.is_file():
            continue
        try:
            filters.extend(load_filters(item))
        except FilterError as exc:
            problems.append(str(exc))
    if problems:
        raise FilterError("\n".join(problems))
    return filters


def filters_from_config(config: Mapping[str, str | Mapping[str, Any]]) -> list[Filter]:
    """Filters given in the configuration: ``{name: expression}`` or ``{name: {expression = ..., topic = ...,
    description = ...}}`` (a TOML table ``[filters]`` reads as either)."""
    out = []
    for name, spec in config.items():
        if isinstance(spec, str):
            out.append(expression_filter(name, spec, origin="config"))
            continue
        if not isinstance(spec, Mapping) or "expression" not in spec:
            raise FilterError(f"config: filter {name!r} must be an expression or a table with 'expression'")
        unknown = set(spec) - (TOML_KEYS - {"name"})
        if unknown:
            raise FilterError(f"config: filter {name!r} has unknown keys {sorted(unknown)}")
        out.append(
            expression_filter(
                name,
                spec["expression"],
                description=spec.get("description", ""),
                topic=spec.get("topic"),
                origin="config",
                references=spec.get("references", ()),
            )
        )
    return out


def example_filters() -> list[Filter]:
    """The shipped examples (``EXAMPLES_DIR``)."""
    return load_filters(EXAMPLES_DIR)


# ============================================================================================ the set
@dataclass
class FirstError:
    """The first failure of a filter: what went wrong, on which record."""

    message: str
    candid: Any = None
    oid: Any = None
    survey: Any = None

    def as_dict(self) -> dict:
        return {"message": self.message, "candid": self.candid, "oid": self.oid, "survey": self.survey}


@dataclass
class FilterStats:
    """Counts of one filter over the records it saw (mergeable: a worker's counts add to the driver's)."""

    evaluated: int = 0
    matched: int = 0
    errors: int = 0
    seconds: float = 0.0
    first_error: FirstError | None = None

    def add(self, other: FilterStats) -> bool:
        """Adds ``other``'s counts; True when this brought the first error."""
        self.evaluated += other.evaluated
        self.matched += other.matched
        self.errors += other.errors
        self.seconds += other.seconds
        if self.first_error is None and other.first_error is not None:
            self.first_error = other.first_error
            return True
        return False


def _safe_get(record: Any, key: str) -> Any:
    try:
        return record.get(key)
    except Exception:
        return None


class FilterSet:
    """The run's filters: evaluates batches of annotated records and counts matches and errors per filter.

    ``report_errors``: log each filter's first error once (a warning naming the filter, the candid and the
    message). A copy on a Dask worker may turn it off and send :meth:`take_stats` to the driver, whose set
    :meth:`merge`\\ s them and logs there.
    """

    def __init__(self, filters: Iterable[Filter] = (), *, report_errors: bool = True) -> None:
        self.filters: list[Filter] = list(filters)
        seen: dict[str, str] = {}
        for f in self.filters:
            if f.name in seen:
                raise FilterError(f"two filters named {f.name!r}: {seen[f.name]} and {f.origin}")
            seen[f.name] = f.origin
        self.report_errors = report_errors
        self.stats: dict[str, FilterStats] = {f.name: FilterStats() for f in self.filters}

    @classmethod
    def load(
        cls,
        paths: Iterable[str | Path] = (),
        config: Mapping[str, Any] | None = None,
        *,
        examples: bool = False,
        report_errors: bool = True,
    ) -> FilterSet:
        """Filters from files/folders, the config's ``{name: expression}`` and (optionally) the shipped examples."""
        filters = example_filters() if examples else []
        for p in paths:
            filters.extend(load_filters(p))
        if config:
            filters.extend(filters_from_config(config))
        return cls(filters, report_errors=report_errors)

    def __len__(self) -> int:
        return len(self.filters)

    def __iter__(self):
        return iter(self.filters)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.filters]

    @property
    def topics(self) -> dict[str, str]:
        """Filter name -> its topic."""
        return {f.name: f.topic for f in self.filters}

    def evaluate(self, records: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
        """Indices (ascending) of the records each filter accepts, for every filter (empty lists included).
        Never raises for a filter's failure: the record counts as not matched and the error is counted."""
        out: dict[str, list[int]] = {}
        n = len(records)
        for f in self.filters:
            accept = f.accept
            stats = self.stats[f.name]
            hits: list[int] = []
            errors = 0
            t0 = time.perf_counter()
            for i in range(n):
                try:
                    if accept(records[i]):
                        hits.append(i)
                except Exception as exc:
                    errors += 1
                    if stats.first_error is None:
                        self._first_error(f, stats, records[i], exc)
            stats.seconds += time.perf_counter() - t0
            stats.evaluated += n
            stats.matched += len(hits)
            stats.errors += errors
            out[f.name] = hits
        return out

    def _first_error(self, f: Filter, stats: FilterStats, record: Any, exc: Exception) -> None:
        try:
            message = f"{type(exc).__name__}: {exc}"
        except Exception:  # an exception whose str() fails
            message = type(exc).__name__
        stats.first_error = FirstError(
            message[:500], _safe_get(record, "candid"), _safe_get(record, "oid"), _safe_get(record, "survey")
        )
        if self.report_errors:
            self._log_first_error(f.name, stats.first_error)

    @staticmethod
    def _log_first_error(name: str, err: FirstError) -> None:
        log.warning(
            "filter %s failed on candid %s: %s (later failures of this filter are only counted)",
            name,
            err.candid,
            err.message,
            extra={"filter": name, "candid": err.candid, "error": err.message},
        )

    def route(
        self, records: Sequence[Mapping[str, Any]], matches: Mapping[str, list[int]] | None = None
    ) -> dict[str, list[Mapping[str, Any]]]:
        """Topic -> the matching records (in record order, each once even when several filters of the topic
        match it); ``matches`` from :meth:`evaluate`, else evaluated here."""
        if matches is None:
            matches = self.evaluate(records)
        per_topic: dict[str, set[int]] = {}
        for f in self.filters:
            per_topic.setdefault(f.topic, set()).update(matches.get(f.name, ()))
        return {topic: [records[i] for i in sorted(idx)] for topic, idx in per_topic.items()}

    def take_stats(self) -> dict[str, FilterStats]:
        """The counts since the last call, and start counting afresh (first errors are kept, so each is
        reported once per set)."""
        taken = self.stats
        self.stats = {name: FilterStats(first_error=s.first_error) for name, s in taken.items()}
        return taken

    def merge(self, stats: Mapping[str, FilterStats]) -> None:
        """Add another copy's counts (e.g. :meth:`take_stats` from a worker); a first error new to this set is
        kept and logged once."""
        for name, other in stats.items():
            mine = self.stats.setdefault(name, FilterStats())
            if mine.add(other) and self.report_errors:
                self._log_first_error(name, mine.first_error)

    def summary(self) -> dict:
        """For the run report: per filter its topic, kind, counts, the first error and the cost per record."""
        filters = {}
        for f in self.filters:
            s = self.stats.get(f.name, FilterStats())
            filters[f.name] = {
                "topic": f.topic,
                "kind": f.kind,
                "description": f.description,
                "evaluated": s.evaluated,
                "matched": s.matched,
                "errors": s.errors,
                "first_error": s.first_error.as_dict() if s.first_error else None,
                "us_per_record": round(1e6 * s.seconds / s.evaluated, 3) if s.evaluated else None,
            }
        return {
            "filters": filters,
            "matched": sum(v["matched"] for v in filters.values()),
            "errors": sum(v["errors"] for v in filters.values()),
        }

    def render(self) -> str:
        """The summary as lines of text for the night report."""
        lines = []
        for name, s in self.summary()["filters"].items():
            line = f"  {name:<24} -> {s['topic']:<24} {s['matched']:>8} matched"
            if s["errors"]:
                err = s["first_error"] or {}
                line += f", {s['errors']} errors (first on candid {err.get('candid')}: {err.get('message')})"
            lines.append(line)
        return "\n".join(["filters:", *lines]) if lines else "filters: none"
