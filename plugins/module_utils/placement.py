"""Where a running process really is: CPUs, memory nodes and memory policy.

Stdlib only (runs on the target). Reads /proc/<pid>/status and
/proc/<pid>/numa_maps; ``root`` lets tests point it at a copied /proc.
"""

from __future__ import annotations

import os
import re

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import parse_cpulist

_NODE_PAGES = re.compile(r"\bN(\d+)=(\d+)")
_PAGE_SIZE = re.compile(r"\bkernelpagesize_kB=(\d+)")


def _status_fields(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def summarize_numa_maps(text: str) -> dict:
    """Per-node resident bytes and the policies seen, from numa_maps text.

    The task policy (set by numactl or systemd's NUMAPolicy=) shows on every
    mapping without a policy of its own, so the stack's line carries it.
    """
    bytes_per_node: dict[int, int] = {}
    policies: dict[str, int] = {}
    task_policy = None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        policy = fields[1]
        policies[policy] = policies.get(policy, 0) + 1
        if "stack" in fields[2:]:
            task_policy = policy
        size = _PAGE_SIZE.search(line)
        page_bytes = int(size.group(1)) * 1024 if size else 4096
        for node, pages in _NODE_PAGES.findall(line):
            bytes_per_node[int(node)] = bytes_per_node.get(int(node), 0) + int(pages) * page_bytes
    return {
        "task_policy": task_policy,
        "memory_policies": sorted(policies),
        "bytes_per_node": {str(k): v for k, v in sorted(bytes_per_node.items())},
    }


def read_placement(pid: int, root: str = "/") -> dict:
    """Placement of one process; raises OSError if it is gone or unreadable."""
    base = os.path.join(root, "proc", str(pid))
    with open(os.path.join(base, "status"), encoding="ascii", errors="replace") as fh:
        status = _status_fields(fh.read())
    with open(os.path.join(base, "numa_maps"), encoding="ascii", errors="replace") as fh:
        maps = summarize_numa_maps(fh.read())
    cpus = status.get("Cpus_allowed_list", "")
    mems = status.get("Mems_allowed_list", "")
    return {
        "pid": pid,
        "cpus_allowed_list": cpus,
        "cpus_allowed": parse_cpulist(cpus, lenient=True),
        "mems_allowed_list": mems,
        "mems_allowed": parse_cpulist(mems, lenient=True),
        **maps,
    }
