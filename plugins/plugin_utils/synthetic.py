# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Synthetic machines: a /sys + /proc tree for a server nobody recorded.

The demo fleet needs machines that hwloc's test corpus does not hold (the seed's
2 x Xeon Gold 6430, SNC, CXL memory expanders). ``write_tree(spec, dest)``
writes the files ``plugins/module_utils/topology.py`` reads, laid out the way
Linux lays them out on x86 (first thread of every core numbered first, socket by
socket, then their SMT siblings in the same order), so the real fact module reads
them back; tests/unit/test_synthetic.py checks it reads back exactly ``spec``.

A spec (JSON; sizes as ``sizes.parse_size`` reads them)::

    {"model_name": "Intel(R) Xeon(R) Gold 6430", "sockets": 2,
     "cores_per_socket": 32, "threads_per_core": 2, "nodes_per_socket": 1,
     "memory_per_node": "768G", "flags": ["avx512f", "avx512bw", "amx_tile"],
     "memory_only_nodes": [{"socket": 0, "memory": "256G"}],
     "gpus": [{"socket": 0, "device": "0x2684"}]}

Standard library only; nothing here is read by the planner (it reads the facts).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import format_cpulist

from .sizes import parse_size

MARKER = "KTFLEET-SYNTHETIC"  # a file at the top of every generated tree
LOCAL_DISTANCE, SOCKET_DISTANCE, REMOTE_DISTANCE, FAR_MEMORY_DISTANCE = 10, 12, 21, 30
_KEYS = {
    "model_name", "vendor", "sockets", "cores_per_socket", "threads_per_core", "nodes_per_socket",
    "memory_per_node", "flags", "memory_only_nodes", "gpus", "numa_balancing", "description",
}


class SpecError(ValueError):
    """A spec that cannot describe a machine; the message names the key."""


