"""Verdicts on a running server: a numa_sample result judged against its plan.

Pure functions (stdlib only, controller side). ``diagnose`` turns the plain
data of ``ktfleet.numa.numa_sample`` (plugins/module_utils/numa_sample.py), the
host's plan (docs/plan.md) and optionally its facts (docs/facts.md) into one
verdict per check, each with the seed's remedy and the numbers behind it;
``render_table`` prints them for the console. docs/diagnose.md lists the
checks and thresholds.

Every verdict is ``{"check", "status", "summary", "remedy", "numbers"}`` with
``status`` one of ``ok``, ``warn``, ``fail`` or ``info`` (``info``: not
measurable here, and the summary says why; or measured but not judged).
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Mapping
from typing import Any, Literal, TypedDict

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import format_cpulist as _cpu_ranges
from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import join_ids as _nodes_text

from .. import text_table
from ..sizes import GIB
from ..sizes import format_size_coarse as _gib

CHECKS = (
    "node_balance",
    "threads_placement",
    "remote_memory",
    "memory_placement",
    "memory_headroom",
    "cpu_frequency",
    "thermal",
    "migrations",
    "cache",
    "throughput",
)
Status = Literal["ok", "warn", "fail", "info"]
STATUSES: tuple[Status, ...] = ("fail", "warn", "ok", "info")  # worst first


class Verdict(TypedDict):
    check: str
    status: Status
    summary: str
    remedy: str
    numbers: dict[str, int | float | str | bool]  # the figures behind the summary


class Diagnosis(TypedDict):
    """What ``diagnose`` returns (``ktfleet_diagnosis``; the fleet report's diagnosis part)."""

    window_seconds: float
    status: Status  # the worst verdict's
    verdicts: list[Verdict]
    thresholds: dict[str, float]


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Every limit ``diagnose`` applies; each is a keyword argument of the same name."""

    #: below this many cores of average CPU use the server counts as idle: balance, placement,
    #: frequency and migrations need load to be judged (sample while a benchmark runs)
    idle_cores: float = 0.5
    #: a planned node doing less than this share of the busiest node's work: "only one socket used"
    one_node_ratio: float = 1 / 3
    #: a planned node below this share of the busiest (but above one_node_ratio): uneven split
    uneven_ratio: float = 0.7
    #: share of the server's CPU time on CPUs outside the plan: warn above the first, fail above the second
    outside_warn_share: float = 0.01
    outside_fail_share: float = 0.10
    #: page allocations during the window below which remote-memory ratios are not judged
    min_allocations: int = 1000
    #: numa_miss / (numa_hit + numa_miss) and other_node / (local_node + other_node): warn, fail
    remote_warn_ratio: float = 0.05
    remote_fail_ratio: float = 0.20
    #: share of the server's resident memory on nodes the plan does not use: fail above this
    foreign_memory_share: float = 0.05
    #: a node holding less than this share of the fullest planned memory node's share of the server's memory
    memory_balance_ratio: float = 1 / 3
    #: server memory below which the spread over nodes is not judged (weights not loaded yet)
    min_weights_bytes: int = GIB
    #: MemAvailable / MemTotal below this warns (None: the plan's headroom_ratio, else 0.20, the seed's)
    headroom: float | None = None
    #: ... and below headroom x this fails
    headroom_fail_share: float = 0.5
    #: a planned node's MemFree / MemTotal below this warns (fails when its numa_foreign also grew)
    node_free_ratio: float = 0.05
    #: a CPU counts as busy (its frequency is judged) above this busy fraction
    busy_cpu: float = 0.5
    #: busy CPUs' mean frequency / base_frequency: warn, fail
    freq_base_warn: float = 0.9
    freq_base_fail: float = 0.75
    #: without base_frequency, mean frequency / cpuinfo_max_freq (which includes turbo): warn
    freq_max_warn: float = 0.6
    #: scaling_max_freq below cpuinfo_max_freq x this: capped by the governor or power profile
    freq_cap_ratio: float = 0.95
    #: share of the planned CPUs whose throttle counters rose: above this fails (any rise warns)
    throttle_fail_share: float = 0.25
    #: perf cpu-migrations per CPU-second of the server: warn, fail
    migrations_warn: float = 20.0
    migrations_fail: float = 200.0
    #: relative tokens/s drop against the tuned figure that fails
    throughput_drop: float = 0.15


THRESHOLD_NAMES = tuple(f.name for f in dataclasses.fields(Thresholds))


def make_thresholds(**overrides: Any) -> Thresholds:
    """Thresholds with ``overrides`` (None keeps a default); unknown names raise ValueError."""
    unknown = sorted(set(overrides) - set(THRESHOLD_NAMES))
    if unknown:
        raise ValueError(f"unknown threshold(s) {', '.join(unknown)}; allowed: {', '.join(THRESHOLD_NAMES)}")
    values = {}
    for name, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"threshold {name} must be a number, got {value!r}") from None
        if value < 0:
            raise ValueError(f"threshold {name} must be >= 0, got {value}")
        values[name] = value
    return Thresholds(**values)


# --- helpers ----------------------------------------------------------------------------


def _verdict(check: str, status: Status, summary: str, remedy: str = "", **numbers: Any) -> Verdict:
    return {
        "check": check,
        "status": status,
        "summary": summary,
        "remedy": remedy,
        "numbers": {k: _number(v) for k, v in numbers.items() if v is not None},
    }


def _number(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, int | str | bool):
        return value
    return str(value)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _get(mapping: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _int_keys(mapping: Any) -> dict[int, float]:
    out: dict[int, float] = {}
    if isinstance(mapping, Mapping):
        for key, value in mapping.items():
            if str(key).lstrip("-").isdigit() and isinstance(value, int | float):
                out[int(key)] = float(value)
    return out


class _Context:
    """The inputs, read once, with the fallbacks each check shares."""

    def __init__(self, sample: Mapping, plan: Mapping | None, facts: Mapping | None, limits: Thresholds):
        self.sample = sample
        self.plan = plan if isinstance(plan, Mapping) else None
        self.facts = facts if isinstance(facts, Mapping) else None
        self.limits = limits
        self.window = float(sample.get("window_seconds") or 0.0)
        self.process = sample.get("process") if isinstance(sample.get("process"), Mapping) else {}
        self.cpu_seconds = float(self.process.get("cpu_seconds") or 0.0)
        cores = self.process.get("cpu_cores")
        self.cpu_cores = float(cores) if cores is not None else (self.cpu_seconds / self.window if self.window else 0.0)
        nodes = sample.get("nodes") or []
        self.nodes = {int(n["id"]): n for n in nodes if isinstance(n, Mapping) and "id" in n}
        self.cpu_nodes = sorted(n for n, row in self.nodes.items() if row.get("cpus"))
        self.node_of = {cpu: node for node, row in self.nodes.items() for cpu in row.get("cpus") or []}
        self.busy = {int(r["cpu"]): float(r.get("busy") or 0.0) for r in sample.get("cpus") or [] if "cpu" in r}
        plan_nodes = list((self.plan or {}).get("numa_nodes") or [])
        self.planned_nodes = sorted(int(n) for n in plan_nodes) or None
        self.planned_cpus = sorted(int(c) for c in (self.plan or {}).get("cpus") or []) or None
        mem_nodes = (self.plan or {}).get("memory_nodes") or []
        self.memory_nodes = sorted(int(n) for n in mem_nodes) or None
        self.backend = (self.plan or {}).get("backend")
        self.policy = (self.plan or {}).get("policy")

    @property
    def idle(self) -> bool:
        return self.cpu_cores < self.limits.idle_cores

    def idle_verdict(self, check: str, what: str) -> dict:
        return _verdict(
            check, "info",
            f"server nearly idle during the {self.window:g} s window ({self.cpu_cores:.2f} cores used): "
            f"{what} needs inference load; sample while a request or benchmark runs",
            "", cpu_cores=self.cpu_cores, idle_cores=self.limits.idle_cores,
        )

    def spread_remedy(self, nodes: list[int]) -> str:
        count = len(nodes)
        shard = (f"sglang-kt: shard across the nodes: --kt-threadpool-count {count} (= nodes) and "
                 f"--kt-numa-nodes {' '.join(map(str, nodes))}, weights converted for {count} NUMA shards")
        legacy = ("legacy: the multi-NUMA build (USE_NUMA=1, policy replicate: a weight copy per node) or "
                  "interleave across the nodes")
        tail = "; redeploy with deploy.yml so the unit carries the plan"
        if self.backend == "sglang-kt":
            return shard + tail
        if self.backend == "legacy":
            return legacy + tail
        return f"{shard}; {legacy}{tail}"


# --- checks -------------------------------------------------------------------------------


def check_node_balance(ctx: _Context) -> dict:
    name = "node_balance"
    nodes = ctx.planned_nodes or ctx.cpu_nodes
    if not ctx.nodes:
        return _verdict(name, "info", "the sample has no per-node CPU times (sys/devices/system/node unreadable)")
    if len(nodes) < 2:
        return _verdict(name, "ok", f"the plan uses one node ({_nodes_text(nodes)}): nothing to balance",
                        planned_nodes=_nodes_text(nodes))
    if ctx.idle:
        return ctx.idle_verdict(name, "the balance across nodes")
    by_node = _int_keys(ctx.process.get("cpu_seconds_by_node"))
    source = "the server's threads"
    if not sum(by_node.values()):
        by_node = {n: float(ctx.nodes[n].get("busy_cpu_seconds") or 0.0) for n in ctx.nodes}
        source = "all CPUs (host-wide: the server's threads could not be attributed)"
    work = {n: by_node.get(n, 0.0) for n in nodes}
    busiest = max(work.values())
    if not busiest:
        elsewhere = {n: s for n, s in by_node.items() if s and n not in nodes}
        return _verdict(
            name, "fail",
            f"none of the server's CPU time was on the planned node(s) {_nodes_text(nodes)}; it ran on "
            f"node(s) {_nodes_text(sorted(elsewhere)) or 'unknown'}",
            ctx.spread_remedy(nodes), planned_nodes=_nodes_text(nodes), source=source,
            **{f"node{n}_cpu_seconds": s for n, s in sorted(elsewhere.items())},
        )
    ratios = {n: (work[n] / busiest if busiest else 0.0) for n in nodes}
    utils = {n: ctx.nodes.get(n, {}).get("cpu_utilization") for n in nodes}
    numbers: dict[str, Any] = {"planned_nodes": _nodes_text(nodes), "source": source,
                               "host_utilization": ctx.sample.get("cpu_utilization"),
                               "server_cores": ctx.cpu_cores}
    for n in nodes:
        numbers[f"node{n}_cpu_seconds"] = work[n]
        numbers[f"node{n}_share_of_busiest"] = ratios[n]
        if utils[n] is not None:
            numbers[f"node{n}_utilization"] = utils[n]
    spread = ", ".join(f"node {n} {work[n]:.1f} CPU-s (host {_pct(utils[n])})" for n in nodes)
    starved = [n for n in nodes if ratios[n] < ctx.limits.one_node_ratio]
    if starved:
        total = ctx.sample.get("cpu_utilization")
        classic = (f"; total utilisation {_pct(total)}, the classic ~{100 // len(nodes)}% symptom"
                   if total is not None and total < 1.5 / len(nodes) else "")
        return _verdict(
            name, "fail",
            f"only one socket used: node(s) {_nodes_text(starved)} did under "
            f"{ctx.limits.one_node_ratio:.0%} of the busiest node's work ({spread}){classic}",
            ctx.spread_remedy(nodes), **numbers,
        )
    uneven = [n for n in nodes if ratios[n] < ctx.limits.uneven_ratio]
    if uneven:
        per_node = _get(ctx.plan, "threads_per_node")
        planned = f" (plan: {dict(per_node)} threads per node)" if isinstance(per_node, Mapping) else ""
        return _verdict(
            name, "warn", f"uneven split across nodes: {spread}",
            f"the threads must split evenly over the nodes{planned}: an uneven split (42 vs 41 threads) "
            "measured 1 tok/s; keep ktfleet_cpu_infer at the planned value or a multiple of the node count",
            **numbers,
        )
    return _verdict(name, "ok", f"work spread over the planned nodes: {spread}", **numbers)


def check_threads_placement(ctx: _Context) -> dict:
    name = "threads_placement"
    if ctx.planned_cpus is None:
        return _verdict(name, "info", "no plan (or a plan without cpus): nothing to compare the threads with")
    if ctx.idle:
        return ctx.idle_verdict(name, "where the busy threads ran")
    by_cpu = _int_keys(ctx.process.get("cpu_seconds_by_cpu"))
    if not by_cpu:
        return _verdict(name, "info", "the sample has no per-thread CPU times (proc/<pid>/task unreadable)")
    allowed = set(ctx.planned_cpus)
    planned_nodes = set(ctx.planned_nodes or [])
    total = sum(by_cpu.values())
    outside = {cpu: s for cpu, s in by_cpu.items() if cpu not in allowed}
    share = sum(outside.values()) / total if total else 0.0
    off_nodes = sorted({ctx.node_of.get(cpu) for cpu in outside if ctx.node_of.get(cpu) is not None}
                       - planned_nodes)
    last = _int_keys(ctx.process.get("last_cpus"))
    threads_outside = int(sum(count for cpu, count in last.items() if cpu not in allowed))
    numbers = {"outside_share": share, "outside_cpu_seconds": sum(outside.values()), "cpu_seconds": total,
               "threads_last_outside": threads_outside, "planned_cpus": _cpu_ranges(ctx.planned_cpus),
               "cpus_allowed": ctx.process.get("cpus_allowed_list"),
               "outside_cpus": _cpu_ranges(sorted(outside)) or None,
               "outside_nodes": _nodes_text(off_nodes) or None}
    remedy = ("pin them under the plan: redeploy the unit with deploy.yml (CPUAffinity= / numactl "
              "--cpunodebind from the plan)" + ("; keep SGLANG_SET_CPU_AFFINITY=0 so SGLang does not re-pin "
                                                "kt-kernel's pools" if ctx.backend == "sglang-kt" else ""))
    where = f"CPUs {_cpu_ranges(sorted(outside))}" + (f" (node(s) {_nodes_text(off_nodes)})" if off_nodes else "")
    if share > ctx.limits.outside_fail_share:
        return _verdict(name, "fail", f"{_pct(share)} of the server's CPU time ran outside the plan's CPUs, on "
                        f"{where}", remedy, **numbers)
    if share > ctx.limits.outside_warn_share:
        return _verdict(name, "warn", f"{_pct(share)} of the server's CPU time ran outside the plan's CPUs, on "
                        f"{where}", remedy, **numbers)
    return _verdict(name, "ok", f"the server's busy threads ran on the plan's CPUs ({_cpu_ranges(ctx.planned_cpus)})",
                    **numbers)


def check_remote_memory(ctx: _Context) -> dict:
    name = "remote_memory"
    numastat = ctx.sample.get("numastat") or {}
    if not numastat.get("available"):
        return _verdict(name, "info", f"numastat not measurable: {numastat.get('reason') or 'not in the sample'}")
    total = numastat.get("total") or {}
    hit, miss = int(total.get("numa_hit", 0)), int(total.get("numa_miss", 0))
    local, other = int(total.get("local_node", 0)), int(total.get("other_node", 0))
    allocations = hit + miss
    miss_ratio = miss / allocations if allocations else 0.0
    other_ratio = other / (local + other) if local + other else 0.0
    interleaved = ctx.policy == "interleave"
    numbers = {"allocations": allocations, "numa_hit": hit, "numa_miss": miss,
               "numa_foreign": int(total.get("numa_foreign", 0)), "local_node": local, "other_node": other,
               "interleave_hit": int(total.get("interleave_hit", 0)), "miss_ratio": miss_ratio,
               "other_node_ratio": other_ratio,
               "numa_balancing": _get(ctx.facts, "kernel", "numa_balancing")}
    for node, delta in sorted((numastat.get("nodes") or {}).items(), key=lambda kv: int(kv[0])):
        if delta.get("numa_miss"):
            numbers[f"node{node}_numa_miss"] = delta["numa_miss"]
        if delta.get("numa_foreign"):
            numbers[f"node{node}_numa_foreign"] = delta["numa_foreign"]
    if allocations < ctx.limits.min_allocations:
        return _verdict(name, "ok", f"few page allocations during the window ({allocations}): nothing remote "
                        "to judge (steady state: the weights are in place)", **numbers)
    judged = miss_ratio if interleaved else max(miss_ratio, other_ratio)
    detail = (f"numa_miss {miss} of {allocations} allocations ({_pct(miss_ratio)}), other_node {other} "
              f"({_pct(other_ratio)})" + (" (other_node expected under interleave)" if interleaved else ""))
    remedy = ("memory lands away from its node: numa_miss means the intended node was full (free it, spread the "
              "weights over more nodes, or add memory); other_node means threads allocate away from their "
              "node (pin threads and memory together under the plan's policy)")
    if judged > ctx.limits.remote_fail_ratio:
        return _verdict(name, "fail", f"remote memory: {detail}", remedy, **numbers)
    if judged > ctx.limits.remote_warn_ratio:
        return _verdict(name, "warn", f"some remote memory: {detail}", remedy, **numbers)
    return _verdict(name, "ok", f"allocations stay local: {detail}", **numbers)


def check_memory_placement(ctx: _Context) -> dict:
    name = "memory_placement"
    per_node = _int_keys(ctx.process.get("bytes_per_node"))
    if not per_node:
        return _verdict(name, "info", "the server's per-node memory is not measurable (proc/<pid>/numa_maps "
                        "unreadable or empty)")
    total = sum(per_node.values())
    numbers: dict[str, Any] = {"server_bytes": int(total)}
    for node, size in sorted(per_node.items()):
        numbers[f"node{node}_bytes"] = int(size)
    if ctx.memory_nodes is None:
        return _verdict(name, "info", f"no plan: the server holds {_gib(total)} ("
                        + ", ".join(f"node {n} {_gib(s)}" for n, s in sorted(per_node.items())) + ")", **numbers)
    numbers["planned_memory_nodes"] = _nodes_text(ctx.memory_nodes)
    foreign = {n: s for n, s in per_node.items() if n not in ctx.memory_nodes and s}
    share = sum(foreign.values()) / total if total else 0.0
    numbers["foreign_share"] = share
    bind_remedy = ("weights misplaced: bind memory as planned (numactl --membind / NUMAPolicy= from deploy.yml; "
                   "kt-kernel binds each pool to its node), free the other node, restart the server")
    if share > ctx.limits.foreign_memory_share:
        where = ", ".join(f"node {n} {_gib(s)}" for n, s in sorted(foreign.items()))
        return _verdict(name, "fail", f"{_pct(share)} of the server's memory is on node(s) the plan does not "
                        f"use ({where}; planned {_nodes_text(ctx.memory_nodes)})", bind_remedy, **numbers)
    spread = ctx.policy in ("shard", "replicate", "interleave") and len(ctx.memory_nodes) > 1
    if spread and total >= ctx.limits.min_weights_bytes:
        planned = {n: per_node.get(n, 0.0) for n in ctx.memory_nodes if n in ctx.cpu_nodes or ctx.policy == "interleave"}
        fullest = max(planned.values()) if planned else 0.0
        thin = [n for n, s in planned.items() if fullest and s / fullest < ctx.limits.memory_balance_ratio]
        if thin:
            text = ", ".join(f"node {n} {_gib(s)}" for n, s in sorted(planned.items()))
            copies = "a copy per node" if ctx.policy == "replicate" else "an even share per node"
            return _verdict(name, "warn", f"the {ctx.policy} plan puts {copies}, but node(s) {_nodes_text(thin)} "
                            f"hold little ({text})", ctx.spread_remedy(ctx.planned_nodes or ctx.memory_nodes),
                            **numbers)
    return _verdict(name, "ok", f"the server's {_gib(total)} sit on the planned node(s) "
                    f"{_nodes_text(ctx.memory_nodes)}", **numbers)


def check_memory_headroom(ctx: _Context) -> dict:
    name = "memory_headroom"
    memory = ctx.sample.get("memory") or {}
    ratio = memory.get("available_ratio")
    headroom = ctx.limits.headroom
    if headroom is None:
        headroom = _get(ctx.plan, "memory", "headroom_ratio")
        headroom = 0.20 if headroom is None else float(headroom)
    remedy = ("disable multi-NUMA (each node holds a full copy: legacy USE_NUMA=1) or add memory"
              + ("; this plan replicates" if ctx.policy == "replicate" else ""))
    numbers: dict[str, Any] = {"headroom": headroom, "mem_total_bytes": memory.get("total_bytes"),
                               "mem_available_bytes": memory.get("available_bytes"), "available_ratio": ratio}
    statuses, notes = [], []
    if ratio is None:
        notes.append("MemAvailable not measurable (proc/meminfo unreadable or a kernel before 3.14)")
    elif ratio < headroom * ctx.limits.headroom_fail_share:
        statuses.append("fail")
        notes.append(f"MemAvailable {_pct(ratio)} of MemTotal, under half the {_pct(headroom)} headroom")
    elif ratio < headroom:
        statuses.append("warn")
        notes.append(f"MemAvailable {_pct(ratio)} of MemTotal, under the {_pct(headroom)} headroom")
    else:
        statuses.append("ok")
        notes.append(f"MemAvailable {_pct(ratio)} of MemTotal (headroom {_pct(headroom)})")
    foreign = (ctx.sample.get("numastat") or {}).get("nodes") or {}
    for node in ctx.memory_nodes or sorted(ctx.nodes):
        row = ctx.nodes.get(node) or {}
        free, size = row.get("memory_free_bytes"), row.get("memory_total_bytes")
        if not size or free is None:
            continue
        free_ratio = free / size
        numbers[f"node{node}_free_ratio"] = free_ratio
        if free_ratio < ctx.limits.node_free_ratio:
            spilled = int((foreign.get(str(node)) or {}).get("numa_foreign", 0))
            numbers[f"node{node}_numa_foreign"] = spilled
            statuses.append("fail" if spilled else "warn")
            notes.append(f"node {node} MemFree {_pct(free_ratio)}" +
                         (f", {spilled} allocations meant for it went to other nodes" if spilled else ""))
    if not statuses:
        return _verdict(name, "info", "; ".join(notes), **numbers)
    status = _worst(statuses)
    return _verdict(name, status, ("out of memory risk: " if status != "ok" else "") + "; ".join(notes),
                    remedy if status != "ok" else "", **numbers)


def _busy_cpus(ctx: _Context) -> list[int]:
    scope = set(ctx.planned_cpus) if ctx.planned_cpus else set(ctx.busy)
    return sorted(c for c, b in ctx.busy.items() if c in scope and b >= ctx.limits.busy_cpu)


_UNSTABLE = ("unstable: check cooling and power (fans, heatsinks, airflow, PSU, the BIOS power/performance "
             "profile, the performance governor)")


def check_cpu_frequency(ctx: _Context) -> dict:
    name = "cpu_frequency"
    frequency = ctx.sample.get("frequency") or {}
    if not frequency.get("available"):
        return _verdict(name, "info", f"CPU frequency not measurable: {frequency.get('reason') or 'not in the sample'}")
    busy = _busy_cpus(ctx)
    rows = {int(c): r for c, r in (frequency.get("cpus") or {}).items()}
    busy = [c for c in busy if c in rows and rows[c].get("cur_khz")]
    if not busy:
        return _verdict(name, "info", f"no planned CPU was busy (>= {_pct(ctx.limits.busy_cpu)}) with a frequency "
                        "reading: the frequency under load is not measurable in this window",
                        busy_cpu=ctx.limits.busy_cpu)
    cur = sum(rows[c]["cur_khz"] for c in busy) / len(busy)
    numbers: dict[str, Any] = {"busy_cpus": len(busy), "cur_khz": int(cur)}
    statuses, notes = [], []
    bases = [rows[c].get("base_khz") for c in busy]
    hw_max = [rows[c].get("cpuinfo_max_khz") for c in busy]
    caps = [rows[c].get("scaling_max_khz") for c in busy]
    if all(bases):
        base = sum(bases) / len(bases)
        numbers.update(base_khz=int(base), ratio_to_base=cur / base)
        ratio = cur / base
        status = ("fail" if ratio < ctx.limits.freq_base_fail else
                  "warn" if ratio < ctx.limits.freq_base_warn else "ok")
        statuses.append(status)
        notes.append(f"busy CPUs at {cur / 1e6:.2f} GHz, {_pct(ratio)} of base {base / 1e6:.2f} GHz")
    elif all(hw_max) or all(caps):
        top = sum(hw_max if all(hw_max) else caps) / len(busy)
        ratio = cur / top
        numbers.update(max_khz=int(top), ratio_to_max=ratio)
        statuses.append("warn" if ratio < ctx.limits.freq_max_warn else "ok")
        notes.append(f"busy CPUs at {cur / 1e6:.2f} GHz, {_pct(ratio)} of max {top / 1e6:.2f} GHz")
    else:
        notes.append(f"busy CPUs at {cur / 1e6:.2f} GHz (no base or max frequency to compare with)")
    if all(hw_max) and all(caps):
        capped = sum(caps) / len(caps) < ctx.limits.freq_cap_ratio * sum(hw_max) / len(hw_max)
        numbers["scaling_max_khz"] = int(sum(caps) / len(caps))
        if capped:
            statuses.append("warn")
            notes.append(f"scaling_max_freq {sum(caps) / len(caps) / 1e6:.2f} GHz caps the hardware's "
                         f"{sum(hw_max) / len(hw_max) / 1e6:.2f} GHz")
    if not statuses:
        return _verdict(name, "info", "; ".join(notes), **numbers)
    status = _worst(statuses)
    return _verdict(name, status, "; ".join(notes), _UNSTABLE if status != "ok" else "", **numbers)


def check_thermal(ctx: _Context) -> dict:
    name = "thermal"
    thermal = ctx.sample.get("thermal") or {}
    if not thermal.get("available"):
        return _verdict(name, "info", f"thermal throttling not measurable: {thermal.get('reason') or 'not in the sample'}")
    counters = thermal.get("counters") or {}
    scope = set(ctx.planned_cpus or ctx.busy or ctx.node_of)
    rising = {int(c) for entry in counters.values() for c in entry.get("cpus_rising") or []}
    rising = sorted(rising & scope if scope else rising)
    numbers: dict[str, Any] = {name_: int(entry.get("delta_total") or 0) for name_, entry in counters.items()}
    numbers["cpus_rising"] = len(rising)
    if not rising:
        return _verdict(name, "ok", "no throttle counter rose during the window", **numbers)
    share = len(rising) / len(scope) if scope else 1.0
    names = ", ".join(n for n, e in counters.items() if e.get("delta_total"))
    status = "fail" if share > ctx.limits.throttle_fail_share else "warn"
    return _verdict(name, status, f"thermal throttling during the window on {len(rising)} CPU(s) "
                    f"({_cpu_ranges(rising)}): {names} rose", _UNSTABLE, **numbers)


def _perf_event(ctx: _Context, event: str) -> tuple[float | None, str]:
    perf = ctx.sample.get("perf") or {}
    if not perf.get("available"):
        return None, f"perf not measurable: {perf.get('reason') or 'not in the sample'}"
    entry = (perf.get("events") or {}).get(event) or {}
    if entry.get("value") is None:
        return None, f"perf {event} {entry.get('status') or 'missing'} on this host"
    return float(entry["value"]), ""


def check_migrations(ctx: _Context) -> dict:
    name = "migrations"
    migrations, why = _perf_event(ctx, "cpu-migrations")
    if migrations is None:
        return _verdict(name, "info", why)
    switches = _perf_event(ctx, "context-switches")[0]
    numbers = {"cpu_migrations": int(migrations), "context_switches": int(switches) if switches is not None else None,
               "server_cpu_seconds": ctx.cpu_seconds}
    if ctx.idle:
        verdict = ctx.idle_verdict(name, "the migration rate")
        verdict["numbers"].update(_verdict(name, "info", "", **numbers)["numbers"])
        return verdict
    rate = migrations / max(ctx.cpu_seconds, 1e-9)
    numbers["per_cpu_second"] = rate
    remedy = ("threads migrating: pin them (the plan's policy: CPUAffinity=/numactl from deploy.yml; kt-kernel pins "
              "its pools itself when --kt-threadpool-count equals the nodes and SGLANG_SET_CPU_AFFINITY=0)")
    text = f"{int(migrations)} CPU migrations in {ctx.window:g} s, {rate:.1f} per CPU-second of the server"
    if rate > ctx.limits.migrations_fail:
        return _verdict(name, "fail", text, remedy, **numbers)
    if rate > ctx.limits.migrations_warn:
        return _verdict(name, "warn", text, remedy, **numbers)
    return _verdict(name, "ok", text, **numbers)


def check_cache(ctx: _Context) -> dict:
    name = "cache"
    misses, why = _perf_event(ctx, "cache-misses")
    references, why_ref = _perf_event(ctx, "cache-references")
    if misses is None or references is None:
        return _verdict(name, "info", why or why_ref)
    ratio = misses / references if references else 0.0
    return _verdict(name, "info", f"cache-miss ratio {_pct(ratio)} ({int(misses)} of {int(references)} references); "
                    "not judged: MoE inference streams weights and misses by design, compare with a healthy host",
                    cache_misses=int(misses), cache_references=int(references), miss_ratio=ratio)


def tuned_tokens_per_second(tune_result: Any) -> float | None:
    """The tokens/s tuning measured at the thread count it chose (``ktfleet_tune_result`` of tune.yml).

    The median of the ``table`` row whose ``threads`` is ``chosen`` (its ``median``, else the median
    of its ``samples``); else ``peak_tokens_per_second``; None when neither is there.
    """
    if not isinstance(tune_result, Mapping):
        return None
    chosen = tune_result.get("chosen")
    for row in tune_result.get("table") or []:
        if not isinstance(row, Mapping) or chosen is None or str(row.get("threads")) != str(chosen):
            continue
        if row.get("median") is not None:
            return float(row["median"])
        samples = sorted(float(v) for v in row.get("samples") or [])
        if samples:
            mid = len(samples) // 2
            return samples[mid] if len(samples) % 2 else (samples[mid - 1] + samples[mid]) / 2
    peak = tune_result.get("peak_tokens_per_second")
    return float(peak) if peak is not None else None


def check_throughput(ctx: _Context, throughput: Mapping | None) -> dict:
    name = "throughput"
    measured = _get(throughput, "measured")
    tuned = _get(throughput, "tuned")
    if tuned is None:
        tuned = tuned_tokens_per_second(_get(throughput, "tune_result"))
    if measured is None or not tuned:
        return _verdict(name, "info", "throughput not compared: give the measured tokens/s and the tuned tokens/s "
                        "(ktfleet_diagnose_tokens_per_second, ktfleet_tune_result)",
                        measured=measured, tuned=tuned)
    measured, tuned = float(measured), float(tuned)
    drop = 1 - measured / tuned
    cpu_infer = _get(ctx.plan, "cpu_infer")
    numbers = {"measured_tokens_per_second": measured, "tuned_tokens_per_second": tuned, "drop": drop,
               "cpu_infer": cpu_infer}
    text = f"{measured:g} tok/s against the tuned {tuned:g} tok/s ({'-' if drop >= 0 else '+'}{abs(drop):.0%})"
    if drop > ctx.limits.throughput_drop:
        lower = f" ({cpu_infer} -> {cpu_infer - 3}..{cpu_infer - 2})" if isinstance(cpu_infer, int) else ""
        return _verdict(name, "fail", f"throughput fell: {text}",
                        f"fewer threads: re-run tune.yml, or lower ktfleet_cpu_infer by 2-3{lower}", **numbers)
    return _verdict(name, "ok", text, **numbers)


# --- entry points ---------------------------------------------------------------------------


def _worst(statuses) -> str:
    for status in STATUSES:
        if status in statuses:
            return status
    return "info"


def diagnose(sample: Mapping, plan: Mapping | None = None, facts: Mapping | None = None, *,
             throughput: Mapping | None = None, **thresholds: Any) -> Diagnosis:
    """Verdicts on ``sample`` (a numa_sample result) against ``plan``; see the module docstring.

    ``throughput`` is ``{"measured": tok/s now, "tuned": tok/s recorded by tuning}`` (optional;
    ``"tune_result": ktfleet_tune_result`` may stand for ``tuned``).
    ``thresholds`` override the fields of ``Thresholds``; an unknown name raises ValueError.
    """
    if not isinstance(sample, Mapping):
        raise ValueError(f"the sample must be a numa_sample result (a mapping), got {type(sample).__name__}")
    limits = make_thresholds(**thresholds)
    ctx = _Context(sample, plan, facts, limits)
    verdicts = [
        check_node_balance(ctx),
        check_threads_placement(ctx),
        check_remote_memory(ctx),
        check_memory_placement(ctx),
        check_memory_headroom(ctx),
        check_cpu_frequency(ctx),
        check_thermal(ctx),
        check_migrations(ctx),
        check_cache(ctx),
        check_throughput(ctx, throughput),
    ]
    return {
        "window_seconds": ctx.window,
        "status": _worst([v["status"] for v in verdicts]),
        "verdicts": verdicts,
        "thresholds": dataclasses.asdict(limits),
    }


def render_table(result: Mapping, width: int = 110) -> str:
    """The verdicts as a fixed-width text table, the remedy under each verdict that is not ok."""
    verdicts = list(result.get("verdicts") or [])
    check_w = max([len("check")] + [len(str(v.get("check", ""))) for v in verdicts])
    indent = check_w + 2 + 6 + 2
    text_w = max(30, width - indent)
    widths = (check_w, 6, 0)
    lines = [text_table.line(("check", "status", "summary"), widths), text_table.rule((check_w, 6, min(text_w, 40)))]
    for verdict in verdicts:
        summary = textwrap.wrap(str(verdict.get("summary", "")), text_w) or [""]
        lines.append(text_table.line((verdict.get("check", ""), str(verdict.get("status", "")).upper(), summary[0]),
                                     widths))
        lines.extend(" " * indent + line for line in summary[1:])
        if verdict.get("remedy") and verdict.get("status") in ("warn", "fail"):
            remedy = textwrap.wrap("remedy: " + str(verdict["remedy"]), text_w)
            lines.extend(" " * indent + line for line in remedy)
    window = result.get("window_seconds")
    status = str(result.get("status") or _worst([v.get("status") for v in verdicts])).upper()
    lines.append(f"overall {status} over a {window:g} s window" if isinstance(window, int | float)
                 else f"overall {status}")
    return "\n".join(lines)
