"""What the planner decided, and the inputs it decided from (shared by both backends)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import join_ids

from . import memory, threads
from .host import HostView
from .models import Backend, Facts, MemoryFit, ModelSpec, PlanOptions, Policy


@dataclass
class Decision:
    policy: Policy
    numa_build: bool | None
    cpu_nodes: list[int]  # run inference threads
    memory_nodes: list[int]  # may hold the weights
    threads: threads.Threads
    memory: MemoryFit
    kt_method: str | None = None
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Inputs:
    facts: Facts
    host: HostView
    model: ModelSpec
    backend: Backend
    options: PlanOptions


def best_node(inputs: Inputs, candidates: list[int], backend: Backend) -> int:
    """The node to bind to: one that fits, then most cores, GPU-local, most memory, lowest id."""
    host, opts, weights = inputs.host, inputs.options, inputs.model.weights_bytes

    def key(node: int) -> tuple:
        fits = memory.fit(
            host, Policy.BIND, [node], weights, opts.headroom, copied=backend is Backend.SGLANG_KT
        ).fits
        return (
            fits is not False,
            host.capacity(node, opts.smt and backend is Backend.LEGACY),
            node in host.gpu_nodes,
            host.memory[node] or 0,
            -node,
        )

    return max(candidates, key=key)


ids = join_ids  # the policies' name for a node list in their reasons
