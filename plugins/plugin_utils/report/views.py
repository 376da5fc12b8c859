"""What every view of the report needs: per-host view models built from a record (no markup)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import format_cpulist as id_ranges
from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import parse_cpulist

from ..planner.fleet_table import _nodes as nodes_label  # the same "2+4mem (2/pkg)" as the rollout table
from ..sizes import format_size_short as human_bytes
from .records import RecordError, check_record

# --- what every view needs ----------------------------------------------------------

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7")
STATUS_ORDER = ("fail", "warn", "info", "ok")


def parse_ranges(text: str) -> list[int]:
    """'0-3,8' -> [0, 1, 2, 3, 8]; [] for anything else (CPUAffinity=numa)."""
    try:
        return parse_cpulist(text, lenient=True)
    except ValueError:
        return []


def plan_cpus(plan: Mapping, facts: Mapping | None) -> set[int]:
    """The CPUs the plan lets the server use: plan.cpus, else CPUAffinity=, else its nodes' CPUs."""
    if plan["cpus"]:
        return set(plan["cpus"])
    affinity = plan["systemd"]["CPUAffinity"]
    if affinity and parse_ranges(affinity):
        return set(parse_ranges(affinity))
    nodes = {n["id"]: n for n in (facts or {}).get("nodes", [])}
    return {cpu for node in plan["numa_nodes"] if node in nodes for cpu in nodes[node]["cpus"]}


def is_strict(plan: Mapping) -> bool:
    """Must each node hold its part, or only the total? The plan says (memory.per_node_checked);
    a record saved before plans said it is read by the planner's rule of then (memory.is_strict)."""
    checked = plan["memory"].get("per_node_checked")
    if checked is not None:
        return bool(checked)
    nodes = plan["memory"]["required_per_node_bytes"]
    return plan["policy"] in ("replicate", "shard") or (plan["policy"] == "bind" and len(nodes) == 1)


def pool_label(plan: Mapping, node: int) -> str:
    """What runs on node: 'pool 0: 31 threads' (kt-kernel), 'copy 1: 32 threads' (USE_NUMA=1)."""
    if node not in plan["numa_nodes"]:
        return ""
    index = plan["numa_nodes"].index(node)
    threads = plan["threads_per_node"].get(node)
    count = "?" if threads is None else str(threads)
    if plan["backend"] == "sglang-kt":
        return f"pool {index}: {count} threads"
    if plan["policy"] == "replicate":
        return f"copy {index}: {count} threads"
    return f"~{count} threads (not pinned)"


@dataclass
class NodeView:
    id: int
    cpus: list[int]
    cores: int | None
    memory: int | None
    memory_only: bool
    package_ids: list[int]
    groups: list[list[int]] | None  # CPUs of each core when the facts say; None: unknown pairing
    gpus: list[dict] = field(default_factory=list)
    colour: str | None = None  # the plan uses this node for threads
    label: str = ""  # the plan's pool on it
    weights: int | None = None  # bytes of weights the plan puts on it


@dataclass
class Topology:
    packages: list[tuple[dict, list[NodeView]]]
    memory_only: list[NodeView]
    unplaced: list[NodeView]  # CPU nodes in no single package
    gpus_unknown: list[dict]  # GPUs whose NUMA node is not known (or not in the facts)
    used_cpus: set[int]
    notes: list[str]
    gpu_memory: list[dict] = field(default_factory=list)  # NUMA nodes that are a GPU's memory
    cpus_without_node: list[int] = field(default_factory=list)

    @property
    def nodes(self) -> list[NodeView]:
        placed = [n for _package, nodes in self.packages for n in nodes]
        return sorted(placed + self.memory_only + self.unplaced, key=lambda n: n.id)


def core_groups(node: Mapping, core_cpus: list[list[int]]) -> list[list[int]] | None:
    """The CPUs of each core of the node, when the facts say (core_cpus), or one CPU per core."""
    cpus = set(node["cpus"])
    siblings = [sorted(set(group) & cpus) for group in core_cpus]
    siblings = sorted((g for g in siblings if g), key=lambda g: g[0])
    if siblings and sorted(c for g in siblings for c in g) == sorted(cpus):
        return siblings
    if cpus and node["cores"] == len(cpus):
        return [[cpu] for cpu in sorted(cpus)]
    return None


def topology(facts: Mapping, plan: Mapping | None) -> Topology:
    views = {
        n["id"]: NodeView(
            id=n["id"], cpus=sorted(n["cpus"]), cores=n["cores"], memory=n["memory_total_bytes"],
            memory_only=bool(n["memory_only"]), package_ids=n["package_ids"],
            groups=core_groups(n, facts["core_cpus"]),
        )
        for n in facts["nodes"]
    }  # fmt: skip
    used, notes = _apply_plan(views, plan, facts) if plan is not None else (set(), [])
    gpus_unknown = []
    for gpu in facts["gpus"]:
        if gpu["numa_node"] in views:
            views[gpu["numa_node"]].gpus.append(gpu)
        else:
            gpus_unknown.append(gpu)
    packages = _by_package(views, facts["packages"])
    placed = {v.id for _package, members in packages for v in members}
    memory_only = [v for v in views.values() if v.memory_only]
    unplaced = [v for v in views.values() if not v.memory_only and v.id not in placed]
    return Topology(
        packages, memory_only, unplaced, gpus_unknown, used, notes,
        gpu_memory=list(facts.get("gpu_memory_nodes") or []),
        cpus_without_node=list(facts.get("cpus_without_node") or []),
    )  # fmt: skip


