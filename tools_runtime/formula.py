"""Safe expressions for compute tools, field writes and preconditions.

Formulas come from model answers and spec files, so they are data, never code: they are parsed with
`ast`, checked against a short whitelist of node types, and evaluated by `simpleeval` (a maintained
evaluator that walks the tree itself; no `eval`, no `exec`). On top of what simpleeval refuses,
this module refuses attribute access of any kind (`x.lower()` is written `lower(x)`), names that
start with an underscore, comprehensions and collection literals, starred arguments, and operations
whose result would be huge (big exponents, long strings, repeated sequences, enormous integers).

Names an expression can read: the call's arguments (both bare, `bill`, and as `args['bill']`),
`record` (the record a call acts on, `{}` when none), `session`, `refs` (records of other entities the
arguments name, by entity: `refs['account']['balance']`) and a few constants.
"""

from __future__ import annotations

import ast
import math
import operator as op
from collections.abc import Mapping
from typing import Any

import simpleeval

MAX_EXPR_CHARS = 500
MAX_NODES = 200
MAX_STRING = 2_000
MAX_EXPONENT = 64
MAX_BASE = 10**9
MAX_INT_DIGITS = 30
MAX_SEQUENCE = 1_000


class FormulaError(ValueError):
    """A formula that is refused (unsafe or malformed) or that fails on its inputs."""


# Node types an expression may contain; everything else (Attribute, Lambda, comprehensions, list /
# dict / set literals, walrus, f-strings, starred arguments, …) is refused before evaluation.
_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression, ast.Expr, ast.Constant, ast.Name, ast.Load, ast.BinOp, ast.UnaryOp, ast.BoolOp,
    ast.Compare, ast.IfExp, ast.Call, ast.Subscript, ast.keyword, ast.Tuple,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd, ast.Not,
    ast.And, ast.Or, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
    ast.Is, ast.IsNot,
)


