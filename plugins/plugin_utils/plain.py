"""Ansible's tagged and lazy containers as plain Python values (what pydantic and JSON expect).

The one converter: filters hand their arguments through it before pydantic sees
them, and the report through it before a record is saved as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def plain(value: Any, where: str | None = None, error: type[Exception] = ValueError) -> Any:
    """``value`` with every mapping a dict of str keys, every list/tuple a list and
    every str/int/float subclass (Ansible's tagged values) its base type.

    Anything else is kept as it is, unless ``where`` names the value: then it
    raises ``error`` naming the path to it (``where.key[0]``), since JSON cannot
    hold it.
    """
    if isinstance(value, Mapping):
        return {str(k): plain(v, None if where is None else f"{where}.{k}", error) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, None if where is None else f"{where}[{i}]", error) for i, v in enumerate(value)]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (str, int, float):
        if isinstance(value, kind):
            return kind(value)
    if where is None:
        return value
    raise error(f"{where}: {type(value).__name__} cannot be saved as JSON")