def _apply_plan(views: dict[int, NodeView], plan: Mapping, facts: Mapping) -> tuple[set[int], list[str]]:
    """Mark the plan's pools and weights on the nodes; the CPUs it uses, and what does not match."""
    weights = plan["memory"]["required_per_node_bytes"]
    for index, node in enumerate(plan["numa_nodes"]):
        if node in views:
            views[node].colour = PALETTE[index % len(PALETTE)]
            views[node].label = pool_label(plan, node)
    for node, size in weights.items():
        if node in views:
            views[node].weights = size
    missing = sorted((set(plan["numa_nodes"]) | set(weights)) - set(views))
    notes = [f"the plan names node(s) {id_ranges(missing)}, which the facts do not have"] if missing else []
    return plan_cpus(plan, facts), notes


def _by_package(views: dict[int, NodeView], packages: list[dict]) -> list[tuple[dict, list[NodeView]]]:
    """CPU nodes inside the one package their CPUs belong to.

    A node spanning several packages (old ia64, POWER without package ids) is left
    out, to be drawn beside them; so are packages left with no node.
    """
    out = []
    for view in views.values():
        # hand-written facts may list nodes under packages[] only
        view.package_ids = view.package_ids or [p["id"] for p in packages if view.id in p["nodes"]]
    for package in packages:
        members = [v for v in views.values() if not v.memory_only and v.package_ids == [package["id"]]]
        if members:
            out.append((package, sorted(members, key=lambda v: v.id)))
    return out


def gpu_text(gpu: Mapping) -> tuple[str, str]:
    """Two short lines: the PCI address, then vendor, model/device and memory."""
    what = " ".join(
        str(part)
        for part in (gpu["vendor"], gpu["model"] or gpu["device_id"], human_bytes(gpu["memory_bytes"]) if gpu["memory_bytes"] else None)
        if part
    )
    return f"GPU {gpu['pci_address'] or '?'}", what or "GPU"


@dataclass
class MemoryRow:
    label: str
    need: int  # weights + buffers + margin
    total: int | None
    limit: int | None  # the recommended free share's line: total x (1 - headroom)
    status: str  # "ok", "tight", "bad", "spread" (only the total is checked), "unknown"
    weights: int = 0
    buffers: int = 0
    margin: int = 0

    @property
    def scale(self) -> int:
        return max(self.need, self.total or 0, 1)


TIER_STATUS = {"fits": "ok", "tight": "tight", "does_not_fit": "bad"}


def _status(need: int, total: int, limit: int) -> str:
    return "bad" if need > total else "tight" if need > limit else "ok"


def memory_rows(plan: Mapping) -> list[MemoryRow]:
    """One row per node holding weights, then the total: weights, buffers and margin against
    MemTotal (the hard limit) and the recommended free share's line (tight above it)."""
    memory = plan["memory"]
    headroom = memory["headroom_ratio"] if memory["headroom_ratio"] is not None else 0.0
    strict = is_strict(plan)
    parts = [memory[k] for k in ("weights_per_node_bytes", "buffers_per_node_bytes", "margin_per_node_bytes")]
    rows = []
    for node, need in sorted(memory["required_per_node_bytes"].items()):
        total = memory["available_per_node_bytes"].get(node)
        limit = (memory.get("keep_free_per_node_bytes") or {}).get(node)
        if limit is None:  # a record from before the plan stated it
            limit = None if total is None else int(total * (1 - headroom))
        if limit is None or total is None:
            status = "unknown"
        elif not strict:
            status = "spread"
        else:
            status = _status(need, total, limit)
        # a record from before the breakdown: all of it counts as weights
        weights, buffers, margin = (part.get(node) for part in parts)
        weights = need if weights is None else weights
        rows.append(MemoryRow(f"node {node}", need, total, limit, status, weights, buffers or 0, margin or 0))
    total = memory["available_total_bytes"]
    need_total = memory["required_total_bytes"]
    if need_total is None:
        need_total = sum(memory["required_per_node_bytes"].values())
    tier = memory["tier"] or {True: "fits", False: "does_not_fit"}.get(memory["fits"])
    sums = [sum(r.weights for r in rows), sum(r.buffers for r in rows), sum(r.margin for r in rows)]
    rows.append(
        MemoryRow(
            "total", need_total, total, None if total is None else int(total * (1 - headroom)),
            TIER_STATUS.get(tier or "", "unknown"), *sums,
        )
    )
    return rows


def tune_points(tune: Mapping) -> list[dict]:
    """The measured rows by thread count; a row without median takes its samples' median."""
    points = []
    for row in tune["table"]:
        median = row["median"] if row["median"] is not None else _median(row["samples"])
        if row["threads"] is not None and median is not None:
            points.append({**row, "median": median})
    return sorted(points, key=lambda row: row["threads"])


