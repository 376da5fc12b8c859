"""One host's NUMA layout as the planner needs it, derived once from the facts.

Fills the gaps the facts may have (no core topology, no per-node meminfo) with
estimates, and says so in ``notes`` so the plan's warnings carry it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import format_cpulist

from ..sizes import format_size
from .models import Facts


@dataclass(frozen=True)
class HostView:
    node_ids: tuple[int, ...]
    cpus: dict[int, tuple[int, ...]]
    cores: dict[int, int]
    memory: dict[int, int | None]  # MemTotal per node; None: unknown
    package: dict[int, int | None]
    memory_only: frozenset[int]
    gpu_nodes: tuple[int, ...]
    notes: tuple[str, ...]
    distances: dict[int, dict[int, int]] = field(default_factory=dict)  # node -> {node: SLIT}

    def memory_for(self, nodes: tuple[int, ...] | list[int]) -> list[int]:
        """The nodes to bind the memory of threads on ``nodes`` to: those of them
        with memory; a memoryless CPU node (memory 0) is never a membind target
        but takes its nearest memory node(s) by distance (every memory node when
        distances are unknown)."""
        out = [n for n in nodes if self.memory[n] != 0]
        for n in nodes:
            if self.memory[n] != 0:
                continue
            row = {m: d for m, d in self.distances.get(n, {}).items() if m in self.memory_nodes}
            near = [m for m, d in row.items() if d == min(row.values())] if row else list(self.memory_nodes)
            out += [m for m in near if m not in out]
        return sorted(out)

    @property
    def cpu_nodes(self) -> tuple[int, ...]:
        """Nodes whose allowed CPUs can run threads (never memory-only nodes)."""
        return tuple(
            n for n in self.node_ids if n not in self.memory_only and self.cpus[n] and self.cores[n] > 0
        )

    @property
    def memory_nodes(self) -> tuple[int, ...]:
        """Nodes that may hold memory (known non-zero or unknown)."""
        return tuple(n for n in self.node_ids if self.memory[n] != 0)

    def capacity(self, node: int, smt: bool) -> int:
        """Threads a node can run one per hardware unit: physical cores, or logical CPUs with SMT."""
        return len(self.cpus[node]) if smt else self.cores[node]

    def memory_of(self, nodes: tuple[int, ...] | list[int]) -> int | None:
        values = [self.memory[n] for n in nodes]
        return None if any(v is None for v in values) else sum(values)

    def memory_known(self) -> bool:
        return all(self.memory[n] is not None for n in self.node_ids)


def host_view(facts: Facts) -> HostView:
    notes: list[str] = []
    cpus = {n.id: tuple(sorted(n.cpus)) for n in facts.nodes}
    cores = {}
    for node in facts.nodes:
        if node.cores == 0 and node.cpus and not node.memory_only:
            # some kernels expose no core topology: count each CPU as a core
            cores[node.id] = len(node.cpus)
            notes.append(
                f"node {node.id}: no core topology in the facts; counted its {len(node.cpus)} CPUs as cores"
            )
        else:
            cores[node.id] = node.cores
    memory = _node_memory(facts, notes)
    package = {n.id: (min(n.package_ids) if n.package_ids else None) for n in facts.nodes}
    gpu_nodes = tuple(sorted({g.numa_node for g in facts.gpus if g.numa_node is not None}))
    ids = [n.id for n in facts.nodes]
    distances = {
        n.id: dict(zip(ids, n.distances, strict=True)) for n in facts.nodes if len(n.distances) == len(ids)
    }
    if facts.cpus_without_node:
        notes.append(
            f"CPUs {format_cpulist(facts.cpus_without_node)} belong to no NUMA node (node offline or firmware gap): "
            "no inference threads there, since no memory is local to them"
        )
    for gm in facts.gpu_memory_nodes:
        size = format_size(gm.memory_total_bytes) if gm.memory_total_bytes is not None else "unknown size"
        notes.append(
            f"node {gm.id} is GPU memory ({gm.pci_address or 'GPU unknown'}, {size}): "
            "never used for weights, pools, membind or interleave"
        )
    return HostView(
        node_ids=tuple(n.id for n in facts.nodes),
        cpus=cpus,
        cores=cores,
        memory=memory,
        package=package,
        memory_only=frozenset(n.id for n in facts.nodes if n.memory_only),
        gpu_nodes=gpu_nodes,
        notes=tuple(notes),
        distances=distances,
    )


def _node_memory(facts: Facts, notes: list[str]) -> dict[int, int | None]:
    memory = {n.id: n.memory_total_bytes for n in facts.nodes}
    unknown = [n for n, size in memory.items() if size is None]
    if not unknown:
        return memory
    if facts.memory_total_bytes is None:
        notes.append(
            "memory sizes unknown (no node or /proc/meminfo in the facts): the memory fit cannot be checked"
        )
        return memory
    if len(unknown) == len(memory) and len(memory) == 1:
        memory[unknown[0]] = facts.memory_total_bytes
        return memory
    # spread what the node files do not account for evenly over the silent nodes
    rest = max(facts.memory_total_bytes - sum(v for v in memory.values() if v is not None), 0)
    share = rest // len(unknown)
    for node in unknown:
        memory[node] = share
    listed = ", ".join(str(n) for n in unknown)
    notes.append(
        f"node(s) {listed}: no node meminfo; assumed {format_size(share)} each (MemTotal split evenly)"
    )
    return memory
