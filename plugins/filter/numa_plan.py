# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ktfleet.numa.plan, cpu_infer and memory_fit: thin filters over the planner core.

Documentation: plan.yml, cpu_infer.yml and memory_fit.yml beside this file.
The core (plugins/plugin_utils/planner.py) needs pydantic on the controller.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

try:
    from ansible_collections.ktfleet.numa.plugins.plugin_utils import planner
    from ansible_collections.ktfleet.numa.plugins.plugin_utils.errors import PlanError
    from ansible_collections.ktfleet.numa.plugins.plugin_utils.plain import plain as _plain
except ImportError as exc:  # pydantic missing on the controller
    planner = None
    PlanError = ValueError  # type: ignore[assignment,misc]
    IMPORT_ERROR: Exception | None = exc
else:
    IMPORT_ERROR = None


def _call(name: str, func, facts: Any, model: Any, backend: Any, options: dict) -> Any:
    if planner is None:
        raise AnsibleFilterError(
            f"ktfleet.numa.{name} needs pydantic>=2.7 on the controller ({IMPORT_ERROR})"
        )
    try:
        return func(
            _plain(facts), _plain(model), _plain(backend), **{k: _plain(v) for k, v in options.items()}
        )
    except PlanError as exc:
        raise AnsibleFilterError(f"ktfleet.numa.{name}: {exc}") from None


def plan(facts: Any, model: Any, backend: Any = "sglang-kt", **options: Any) -> dict:
    """The whole deployment plan (docs/plan.md) as a plain dict."""
    return _call("plan", planner and planner.make_plan, facts, model, backend, options).model_dump(
        mode="json"
    )


def cpu_infer(facts: Any, model: Any = None, backend: Any = "sglang-kt", **options: Any) -> int:
    """--cpu_infer (legacy) or --kt-cpuinfer (sglang-kt) for this host."""
    return _call("cpu_infer", planner and planner.cpu_infer, facts, model, backend, options)


def memory_fit(facts: Any, model: Any, backend: Any = "sglang-kt", **options: Any) -> dict:
    """The plan's memory block, plus the policy it was computed for."""
    policy, fit = _call("memory_fit", planner and planner.memory_fit, facts, model, backend, options)
    return {"policy": policy.value, **fit.model_dump(mode="json")}


class FilterModule:
    def filters(self) -> dict:
        return {"plan": plan, "cpu_infer": cpu_infer, "memory_fit": memory_fit}
