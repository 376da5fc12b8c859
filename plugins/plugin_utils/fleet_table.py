"""The fleet's plans as one plain-text table, for the start of every rollout."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

COLUMNS = ("host", "nodes", "cores", "SMT", "policy", "cpu_infer", "pools", "needs", "available", "verdict")


def human_bytes(value: object) -> str:
    """1024-based size with one decimal, e.g. 382.0G; '?' when unknown."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "?"
    size = float(value)
    for unit in ("B", "K", "M", "G", "T", "P"):
        if abs(size) < 1024 or unit == "P":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return "?"


def _nodes(facts: Mapping) -> str:
    nodes = facts.get("nodes") or []
    memory_only = sum(1 for n in nodes if n.get("memory_only"))
    text = str(len(nodes) - memory_only)
    if memory_only:
        text += f"+{memory_only}mem"
    if (facts.get("nodes_per_package") or 1) > 1:
        text += f" ({facts['nodes_per_package']}/pkg)"
    return text


def row(host: str, facts: Mapping | None, plan: Mapping | None) -> tuple[str, ...]:
    if not facts or not plan:
        return (host, *(["-"] * (len(COLUMNS) - 2)), "NO PLAN (preflight failed)")
    memory = plan.get("memory") or {}
    tpc = facts.get("threads_per_core")
    smt = f"{tpc}x" if tpc else "mixed"
    if not facts.get("smt_active"):
        smt = "off"
    verdict = "fits" if memory.get("fits") else "DOES NOT FIT"
    return (
        host, _nodes(facts), str(facts.get("cores_total", "?")), smt, str(plan.get("policy")),
        str(plan.get("cpu_infer")), str(plan.get("threadpool_count")),
        human_bytes(memory.get("required_total_bytes")), human_bytes(memory.get("available_total_bytes")), verdict,
    )


def fleet_table(hostvars: Mapping, hosts: Iterable[str]) -> str:
    rows = [COLUMNS]
    for host in hosts:
        hv = hostvars.get(host) or {}
        facts = (hv.get("ansible_facts") or {}).get("numa")
        rows.append(row(host, facts, hv.get("__ktfleet_plan")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def rollout_outcomes(hostvars: Mapping, hosts: Iterable[str]) -> dict[str, list[str]]:
    """Hosts by outcome: 'new' release, 'rolled_back', or 'old' (not reached)."""
    outcomes: dict[str, list[str]] = {"new": [], "rolled_back": [], "old": []}
    for host in hosts:
        outcome = (hostvars.get(host) or {}).get("__ktfleet_outcome")
        outcomes[outcome if outcome in outcomes else "old"].append(host)
    return outcomes
