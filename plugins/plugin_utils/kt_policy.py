"""sglang-kt (kt-kernel): one thread pool per NUMA node, the experts sharded over them.

kt-kernel pins each pool's threads to its node's physical cores and binds the pool's
memory strictly to that node. The pool count must divide the model's
``moe_intermediate_size`` and equal the shard count of pre-sharded AMX weights.
"""

from __future__ import annotations

from . import launch, memory, threads
from .decision import Decision, Inputs, best_node, ids
from .errors import PlanError
from .host import HostView
from .models import Backend, ModelSpec, Policy


def decide_kt(inputs: Inputs) -> Decision:
    host, model, opts = inputs.host, inputs.model, inputs.options
    if opts.policy in (Policy.REPLICATE, Policy.INTERLEAVE):
        raise PlanError(
            "ktfleet_policy",
            f"{opts.policy.value} is not possible with sglang-kt (kt-kernel splits the experts over per-node pools); allowed: auto, shard, bind",
        )
    warnings: list[str] = []
    reasons: list[str] = []
    if opts.smt:
        warnings.append(
            "ktfleet_smt ignored for sglang-kt: kt-kernel pins its threads to physical cores only"
        )
    kt_method, why_method = launch.infer_kt_method(model)
    shards, why_shards = launch.infer_numa_shards(model)
    if kt_method is None:
        warnings.append("kt_method unknown (set ktfleet_model.kt_method): SGLang then assumes AMXINT4")
    elif kt_method not in launch.KT_METHODS:
        warnings.append(f"kt_method {kt_method} is not one ktfleet knows ({', '.join(launch.KT_METHODS)})")
    if kt_method in launch.AMX_METHODS and not inputs.facts.cpu.flags.amx_tile:
        warnings.append(f"kt_method {kt_method} needs Intel AMX, which this CPU's flags do not show")

    usable = [n for n in host.cpu_nodes if host.memory[n] != 0]
    if not usable:
        raise PlanError(
            "ansible_facts.numa.nodes",
            "no node has both CPUs and memory: kt-kernel binds each pool's memory to its own node",
        )
    if opts.policy is Policy.BIND:
        if not _admissible_pools(1, model, shards):
            raise PlanError(
                "ktfleet_policy",
                f"bind uses one kt-kernel pool, but the weights are pre-sharded for {shards} nodes (numa_shards); use shard",
            )
        pools = _bind_node(inputs, usable)
        policy = Policy.BIND
        reasons.append(f"policy bind: one kt-kernel pool on node {pools[0]} (ktfleet_policy bind)")
    else:
        pools, fewer = _pick_pools(inputs, usable, shards)
        warnings += [fewer] if fewer else []
        policy = Policy.SHARD
        reasons.append(
            f"policy shard: kt-kernel splits the expert weights over one thread pool per node ({ids(pools)}), "
            "each pinned to its node's physical cores and strictly bound to its memory: ~1x the weights in total"
        )
    idle = [n for n in host.cpu_nodes if n not in pools]
    if idle:
        warnings.append(f"node(s) {ids(idle)} stay idle: {len(pools)} pool(s) on {ids(pools)}")
    caps = {n: host.capacity(n, smt=False) for n in pools}
    reserve = threads.reserved_cores(Backend.SGLANG_KT, opts.gpus, sum(caps.values()), opts.reserve_cores)
    plan_threads = threads.kt_pools(caps, reserve, opts.cpu_infer)
    reasons.append(
        f"threadpool_count {len(pools)}: one pool per CPU-bearing node used, --kt-numa-nodes {' '.join(map(str, pools))}"
    )
    reasons += [why for why in (why_method, why_shards) if why]
    fit = memory.fit(host, policy, pools, model.weights_bytes, opts.headroom)
    return Decision(policy, None, pools, pools, plan_threads, fit, kt_method, reasons, warnings)


def _admissible_pools(count: int, model: ModelSpec, shards: int | None) -> bool:
    if model.moe_intermediate_size and model.moe_intermediate_size % count:
        return False
    return not (shards and count != shards)


def _pick_pools(inputs: Inputs, usable: list[int], shards: int | None) -> tuple[list[int], str | None]:
    """The kt-kernel pool nodes, and a note when some usable nodes are left out."""
    host, model, opts = inputs.host, inputs.model, inputs.options
    size = model.moe_intermediate_size
    if shards and size and size % shards:
        raise PlanError(
            "ktfleet_model.numa_shards", f"{shards} shards cannot split moe_intermediate_size {size}"
        )
    if opts.nodes is not None:
        chosen = list(opts.nodes)
        bad = [n for n in chosen if n not in usable]
        if bad:
            raise PlanError(
                "ktfleet_nodes",
                f"node(s) {ids(bad)} cannot hold a kt-kernel pool (no usable CPUs or no memory); usable: {ids(usable)}",
            )
        if not _admissible_pools(len(chosen), model, shards):
            raise PlanError(
                "ktfleet_nodes",
                f"{len(chosen)} pool(s) are not possible: {_pool_rule(model, shards, len(usable))}",
            )
        return chosen, None
    if shards and shards > len(usable):
        raise PlanError(
            "ktfleet_model.numa_shards",
            f"the weights are sharded for {shards} NUMA nodes but this host has {len(usable)} usable node(s) ({ids(usable)}); "
            "convert them for this host's node count",
        )
    best: tuple[int, int, list[int]] | None = None
    for count in range(len(usable), 0, -1):
        if not _admissible_pools(count, model, shards):
            continue
        nodes = _balanced(usable, count, host)
        score = (min(host.cores[n] for n in nodes) * count, count)
        if best is None or score > best[:2]:
            best = (*score, nodes)
    chosen = best[2] if best else usable[:1]
    if len(chosen) == len(usable):
        return chosen, None
    return (
        chosen,
        f"{len(chosen)} pool(s) rather than {len(usable)}: {_pool_rule(model, shards, len(usable))}",
    )


def _pool_rule(model: ModelSpec, shards: int | None, usable: int) -> str:
    rules = []
    if model.moe_intermediate_size:
        rules.append(f"the pool count must divide moe_intermediate_size {model.moe_intermediate_size}")
    if shards:
        rules.append(f"the weights are pre-sharded for {shards} node(s) (numa_shards)")
    allowed = [k for k in range(1, usable + 1) if _admissible_pools(k, model, shards)]
    return "; ".join(rules) + f"; possible pool counts on this host: {', '.join(map(str, allowed)) or 'none'}"


def _balanced(nodes: list[int], count: int, host: HostView) -> list[int]:
    """``count`` nodes spread over the packages round-robin (more cores first, then lower id)."""
    by_package: dict[int, list[int]] = {}
    for node in nodes:
        key = host.package[node] if host.package[node] is not None else -1 - node
        by_package.setdefault(key, []).append(node)
    queues = [sorted(by_package[key], key=lambda n: (-host.cores[n], n)) for key in sorted(by_package)]
    chosen: list[int] = []
    while len(chosen) < count:
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return sorted(chosen)


def _bind_node(inputs: Inputs, usable: list[int]) -> list[int]:
    nodes = inputs.options.nodes
    if nodes is not None:
        if len(nodes) != 1 or nodes[0] not in usable:
            raise PlanError(
                "ktfleet_nodes",
                f"bind with sglang-kt takes exactly one node with CPUs and memory ({ids(usable)}), got {list(nodes)}; use policy shard for several",
            )
        return list(nodes)
    return [best_node(inputs, usable, Backend.SGLANG_KT)]
