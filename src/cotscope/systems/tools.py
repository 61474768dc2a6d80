"""Tools an agent system may call. A tool takes the text the model wrote and returns text, or
raises `ToolError`; nothing a model writes is ever executed as code.

Built in: ``calculator`` (arithmetic through a parser of its own over Python's syntax tree:
numbers, + - * / // % **, unary signs and parentheses, nothing else) and ``notes`` (a
scratchpad the agent writes to and reads back). A user's tool loads by import path.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from .._registry import Registry

MAX_INPUT = 200
MAX_EXPONENT = 64
MAX_MAGNITUDE = 1e100


class ToolError(ValueError):
    """A call the tool refuses or cannot complete; its message goes back to the model."""


class Tool:
    """Text in, text out."""

    name: str = "?"
    description: str = ""

    def __call__(self, arguments: str) -> str:
        raise NotImplementedError


_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def calculate(expression: str) -> int | float:
    """The value of an arithmetic expression.

    Raises:
        ToolError: naming what is not allowed (a name, a call, an attribute, a string, ...),
            an input over 200 characters, an exponent over 64, a result over 1e100, or a
            division by zero.
    """
    text = expression.strip()
    if not text:
        raise ToolError("empty expression")
    if len(text) > MAX_INPUT:
        raise ToolError(f"expression longer than {MAX_INPUT} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise ToolError(f"not an arithmetic expression: {exc.msg if isinstance(exc, SyntaxError) else exc}") from None
    except RecursionError:
        raise ToolError("expression nested too deeply") from None
    return _value(tree.body)


def _value(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ToolError(f"only numbers are allowed, not {type(node.value).__name__} {node.value!r}")
        return _bounded(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _bounded(_UNARY[type(node.op)](_value(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolError(f"exponent {right} is larger than {MAX_EXPONENT}")
        try:
            return _bounded(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        except OverflowError:
            raise ToolError(f"result larger than {MAX_MAGNITUDE:g}") from None
    what = {ast.Name: "a name", ast.Call: "a function call", ast.Attribute: "an attribute", ast.Subscript: "a subscript"}
    raise ToolError(f"{what.get(type(node), type(node).__name__)} is not allowed; only numbers, + - * / // % ** and parentheses")


def _bounded(x: int | float) -> int | float:
    if isinstance(x, complex) or (isinstance(x, float) and not math.isfinite(x)) or abs(x) > MAX_MAGNITUDE:
        raise ToolError(f"result larger than {MAX_MAGNITUDE:g} or not a real number")
    return x


class Calculator(Tool):
    name = "calculator"
    description = "evaluates arithmetic: numbers, + - * / // % ** and parentheses"

    def __call__(self, arguments: str) -> str:
        value = calculate(arguments)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(round(value, 10) if isinstance(value, float) else value)


class Notes(Tool):
    name = "notes"
    description = "'write <text>' keeps a note; 'read' returns every note so far"

    def __init__(self) -> None:
        self.notes: list[str] = []

    def __call__(self, arguments: str) -> str:
        verb, _, text = arguments.strip().partition(" ")
        if verb == "write" and text.strip():
            self.notes.append(text.strip()[:MAX_INPUT])
            return f"saved ({len(self.notes)} notes)"
        if verb == "read":
            return "\n".join(self.notes) or "(no notes)"
        raise ToolError("use 'write <text>' or 'read'")


ToolFactory = Callable[[], Tool]
TOOLS = Registry("tool", group="cotscope.tools")
TOOLS.register("calculator")(Calculator)
TOOLS.register("notes")(Notes)


def register_tool(name: str) -> Callable[[ToolFactory], ToolFactory]:
    """Register a tool class (or a factory of one) under `name`."""
    return TOOLS.register(name)
