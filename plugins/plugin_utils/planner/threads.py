"""How many inference threads, and where they run.

The rules (KTransformers' docs and issues):
- count physical cores, not SMT siblings (oversubscribing SMT measured ~10x slower);
- kt-kernel splits ``--kt-cpuinfer`` evenly over its pools and a pool never gets more
  threads than its node has physical cores (extras run unpinned);
- the legacy multi-NUMA server splits its workers evenly over the nodes (an uneven
  split, 42 vs 41 threads, fell to 1 tok/s) and wants one more thread for scheduling
  (the seed: 65 on 2 x 32 cores).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import join_ids as _nodes_text

from ..errors import PlanError
from .models import Backend

LARGE_HOST_CORES = 64  # above this many cores in use, leave a few to the OS
OS_RESERVE = 2


@dataclass
class Threads:
    cpu_infer: int
    per_node: dict[int, int]
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def unit_name(smt: bool) -> str:
    return "logical CPUs (SMT on)" if smt else "physical cores"


def reserved_cores(backend: Backend, gpus: int, used_cores: int, override: int | None) -> tuple[int, str]:
    """Cores kept free of inference threads, and why."""
    if override is not None:
        return override, f"{override} reserved by ktfleet_reserve_cores"
    parts = []
    if backend is Backend.SGLANG_KT:
        parts.append(f"{gpus} for {gpus} GPU rank(s) (one core per tensor-parallel rank)")
    os_cores = OS_RESERVE if used_cores > LARGE_HOST_CORES else 0
    if os_cores:
        parts.append(f"{os_cores} for the OS (more than {LARGE_HOST_CORES} cores in use)")
    total = (gpus if backend is Backend.SGLANG_KT else 0) + os_cores
    return total, " + ".join(parts) if parts else "none"


def spread(total: int, caps: dict[int, int]) -> dict[int, int]:
    """Distribute threads over nodes in proportion to capacity, never above it (stable order)."""
    cap_sum = sum(caps.values())
    if cap_sum == 0:
        return dict.fromkeys(caps, 0)
    shares = {n: min(total * c // cap_sum, c) for n, c in caps.items()}
    left = total - sum(shares.values())
    order = sorted(caps, key=lambda n: (-(total * caps[n] % cap_sum), n))
    while left > 0 and any(shares[n] < caps[n] for n in caps):
        for n in order:
            if left and shares[n] < caps[n]:
                shares[n] += 1
                left -= 1
    return shares


def _even(total: int, nodes: list[int]) -> dict[int, int]:
    base, rest = divmod(total, len(nodes))
    return {n: base + (1 if i < rest else 0) for i, n in enumerate(nodes)}


def kt_pools(caps: dict[int, int], reserve: tuple[int, str], override: int | None) -> Threads:
    """sglang-kt: one pool per node, equal threads per pool."""
    nodes = sorted(caps)
    pools, total, smallest = len(nodes), sum(caps.values()), min(caps.values())
    if override is not None:
        if override < pools:
            raise PlanError(
                "ktfleet_cpu_infer",
                f"must be at least {pools}, one thread per pool (--kt-threadpool-count {pools}), got {override}",
            )
        split = _even(override, nodes)
        for node, threads in split.items():
            if threads > caps[node]:
                raise PlanError(
                    "ktfleet_cpu_infer",
                    f"{override} puts {threads} threads on node {node}, which has {caps[node]} physical cores "
                    f"(kt-kernel runs the extra threads unpinned); allowed: {pools} to {pools * smallest} on nodes {_nodes_text(nodes)}",
                )
        result = Threads(
            override, split, [f"cpu_infer {override}: set by ktfleet_cpu_infer, split {_split_text(split)}"]
        )
        if override % pools:
            result.warnings.append(
                f"ktfleet_cpu_infer {override} does not split evenly over {pools} pools ({_split_text(split)}): pools finish at different times"
            )
        return result
    reserved, why = reserve
    per_pool = min(smallest, (total - reserved) // pools)
    result = Threads(0, {})
    if per_pool < 1:
        per_pool = 1
        result.warnings.append(
            f"too few cores to reserve {reserved} ({why}): one thread per pool, nothing reserved"
        )
        why = "none (host too small)"
    result.cpu_infer = per_pool * pools
    result.per_node = dict.fromkeys(nodes, per_pool)
    result.reasons.append(
        f"cpu_infer {result.cpu_infer}: {total} physical cores on node(s) {_nodes_text(nodes)} ({_caps_text(caps)}), "
        f"reserved {why}; kt-kernel splits --kt-cpuinfer evenly over {pools} pool(s) and a pool never gets more "
        f"threads than its node has physical cores: {per_pool} per pool"
    )
    return result


def legacy_replicated(
    caps: dict[int, int], smt: bool, reserve: tuple[int, str], override: int | None
) -> Threads:
    """legacy with USE_NUMA=1: equal workers per node, plus one scheduling thread."""
    nodes = sorted(caps)
    count, total, smallest = len(nodes), sum(caps.values()), min(caps.values())
    if override is not None:
        limit = count * smallest + 1
        if override > limit or override < count + 1:
            raise PlanError(
                "ktfleet_cpu_infer",
                f"allowed: {count + 1} to {limit} ({count} nodes x {smallest} {unit_name(smt)} + 1 for scheduling), got {override}",
            )
        split = _even(override - 1, nodes)
        result = Threads(
            override,
            split,
            [
                f"cpu_infer {override}: set by ktfleet_cpu_infer; workers {_split_text(split)} + 1 for scheduling"
            ],
        )
        if (override - 1) % count:
            result.warnings.append(
                f"ktfleet_cpu_infer {override}: {override - 1} workers split unevenly over {count} nodes ({_split_text(split)}); "
                "an uneven split (42 vs 41 threads) has measured 1 tok/s; use a value of the form nodes x k + 1"
            )
        return result
    reserved, why = reserve
    per_node = max(min(smallest, (total - reserved) // count), 1)
    cpu_infer = per_node * count + 1
    reason = (
        f"cpu_infer {cpu_infer}: {count} nodes x {per_node} {unit_name(smt)} ({_caps_text(caps)}, reserved {why}) "
        f"+ 1 for scheduling (the seed's formula: cores + 1, 65 on 2 x 32 cores); workers split evenly, "
        "since an uneven split across nodes (42 vs 41 threads) has measured 1 tok/s"
    )
    return Threads(cpu_infer, dict.fromkeys(nodes, per_node), [reason])


def legacy_single_pool(
    caps: dict[int, int], smt: bool, reserve: tuple[int, str], override: int | None
) -> Threads:
    """legacy without multi-NUMA (bind or interleave): workers on the used nodes' cores, plus one."""
    nodes = sorted(caps)
    total = sum(caps.values())
    if override is not None:
        if not 2 <= override <= total + 1:  # one worker at least, plus the scheduling thread
            raise PlanError(
                "ktfleet_cpu_infer",
                f"allowed: 2 to {total + 1} ({total} {unit_name(smt)} on node(s) {_nodes_text(nodes)} + 1 for scheduling), got {override}",
            )
        workers = max(override - 1, 1)
        return Threads(override, spread(workers, caps), [f"cpu_infer {override}: set by ktfleet_cpu_infer"])
    reserved, why = reserve
    workers = max(total - reserved, 1)
    reason = (
        f"cpu_infer {workers + 1}: {total} {unit_name(smt)} on node(s) {_nodes_text(nodes)}, reserved {why}, "
        "+ 1 for scheduling (the seed's formula: cores + 1)"
    )
    return Threads(workers + 1, spread(workers, caps), [reason])


def _caps_text(caps: dict[int, int]) -> str:
    return ", ".join(f"node {n}: {c}" for n, c in sorted(caps.items()))


def _split_text(split: dict[int, int]) -> str:
    return ", ".join(f"node {n}: {t}" for n, t in sorted(split.items()))
