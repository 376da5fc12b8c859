"""The fleet's plans as one plain-text table, for the start of every rollout."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, get_args

from .. import text_table
from ..sizes import format_size_short as human_bytes

# a host's ktfleet_rollout_outcome: the new release healthy, the old one put back, or not reached
Outcome = Literal["new", "rolled_back", "old"]
COLUMNS = ("host", "nodes", "cores", "SMT", "policy", "cpu_infer", "pools", "needs", "available", "verdict")


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
    # tight: fits in MemTotal but leaves less free than recommended (deploys with a warning)
    verdict = "DOES NOT FIT" if not memory.get("fits") else "tight" if memory.get("tier") == "tight" else "fits"
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
        label = hv.get("ktfleet_facts_label")  # the demo's "synthetic" / "recorded" machines
        rows.append(row(f"{host} ({label})" if label else host, facts, hv.get("ktfleet_plan")))
    return "\n".join(text_table.table(rows))


def rollout_outcomes(hostvars: Mapping, hosts: Iterable[str]) -> dict[str, list[str]]:
    """Hosts by outcome: 'new' release, 'rolled_back', or 'old' (not reached)."""
    outcomes: dict[str, list[str]] = {outcome: [] for outcome in get_args(Outcome)}
    for host in hosts:
        outcome = (hostvars.get(host) or {}).get("ktfleet_rollout_outcome")
        outcomes[outcome if outcome in outcomes else "old"].append(host)
    return outcomes
