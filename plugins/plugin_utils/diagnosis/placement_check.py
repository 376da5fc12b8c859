"""Compare where a server really runs (numa_placement) with its plan."""

from __future__ import annotations

from collections.abc import Mapping

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import join_ids, parse_cpulist

# systemd NUMAPolicy= name -> the word numa_maps prints for it.
_NUMA_MAPS_WORD = {"bind": "bind", "interleave": "interleave", "preferred": "prefer", "local": "local"}


def _nodes(text: str) -> set[int]:
    return set(parse_cpulist(str(text), lenient=True))


def _policy(text: str | None) -> tuple[str, set[int]]:
    word, _sep, nodes = (text or "default").partition(":")
    return word, _nodes(nodes)


def placement_problems(placement: Mapping, plan: Mapping) -> list[str]:
    """Human-readable differences; empty when the process runs as planned."""
    problems = []
    want_cpus = set(plan.get("cpus") or [])
    have_cpus = set(placement.get("cpus_allowed") or [])
    if want_cpus and have_cpus != want_cpus:
        problems.append(
            f"Cpus_allowed_list is {placement.get('cpus_allowed_list')} but the plan's CPUs are "
            f"{join_ids(sorted(want_cpus))}"
        )
    systemd = plan.get("systemd") or {}
    want_word = _NUMA_MAPS_WORD.get(systemd.get("NUMAPolicy") or "default", "default")
    want_nodes = _nodes(systemd.get("NUMAMask") or "") if want_word in ("bind", "interleave", "prefer") else set()
    have_word, have_nodes = _policy(placement.get("task_policy"))
    if (have_word, have_nodes) != (want_word, want_nodes):
        want = want_word + (":" + join_ids(sorted(want_nodes)) if want_nodes else "")
        problems.append(f"memory policy is {placement.get('task_policy') or 'default'} but the plan's is {want}")
    return problems
