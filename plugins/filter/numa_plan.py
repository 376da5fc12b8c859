# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ktfleet.numa.plan, cpu_infer and memory_fit: thin filters over the planner core.

Documentation: plan.yml, cpu_infer.yml, memory_fit.yml and weights_bytes.yml beside this file.
The core (plugins/plugin_utils/planner/planner.py) needs pydantic on the controller.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.ktfleet.numa.plugins.plugin_utils.errors import PlanError
from ansible_collections.ktfleet.numa.plugins.plugin_utils.needs_pydantic import core
from ansible_collections.ktfleet.numa.plugins.plugin_utils.plain import plain as _plain
from ansible_collections.ktfleet.numa.plugins.plugin_utils.sizes import files_bytes as _files_bytes


def _call(name: str, func: str, facts: Any, model: Any, backend: Any, options: dict) -> Any:
    planner = core("planner.planner", name)
    try:
        return getattr(planner, func)(
            _plain(facts), _plain(model), _plain(backend), **{k: _plain(v) for k, v in options.items()}
        )
    except PlanError as exc:
        raise AnsibleFilterError(f"ktfleet.numa.{name}: {exc}") from None


def plan(facts: Any, model: Any, backend: Any = "sglang-kt", **options: Any) -> dict:
    """The whole deployment plan (docs/plan.md) as a plain dict."""
    return _call("plan", "make_plan", facts, model, backend, options).model_dump(
        mode="json"
    )


def cpu_infer(facts: Any, model: Any = None, backend: Any = "sglang-kt", **options: Any) -> int:
    """--cpu_infer (legacy) or --kt-cpuinfer (sglang-kt) for this host."""
    return _call("cpu_infer", "cpu_infer", facts, model, backend, options)


def memory_fit(facts: Any, model: Any, backend: Any = "sglang-kt", **options: Any) -> dict:
    """The plan's memory block, plus the policy it was computed for."""
    policy, fit = _call("memory_fit", "memory_fit", facts, model, backend, options)
    return {"policy": policy.value, **fit.model_dump(mode="json")}


def weights_bytes(files: Any) -> int:
    """The size of ansible.builtin.find's files, each (device, inode) once."""
    core("planner.planner", "weights_bytes")
    if not isinstance(files, list):
        raise AnsibleFilterError(f"weights_bytes: expected find's files (a list), got {type(files).__name__}")
    return _files_bytes(_plain(files))


class FilterModule:
    def filters(self) -> dict:
        return {"plan": plan, "cpu_infer": cpu_infer, "memory_fit": memory_fit, "weights_bytes": weights_bytes}
