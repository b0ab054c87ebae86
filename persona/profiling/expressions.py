"""A small, safe expression language for tag and segment rules, evaluated over pandas columns.

Expressions are parsed with Python's `ast` and only a whitelist of nodes is accepted: names,
constants, and/or/not, comparisons, + - * /, and a few named functions. Nothing is ever passed
to `eval`; evaluation walks the checked tree and works on whole columns at once.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

QUANTILES = (0.5, 0.75, 0.9, 0.95)
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Eq: operator.eq, ast.NotEq: operator.ne}
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
          ast.Div: operator.truediv}
_FUNCTIONS = {"quantile": 2, "isnull": 1, "notnull": 1}
_CONSTANTS = {"true": True, "false": False, "null": None}


class ExpressionError(ValueError):
    """A rule that is not valid: bad syntax, an unknown name or a construct not allowed."""


@dataclass(frozen=True)
class Expression:
    text: str
    tree: ast.Expression
    names: frozenset[str]

    def evaluate(self, frame: pd.DataFrame, quantile: Callable[[str, float], float]) -> pd.Series:
        """A boolean Series over the frame's rows; missing values make comparisons false."""
        value = _eval(self.tree.body, frame, quantile)
        if not isinstance(value, pd.Series):
            value = pd.Series(value, index=frame.index)
        return value.fillna(False).astype(bool)


def compile_expression(text: str, known: Collection[str]) -> Expression:
    """Parse and check `text`; every name must be in `known`."""
    try:
        tree = ast.parse(str(text).strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse {text!r}: {exc.msg}") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        _check(node, text, known, names)
    return Expression(str(text), tree, frozenset(names))


def _check(node: ast.AST, text: str, known: Collection[str], names: set[str]) -> None:
    allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
               ast.BinOp, ast.Compare, ast.Name, ast.Constant, ast.Call, ast.Load,
               *_COMPARE, *_ARITH)
    if not isinstance(node, allowed):
        raise ExpressionError(f"{text!r}: {type(node).__name__} is not allowed in a rule")
    if isinstance(node, ast.Compare) and len(node.ops) != 1:
        raise ExpressionError(f"{text!r}: chain comparisons with 'and'")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            raise ExpressionError(
                f"{text!r}: only the functions {sorted(_FUNCTIONS)} may be called")
        if len(node.args) != _FUNCTIONS[node.func.id] or node.keywords:
            raise ExpressionError(
                f"{text!r}: {node.func.id} takes {_FUNCTIONS[node.func.id]} argument(s)")
        if not isinstance(node.args[0], ast.Name):
            raise ExpressionError(f"{text!r}: {node.func.id} takes a feature name first")
        if node.func.id == "quantile" and not (
                isinstance(node.args[1], ast.Constant) and node.args[1].value in QUANTILES):
            raise ExpressionError(f"{text!r}: quantile's q must be one of {QUANTILES}")
    if isinstance(node, ast.Name) and node.id not in _FUNCTIONS:
        if node.id in _CONSTANTS:
            return
        if node.id not in known:
            raise ExpressionError(f"{text!r}: unknown name {node.id!r}")
        names.add(node.id)
    allowed = (int, float, str, bool, type(None))
    if isinstance(node, ast.Constant) and not isinstance(node.value, allowed):
        raise ExpressionError(f"{text!r}: constant {node.value!r} is not allowed")


def _eval(node: ast.AST, frame: pd.DataFrame, quantile: Callable[[str, float], float]):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return _CONSTANTS[node.id] if node.id in _CONSTANTS else frame[node.id]
    if isinstance(node, ast.BoolOp):
        values = [_truth(_eval(v, frame, quantile), frame) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        out = values[0]
        for value in values[1:]:
            out = combine(out, value)
        return out
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, frame, quantile)
        return ~_truth(value, frame) if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.BinOp):
        return _ARITH[type(node.op)](_eval(node.left, frame, quantile),
                                     _eval(node.right, frame, quantile))
    if isinstance(node, ast.Compare):
        left, right = _eval(node.left, frame, quantile), _eval(node.comparators[0], frame, quantile)
        if left is None or right is None:  # `x == null` means isnull(x)
            other = right if left is None else left
            missing = pd.Series(other, index=frame.index).isna()
            return missing if isinstance(node.ops[0], ast.Eq) else ~missing
        result = _COMPARE[type(node.ops[0])](left, right)
        return _truth(result, frame) & _present(left, frame) & _present(right, frame)
    name = node.args[0].id  # a checked Call
    if node.func.id == "quantile":
        return quantile(name, float(node.args[1].value))
    missing = frame[name].isna()
    return missing if node.func.id == "isnull" else ~missing


def _truth(value, frame: pd.DataFrame) -> pd.Series:
    series = value if isinstance(value, pd.Series) else pd.Series(value, index=frame.index)
    return series.fillna(False).astype(bool)


def _present(value, frame: pd.DataFrame) -> pd.Series:
    if isinstance(value, pd.Series):
        return value.notna()
    present = value is not None and not (isinstance(value, float) and np.isnan(value))
    return pd.Series(present, index=frame.index)


def population_quantiles(values: pd.Series, levels: Collection[float]) -> dict[str, float]:
    """The `levels` quantiles of a feature over a population, keyed by the level as a string
    ("0.9"): over the users with a value other than zero. In a shop where most users never
    bought, the median spend or order value of everyone is 0, and "below the median" or "top
    10%" would hold for no buyer, or for every one. NaN when no user has such a value."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    numbers = numbers[numbers.notna() & (numbers != 0)]
    if numbers.empty:
        return {str(q): float("nan") for q in levels}
    table = numbers.quantile(list(levels))
    return {str(q): float(table.at[q]) for q in levels}


def quantiles_from(frame: pd.DataFrame, reference: Mapping[str, Mapping[str, float]] | None = None
                   ) -> Callable[[str, float], float]:
    """quantile(name, q): from `reference` ({feature: {"0.9": value}}) when it has the value,
    else over the frame itself (a batch of users is its own population), both as
    `population_quantiles` computes them."""
    def quantile(name: str, q: float) -> float:
        if reference and name in reference and str(q) in reference[name]:
            return float(reference[name][str(q)])
        return population_quantiles(frame[name], [q])[str(q)]
    return quantile
