"""What a server started by hand with its defaults would do on a host, next to the plan.

The seed's story: on 2 x Xeon Gold 6430 (32 cores / 64 threads per socket) KTransformers
runs on one socket by default, and the first hand tuning gives it every logical CPU
(126 threads measured ~0.52 tok/s against ~13 with the physical-core count). The naive
default, per backend:

- legacy (0.2/0.3 server, a build without ``USE_NUMA=1``): ``--cpu_infer`` = every
  logical CPU, SMT siblings included; one copy of the weights, first touched on the node
  of the thread that loads them (one socket's memory bandwidth for every thread);
- sglang-kt: ``--kt-cpuinfer`` = every logical CPU and the server's default
  ``--kt-threadpool-count 2`` (sglang/srt/server_args.py of sglang_kt 0.7.2, the
  ``--kt-threadpool-count`` argument: ``default=2``), whatever the node count.

Pure functions over the facts and the plan; the fleet filter prints them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import join_ids as _ids

from ..plain import plain
from ..sizes import format_size, parse_size
from .models import CPU_INFER_FLAG, Backend, Plan, parse_backend, parse_facts

SGLANG_DEFAULT_THREADPOOLS = 2  # sglang_kt 0.7.2 sglang/srt/server_args.py, --kt-threadpool-count default=2


@dataclass(frozen=True)
class NaiveDefault:
    cpu_infer: int  # every logical CPU the server may use
    threadpool_count: int
    memory_nodes: list[int]  # where the one copy of the weights lands
    sockets: list[int]  # the packages of those nodes
    reason: str


def naive_default(facts: Any, backend: Any) -> NaiveDefault:
    parsed = parse_facts(facts)
    kind = parse_backend(backend)
    cpu_nodes = [n for n in parsed.nodes if n.cpus]
    logical = sum(len(n.cpus) for n in cpu_nodes)
    if kind is Backend.LEGACY:
        nodes = [cpu_nodes[0].id] if cpu_nodes else []
        pools = 1
        reason = (
            f"--cpu_infer {logical} (every logical CPU, SMT siblings too); a build without USE_NUMA=1 holds one copy "
            f"of the weights, first touched on node {nodes[0] if nodes else '?'}: one socket's memory for every thread"
        )
    else:
        pools = SGLANG_DEFAULT_THREADPOOLS
        nodes = [n.id for n in cpu_nodes[:pools]]
        reason = (
            f"--kt-cpuinfer {logical} (every logical CPU), --kt-threadpool-count {pools} (the server's default) "
            f"on a host with {len(cpu_nodes)} CPU node(s)"
        )
    return NaiveDefault(logical, pools, nodes, _sockets(parsed, nodes), reason)


def _sockets(facts: Any, nodes: list[int]) -> list[int]:
    return sorted({p for n in parse_facts(facts).nodes if n.id in nodes for p in n.package_ids})


def planned_line(facts: Any, plan: Plan | Mapping[str, Any], weights_bytes: Any) -> str:
    """The plan in the same words: threads, sockets, where the weights go and what that costs."""
    p = plan if isinstance(plan, Plan) else Plan.model_validate(plan)
    weights = parse_size(weights_bytes)
    sockets = _sockets(facts, list(p.numa_nodes))
    flag = CPU_INFER_FLAG[p.backend]
    where = f"threads on node(s) {_ids(p.numa_nodes)} ({len(sockets)} socket(s))"
    mem = p.memory
    copies = len(p.memory_nodes) if p.policy.value == "replicate" else 1
    if copies > 1:
        per = max(mem.required_per_node_bytes.values())
        cost = (
            f"a copy of the {format_size(weights)} weights per node: {copies} x {format_size(per)} = "
            f"{format_size(mem.required_total_bytes)}"
        )
    else:
        cost = f"one copy of the {format_size(weights)} weights over node(s) {_ids(p.memory_nodes)}"
    of = f" of {format_size(mem.available_total_bytes)}" if mem.available_total_bytes else ""
    pools = f", {p.threadpool_count} pool(s)" if p.backend is Backend.SGLANG_KT else ""
    return f"{flag} {p.cpu_infer}{pools}, {where}, {p.policy.value}: {cost}{of}"


def comparison(hostvars: Mapping[str, Any], hosts: list[str]) -> str:
    """Per planned host: the plan, and the naive default under it."""
    lines = []
    for host in hosts:
        hv = hostvars.get(host) or {}
        facts = plain((hv.get("ansible_facts") or {}).get("numa"))
        plan = plain(hv.get("ktfleet_plan"))
        model = plain(hv.get("__ktfleet_model")) or {}
        if not facts or not plan or "weights_bytes" not in model:
            continue
        naive = naive_default(facts, plan["backend"] if isinstance(plan, Mapping) else plan.backend)
        lines.append(f"{host}")
        lines.append(f"  planned: {planned_line(facts, plan, model['weights_bytes'])}")
        lines.append(f"  naive:   {naive.reason}")
    return "\n".join(lines)