def _median(samples: list[float]) -> float | None:
    return statistics.median(samples) if samples else None


def diagnosis_worst(diagnosis: Mapping | None) -> str | None:
    statuses = {v["status"] for v in (diagnosis or {}).get("verdicts", [])}
    return next((s for s in STATUS_ORDER if s in statuses), None)


def diagnosis_counts(diagnosis: Mapping | None) -> str:
    if diagnosis is None:
        return "-"
    counts = {s: 0 for s in STATUS_ORDER}
    for verdict in diagnosis["verdicts"]:
        counts[verdict["status"]] += 1
    text = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return text or "no checks"


SUMMARY_COLUMNS = (
    "host", "nodes", "cores", "SMT", "policy", "cpu_infer", "pools", "needs", "available",
    "rollout", "tuned", "diagnosis", "verdict",
)  # fmt: skip


def summary(view: Mapping) -> tuple[dict[str, str], str]:
    """The host's row of the fleet table and its verdict class (ok, warn, bad, none)."""
    facts, plan = view["facts"], view["plan"]
    row = dict.fromkeys(SUMMARY_COLUMNS, "-")
    row["host"] = f"{view['host']} ({view['label']})" if view.get("label") else view["host"]
    if facts is not None:
        row["nodes"] = nodes_label(facts)
        row["cores"] = "?" if facts["cores_total"] is None else str(facts["cores_total"])
        tpc = facts["threads_per_core"]
        row["SMT"] = ("off" if not facts["smt_active"] else f"{tpc}x" if tpc else "mixed")
    if plan is not None:
        row["policy"] = plan["policy"] or "?"
        row["cpu_infer"] = _text(plan["cpu_infer"])
        row["pools"] = _text(plan["threadpool_count"])
        row["needs"] = human_bytes(plan["memory"]["required_total_bytes"])
        row["available"] = human_bytes(plan["memory"]["available_total_bytes"])
    if view["rollout"] is not None:
        row["rollout"] = view["rollout"]["outcome"]
    if view["tune"] is not None and view["tune"]["chosen"] is not None:
        row["tuned"] = str(view["tune"]["chosen"])
    row["diagnosis"] = diagnosis_counts(view["diagnosis"])
    row["verdict"], verdict_class = _verdict(view)
    return row, verdict_class


def _verdict(view: Mapping) -> tuple[str, str]:
    plan, worst = view["plan"], diagnosis_worst(view["diagnosis"])
    if plan is not None and plan["memory"]["fits"] is False:
        return "DOES NOT FIT", "bad"
    if view["rollout"] is not None and view["rollout"]["outcome"] == "rolled_back":
        return "ROLLED BACK", "bad"
    if worst == "fail":
        return "DIAGNOSIS FAILS", "bad"
    if worst == "warn":
        return "warnings", "warn"
    if plan is None:
        return "no plan", "none"
    if plan["memory"]["fits"] is None:
        return "fit unverified", "warn"
    if plan["memory"]["tier"] == "tight":
        return "tight", "warn"
    return "fits" if worst is None else "ok", "ok"


def _text(value: Any) -> str:
    return "?" if value is None else str(value)


def host_view(record: Mapping, where: str | None = None) -> dict:
    """Everything the page and the Markdown show of one record."""
    if where is None:
        where = f"record {record.get('host')!r}" if isinstance(record, Mapping) else "record"
    view = check_record(record, where)
    view["topology"] = topology(view["facts"], view["plan"]) if view["facts"] is not None else None
    view["memory_rows"] = memory_rows(view["plan"]) if view["plan"] is not None else []
    view["row"], view["verdict_class"] = summary(view)
    view["tune_points"] = tune_points(view["tune"]) if view["tune"] is not None else []
    return view


def fleet_views(records: Iterable[Mapping]) -> list[dict]:
    views, seen = [], set()
    for index, record in enumerate(records):
        view = host_view(record, f"record {index}" if not isinstance(record, Mapping) else None)
        if view["host"] in seen:
            raise RecordError(f"record {view['host']!r}: host: appears twice")
        seen.add(view["host"])
        views.append(view)
    return sorted(views, key=lambda v: v["host"])


# --- words and numbers the page and the Markdown share ---------------------------

MEMORY_WORDS = {"ok": "fits", "tight": "tight", "bad": "DOES NOT FIT", "spread": "spread", "unknown": "unverified"}


def _smt_note(view: Mapping) -> str:
    topo = view["topology"]
    unpaired = [n.id for n in topo.nodes if n.groups is None and n.cpus]
    if not unpaired:
        return ""
    return (
        f"Node(s) {id_ranges(unpaired)}: each CPU is drawn as one cell; the facts count the cores "
        "but do not say which CPUs are SMT siblings of one core."
    )


def _latest(views: list[dict]) -> str:
    return max((v["updated"] for v in views), default="")


def _weights(node: NodeView) -> str:
    return f"weights {human_bytes(node.weights)}" if node.weights else ""


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
