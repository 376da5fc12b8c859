"""Topology JSON (the format is in the package docstring) -> a validated CPU/memory layout and
QEMU's -m/-smp/-numa arguments."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .common import SHARED_DIR, VmError

TOPOLOGIES_FILE = SHARED_DIR / "topologies.json"


def load_topology(spec: str) -> tuple[str | None, dict]:
    """Returns (name or None, topology dict) from inline JSON, a file, or a named shape."""
    s = spec.strip()
    if s.startswith("{"):
        return None, json.loads(s)
    if os.path.isfile(s):
        return Path(s).stem, json.loads(Path(s).read_text())
    shapes = json.loads(TOPOLOGIES_FILE.read_text())
    shapes = shapes.get("topologies", shapes)
    if s not in shapes:
        raise VmError(f"unknown topology {s!r}: not JSON, not a file, not one of {sorted(shapes)}")
    return s, shapes[s]


def layout(topo: dict) -> dict:
    """Validate a topology and derive CPU placement and QEMU arguments.

    Returns {cpus, mem_mib, node_cpus: {id: [cpu]}, cpu_siblings: {cpu: [cpu]},
    cpu_socket: {cpu: socket}, distances, memory_only: [id], args: [qemu args]}.
    """
    def posint(key: str, default: int | None = None) -> int:
        v = topo.get(key, default)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise VmError(f"topology: {key} must be a positive integer, got {v!r}")
        return v

    sockets, cores, threads = posint("sockets"), posint("cores_per_socket"), posint("threads_per_core", 1)
    nodes = topo.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise VmError("topology: nodes must be a non-empty list")
    nodes = sorted(nodes, key=lambda n: n.get("id", -1))
    ids = [n.get("id") for n in nodes]
    if ids != list(range(len(nodes))):
        raise VmError(f"topology: node ids must be 0..{len(nodes) - 1}, each once; got {ids}")
    n_nodes = len(nodes)

    for n in nodes:
        mem = n.get("mem_mib")
        if not isinstance(mem, int) or isinstance(mem, bool) or mem < 128:
            raise VmError(f"topology: node {n['id']}: mem_mib must be an integer >= 128, got {mem!r}")
    memory_only = [n["id"] for n in nodes if n.get("cpus", True) is False]
    cpu_nodes = [n for n in nodes if n.get("cpus", True) is not False]
    if not cpu_nodes:
        raise VmError("topology: at least one node needs CPUs")

    # Cores of each socket -> node.
    core_node: dict[tuple[int, int], int] = {}
    for s in range(sockets):
        on_s = [n for n in cpu_nodes if n.get("socket") == s]
        if not on_s:
            raise VmError(f"topology: socket {s} has no CPU node")
        explicit = [n for n in on_s if "cores" in n]
        if explicit and len(explicit) != len(on_s):
            raise VmError(f"topology: socket {s}: give 'cores' for all of its nodes or none")
        if explicit:
            for n in on_s:
                for c in n["cores"]:
                    if not isinstance(c, int) or not 0 <= c < cores or (s, c) in core_node:
                        raise VmError(f"topology: node {n['id']}: bad or repeated core {c!r} on socket {s}")
                    core_node[(s, c)] = n["id"]
        else:
            if cores % len(on_s):
                raise VmError(f"topology: socket {s}: {cores} cores do not split evenly over {len(on_s)} nodes")
            per = cores // len(on_s)
            for i, n in enumerate(on_s):
                for c in range(i * per, (i + 1) * per):
                    core_node[(s, c)] = n["id"]
        missing = [c for c in range(cores) if (s, c) not in core_node]
        if missing:
            raise VmError(f"topology: socket {s}: cores {missing} are on no node")
    for n in cpu_nodes:
        if not isinstance(n.get("socket"), int) or not 0 <= n["socket"] < sockets:
            raise VmError(f"topology: node {n['id']}: socket must be 0..{sockets - 1}, got {n.get('socket')!r}")
        if "cores" in n and not n["cores"]:
            raise VmError(f"topology: node {n['id']}: empty core list (use \"cpus\": false for a memory node)")

    node_cpus: dict[int, list[int]] = {n["id"]: [] for n in nodes}
    siblings: dict[int, list[int]] = {}
    cpu_socket: dict[int, int] = {}
    for s in range(sockets):
        for c in range(cores):
            first = (s * cores + c) * threads
            sib = list(range(first, first + threads))
            for cpu in sib:
                node_cpus[core_node[(s, c)]].append(cpu)
                siblings[cpu] = sib
                cpu_socket[cpu] = s

    dist = topo.get("distances")
    if dist is None:
        dist = [[10 if i == j else 20 for j in range(n_nodes)] for i in range(n_nodes)]
    if (not isinstance(dist, list) or len(dist) != n_nodes
            or any(not isinstance(r, list) or len(r) != n_nodes for r in dist)):
        raise VmError(f"topology: distances must be a {n_nodes}x{n_nodes} matrix")
    for i in range(n_nodes):
        for j in range(n_nodes):
            v = dist[i][j]
            if not isinstance(v, int) or (i == j and v != 10) or (i != j and not 10 < v <= 255):
                raise VmError(f"topology: distances[{i}][{j}]={v!r}: 10 on the diagonal, 11..255 elsewhere")

    total_cpus = sockets * cores * threads
    total_mem = sum(n["mem_mib"] for n in nodes)
    args = ["-m", f"{total_mem}M",
            "-smp", f"cpus={total_cpus},sockets={sockets},cores={cores},threads={threads}"]
    for n in nodes:
        args += ["-object", f"memory-backend-ram,id=m{n['id']},size={n['mem_mib']}M",
                 "-numa", f"node,nodeid={n['id']},memdev=m{n['id']}"]
    for s in range(sockets):
        for c in range(cores):
            args += ["-numa", f"cpu,node-id={core_node[(s, c)]},socket-id={s},core-id={c}"]
    if n_nodes > 1:
        for i in range(n_nodes):
            for j in range(n_nodes):
                if i != j:
                    args += ["-numa", f"dist,src={i},dst={j},val={dist[i][j]}"]
    return {"cpus": total_cpus, "mem_mib": total_mem, "node_cpus": node_cpus, "cpu_siblings": siblings,
            "cpu_socket": cpu_socket, "distances": dist, "memory_only": memory_only,
            "node_mem_mib": {n["id"]: n["mem_mib"] for n in nodes}, "args": args}
