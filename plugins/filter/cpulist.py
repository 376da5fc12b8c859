"""Filters cpulist and cpumask: the kernel's CPU list syntax ("0-3,8") read and
written as an irqbalance/kernel hex mask. Docs in cpulist.yml and cpumask.yml.

Used by roles/host_tuning to check ktfleet_tuning_inference_cpus against the
online CPUs and to write IRQBALANCE_BANNED_CPUS for irqbalance before 1.8.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.ktfleet.numa.plugins.module_utils.topology import MAX_CPU
from ansible_collections.ktfleet.numa.plugins.module_utils.topology import (
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


def format_mask(ids: list[int]) -> str:
    """Hex mask in 32-bit groups, highest first, as the kernel prints cpumasks: '1,00000003'."""
    mask = 0
    for cpu in ids:
        mask |= 1 << cpu
    digits = f"{mask:x}"
    pad = (-len(digits)) % 8
    digits = "0" * pad + digits
    groups = [digits[i : i + 8] for i in range(0, len(digits), 8)]
    groups[0] = groups[0].lstrip("0") or "0"
    return ",".join(groups)


def cpulist(value):
    try:
        return parse_cpulist(value)
    except ValueError as exc:
        raise AnsibleFilterError(f"cpulist: {exc}") from None


def cpumask(value):
    try:
        return format_mask(parse_cpulist(value))
    except ValueError as exc:
        raise AnsibleFilterError(f"cpumask: {exc}") from None


class FilterModule:
    def filters(self):
        return {"cpulist": cpulist, "cpumask": cpumask}
