"""HumanEval verdicts decided outside the program under test.

The problem's `check(candidate)` is parsed (AST, never string matching) into test calls: each `assert` whose
test is `candidate(C) == C` (either side), `candidate(C) is True/False/None`, `abs(candidate(C) - C) < C`,
`candidate(C)` or `not candidate(C)`, where each C is a constant expression (literals, arithmetic on them such
as `3 * 19`, and tuple/list/sorted/set of them) and `candidate(...)` may be wrapped in tuple/list/sorted/set. The sandboxed program then only makes those calls and
prints what each returned, as plain data: None, bool, int, float, str and lists, tuples, dicts and sets of
them, each value's exact type kept (a subclass, or any other object, is not plain data and fails the call).
The grader decodes the values and compares them with the literals in its own process, so nothing the program
does (an object whose `__eq__` says True to everything, printing a success marker it found in memory, exiting
early) can change a verdict: a pass needs the right values, computed.

Problems whose `check` has other statements (loops, helper variables, imports) or calls other functions cannot
be so parsed and keep the in-process path (the test program and its own asserts, `graders.build_test_program`);
every results row records which path graded it (`verdict`: "outside" or "in-process").
"""

from __future__ import annotations

import ast
import json
import math
import operator
from typing import NamedTuple, Optional

RESULTS_PREFIX = "ECMH-RESULTS "


class TestCall(NamedTuple):
    """One test call of a problem: `candidate(*args)`, and what its value must satisfy."""

    args: str  # the call's argument list, as source (constants only)
    conversion: str  # "", or "tuple" / "list" / "sorted" / "set": applied to the value (plain data) before the test
    kind: str  # "equal", "is" (True, False or None), "close", "true" or "false"
    expected: object = None  # "equal" / "is": the value; "close": (value, tolerance)


_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
               ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_CONVERSIONS = {"tuple": tuple, "list": list, "sorted": sorted, "set": set}  # applied to plain data only


def _constant(node: ast.AST):
    """The value of a constant expression: literals, arithmetic on them (`3 * 19`, `2.0 / 3.0`, `'ab' + 'c'`) and
    tuple/list/sorted/set of them. Anything else (a name, another call, a huge power) raises ValueError."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        left, right = _constant(node.left), _constant(node.right)
        if isinstance(node.op, ast.Pow) and not (isinstance(right, (int, float)) and abs(right) <= 64):
            raise ValueError("power too large")
        if isinstance(node.op, ast.Mult) and any(isinstance(x, int) and abs(x) > 10**4 for x in (left, right)) \
                and any(isinstance(x, (str, list, tuple)) for x in (left, right)):
            raise ValueError("repetition too large")
        return _ARITHMETIC[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _constant(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_constant(item) for item in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CONVERSIONS
            and len(node.args) == 1 and not node.keywords):
        return _CONVERSIONS[node.func.id](_constant(node.args[0]))
    raise ValueError(f"not a constant: {ast.unparse(node)[:60]}")


def _literal(node: ast.AST) -> tuple[bool, object]:
    try:
        return True, _constant(node)
    except (ValueError, TypeError, ZeroDivisionError, OverflowError, MemoryError, RecursionError):
        return False, None


def _candidate_call(node: ast.AST) -> Optional[tuple[str, str]]:
    """`(argument source, conversion)` of `candidate(CONSTANTS)` or `tuple/list/sorted/set(candidate(CONSTANTS))`
    (conversion "" for none), or None for anything else."""
    conversion = ""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CONVERSIONS
            and len(node.args) == 1 and not node.keywords):
        conversion, node = node.func.id, node.args[0]
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "candidate"
            and not node.keywords and all(_literal(arg)[0] for arg in node.args)):
        return None
    return ", ".join(ast.unparse(arg) for arg in node.args), conversion


def _test_call(test: ast.AST) -> Optional[TestCall]:
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        call = _candidate_call(test.operand)
        return None if call is None else TestCall(*call, "false")
    call = _candidate_call(test)
    if call is not None:
        return TestCall(*call, "true")
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return None
    left, op, right = test.left, test.ops[0], test.comparators[0]
    if isinstance(op, (ast.Eq, ast.Is)):
        for side, other in ((left, right), (right, left)):
            call, (is_literal, value) = _candidate_call(side), _literal(other)
            if call is not None and is_literal:
                if isinstance(op, ast.Is) and value not in (True, False, None):
                    return None
                return TestCall(*call, "equal" if isinstance(op, ast.Eq) else "is", value)
        return None
    if (isinstance(op, ast.Lt) and isinstance(left, ast.Call) and isinstance(left.func, ast.Name)
            and left.func.id == "abs" and len(left.args) == 1 and isinstance(left.args[0], ast.BinOp)
            and isinstance(left.args[0].op, ast.Sub)):
        call = _candidate_call(left.args[0].left)
        (value_ok, value), (tolerance_ok, tolerance) = _literal(left.args[0].right), _literal(right)
        if call is not None and value_ok and tolerance_ok:
            return TestCall(*call, "close", (value, tolerance))
    return None


def parse_check(test_source: str) -> Optional[list[TestCall]]:
    """The test calls of a problem's `check(candidate)`, or None when its tests are not all of the parsed forms."""
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return None
    checks = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "check"]
    if len(checks) != 1 or any(not isinstance(node, (ast.FunctionDef, ast.Assign, ast.Expr)) for node in tree.body):
        return None
    calls = []
    for statement in checks[0].body:
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # a docstring or a bare constant
        if not isinstance(statement, ast.Assert):
            return None
        if isinstance(statement.test, ast.Constant) and statement.test.value is True:
            continue  # `assert True` (a few problems end with it)
        call = _test_call(statement.test)
        if call is None:
            return None
        calls.append(call)
    return calls or None