def _positive(spec: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{key}: expected a positive integer, got {value!r}")
    return value


def _size(value: Any, key: str) -> int:
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise SpecError(f"{key}: {exc}") from None
    if size < 1024:
        raise SpecError(f"{key}: {value!r} is less than 1K")
    return size


def normalize(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec checked, with defaults and sizes in bytes; SpecError on bad input."""
    if not isinstance(spec, Mapping):
        raise SpecError(f"a machine spec is a mapping, got {type(spec).__name__}")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise SpecError(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_KEYS))}")
    sockets = _positive(spec, "sockets")
    cores = _positive(spec, "cores_per_socket")
    per_socket = _positive(spec, "nodes_per_socket", 1)
    if cores % per_socket:
        raise SpecError(f"nodes_per_socket: {per_socket} does not divide cores_per_socket {cores}")
    far = []
    for i, item in enumerate(spec.get("memory_only_nodes") or []):
        socket = item.get("socket") if isinstance(item, Mapping) else None
        if not isinstance(socket, int) or not 0 <= socket < sockets:
            raise SpecError(f"memory_only_nodes[{i}].socket: expected 0..{sockets - 1}, got {socket!r}")
        far.append({"socket": socket, "memory": _size(item.get("memory"), f"memory_only_nodes[{i}].memory")})
    gpus = []
    for i, item in enumerate(spec.get("gpus") or []):
        socket = item.get("socket") if isinstance(item, Mapping) else None
        if not isinstance(socket, int) or not 0 <= socket < sockets:
            raise SpecError(f"gpus[{i}].socket: expected 0..{sockets - 1}, got {socket!r}")
        gpus.append({"socket": socket, "vendor": "0x10de", "device": str(item.get("device", "0x2684"))})
    flags = spec.get("flags") or []
    if not isinstance(flags, list) or not all(isinstance(f, str) and f.isidentifier() for f in flags):
        raise SpecError(f"flags: expected a list of cpuinfo flag names, got {flags!r}")
    return {
        "model_name": str(spec.get("model_name", "Synthetic CPU")),
        "vendor": str(spec.get("vendor", "GenuineIntel")),
        "sockets": sockets,
        "cores_per_socket": cores,
        "threads_per_core": _positive(spec, "threads_per_core", 1),
        "nodes_per_socket": per_socket,
        "memory_per_node": _size(spec.get("memory_per_node"), "memory_per_node"),
        "flags": list(flags),
        "memory_only_nodes": far,
        "gpus": gpus,
        "numa_balancing": 1 if spec.get("numa_balancing") else 0,
    }


def layout(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Where every CPU and node goes: {"cpus": {cpu: (socket, core, node)}, "nodes": [...]}.

    Nodes with CPUs come first (socket by socket), then the memory-only ones."""
    s = normalize(spec)
    sockets, cores, tpc, per_socket = s["sockets"], s["cores_per_socket"], s["threads_per_core"], s["nodes_per_socket"]
    total_cores = sockets * cores
    cores_per_node = cores // per_socket
    cpus = {}
    for thread in range(tpc):
        for socket in range(sockets):
            for core in range(cores):
                cpu = thread * total_cores + socket * cores + core
                cpus[cpu] = (socket, socket * cores + core, socket * per_socket + core // cores_per_node)
    nodes = [
        {"id": n, "socket": n // per_socket, "memory": s["memory_per_node"],
         "cpus": sorted(c for c, (_sock, _core, node) in cpus.items() if node == n)}
        for n in range(sockets * per_socket)
    ]
    for far in s["memory_only_nodes"]:
        nodes.append({"id": len(nodes), "socket": far["socket"], "memory": far["memory"], "cpus": []})
    return {"spec": s, "cpus": cpus, "nodes": nodes}


def _cpulist(cpus: list[int]) -> str:
    return format_cpulist(cpus)


def _cpumask(cpus: list[int], width: int) -> str:
    value = sum(1 << c for c in cpus)
    words = max((width + 31) // 32, 1)
    return ",".join(f"{(value >> (32 * w)) & 0xFFFFFFFF:08x}" for w in reversed(range(words)))


def _distance(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
    if a["id"] == b["id"]:
        return LOCAL_DISTANCE
    if not a["cpus"] or not b["cpus"]:  # CXL / HBM behind a socket: far, farther from the other socket
        return FAR_MEMORY_DISTANCE if a["socket"] == b["socket"] else FAR_MEMORY_DISTANCE + REMOTE_DISTANCE - SOCKET_DISTANCE
    return SOCKET_DISTANCE if a["socket"] == b["socket"] else REMOTE_DISTANCE


def _node_meminfo(nid: int, size: int) -> str:
    kb = size // 1024
    free = kb * 97 // 100  # a freshly booted host: a little in use
    return (
        f"Node {nid} MemTotal:       {kb} kB\n"
        f"Node {nid} MemFree:        {free} kB\n"
        f"Node {nid} MemUsed:        {kb - free} kB\n"
    )


def files(spec: Mapping[str, Any]) -> dict[str, str]:
    """{path relative to the root: content} of the whole tree."""
    lay = layout(spec)
    s, cpus, nodes = lay["spec"], lay["cpus"], lay["nodes"]
    ncpu = len(cpus)
    every = _cpulist(list(cpus))
    out = {MARKER: json.dumps(spec, sort_keys=True) + "\n"}
    base = "sys/devices/system/cpu/"
    for key in ("online", "present", "possible"):
        out[base + key] = every + "\n"
    for cpu, (socket, core, _node) in cpus.items():
        siblings = sorted(c for c, (_sock, k, _nd) in cpus.items() if k == core)
        package = sorted(c for c, (p, _core, _nd) in cpus.items() if p == socket)
        t = f"{base}cpu{cpu}/topology/"
        out[f"{base}cpu{cpu}/online"] = "1\n"
        out[t + "physical_package_id"] = f"{socket}\n"
        out[t + "core_id"] = f"{core - socket * s['cores_per_socket']}\n"
        for name, group in (("thread_siblings", siblings), ("core_siblings", package)):
            out[t + name + "_list"] = _cpulist(group) + "\n"
            out[t + name] = _cpumask(group, ncpu) + "\n"
        out[t + "core_cpus_list"] = out[t + "thread_siblings_list"]
        out[t + "package_cpus_list"] = out[t + "core_siblings_list"]
    nbase = "sys/devices/system/node/"
    ids = [n["id"] for n in nodes]
    out[nbase + "online"] = out[nbase + "possible"] = _cpulist(ids) + "\n"
    out[nbase + "has_cpu"] = _cpulist([n["id"] for n in nodes if n["cpus"]]) + "\n"
    out[nbase + "has_memory"] = _cpulist(ids) + "\n"
    for node in nodes:
        d = f"{nbase}node{node['id']}/"
        out[d + "cpulist"] = _cpulist(node["cpus"]) + "\n"
        out[d + "cpumap"] = _cpumask(node["cpus"], ncpu) + "\n"
        out[d + "meminfo"] = _node_meminfo(node["id"], node["memory"])
        out[d + "distance"] = " ".join(str(_distance(node, other)) for other in nodes) + "\n"
        for size in (2048, 1048576):
            out[f"{d}hugepages/hugepages-{size}kB/nr_hugepages"] = "0\n"
            out[f"{d}hugepages/hugepages-{size}kB/free_hugepages"] = "0\n"
    total_kb = sum(n["memory"] for n in nodes) // 1024
    out["proc/meminfo"] = (
        f"MemTotal:       {total_kb} kB\nMemFree:        {total_kb * 97 // 100} kB\n"
        f"MemAvailable:   {total_kb * 96 // 100} kB\n"
    )
    flags = " ".join(["fpu", "sse2", "ht" if s["threads_per_core"] > 1 else "nopl", *s["flags"]])
    out["proc/cpuinfo"] = "".join(
        f"processor\t: {cpu}\nvendor_id\t: {s['vendor']}\nmodel name\t: {s['model_name']}\n"
        f"physical id\t: {cpus[cpu][0]}\ncore id\t\t: {cpus[cpu][1] - cpus[cpu][0] * s['cores_per_socket']}\n"
        f"flags\t\t: {flags}\n\n"
        for cpu in sorted(cpus)
    )
    out["proc/cmdline"] = "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet\n"
    out["proc/sys/kernel/numa_balancing"] = f"{s['numa_balancing']}\n"
    out["sys/kernel/mm/transparent_hugepage/enabled"] = "always [madvise] never\n"
    for i, gpu in enumerate(s["gpus"]):
        local = [c for n in nodes if n["socket"] == gpu["socket"] for c in n["cpus"]]
        d = f"sys/bus/pci/devices/0000:{0x18 + 0x20 * i:02x}:00.0/"
        out[d + "class"] = "0x030200\n"
        out[d + "vendor"] = gpu["vendor"] + "\n"
        out[d + "device"] = gpu["device"] + "\n"
        out[d + "numa_node"] = f"{gpu['socket'] * s['nodes_per_socket']}\n"
        out[d + "local_cpulist"] = _cpulist(local) + "\n"
        out[d + "local_cpus"] = _cpumask(local, ncpu) + "\n"
    return out


def write_tree(spec: Mapping[str, Any], dest: str | os.PathLike) -> Path:
    """Write the tree for ``spec`` under ``dest`` (replacing what a previous run wrote)."""
    content = files(spec)
    root = Path(dest)
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).is_file():
            raise SpecError(f"{root}: exists and is not a synthetic machine; refusing to write into it")
        shutil.rmtree(root)  # a smaller spec must not leave the old CPUs behind
    for rel, text in content.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def main(argv: list[str] | None = None) -> int:
    """python -m ...synthetic SPEC_DIR DEST_DIR: one tree per SPEC_DIR/<name>.json in DEST_DIR/<name>."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: synthetic.py SPEC_DIR DEST_DIR", file=sys.stderr)
        return 2
    specs, dest = Path(args[0]), Path(args[1])
    for path in sorted(specs.glob("*.json")):
        try:
            write_tree(json.loads(path.read_text()), dest / path.stem)
        except (SpecError, ValueError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
