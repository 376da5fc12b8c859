# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ktfleet.numa.tune_space, tune_next, tune_result, tune_smt and tune_setup: thin filters over plugin_utils/tuning/tuning.py.

Documentation: tune_space.yml, tune_next.yml, tune_result.yml, tune_smt.yml and tune_setup.yml beside this file.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.ktfleet.numa.plugins.plugin_utils.errors import PlanError
from ansible_collections.ktfleet.numa.plugins.plugin_utils.needs_pydantic import core
from ansible_collections.ktfleet.numa.plugins.plugin_utils.plain import plain


def _call(name: str, func: str, *args: Any, **kwargs: Any) -> Any:
    tuning = core("tuning.tuning", name)
    try:
        return getattr(tuning, func)(*(plain(a) for a in args), **{k: plain(v) for k, v in kwargs.items()})
    except (KeyError, TypeError, ValueError) as exc:  # PlanError is a ValueError that names the variable
        text = str(exc) if isinstance(exc, PlanError) else f"unusable input ({exc})"
        raise AnsibleFilterError(f"ktfleet.numa.{name}: {text}") from None


def tune_space(facts: Any, model: Any, backend: Any = "sglang-kt", **options: Any) -> list[int]:
    """Thread counts the planner accepts on this host (and whose plan fits)."""
    return _call("tune_space", "space", facts, model, backend, **options)


def tune_next(table: Any, start: Any, allowed: Any, step: Any = 1, tolerance: Any = 0.03) -> int | None:
    """The next thread count to measure, or None when the search is over."""
    return _call("tune_next", "next_threads", table or [], int(start), allowed,
                 step=int(step), tolerance=float(tolerance))


def tune_result(table: Any, allowed: Any, backoff: Any = 2) -> dict:
    """Knee, chosen count, reason, and the table as text."""
    choice = _call("tune_result", "choose", table or [], allowed, backoff=int(backoff))
    return {**choice, "text": core("tuning.tuning", "tune_result").table_text(plain(table or []), choice)}


def tune_smt(smt: Any, backend: Any, facts: Any = None) -> bool:
    """Whether SMT siblings are part of the search."""
    return _call("tune_smt", "search_smt", smt, backend, facts)


def tune_setup(plan: Any, space: Any, **options: Any) -> dict:
    """The search's allowed counts, start, step, key and resumed table."""
    return _call("tune_setup", "search_setup", plan, space, **options)


class FilterModule:
    def filters(self) -> dict:
        return {"tune_space": tune_space, "tune_next": tune_next, "tune_result": tune_result,
                "tune_setup": tune_setup, "tune_smt": tune_smt}