# The driver appended to the solution program: it makes the calls and prints their values as plain data.
_DRIVER = '''

def __ecmh_plain(value, depth=0):
    kind = type(value)
    if depth > 50:
        raise TypeError("nested too deeply")
    if value is None or kind is bool or kind is int or kind is str:
        return value
    if kind is float:
        return {"float": repr(value)}
    if kind is list:
        return [__ecmh_plain(item, depth + 1) for item in value]
    if kind is tuple:
        return {"tuple": [__ecmh_plain(item, depth + 1) for item in value]}
    if kind is set or kind is frozenset:
        return {"set": [__ecmh_plain(item, depth + 1) for item in value]}
    if kind is dict:
        return {"dict": [[__ecmh_plain(k, depth + 1), __ecmh_plain(v, depth + 1)] for k, v in value.items()]}
    raise TypeError("not plain data: " + kind.__name__)


def __ecmh_run(calls):
    import json
    results = []
    for call in calls:
        try:
            results.append({"value": __ecmh_plain(call())})
        except BaseException as error:  # noqa: B036 - any failure of a call is that call's result
            results.append({"error": type(error).__name__})
    print("\\n%s" + json.dumps(results))


__ecmh_run([%s])
'''


def driver_program(solution: str, entry_point: str, calls: list[TestCall]) -> str:
    """The solution followed by the test calls; it prints one line of results."""
    thunks = ", ".join(f"lambda: {entry_point}({call.args})" for call in calls)
    return solution + _DRIVER % (RESULTS_PREFIX, thunks)


def _decode(value):
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if isinstance(value, dict):
        (kind, inner), = value.items()
        if kind == "float":
            return float(inner)
        if kind == "tuple":
            return tuple(_decode(item) for item in inner)
        if kind == "set":
            return {_decode(item) for item in inner}
        return {_decode(k): _decode(v) for k, v in inner}
    return value


def results_from(stdout: str) -> Optional[list]:
    """The call results the driver printed (the last results line), or None when there is none."""
    lines = [line for line in stdout.splitlines() if line.startswith(RESULTS_PREFIX)]
    if not lines:
        return None
    try:
        return json.loads(lines[-1][len(RESULTS_PREFIX):])
    except (json.JSONDecodeError, RecursionError):
        return None


def passes(calls: list[TestCall], results: Optional[list]) -> bool:
    """Whether every call returned a value that satisfies its test, judged here (not in the program)."""
    if results is None or len(results) != len(calls):
        return False
    for call, result in zip(calls, results):
        if not isinstance(result, dict) or "value" not in result:
            return False
        try:
            value = _decode(result["value"])
        except (TypeError, ValueError, KeyError):
            return False
        if not _satisfies(call, value):
            return False
    return True


def _satisfies(call: TestCall, value) -> bool:
    if call.conversion:
        if not isinstance(value, (list, tuple, set, dict, str)):
            return False
        value = _CONVERSIONS[call.conversion](value)
    if call.kind == "is":
        return value is call.expected
    if call.kind == "true":
        return bool(value)
    if call.kind == "false":
        return not value
    if call.kind == "equal":
        return value == call.expected
    expected, tolerance = call.expected
    return type(value) in (int, float) and not math.isnan(value) and abs(value - expected) < tolerance
