"""The guest probe (`check`): the guest's own NUMA/CPU view from sysfs, over SSH, against its
topology's layout."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .common import VmError
from .qemu import get_state, ssh_argv
from .topology import layout

# Runs on the guest (python3 there): the NUMA/CPU view from sysfs, as JSON.
GUEST_PROBE = r"""
import glob, json, os, re
def rd(p):
    try:
        return open(p).read().strip()
    except OSError:
        return None
def cpulist(s):
    out = []
    for part in (s or "").split(","):
        if part:
            a, _, b = part.partition("-")
            out += range(int(a), int(b or a) + 1)
    return out
nodes = {}
for d in sorted(glob.glob("/sys/devices/system/node/node[0-9]*")):
    nid = int(d.rsplit("node", 1)[1])
    mem = re.search(r"MemTotal:\s+(\d+) kB", rd(d + "/meminfo") or "")
    nodes[nid] = {"cpus": cpulist(rd(d + "/cpulist")), "distance": [int(x) for x in (rd(d + "/distance") or "").split()],
                  "mem_kib": int(mem.group(1)) if mem else None}
cpus = {}
for d in glob.glob("/sys/devices/system/cpu/cpu[0-9]*"):
    c = int(d.rsplit("cpu", 1)[1])
    cpus[c] = {"package": int(rd(d + "/topology/physical_package_id") or -1),
               "siblings": cpulist(rd(d + "/topology/thread_siblings_list"))}
print(json.dumps({"nodes": nodes, "cpus": cpus, "online": rd("/sys/devices/system/node/online")}))
"""


def vm_check(state_dir: Path, name: str) -> tuple[bool, list[str], dict]:
    """Compare the guest's sysfs view with its topology. Returns (ok, report lines, probe)."""
    st = get_state(state_dir, name)
    lay = layout(st["topology"])
    r = subprocess.run(ssh_argv(st, "python3", "-"), input=GUEST_PROBE, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise VmError(f"{name}: probe failed: {r.stderr.strip()}")
    probe = json.loads(r.stdout)
    nodes = {int(k): v for k, v in probe["nodes"].items()}
    cpus = {int(k): v for k, v in probe["cpus"].items()}
    problems, report = [], []
    if sorted(nodes) != sorted(lay["node_cpus"]):
        problems.append(f"nodes: want {sorted(lay['node_cpus'])}, guest has {sorted(nodes)}")
    for nid, want in sorted(lay["node_cpus"].items()):
        got = nodes.get(nid)
        if got is None:
            continue
        mem_mib = (got["mem_kib"] or 0) / 1024
        report.append(f"node {nid}: cpus {got['cpus']} mem {mem_mib:.0f} MiB dist {got['distance']}")
        if got["cpus"] != want:
            problems.append(f"node {nid}: want cpus {want}, guest has {got['cpus']}")
        if got["distance"] != lay["distances"][nid]:
            problems.append(f"node {nid}: want distances {lay['distances'][nid]}, guest has {got['distance']}")
        want_mem = lay["node_mem_mib"][nid]
        if not 0.5 * want_mem <= mem_mib <= want_mem:
            problems.append(f"node {nid}: MemTotal {mem_mib:.0f} MiB, want about {want_mem} MiB")
    if sorted(cpus) != list(range(lay["cpus"])):
        problems.append(f"cpus: want 0..{lay['cpus'] - 1}, guest has {sorted(cpus)}")
    sockets_seen: dict[int, set] = {}
    for c, info in sorted(cpus.items()):
        if info["siblings"] != lay["cpu_siblings"].get(c):
            problems.append(f"cpu{c}: want thread siblings {lay['cpu_siblings'].get(c)}, guest has {info['siblings']}")
        sockets_seen.setdefault(lay["cpu_socket"].get(c), set()).add(info["package"])
    if any(len(v) != 1 for v in sockets_seen.values()) or \
            len({next(iter(v)) for v in sockets_seen.values()}) != len(sockets_seen):
        problems.append(f"packages do not match sockets: {sockets_seen}")
    return not problems, report + [f"PROBLEM: {p}" for p in problems], probe
