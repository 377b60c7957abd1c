"""Safe formulas: compute tools give the arithmetic answer, and nothing reaches Python."""

import pytest

from tools_runtime.formula import FormulaError, check_formula, evaluate, formula_arg_keys


def test_tip_is_arithmetic_not_a_hash():
    assert evaluate("round(bill * percent / 100, 2)", {"bill": 50, "percent": 15}) == 7.5
    assert evaluate("round(args['amount'] * rate, 2)", {"amount": 100, "rate": 0.92}) == 92.0


def test_preconditions_read_args_record_and_session():
    assert evaluate("len(password) >= 8", {"password": "correct horse"}) is True
    assert evaluate("len(password) >= 8", {"password": "short"}) is False
    assert evaluate("record['status'] != 'cancelled'", {}, record={"status": "open"}) is True
    assert evaluate("session['user'] == owner", {"owner": "ana"}, session={"user": "ana"}) is True
    assert evaluate("security in ('WPA2', 'WPA3')", {"security": "WEP"}) is False


def test_string_helpers_are_functions():
    assert evaluate("lower(name)", {"name": "HomeNet"}) == "homenet"
    assert evaluate("upper(strip(code))", {"code": " ab1 "}) == "AB1"
    assert evaluate("is_email(e)", {"e": "a@b.org"}) and not evaluate("is_email(e)", {"e": "nope"})
    assert evaluate("max(a, b) - min(a, b)", {"a": 3, "b": 10}) == 7


def test_missing_optional_argument_reads_as_none():
    assert evaluate("note is None", {}) is True


@pytest.mark.parametrize("expr", [
    "x.__class__",                       # attribute access, dunder
    "x.upper()",                         # any attribute, even a harmless method
    "(1).real",
    "__import__('os').system('true')",   # import through a builtin
    "__builtins__",                      # dunder name
    "_secret",                           # private name
    "open('/etc/passwd')",               # function not whitelisted
    "getattr(x, 'upper')",
    "eval('1')",
    "9 ** 9 ** 9",                       # huge exponent
    "2 ** 100000",
    "10 ** 29 * 10 ** 29",               # huge integer
    "'a' * 10 ** 9",                     # long string
    "str(x) * 100000",
    "[i for i in range(10 ** 9)]",       # comprehension bomb
    "{i: i for i in x}",
    "[1, 2, 3]",                         # collection literals
    "lambda: 1",
    "f'{x}'",
    "(y := 1)",
    "max(*x)",
    "min(**x)",
    "1 / 0",
    "'%s' % x",
    "x if True else",                    # syntax
    "import os",
    "1 + " * 300 + "1",                  # too long / too complex
])
def test_unsafe_or_broken_expressions_are_refused(expr):
    with pytest.raises(FormulaError):
        evaluate(expr, {"x": "abc"})


def test_refusal_happens_before_evaluation():
    with pytest.raises(FormulaError, match="attribute"):
        check_formula("args.__class__.__mro__")
    with pytest.raises(FormulaError, match="not allowed"):
        check_formula("exec('print(1)')")


def test_arg_keys_bare_and_subscripted():
    assert formula_arg_keys("round(bill * args['percent'] / 100, 2)") == {"bill", "percent"}
    assert formula_arg_keys("record['x'] > 1 and session['user'] == who") == {"who"}
