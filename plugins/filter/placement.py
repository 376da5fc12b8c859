"""Filter placement_problems: a numa_placement result checked against a plan.

Thin shell over plugins/plugin_utils/diagnosis/placement_check.py; docs in
placement_problems.yml beside this file.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.ktfleet.numa.plugins.plugin_utils.diagnosis.placement_check import (
    placement_problems as _problems,
)


def placement_problems(placement, plan):
    if not isinstance(placement, Mapping) or not isinstance(plan, Mapping):
        raise AnsibleFilterError("placement_problems: expects a numa_placement result and a plan (both mappings)")
    try:
        return _problems(placement, plan)
    except ValueError as exc:
        raise AnsibleFilterError(f"placement_problems: {exc}") from None


class FilterModule:
    def filters(self):
        return {"placement_problems": placement_problems}
