"""Where the weights live under each policy, and whether they fit.

- replicate (legacy, USE_NUMA=1): a full copy on every node; ~1.1x the weights per
  copy (the seed: ~2.2x the model for two nodes; up to 2.35x was measured for
  DeepSeek-R1 Q4_K_M, which the headroom absorbs).
- shard (kt-kernel): 1/pools of the weights on each pool's node, strictly bound.
- bind to one node: all of it on that node, strictly bound (membind: no spill).
- interleave, or bind to several nodes: 1x in total, spread over the nodes; only
  the total is checked, the kernel may place pages on any node of the set.
Every limit keeps ``headroom`` (default 20%) of the memory free (the seed).
"""

from __future__ import annotations

import math
from fractions import Fraction

from .host import HostView
from .models import MemoryFit, Policy
from .sizes import format_size

REPLICA_FACTOR = Fraction(11, 10)  # exact: bytes must not depend on float rounding


def required_per_node(policy: Policy, nodes: list[int], weights: int) -> dict[int, int]:
    if policy is Policy.REPLICATE:
        return dict.fromkeys(nodes, math.ceil(weights * REPLICA_FACTOR))
    if len(nodes) == 1:
        return {nodes[0]: weights}
    # shard: one slice per pool; interleave / multi-node bind: an even spread
    return dict.fromkeys(nodes, math.ceil(weights / len(nodes)))


def is_strict(policy: Policy, nodes: list[int]) -> bool:
    """Does each node have to hold its own part (True) or only the set as a whole?"""
    return policy in (Policy.REPLICATE, Policy.SHARD) or (policy is Policy.BIND and len(nodes) == 1)


def limit(size: int, headroom: float) -> int:
    return int(size * (1 - headroom))


def fit(host: HostView, policy: Policy, nodes: list[int], weights: int, headroom: float) -> MemoryFit:
    required = required_per_node(policy, nodes, weights)
    available = {n: host.memory[n] for n in nodes}
    total = host.memory_of(nodes)
    fits: bool | None = None
    if total is not None:
        fits = sum(required.values()) <= limit(total, headroom)
        if is_strict(policy, nodes):
            fits = fits and all(required[n] <= limit(available[n], headroom) for n in nodes)
    return MemoryFit(
        fits=fits,
        required_total_bytes=sum(required.values()),
        required_per_node_bytes=required,
        available_total_bytes=total,
        available_per_node_bytes=available,
        headroom_ratio=headroom,
    )


def describe(policy: Policy, memory: MemoryFit) -> str:
    """One line: what is needed where, against which limit."""
    keep = f"keeping {memory.headroom_ratio:.0%} free"
    nodes = sorted(memory.required_per_node_bytes)
    if memory.fits is None:
        return f"memory: needs {format_size(memory.required_total_bytes)}; not checked, the facts carry no memory sizes"
    verdict = "fits" if memory.fits else "does NOT fit"
    if is_strict(policy, nodes):
        worst = min(
            nodes,
            key=lambda n: (
                limit(memory.available_per_node_bytes[n], memory.headroom_ratio)
                - memory.required_per_node_bytes[n]
            ),
        )
        per_node = memory.required_per_node_bytes[worst]
        room = limit(memory.available_per_node_bytes[worst], memory.headroom_ratio)
        where = (
            f"on node {nodes[0]}"
            if len(nodes) == 1
            else f"on each of nodes {_ids(nodes)} ({format_size(memory.required_total_bytes)} in total); tightest is node {worst}:"
        )
        return (
            f"memory {verdict}: {format_size(per_node)} {where} "
            f"limit {format_size(room)} of {format_size(memory.available_per_node_bytes[worst])} ({keep})"
        )
    room = limit(memory.available_total_bytes, memory.headroom_ratio)
    return (
        f"memory {verdict}: {format_size(memory.required_total_bytes)} spread over node(s) {_ids(nodes)}; "
        f"limit {format_size(room)} of {format_size(memory.available_total_bytes)} ({keep})"
    )


def _ids(nodes: list[int]) -> str:
    return ",".join(str(n) for n in nodes)
