"""PlanError: bad input, said in one line that names the variable and what is allowed.

pydantic's ValidationError is never shown to users: ``from_validation_error`` turns it
into the same one-line style, e.g. ``ktfleet_model.weights_bytes: must be >= 0, got -5``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only a type here: the filters that raise PlanError load without pydantic
    from pydantic import ValidationError


class PlanError(ValueError):
    """Input the planner cannot use; ``str()`` is the message to show as is."""

    def __init__(self, variable: str, message: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {message}")


def dotted(prefix: str, loc: Sequence[int | str]) -> str:
    """'ktfleet_model' + ('numa_shards',) -> 'ktfleet_model.numa_shards'; list indices as [i]."""
    text = prefix
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe(error: dict, allowed: Sequence[str]) -> str:
    kind, ctx, got = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "missing":
        return "missing (required)"
    if kind == "extra_forbidden":
        return f"unknown key; allowed: {', '.join(allowed)}"
    bounds = {
        "greater_than_equal": ">=",
        "greater_than": ">",
        "less_than_equal": "<=",
        "less_than": "<",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit}, got {got!r}"
    if kind == "enum":
        return f"must be one of {ctx.get('expected')}, got {got!r}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number, got {got!r}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false, got {got!r}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number, got {got!r}"
    if kind in ("string_type", "string_too_short"):
        return f"must be a non-empty string, got {got!r}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list, got {got!r}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping, got {type(got).__name__}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s), got {got!r}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return f"{error['msg'].lower()}, got {got!r}"


def from_validation_error(
    err: ValidationError, label: Callable[[Sequence[int | str]], str], allowed: Sequence[str] = ()
) -> PlanError:
    """The first problem as a PlanError (one line), the others counted."""
    problems = err.errors(include_url=False)
    first = problems[0]
    # model-level validators report an empty loc: the message already names what is wrong
    where = label(tuple(first["loc"]))
    message = _describe(first, allowed)
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem(s))"
    return PlanError(where, message)
