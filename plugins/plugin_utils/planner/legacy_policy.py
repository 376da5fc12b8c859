"""legacy (KTransformers 0.2.x-0.3.x server): replicate, bind or interleave.

The multi-NUMA build (``USE_NUMA=1``) copies the weights to every node itself
(``numa_num_configured_nodes()``, whatever numactl says) and pins worker threads on
each; a build without it holds one copy wherever numactl puts it.
"""

from __future__ import annotations

from ..errors import PlanError
from . import memory, threads
from .decision import Decision, Inputs, best_node, ids
from .host import HostView
from .models import Backend, Policy


def decide_legacy(inputs: Inputs) -> Decision:
    host, opts = inputs.host, inputs.options
    if opts.policy is Policy.SHARD:
        raise PlanError(
            "ktfleet_policy",
            "shard is sglang-kt only (the legacy server has no per-node pools); allowed: auto, replicate, bind, interleave",
        )
    warnings = []
    if opts.smt:
        warnings.append(
            "ktfleet_smt: threads count logical CPUs; oversubscribing SMT measured ~10x slower for large models "
            "(126 threads on 2 x 32 cores: 13 -> 0.52 tok/s); only small models may gain"
        )
    build = opts.numa_build
    single = len(host.memory_nodes) <= 1 and len(host.cpu_nodes) == 1
    if single:
        if opts.policy is Policy.INTERLEAVE:
            raise PlanError("ktfleet_policy", "interleave needs more than one node; this host has one")
        decision = _legacy_bind(inputs, list(host.cpu_nodes), bool(build))
        decision.reasons.insert(
            0, f"policy bind: single-node host (node {host.cpu_nodes[0]}): nothing to replicate or interleave"
        )
    elif opts.policy is Policy.REPLICATE:
        decision = _legacy_replicate_checked(inputs, build)
    elif opts.policy in (Policy.BIND, Policy.INTERLEAVE):
        _refuse_numa_build(build, opts.policy)
        decision = (
            _legacy_bind(inputs, _explicit_bind_nodes(inputs), False)
            if opts.policy is Policy.BIND
            else _legacy_interleave(inputs)
        )
        decision.reasons.insert(0, f"policy {opts.policy.value}: ktfleet_policy {opts.policy.value}")
    else:
        decision = _legacy_auto(inputs, build)
    if opts.cache_lens <= opts.max_batch_size * opts.max_new_tokens:
        warnings.append(
            f"ktfleet_cache_lens {opts.cache_lens} <= max_batch_size {opts.max_batch_size} x max_new_tokens "
            f"{opts.max_new_tokens}: the server then runs fewer requests at once (KTransformers' balance_serve docs)"
        )
    decision.warnings = warnings + decision.warnings
    return decision


def _replicate_blocker(host: HostView, nodes: tuple[int, ...] | None) -> str | None:
    """Why a USE_NUMA=1 server cannot run here, or None when it can."""
    memory_nodes = list(host.memory_nodes)
    if len(memory_nodes) < 2:
        return "the host has one memory node: nothing to replicate"
    if host.memory_only:
        return f"memory-only node(s) {ids(sorted(host.memory_only))} would get a copy but can run no threads"
    if set(memory_nodes) != set(host.cpu_nodes):
        odd = sorted(set(memory_nodes) ^ set(host.cpu_nodes))
        return f"node(s) {ids(odd)} lack usable CPUs or memory, and the server places a copy and threads on every node"
    if list(host.node_ids) != list(range(len(host.node_ids))):
        return f"node ids {ids(host.node_ids)} are not 0..{len(host.node_ids) - 1}, which the server assumes"
    if nodes is not None and set(nodes) != set(memory_nodes):
        return "a USE_NUMA=1 server always uses every node (it counts them itself; numactl cannot narrow it), so ktfleet_nodes cannot pick a subset"
    return None


def _refuse_numa_build(build: bool | None, policy: Policy) -> None:
    if build:
        raise PlanError(
            "ktfleet_legacy_numa_build",
            f"true conflicts with ktfleet_policy {policy.value}: a USE_NUMA=1 server copies the weights to every node "
            "whatever numactl says, and its threads for the other nodes fail to pin; use false (a build without USE_NUMA) or policy replicate",
        )


