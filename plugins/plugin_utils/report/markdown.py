"""The report as Markdown (every text through ``_md``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import format_cpulist as id_ranges

from ..sizes import format_size_short as human_bytes
from .views import (
    MEMORY_WORDS,
    SUMMARY_COLUMNS,
    MemoryRow,
    NodeView,
    Topology,
    _fmt,
    _latest,
    _smt_note,
    _text,
    _weights,
    fleet_views,
    gpu_text,
    plan_cpus,
)

# --- Markdown -----------------------------------------------------------------------

# "_" inside a word emphasises nothing (cpu_infer stays readable)
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|#&]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def _md(value: Any) -> str:
    """Text safe in a Markdown paragraph or table cell (no markup, no HTML, no line breaks)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def _md_table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return lines


def _fence(text: str) -> list[str]:
    fence = "```"
    while fence in text:
        fence += "`"
    return [fence, text, fence]


def ascii_bar(row: MemoryRow, width: int = 40) -> str:
    """[####+~~....|....]: weights (#), kt-kernel buffers (+), margin (~) against memory,
    | at the recommended free share's line."""
    scale = row.scale

    def cells_of(size: int) -> int:  # a part that exists gets at least one cell
        return max(round(width * size / scale), 1 if size else 0)

    need = min(width, round(width * row.need / scale))
    buffers = min(need, cells_of(row.buffers))
    margin = min(need - buffers, cells_of(row.margin))
    weights = need - buffers - margin
    cells = ["#"] * weights + ["+"] * buffers + ["~"] * margin + ["."] * (width - need)
    if row.limit is not None:
        cells[min(width - 1, round(width * row.limit / scale))] = "|"
    return "[" + "".join(cells) + "]"


def _md_topology(topo: Topology) -> list[str]:
    lines = []
    for package, nodes in topo.packages:
        lines.append(f"- package {package['id']}: {_text(package['cores'])} cores, {len(package['cpus'])} CPUs")
        lines += [f"  - {_md_node(n, topo.used_cpus)}" for n in nodes]
    across = "nodes across packages" if any(n.package_ids for n in topo.unplaced) else "package unknown"
    for title, nodes in ((across, topo.unplaced), ("memory-only nodes", topo.memory_only)):
        if nodes:
            lines.append(f"- {title}")
            lines += [f"  - {_md_node(n, topo.used_cpus)}" for n in nodes]
    if topo.gpus_unknown:
        lines.append("- GPUs, NUMA node unknown: " + "; ".join(_md(" ".join(gpu_text(g))) for g in topo.gpus_unknown))
    lines += [f"- note: {_md(note)}" for note in topo.notes]
    return lines


def _md_node(node: NodeView, used: set[int]) -> str:
    text = f"node {node.id}: "
    if node.memory_only:
        text += "memory only"
    else:
        cores = "; ".join(",".join(map(str, g)) for g in node.groups) if node.groups and len(node.groups[0]) > 1 else ""
        text += f"{_text(node.cores)} cores, CPUs {id_ranges(node.cpus) or 'none'}"
        if len(node.package_ids) > 1:
            text += f", across packages {id_ranges(node.package_ids)}"
        if cores:
            text += f" (cores: {cores})"
        mine = sorted(set(node.cpus) & used)
        if mine:
            text += f", plan uses CPUs {id_ranges(mine)}"
    text += f", {human_bytes(node.memory) if node.memory is not None else '? memory'}"
    extra = [part for part in (node.label, _weights(node)) if part]
    if extra:
        text += " — " + ", ".join(extra)
    if node.gpus:
        text += "; " + "; ".join(" ".join(gpu_text(g)) for g in node.gpus)
    return _md(text)


