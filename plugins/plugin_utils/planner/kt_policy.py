"""sglang-kt (kt-kernel): one thread pool per NUMA node, the experts sharded over them.

kt-kernel pins each pool's threads to its node's physical cores and binds the pool's
memory strictly to that node. Rules from kt-kernel 0.7.2's own code (C++ files are in
kvcache-ai/ktransformers kt-kernel/, Python ones in the kt_kernel wheel):
- each pool holds 1/K of every expert's intermediate dimension, so K must divide
  ``moe_intermediate_size`` (operators/moe-tp.hpp, TP_MOE_Common: "intermediate_size must
  be a multiple of NUMA node count"); LLAMAFILE also needs it to be a multiple of 256 with
  at least one 256-block per pool (same constructor, QK_K split); the AMX kernels need each
  pool's slice aligned to the AMX B-buffer steps (operators/amx/la/amx_kernels.hpp
  GemmKernel224Int8/Int4: N_STEP 32, K_STEP 64; amx_buffers.hpp BufferBInt4Impl asserts
  k % (2 x K_STEP)), i.e. a multiple of 64 (AMXINT8) or 128 (AMXINT4);
- K must equal the shard count of pre-sharded AMX weights (utils/loader.py load_experts
  reads ``.numa.{i}.`` tensors for i < shards; a mismatch reads out of bounds, nothing checks);
- pools on nodes other than 0..K-1 hit cpu_backend/worker_pool.cpp (see ``node_id_hazard``);
- AMX methods need AVX512F + AVX512BW: on an AVX2-only CPU kt-kernel loads its avx2
  extension, which has no AMXInt4_MOE/AMXInt8_MOE (kt_kernel/_cpu_detect.py,
  utils/amx.py "AMXINT4 backend not available"); without AMX they run on AVX512, slower.
"""

from __future__ import annotations

from ..errors import PlanError
from ..sizes import format_size
from . import launch, memory, threads
from .decision import Decision, Inputs, best_node, ids
from .host import HostView
from .models import Backend, Facts, ModelSpec, PlanOptions, Policy


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
        warnings.append(
            f"kt_method unknown (set ktfleet_model.kt_method): SGLang then assumes {launch.SGLANG_DEFAULT_METHOD}"
        )
    elif kt_method not in launch.KT_METHODS:
        warnings.append(f"kt_method {kt_method} is not one kt-kernel 0.7.2 knows ({', '.join(launch.KT_METHODS)})")
    warnings += _isa(inputs.facts, kt_method)

    usable = [n for n in host.cpu_nodes if host.memory[n] != 0]
    if not usable:
        raise PlanError(
            "ansible_facts.numa.nodes",
            "no node has both CPUs and memory: kt-kernel binds each pool's memory to its own node",
        )
    if opts.policy is Policy.BIND:
        if shards and shards != 1:
            raise PlanError(
                "ktfleet_policy",
                f"bind uses one kt-kernel pool, but the weights are pre-sharded for {shards} nodes (numa_shards); use shard",
            )
        if not _admissible_pools(1, model, shards, kt_method):
            raise PlanError("ktfleet_policy", f"bind uses one kt-kernel pool: {_pool_rule(model, shards, 1, kt_method)}")
        pools, why_node = _bind_node(inputs, usable)
        policy = Policy.BIND
        reasons.append(f"policy bind: one kt-kernel pool on node {pools[0]} ({why_node})")
    else:
        pools, fewer = _pick_pools(inputs, usable, shards, kt_method)
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
    hazard = node_id_hazard(pools)
    if hazard:
        warnings.append(hazard)
        reasons.append(_why_not_first(inputs, pools, usable, policy))
    reasons += [why for why in (why_method, why_shards) if why]
    reasons += _launch_reasons(opts)
    buffers, why_buffers = _scratch(model, kt_method, len(pools), opts.chunked_prefill_size)
    (reasons if buffers else warnings).append(why_buffers)
    fit = memory.fit(host, policy, pools, model.weights_bytes, opts.headroom, buffers)
    return Decision(policy, None, pools, pools, plan_threads, fit, kt_method, reasons, warnings)


def _scratch(model: ModelSpec, kt_method: str | None, pools: int, chunk: int) -> tuple[int, str]:
    """kt-kernel's per-pool scratch bytes and why (0 and a warning when the shape is unknown)."""
    shape = memory.moe_shape(model)
    if shape is None:
        return 0, (
            "kt-kernel's per-pool scratch buffers are not in the memory check: give ktfleet_model.hidden_size, "
            "moe_intermediate_size, num_experts (n_routed_experts) and num_experts_per_tok from the model's config.json "
            "(DeepSeek-V3 needs ~2.7 GiB per pool at chunked_prefill_size 4096)"
        )
    size = memory.scratch_per_pool(kt_method, shape, pools, chunk)
    source = "llamafile/moe.hpp LLAMA_MOE_TP" if kt_method == "LLAMAFILE" else "amx/moe_base.hpp AMX_MOE_BASE::init"
    return size, (
        f"kt-kernel scratch: {format_size(size)} per pool node for chunked_prefill_size {chunk} "
        f"({source}; ktfleet_chunked_prefill_size sizes it)"
    )