def _legacy_replicate_checked(inputs: Inputs, build: bool | None) -> Decision:
    if build is False:
        raise PlanError(
            "ktfleet_policy",
            "replicate needs the multi-NUMA build (USE_NUMA=1), but ktfleet_legacy_numa_build is false",
        )
    blocker = _replicate_blocker(inputs.host, inputs.options.nodes)
    if blocker:
        raise PlanError("ktfleet_policy", f"replicate is not possible on this host: {blocker}")
    decision = _legacy_replicate(inputs)
    decision.reasons.insert(0, "policy replicate: ktfleet_policy replicate")
    return decision


def _legacy_auto(inputs: Inputs, build: bool | None) -> Decision:
    host, opts, weights = inputs.host, inputs.options, inputs.model.weights_bytes
    rejected: list[str] = []
    blocker = _replicate_blocker(host, opts.nodes)
    if build is True:
        if blocker:
            raise PlanError(
                "ktfleet_legacy_numa_build",
                f"true, but a USE_NUMA=1 server cannot run on this host: {blocker}; use false",
            )
        decision = _legacy_replicate(inputs)
        decision.reasons.insert(
            0,
            "policy replicate: the server is the multi-NUMA build (ktfleet_legacy_numa_build true), which always replicates",
        )
        return decision
    if not host.memory_known():
        decision = (
            _legacy_interleave(inputs)
            if len(_candidate_cpu_nodes(inputs)) > 1
            else _legacy_bind(inputs, _candidate_cpu_nodes(inputs), False)
        )
        decision.reasons.insert(
            0,
            f"policy {decision.policy.value}: memory sizes unknown, so not replicating; the policy that needs least memory per node",
        )
        return decision
    if build is None and not blocker:
        replicated = _legacy_replicate(inputs)
        if replicated.memory.fits:
            replicated.reasons.insert(
                0,
                "policy replicate: every node fits a full copy of the weights, so every thread reads local memory (fastest)",
            )
            return replicated
        rejected.append("replicate does not fit (a copy per node)")
    elif blocker:
        rejected.append(f"no replicate: {blocker}")
    else:
        rejected.append("no replicate: ktfleet_legacy_numa_build is false")
    candidates = [n for n in _candidate_cpu_nodes(inputs) if host.memory[n] != 0]
    fitting = [
        n for n in candidates if memory.fit(host, Policy.BIND, [n], weights, opts.headroom, copied=False).fits
    ]
    if fitting:
        decision = _legacy_bind(inputs, [best_node(inputs, fitting, Backend.LEGACY)], False)
        decision.reasons.insert(0, f"policy bind: one node holds the weights; {'; '.join(rejected)}")
        return decision
    rejected.append("no single node fits them")
    decision = _legacy_interleave(inputs)
    verdict = (
        "the weights fit only spread over the nodes"
        if decision.memory.fits
        else "nothing fits; interleave needs the least per node"
    )
    decision.reasons.insert(0, f"policy interleave: {verdict}; {'; '.join(rejected)}")
    return decision


def _candidate_cpu_nodes(inputs: Inputs) -> list[int]:
    nodes = inputs.options.nodes
    chosen = [n for n in inputs.host.cpu_nodes if nodes is None or n in nodes]
    if not chosen:
        raise PlanError(
            "ktfleet_nodes",
            f"none of {list(nodes or [])} has usable CPUs; nodes with CPUs: {ids(inputs.host.cpu_nodes)}",
        )
    return chosen


def _explicit_bind_nodes(inputs: Inputs) -> list[int]:
    host, nodes = inputs.host, inputs.options.nodes
    if nodes is None:
        candidates = [n for n in host.cpu_nodes if host.memory[n] != 0]
        return [best_node(inputs, candidates or list(host.cpu_nodes), Backend.LEGACY)]
    bad = [n for n in nodes if n not in host.cpu_nodes]
    if bad:
        raise PlanError(
            "ktfleet_nodes",
            f"bind runs threads on every listed node, but node(s) {ids(bad)} have no usable CPUs",
        )
    return list(nodes)


