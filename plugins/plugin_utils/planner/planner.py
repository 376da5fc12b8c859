"""The planner: one host's facts + a model + a backend -> a deployment plan.

Pure functions, no I/O. ``make_plan`` returns the whole ``Plan``; ``cpu_infer`` and
``memory_fit`` return one part of it without needing the model's paths. Bad input
raises ``PlanError`` (one line naming the variable); nothing else escapes.

Policy choice under ``auto`` (the fastest that fits):
- sglang-kt: shard the experts over one kt-kernel pool per usable node;
- legacy: replicate (USE_NUMA=1 build) if every node fits a copy, else bind to one
  node if one fits, else interleave; if nothing fits, ``fits`` is false and the
  warnings give the numbers and the remedies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import PlanError
from ..sizes import format_size
from . import launch, memory
from .binding import binding
from .decision import Decision, Inputs, ids
from .host import host_view
from .kt_policy import decide_kt
from .legacy_policy import decide_legacy
from .models import Backend, MemoryFit, Plan, Policy, parse_backend, parse_facts, parse_model, parse_options

__all__ = ["PlanError", "make_plan", "cpu_infer", "memory_fit"]

_PLACEHOLDER_MODEL = {"name": "unspecified", "weights_bytes": 1}  # 0 is refused: a byte fits anywhere


# --- public API ------------------------------------------------------------------------


def make_plan(facts: Any, model: Any, backend: Any = Backend.SGLANG_KT, **options: Any) -> Plan:
    """The full plan for one host; see docs/plan.md for every key."""
    inputs = _inputs(facts, model, backend, options)
    decision = decide(inputs)
    opts = inputs.options
    numactl, systemd = binding(
        decision.policy, decision.cpu_nodes, decision.memory_nodes, inputs.host, opts.numactl_path
    )
    kt_nodes = decision.cpu_nodes if inputs.backend is Backend.SGLANG_KT else []
    if inputs.backend is Backend.LEGACY and not launch.balance_serve(opts):
        decision.reasons.append(
            f"legacy release {opts.legacy_release}: no --chunk_size/--backend_type, 0.3's balance_serve flags "
            "that its server/args.py does not define"
        )
    argv = launch.server_args(
        inputs.backend, inputs.model, opts, decision.threads.cpu_infer, kt_nodes, decision.kt_method
    )
    threadpool_count = (
        len(decision.cpu_nodes)
        if inputs.backend is Backend.SGLANG_KT or decision.policy is Policy.REPLICATE
        else 1
    )
    return Plan(
        backend=inputs.backend,
        model=inputs.model.name,
        policy=decision.policy,
        numa_build=decision.numa_build,
        cpu_infer=decision.threads.cpu_infer,
        threadpool_count=threadpool_count,
        numa_nodes=decision.cpu_nodes,
        memory_nodes=decision.memory_nodes,
        threads_per_node=decision.threads.per_node,
        cpus=sorted(cpu for node in decision.cpu_nodes for cpu in inputs.host.cpus[node]),
        numactl=numactl,
        systemd=systemd,
        server_args=argv,
        listen_host=inputs.options.host,
        port=launch.port(inputs.backend, inputs.options),
        environment=launch.environment(inputs.backend),
        memory=decision.memory,
        reasons=decision.reasons,
        warnings=decision.warnings,
    )


def cpu_infer(facts: Any, model: Any = None, backend: Any = Backend.SGLANG_KT, **options: Any) -> int:
    """``--cpu_infer`` / ``--kt-cpuinfer`` alone; without a model the weights are taken to fit."""
    return decide(_inputs(facts, model or _PLACEHOLDER_MODEL, backend, options)).threads.cpu_infer


def memory_fit(
    facts: Any, model: Any, backend: Any = Backend.SGLANG_KT, **options: Any
) -> tuple[Policy, MemoryFit]:
    """The chosen policy and its memory fit, without needing the model's paths."""
    decision = decide(_inputs(facts, model, backend, options))
    return decision.policy, decision.memory


def _inputs(facts: Any, model: Any, backend: Any, options: Mapping[str, Any]) -> Inputs:
    parsed = parse_facts(facts)
    return Inputs(
        parsed, host_view(parsed), parse_model(model), parse_backend(backend), parse_options(options)
    )


# --- decision --------------------------------------------------------------------------


def decide(inputs: Inputs) -> Decision:
    host, opts = inputs.host, inputs.options
    if not host.cpu_nodes:
        raise PlanError(
            "ansible_facts.numa.nodes",
            "no node has CPUs this process may use (online and allowed by the cpuset)",
        )
    _check_nodes_exist(inputs, opts.nodes)
    notes = _check_gpus(inputs) + _host_warnings(inputs)
    decision = decide_kt(inputs) if inputs.backend is Backend.SGLANG_KT else decide_legacy(inputs)
    decision.reasons.extend(decision.threads.reasons)
    decision.reasons.append(memory.describe(decision.policy, decision.memory))
    decision.warnings = notes + decision.warnings + decision.threads.warnings
    if decision.memory.fits is False:
        decision.warnings.append(_remedies(inputs, decision))
    elif decision.memory.tier == "tight":
        decision.warnings.append(_tight(decision.memory))
    _compare_available(inputs, decision)
    return decision