def _md_host(view: Mapping) -> list[str]:
    facts, plan = view["facts"], view["plan"]
    lines = ["", f"## {_md(view['host'])}", "", f"updated {_md(view['updated'])}"]
    if facts is not None and facts["cpu"]["model_name"]:
        lines[-1] += f" · {_md(facts['cpu']['model_name'])}"
    lines += ["", "### Topology", ""]
    if view["topology"] is None:
        lines.append("No facts recorded for this host.")
    else:
        lines += _md_topology(view["topology"])
        note = _smt_note(view)
        if note:
            lines += ["", _md(note)]
    if plan is not None:
        lines += ["", "### Plan", ""] + _md_plan(plan, facts)
        lines += ["", "### Memory", ""]
        bars = [f"{m.label:<8} {ascii_bar(m)} {human_bytes(m.need)} of {human_bytes(m.total)}"
                f" (weights {human_bytes(m.weights)} + buffers {human_bytes(m.buffers)} + margin {human_bytes(m.margin)}),"
                f" keep-free line {human_bytes(m.limit)}: {MEMORY_WORDS[m.status]}"
                for m in view["memory_rows"]]  # fmt: skip
        lines += _fence("\n".join(bars))
        keep = f"{plan['memory']['headroom_ratio'] or 0:.0%}"
        lines += ["", _md(f"# weights, + kt-kernel buffers, ~ margin; | where {keep} stays free "
                          "(recommended; tight beyond it, DOES NOT FIT beyond the node's memory)")]
    if view["rollout"] is not None:
        details = "".join(f", {k}: {v}" for k, v in sorted(view["rollout"]["details"].items()))
        lines += ["", "### Rollout", "", _md(f"outcome: {view['rollout']['outcome']}{details}")]
    if view["tune"] is not None:
        lines += ["", "### Tuning", ""] + _md_tune(view["tune"], view["tune_points"])
    if view["diagnosis"] is not None:
        lines += ["", "### Diagnosis", ""] + _md_diagnosis(view["diagnosis"])
    if facts is not None and facts["warnings"]:
        lines += ["", "### Facts warnings", ""] + [f"- {_md(w)}" for w in facts["warnings"]]
    return lines


def _md_plan(plan: Mapping, facts: Mapping | None) -> list[str]:
    threads = ", ".join(f"node {n}: {t}" for n, t in sorted(plan["threads_per_node"].items()))
    systemd = " ".join(f"{k}={v}" for k, v in plan["systemd"].items() if v is not None)
    rows = [
        ("backend", f"{_text(plan['backend'])} · model {_text(plan['model'])}"),
        ("policy", _text(plan["policy"])),
        ("cpu_infer", f"{_text(plan['cpu_infer'])} ({threads})" if threads else _text(plan["cpu_infer"])),
        ("pools", f"{_text(plan['threadpool_count'])} on node(s) {', '.join(map(str, plan['numa_nodes'])) or '-'}"),
        ("CPUs", id_ranges(plan_cpus(plan, facts)) or "-"),
        ("numactl", " ".join(plan["numactl"]) or "(none)"),
        ("systemd", systemd or "(nothing to set)"),
    ]
    lines = _md_table(("", ""), rows)
    if plan["server_args"]:
        lines += ["", "server argv:", ""] + _fence(" ".join(plan["server_args"]))
    if plan["reasons"]:
        lines += ["", "Why:", ""] + [f"- {_md(r)}" for r in plan["reasons"]]
    if plan["warnings"]:
        lines += ["", "Warnings:", ""] + [f"- {_md(w)}" for w in plan["warnings"]]
    return lines


def _md_tune(tune: Mapping, points: list[dict]) -> list[str]:
    lines = [_md(f"chosen: {_text(tune['chosen'])} threads, knee: {_text(tune['knee'])}" + (f" ({tune['reason']})" if tune["reason"] else "")), ""]
    unit = tune["unit"] or "tokens/s"
    rows = [
        (p["threads"], _fmt(p["median"]), ", ".join(map(_fmt, p["samples"])),
         " ".join(m for m, v in (("knee", tune["knee"]), ("chosen", tune["chosen"])) if v == p["threads"]))
        for p in points
    ]  # fmt: skip
    return lines + _md_table(("threads", f"median {unit}", "samples", ""), rows)


def _md_diagnosis(diagnosis: Mapping) -> list[str]:
    lines = []
    if diagnosis["window_seconds"] is not None:
        lines += [f"over {_fmt(diagnosis['window_seconds'])} s", ""]
    rows = [
        (r["check"] or "?", (r["status"] or "?").upper() if r["status"] in ("fail", "warn") else r["status"] or "?",
         r["summary"] or "", r["remedy"] or "", ", ".join(f"{k}={v}" for k, v in sorted(r["numbers"].items())))
        for r in diagnosis["verdicts"]
    ]  # fmt: skip
    return lines + _md_table(("check", "status", "summary", "remedy", "numbers"), rows)


def render_markdown(records: Iterable[Mapping]) -> str:
    """The same report as Markdown: tables and lists, one ASCII bar per node."""
    views = fleet_views(records)
    lines = ["# ktfleet fleet report", ""]
    latest = _latest(views)
    lines.append(f"{len(views)} host(s)" + (f"; records updated up to {_md(latest)}." if latest else "."))
    lines += ["", "## Fleet", ""]
    if views:
        lines += _md_table(SUMMARY_COLUMNS, ([v["row"][c] for c in SUMMARY_COLUMNS] for v in views))
    else:
        lines.append("No records.")
    for view in views:
        lines += _md_host(view)
    return "\n".join(lines) + "\n"