def _legacy_threads(inputs: Inputs, nodes: list[int], replicated: bool) -> threads.Threads:
    host, opts = inputs.host, inputs.options
    caps = {n: host.capacity(n, opts.smt) for n in nodes}
    physical = sum(host.cores[n] for n in nodes)
    reserve = threads.reserved_cores(Backend.LEGACY, opts.gpus, physical, opts.reserve_cores)
    if replicated:
        return threads.legacy_replicated(caps, opts.smt, reserve, opts.cpu_infer)
    return threads.legacy_single_pool(caps, opts.smt, reserve, opts.cpu_infer)


def _legacy_replicate(inputs: Inputs) -> Decision:
    nodes = list(inputs.host.memory_nodes)
    fit = memory.fit(
        inputs.host, Policy.REPLICATE, nodes, inputs.model.weights_bytes, inputs.options.headroom
    )
    reasons = [
        f"numa_build true: the server must be built with USE_NUMA=1; it keeps a full copy on each of node(s) {ids(nodes)} "
        f"(1x the weights per copy + a {float(memory.MARGIN_SHARE)}x margin), threadpool_count {len(nodes)} copies"
    ]
    return Decision(
        Policy.REPLICATE, True, nodes, nodes, _legacy_threads(inputs, nodes, True), fit, None, reasons
    )


def _legacy_bind(inputs: Inputs, nodes: list[int], build: bool) -> Decision:
    fit = memory.fit(
        inputs.host, Policy.BIND, nodes, inputs.model.weights_bytes, inputs.options.headroom, copied=build
    )
    reasons = [_build_reason(inputs.host, build)]
    memory_nodes = inputs.host.memory_for(nodes)
    if memory_nodes != sorted(nodes):
        reasons.append(
            f"node(s) {ids([n for n in nodes if n not in memory_nodes])} have CPUs but no memory: "
            f"memory bound to node(s) {ids(memory_nodes)} instead"
        )
        fit = memory.fit(
            inputs.host, Policy.BIND, memory_nodes, inputs.model.weights_bytes, inputs.options.headroom
        )
    return Decision(
        Policy.BIND, build, nodes, memory_nodes, _legacy_threads(inputs, nodes, False), fit, None, reasons
    )


def _legacy_interleave(inputs: Inputs) -> Decision:
    host, nodes = inputs.host, inputs.options.nodes
    memory_nodes = [n for n in host.memory_nodes if nodes is None or n in nodes]
    if nodes is not None:
        empty = [n for n in nodes if n not in host.memory_nodes]
        if empty:
            raise PlanError("ktfleet_nodes", f"node(s) {ids(empty)} have no memory to interleave over")
    cpu_nodes = [n for n in host.cpu_nodes if n in memory_nodes or (nodes is None)]
    if not cpu_nodes:
        raise PlanError(
            "ktfleet_nodes",
            f"interleave needs at least one listed node with CPUs; nodes with CPUs: {ids(host.cpu_nodes)}",
        )
    fit = memory.fit(
        host, Policy.INTERLEAVE, memory_nodes, inputs.model.weights_bytes, inputs.options.headroom, copied=False
    )
    reasons = [
        _build_reason(host, False),
        f"interleave: pages alternate over node(s) {ids(memory_nodes)}, threads on node(s) {ids(cpu_nodes)} (1x the weights in total)",
    ]
    return Decision(
        Policy.INTERLEAVE,
        False,
        cpu_nodes,
        memory_nodes,
        _legacy_threads(inputs, cpu_nodes, False),
        fit,
        None,
        reasons,
    )


def _build_reason(host: HostView, build: bool) -> str:
    if build:
        return "numa_build true: USE_NUMA=1 build on a single memory node holds one copy"
    if len(host.memory_nodes) <= 1:
        return "numa_build false: one memory node, USE_NUMA=1 would add nothing"
    return "numa_build false: a server built without USE_NUMA=1 (that build copies the weights to every node whatever numactl says)"