def _check_number(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**MAX_INT_DIGITS:
        raise FormulaError(f"number too large (more than {MAX_INT_DIGITS} digits)")
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        raise FormulaError("the result is not a finite number")
    if isinstance(value, str | list | tuple) and len(value) > MAX_STRING:
        raise FormulaError(f"value too long (more than {MAX_STRING} characters or items)")
    return value


def _guard(fn: Any) -> Any:
    def wrapped(*a: Any) -> Any:
        return _check_number(fn(*a))
    return wrapped


def _power(a: Any, b: Any) -> Any:
    if isinstance(a, int | float) and isinstance(b, int | float):
        if abs(b) > MAX_EXPONENT or abs(a) > MAX_BASE:
            raise FormulaError(f"exponent too large: {a} ** {b}")
    return _check_number(a ** b)


def _mult(a: Any, b: Any) -> Any:
    for seq, n in ((a, b), (b, a)):
        if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > MAX_STRING:
            raise FormulaError("sequence repetition too long")
    return _check_number(a * b)


def _div(a: Any, b: Any) -> Any:
    if b == 0:
        raise FormulaError("division by zero")
    return _check_number(a / b)


def _floordiv(a: Any, b: Any) -> Any:
    if b == 0:
        raise FormulaError("division by zero")
    return _check_number(a // b)


def _mod(a: Any, b: Any) -> Any:
    if isinstance(a, str):  # `'%s' % x` formatting is not arithmetic; refuse it
        raise FormulaError("string formatting with % is not supported")
    if b == 0:
        raise FormulaError("division by zero")
    return _check_number(a % b)


OPERATORS: dict[type[ast.AST], Any] = {
    ast.Add: _guard(op.add), ast.Sub: _guard(op.sub), ast.Mult: _mult, ast.Div: _div,
    ast.FloorDiv: _floordiv, ast.Mod: _mod, ast.Pow: _power, ast.USub: op.neg, ast.UAdd: op.pos,
    ast.Not: op.not_, ast.Eq: op.eq, ast.NotEq: op.ne, ast.Lt: op.lt, ast.LtE: op.le, ast.Gt: op.gt,
    ast.GtE: op.ge, ast.In: lambda x, y: op.contains(y, x), ast.NotIn: lambda x, y: not op.contains(y, x),
    ast.Is: lambda x, y: x is y, ast.IsNot: lambda x, y: x is not y,
}


def _round(x: Any, ndigits: int = 0) -> Any:
    if not isinstance(ndigits, int) or abs(ndigits) > 12:
        raise FormulaError("round(): ndigits must be a small integer")
    value = round(float(x), ndigits)
    return int(value) if ndigits == 0 else value


def _text(x: Any) -> str:
    return _check_number(str(x))


def _seq_arg(x: Any) -> Any:
    if isinstance(x, str | list | tuple | dict) and len(x) > MAX_SEQUENCE * 10:
        raise FormulaError("input too long")
    return x


def _agg(fn: Any) -> Any:
    def wrapped(*a: Any) -> Any:
        if len(a) == 1 and isinstance(a[0], list | tuple):
            a = tuple(a[0])
        if not a:
            raise FormulaError(f"{fn.__name__}() of nothing")
        if len(a) > MAX_SEQUENCE:
            raise FormulaError("too many values")
        return _check_number(fn(a))
    return wrapped


def _int(x: Any) -> int:
    if isinstance(x, str) and len(x.strip()) > MAX_INT_DIGITS:
        raise FormulaError("number too large")
    return _check_number(int(float(x)) if isinstance(x, str) and "." in x else int(x))


def _float(x: Any) -> float:
    if isinstance(x, str) and len(x) > 64:
        raise FormulaError("number too long")
    return _check_number(float(x))


# Whitelisted functions. String methods are offered as functions because attribute access is refused.
FUNCTIONS: dict[str, Any] = {
    "round": _round, "min": _agg(min), "max": _agg(max), "sum": _agg(sum), "abs": abs,
    "len": lambda x: len(_seq_arg(x)), "int": _int, "float": _float, "str": _text, "bool": bool,
    "floor": lambda x: math.floor(x), "ceil": lambda x: math.ceil(x),
    "sqrt": lambda x: _check_number(math.sqrt(x)),
    "lower": lambda s: _text(s).lower(), "upper": lambda s: _text(s).upper(),
    "strip": lambda s: _text(s).strip(), "title": lambda s: _text(s).title(),
    "contains": lambda s, sub: _text(sub).casefold() in _text(s).casefold(),
    "startswith": lambda s, p: _text(s).startswith(_text(p)),
    "endswith": lambda s, p: _text(s).endswith(_text(p)),
    "replace": lambda s, a, b: _text(_text(s).replace(_text(a), _text(b))),
    "concat": lambda *parts: _text("".join(_text(p) for p in parts)),
    "is_number": lambda x: _is_number(x),
    "is_email": lambda x: isinstance(x, str) and x.count("@") == 1 and "." in x.split("@")[1],
    "has_digit": lambda s: any(c.isdigit() for c in _text(s)),
    "has_upper": lambda s: any(c.isupper() for c in _text(s)),
    "has_lower": lambda s: any(c.islower() for c in _text(s)),
    "get": lambda mapping, key, default=None: mapping.get(key, default) if isinstance(mapping, Mapping) else default,
}
CONSTANTS: dict[str, Any] = {"True": True, "False": False, "None": None, "true": True, "false": False,
                             "null": None, "pi": math.pi}
RESERVED = frozenset({"args", "record", "session", "refs", *CONSTANTS})


def _is_number(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, int | float):
        return True
    try:
        float(str(x))
    except ValueError:
        return False
    return True


def check_formula(expr: Any) -> ast.Expression:
    """Parse `expr` and refuse anything outside the whitelist; the parsed tree on success."""
    if not isinstance(expr, str) or not expr.strip():
        raise FormulaError("a formula must be a non-empty string")
    if len(expr) > MAX_EXPR_CHARS:
        raise FormulaError(f"formula longer than {MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"not a valid expression: {exc.msg}") from exc
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise FormulaError(f"formula too complex (more than {MAX_NODES} parts)")
    for node in nodes:
        if isinstance(node, ast.Attribute):
            raise FormulaError(f"attribute access ('.{node.attr}') is not allowed; use functions like lower(x)")
    for node in nodes:
        if not isinstance(node, _ALLOWED_NODES):
            raise FormulaError(f"{type(node).__name__} is not allowed in a formula")
        if isinstance(node, ast.Name) and (node.id.startswith("_") or "__" in node.id):
            raise FormulaError(f"name '{node.id}' is not allowed")
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str) and len(node.value) > MAX_STRING:
                raise FormulaError("string constant too long")
            if isinstance(node.value, bytes | complex) or node.value is Ellipsis:
                raise FormulaError("only numbers, strings, booleans and None are allowed as constants")
            if isinstance(node.value, int) and abs(node.value) >= 10**MAX_INT_DIGITS:
                raise FormulaError("number constant too large")
        if isinstance(node, ast.keyword) and node.arg is None:
            raise FormulaError("'**' arguments are not allowed")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                name = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
                raise FormulaError(f"function '{name}' is not allowed (allowed: {', '.join(sorted(FUNCTIONS))})")
    return tree


def formula_names(expr: str) -> set[str]:
    """The bare names a (valid) formula reads, other than functions and constants."""
    tree = check_formula(expr)
    funcs = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - funcs - set(CONSTANTS)


def formula_arg_keys(expr: str) -> set[str]:
    """Argument names a formula reads, bare (`bill`) or subscripted (`args['bill']`)."""
    tree = check_formula(expr)
    keys = formula_names(expr) - RESERVED
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "args" \
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            keys.add(node.slice.value)
    return keys


class _Names(dict):
    """Lookup of names; a missing bare name reads as None (an optional argument left out)."""

    def __missing__(self, key: str) -> Any:
        return None


def evaluate(expr: str, args: Mapping[str, Any] | None = None, *, record: Mapping[str, Any] | None = None,
             session: Mapping[str, Any] | None = None, refs: Mapping[str, Any] | None = None) -> Any:
    """Evaluate a formula on a call's arguments (and the record and session); FormulaError if refused."""
    tree = check_formula(expr)
    args = dict(args or {})
    names = _Names({k: v for k, v in args.items() if isinstance(k, str) and k not in RESERVED
                    and not k.startswith("_")})
    names.update(CONSTANTS)
    names.update({"args": args, "record": dict(record or {}), "session": dict(session or {}),
                  "refs": {k: dict(v) for k, v in (refs or {}).items()}})
    evaluator = simpleeval.SimpleEval(operators=OPERATORS, functions=FUNCTIONS, names=names)
    evaluator.ATTR_INDEX_FALLBACK = False
    # A tuple literal is only a small fixed set of values (`x in ('WPA2', 'WPA3')`); the node count
    # bounds it, and its items are evaluated by the same checked walker.
    evaluator.nodes[ast.Tuple] = lambda node: tuple(evaluator._eval(e) for e in node.elts)
    try:
        return _check_number(evaluator.eval(expr.strip(), previously_parsed=tree.body))  # safe: simpleeval on a checked AST, no Python eval
    except FormulaError:
        raise
    except simpleeval.InvalidExpression as exc:
        raise FormulaError(str(getattr(exc, "message", exc))) from exc
    except (KeyError, IndexError) as exc:
        raise FormulaError(f"no value for {exc}") from exc
    except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
        raise FormulaError(f"cannot evaluate '{expr}': {exc}") from exc