def _admissible_pools(count: int, model: ModelSpec, shards: int | None, method: str | None) -> bool:
    """Whether kt-kernel can run ``count`` pools for this model, method and shard count (module doc)."""
    if shards and count != shards:
        return False
    size = model.moe_intermediate_size
    if not size:
        return True
    if size % count:
        return False
    if method == "LLAMAFILE":
        return size % QK_K == 0 and size // QK_K >= count
    return (size // count) % AMX_SLICE_ALIGN.get(method or launch.SGLANG_DEFAULT_METHOD, 1) == 0


# operators/moe-tp.hpp TP_MOE_Common: LLAMAFILE splits the intermediate size in QK_K blocks
QK_K = 256
# a pool's slice of the intermediate size is N (gate/up) and K (down) of the AMX B buffers:
# amx_kernels.hpp GemmKernel224Int8 N_STEP 32, K_STEP 64; GemmKernel224Int4 the same with
# amx_buffers.hpp BufferBInt4Impl's k % (2 x K_STEP) == 0
AMX_SLICE_ALIGN = {"AMXINT8": 64, "AMXINT4": 128}


def node_id_hazard(pools: list[int]) -> str | None:
    """What kt-kernel 0.7.2 does with --kt-numa-nodes other than 0..K-1, or None when they are 0..K-1.

    cpu_backend/worker_pool.cpp: WorkerPool::init and NumaJobDistributor::init keep a
    per-node thread counter ``numa_threads_count(subpool_count)`` but index it by node id, and
    NumaJobDistributor::worker_thread(i) calls set_memory_to_numa(i) with the pool *index*.
    """
    count = len(pools)
    if pools == list(range(count)):
        return None
    beyond = [n for n in pools if n >= count]
    moved = [(n, i) for i, n in enumerate(pools) if n != i]
    return (
        f"kt-kernel's worker pool (cpu_backend/worker_pool.cpp) assumes --kt-numa-nodes 0..{count - 1}; with "
        f"{' '.join(map(str, pools))}: its per-node thread counter has {count} slot(s) but is indexed by node id, "
        f"so the pool(s) on node(s) {ids(beyond)} read and write past its end and start their threads at an "
        "undefined core (unpinned, or on the wrong cores, within the unit's CPUs); and each pool's coordinator "
        "thread (which also computes as the pool's thread 0) binds its memory to the node numbered like the "
        "pool's index: " + ", ".join(f"the coordinator of the pool on node {n} allocates on node {i}" for n, i in moved)
        + f". Use nodes 0..{count - 1} (ktfleet_nodes) where the host allows it"
    )


def _isa(facts: Facts, method: str | None) -> list[str]:
    """Refuse AMX methods without AVX512F+AVX512BW; warn when they would run without AMX."""
    flags = facts.cpu.flags
    known = flags.avx2 or flags.avx512f or flags.amx_tile  # all false: the facts could not read the CPU
    avx512 = flags.avx512f and flags.avx512bw is not False
    need = "AVX512F + AVX512BW (kt_kernel/_cpu_detect.py; its avx2 build has no AMX kernels)"
    if method is None:
        if known and not avx512:
            return [
                f"kt_method unknown: SGLang's default {launch.SGLANG_DEFAULT_METHOD} needs {need}, "
                "which this CPU lacks; set ktfleet_model.kt_method to weights it can run (e.g. LLAMAFILE, BF16)"
            ]
        return []
    if method not in launch.AMX_METHODS:
        return []
    if not known:
        return [f"kt_method {method} needs {need}: the facts show no CPU flags, so it is not checked"]
    if not avx512:
        raise PlanError(
            "ktfleet_model.kt_method",
            f"{method} needs {need}; this CPU has {'AVX512F without AVX512BW' if flags.avx512f else 'no AVX512'}, "
            "so kt-kernel stops at load (\"AMXINT4 backend not available\", kt_kernel/utils/amx.py). "
            "Convert the weights for a method it can run (LLAMAFILE GGUF, BF16, FP8, RAWINT4) or use another host",
        )
    if not (flags.amx_tile and flags.amx_int8):
        return [
            f"kt_method {method} runs without Intel AMX on this CPU (no amx_tile/amx_int8 flags): kt-kernel "
            "uses its AVX512 kernels instead, which are slower"
        ]
    return []


def _why_not_first(inputs: Inputs, pools: list[int], usable: list[int], policy: Policy) -> str:
    """Why the pools sit on nodes other than 0..K-1 (node_id_hazard says what that does)."""
    count, host = len(pools), inputs.host
    first = list(range(count))
    head = f"--kt-numa-nodes {' '.join(map(str, pools))} rather than {' '.join(map(str, first))}: "
    if inputs.options.nodes is not None:
        return head + "ktfleet_nodes asks for them"
    missing = [n for n in first if n not in usable]
    if missing:
        return head + f"node(s) {ids(missing)} cannot hold a pool (no usable CPUs or no memory)"
    if policy is Policy.BIND:
        return head + "node 0 has fewer cores or does not fit the weights"
    have, alt = min(host.cores[n] for n in pools) * count, min(host.cores[n] for n in first) * count
    return head + f"an even split gives {have} cores there against {alt} on nodes {ids(first)}"


def _launch_reasons(opts: PlanOptions) -> list[str]:
    given = opts.model_fields_set
    experts = launch.kt_num_gpu_experts(opts)
    why = (
        "set by ktfleet_kt_num_gpu_experts"
        if "kt_num_gpu_experts" in given
        else "KTransformers' own `kt run` default (kt_kernel/cli/commands/run.py); raise it to keep more experts "
        "on the GPUs where their memory allows"
    )
    size = (
        "set by ktfleet_chunked_prefill_size"
        if "chunked_prefill_size" in given
        else "KTransformers' `kt run` default (kt_kernel/cli/commands/run.py)"
    )
    return [
        f"kt_num_gpu_experts {experts}: {why}; always passed, since without it (or a ratio) sglang-kt builds no "
        "kt-kernel config and serves the model as plain SGLang (sglang/srt/layers/moe/kt_ep_wrapper.py)",
        f"chunked_prefill_size {opts.chunked_prefill_size}: {size}; always passed, since kt-kernel sizes each "
        "pool's buffers by it and SGLang's own default grows with GPU memory up to 16384 (sglang/srt/server_args.py)",
    ]


def _pick_pools(
    inputs: Inputs, usable: list[int], shards: int | None, method: str | None
) -> tuple[list[int], str | None]:
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
        if not _admissible_pools(len(chosen), model, shards, method):
            raise PlanError(
                "ktfleet_nodes",
                f"{len(chosen)} pool(s) are not possible: {_pool_rule(model, shards, len(usable), method)}",
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
        if not _admissible_pools(count, model, shards, method):
            continue
        nodes = _balanced(usable, count, host)
        score = (min(host.cores[n] for n in nodes) * count, count)
        # nodes 0..count-1 avoid kt-kernel's node-id bug (node_id_hazard): take them when they give
        # as many threads as the spread over the packages
        first = list(range(count))
        if nodes != first and set(first) <= set(usable) and min(host.cores[n] for n in first) * count >= score[0]:
            nodes = first
        if best is None or score > best[:2]:
            best = (*score, nodes)
    if best is None:
        variable = "ktfleet_model.numa_shards" if shards else "ktfleet_model.moe_intermediate_size"
        raise PlanError(variable, f"no kt-kernel pool count works: {_pool_rule(model, shards, len(usable), method)}")
    chosen = best[2]
    if len(chosen) == len(usable):
        return chosen, None
    return (
        chosen,
        f"{len(chosen)} pool(s) rather than {len(usable)}: {_pool_rule(model, shards, len(usable), method)}",
    )


def _pool_rule(model: ModelSpec, shards: int | None, usable: int, method: str | None) -> str:
    rules = []
    size = model.moe_intermediate_size
    if size:
        rules.append(f"the pool count must divide moe_intermediate_size {size}")
        if method == "LLAMAFILE":
            rules.append(f"LLAMAFILE splits it in blocks of {QK_K}, at least one per pool")
        align = AMX_SLICE_ALIGN.get(method or launch.SGLANG_DEFAULT_METHOD)
        if align and method != "LLAMAFILE":
            rules.append(f"{method or launch.SGLANG_DEFAULT_METHOD} needs each pool's slice to be a multiple of {align}")
    if shards:
        rules.append(f"the weights are pre-sharded for {shards} node(s) (numa_shards)")
    allowed = [k for k in range(1, usable + 1) if _admissible_pools(k, model, shards, method)]
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


def _bind_node(inputs: Inputs, usable: list[int]) -> tuple[list[int], str]:
    nodes = inputs.options.nodes
    if nodes is not None:
        if len(nodes) != 1 or nodes[0] not in usable:
            raise PlanError(
                "ktfleet_nodes",
                f"bind with sglang-kt takes exactly one node with CPUs and memory ({ids(usable)}), got {list(nodes)}; use policy shard for several",
            )
        return list(nodes), "ktfleet_nodes"
    best = best_node(inputs, usable, Backend.SGLANG_KT)
    if best != 0 and 0 in usable:
        host, opts, weights = inputs.host, inputs.options, inputs.model.weights_bytes
        fits = memory.fit(host, Policy.BIND, [0], weights, opts.headroom).fits is not False
        if fits and host.capacity(0, smt=False) >= host.capacity(best, smt=False):
            return [0], (
                f"node 0 rather than node {best}: as many cores and the weights fit, and kt-kernel's worker "
                "pool is only right on node ids 0..K-1 (cpu_backend/worker_pool.cpp)"
            )
    return [best], "the node with the most cores that fits"
