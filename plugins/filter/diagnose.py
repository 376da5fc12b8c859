"""Filters diagnose and diagnosis_table: a numa_sample result judged against the plan.

Thin shells over plugins/plugin_utils/diagnosis/diagnosis.py; docs in diagnose.yml and
diagnosis_table.yml beside this file.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.ktfleet.numa.plugins.plugin_utils.diagnosis.diagnosis import diagnose as _diagnose
from ansible_collections.ktfleet.numa.plugins.plugin_utils.diagnosis.diagnosis import (
    render_table as _render_table,
)
from ansible_collections.ktfleet.numa.plugins.plugin_utils.plain import plain as _plain


def diagnose(sample, plan=None, facts=None, throughput=None, **thresholds):
    if not isinstance(sample, Mapping):
        raise AnsibleFilterError("diagnose: the input must be a ktfleet.numa.numa_sample result (a mapping)")
    for label, value in (("plan", plan), ("facts", facts), ("throughput", throughput)):
        if value is not None and not isinstance(value, Mapping):
            raise AnsibleFilterError(f"diagnose: {label} must be a mapping or null, got {type(value).__name__}")
    if isinstance(facts, Mapping) and "nodes" not in facts and isinstance(facts.get("numa"), Mapping):
        facts = facts["numa"]
    try:
        return _diagnose(
            _plain(sample), _plain(plan), _plain(facts), throughput=_plain(throughput),
            **{k: _plain(v) for k, v in thresholds.items()},
        )
    except ValueError as exc:
        raise AnsibleFilterError(f"diagnose: {exc}") from None


def diagnosis_table(result):
    if not isinstance(result, Mapping) or not isinstance(result.get("verdicts"), list):
        raise AnsibleFilterError("diagnosis_table: the input must be a ktfleet.numa.diagnose result")
    return _render_table(_plain(result))


class FilterModule:
    def filters(self):
        return {"diagnose": diagnose, "diagnosis_table": diagnosis_table}
