# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ktfleet.numa.tune_space, tune_next and tune_result: thin filters over plugin_utils/tuning.py.

Documentation: tune_space.yml, tune_next.yml and tune_result.yml beside this file.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

try:
    from ansible_collections.ktfleet.numa.plugins.plugin_utils import tuning
    from ansible_collections.ktfleet.numa.plugins.plugin_utils.errors import PlanError
    from ansible_collections.ktfleet.numa.plugins.plugin_utils.plain import plain
except ImportError as exc:  # pydantic missing on the controller
    tuning = None
    PlanError = ValueError  # type: ignore[assignment,misc]
    IMPORT_ERROR: Exception | None = exc
else:
    IMPORT_ERROR = None


def _call(name: str, func, *args: Any, **kwargs: Any) -> Any:
    if tuning is None:
        raise AnsibleFilterError(f"ktfleet.numa.{name} needs pydantic>=2.7 on the controller ({IMPORT_ERROR})")
    try:
        return func(*(plain(a) for a in args), **{k: plain(v) for k, v in kwargs.items()})
    except (KeyError, TypeError, ValueError) as exc:  # PlanError is a ValueError that names the variable
        text = str(exc) if isinstance(exc, PlanError) else f"unusable input ({exc})"
        raise AnsibleFilterError(f"ktfleet.numa.{name}: {text}") from None


def tune_space(facts: Any, model: Any, backend: Any = "sglang-kt", **options: Any) -> list[int]:
    """Thread counts the planner accepts on this host (and whose plan fits)."""
    return _call("tune_space", tuning and tuning.space, facts, model, backend, **options)


def tune_next(table: Any, start: Any, allowed: Any, step: Any = 1, tolerance: Any = 0.03) -> int | None:
    """The next thread count to measure, or None when the search is over."""
    return _call("tune_next", tuning and tuning.next_threads, table or [], int(start), allowed,
                 step=int(step), tolerance=float(tolerance))


def tune_result(table: Any, allowed: Any, backoff: Any = 2) -> dict:
    """Knee, chosen count, reason, and the table as text."""
    choice = _call("tune_result", tuning and tuning.choose, table or [], allowed, backoff=int(backoff))
    return {**choice, "text": tuning.table_text(plain(table or []), choice)}


class FilterModule:
    def filters(self) -> dict:
        return {"tune_space": tune_space, "tune_next": tune_next, "tune_result": tune_result}
