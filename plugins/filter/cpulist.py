"""Filters cpulist and cpumask: the kernel's CPU list syntax ("0-3,8") read and
written as an irqbalance/kernel hex mask. Docs in cpulist.yml and cpumask.yml.

Used by roles/host_tuning to check ktfleet_tuning_inference_cpus against the
online CPUs and to write IRQBALANCE_BANNED_CPUS for irqbalance before 1.8.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import MAX_CPU, format_cpumask
from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import (
    parse_cpulist as _parse_kernel_cpulist,
)


def parse_cpulist(text) -> list[int]:
    """'0-3,8' -> [0, 1, 2, 3, 8]; a list of ids is checked and sorted. ValueError when malformed."""
    if isinstance(text, list | tuple | set):
        ids = []
        for item in text:
            if isinstance(item, bool) or not isinstance(item, int | str) or not str(item).strip().isdigit():
                raise ValueError(f"CPU ids are integers >= 0, got {item!r}")
            if int(item) >= MAX_CPU:
                raise ValueError(f"CPU ids are below {MAX_CPU}, got {item!r}")
            ids.append(int(item))
        return sorted(set(ids))
    if not isinstance(text, str):
        raise ValueError(f"expected a CPU list such as '0-3,8', got {type(text).__name__}")
    try:
        # the fact module's parser: the kernel's syntax, ranges capped at MAX_CPU
        return _parse_kernel_cpulist(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a CPU list such as '0-3,8' ({exc})") from None


def cpulist(value):
    try:
        return parse_cpulist(value)
    except ValueError as exc:
        raise AnsibleFilterError(f"cpulist: {exc}") from None


def cpumask(value):
    try:
        return format_cpumask(parse_cpulist(value))
    except ValueError as exc:
        raise AnsibleFilterError(f"cpumask: {exc}") from None


class FilterModule:
    def filters(self):
        return {"cpulist": cpulist, "cpumask": cpumask}