def _check_nodes_exist(inputs: Inputs, nodes: tuple[int, ...] | None) -> None:
    host = inputs.host
    if nodes is None:
        return
    gpu_memory = {g.id: g for g in inputs.facts.gpu_memory_nodes}
    named = [n for n in nodes if n in gpu_memory]
    if named:
        raise PlanError(
            "ktfleet_nodes",
            f"node(s) {ids(named)} are GPU memory ({', '.join(gpu_memory[n].pci_address or 'GPU unknown' for n in named)}), "
            f"not places for weights or pools; list CPU/host-memory nodes: {ids(host.node_ids)}",
        )
    missing = [n for n in nodes if n not in host.node_ids]
    if missing:
        raise PlanError(
            "ktfleet_nodes",
            f"node(s) {ids(missing)} do not exist on this host; it has node(s) {ids(host.node_ids)}",
        )


def _check_gpus(inputs: Inputs) -> list[str]:
    """``ktfleet_gpus`` (--tensor-parallel-size) against the GPUs the facts saw."""
    seen, asked = len(inputs.facts.gpus), inputs.options.gpus
    if seen and asked > seen:
        raise PlanError(
            "ktfleet_gpus",
            f"{asked} GPU(s) / tensor-parallel ranks asked, but this host has {seen}; "
            f"set ktfleet_gpus to at most {seen}",
        )
    if not seen and asked > 1:
        return [f"ktfleet_gpus: {asked} GPUs planned but the facts saw none (no sysfs/nvidia-smi GPU); check the host"]
    return []


def _host_warnings(inputs: Inputs) -> list[str]:
    facts, host = inputs.facts, inputs.host
    out = list(host.notes)
    if facts.nodes_per_package > 1:
        out.append(
            f"Sub-NUMA Clustering / NPS is on: {facts.nodes_per_package} nodes per package; "
            "each node has a fraction of the socket's cores and memory (planned per node; "
            "consider one node per socket in the BIOS)"
        )
    if facts.kernel.numa_balancing:
        out.append(
            "kernel.numa_balancing is on: it migrates the weights' pages between nodes; KTransformers users disable it (sysctl kernel.numa_balancing=0)"
        )
    if facts.cpu.hypervisor:
        out.append("this is a virtual machine: its NUMA layout may not match the hardware's")
    memory_only = [n for n in host.node_ids if n in host.memory_only]
    if memory_only:
        out.append(f"memory-only node(s) {ids(memory_only)} (CXL/HBM/PMEM/GPU memory) never get threads")
    return out


# --- shared tail ------------------------------------------------------------------------


def _remedies(inputs: Inputs, decision: Decision) -> str:
    head = f"the weights do not fit: {memory.describe(decision.policy, decision.memory)}. "
    if inputs.backend is Backend.SGLANG_KT:
        fit, opts = decision.memory, inputs.options
        steps = ["add memory", "use a smaller quantization of the CPU weights"]
        if decision.policy is Policy.BIND or len(decision.cpu_nodes) < len(inputs.host.cpu_nodes):
            steps.append("shard over more nodes (each pool holds 1/K of every expert)")
        if any(fit.buffers_per_node_bytes.values()):
            steps.append(
                f"lower ktfleet_chunked_prefill_size (now {opts.chunked_prefill_size}: "
                f"{format_size(max(fit.buffers_per_node_bytes.values()))} of scratch per node, linear in it)"
            )
        text = head + "Remedies: " + ", ".join(steps)
        if decision.kt_method in launch.AMX_METHODS or decision.kt_method in (None, "LLAMAFILE"):
            # kt_kernel/utils/loader.py:267-268, amx/moe_base.hpp init(), llamafile/moe.hpp LLAMA_MOE_TP
            text += (
                f". Keeping more experts on the GPUs does not help: kt-kernel's {decision.kt_method or 'AMXINT4'} "
                "backend loads every expert into CPU memory, the GPU ones included"
            )
        return text
    if decision.policy is Policy.REPLICATE:
        copies = len(decision.memory_nodes)
        return head + (
            f"Remedies (the seed's): disable multi-NUMA (ktfleet_legacy_numa_build: false: one copy instead of {copies}), "
            "bind to fewer nodes, or add memory; a smaller quantization also helps"
        )
    return (
        head
        + "Remedies: add memory or use a smaller quantization (one copy spread over every node is already the least this server can hold)"
    )


def _tight(fit: MemoryFit) -> str:
    where = f"node {fit.tightest_node}" if fit.tightest_node is not None else "the nodes used"
    size = (
        fit.available_per_node_bytes[fit.tightest_node]
        if fit.tightest_node is not None
        else fit.available_total_bytes
    ) or 0
    need = fit.required_per_node_bytes[fit.tightest_node] if fit.tightest_node is not None else fit.required_total_bytes
    return (
        f"memory is tight: {where} keeps only {format_size(size - need)} ({fit.free_ratio:.0%}) free after "
        f"{format_size(need)}, below the recommended {fit.headroom_ratio:.0%} (the seed's advice: keep >= 20% free "
        "for the page cache, other processes and load-time peaks); it deploys, watch the first load"
    )


def _compare_available(inputs: Inputs, decision: Decision) -> None:
    available = inputs.facts.memory_available_bytes
    needed = decision.memory.required_total_bytes
    if available is not None and decision.memory.fits and needed > available:
        decision.warnings.append(
            f"MemAvailable is {format_size(available)} but the weights need {format_size(needed)}: "
            "something else holds memory now (a previous server still running?)"
        )
