"""The fleet plan table and rollout outcome grouping."""

from __future__ import annotations

from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.fleet_table import (
    fleet_table,
    rollout_outcomes,
)

FACTS = {
    "nodes": [{"id": 0, "memory_only": False}, {"id": 1, "memory_only": False}, {"id": 2, "memory_only": True}],
    "nodes_per_package": 1,
    "cores_total": 64,
    "threads_per_core": 2,
    "smt_active": True,
}
PLAN = {
    "policy": "shard",
    "cpu_infer": 62,
    "threadpool_count": 2,
    "memory": {"fits": True, "required_total_bytes": 382 * 1024**3, "available_total_bytes": 1000 * 1024**3},
}


def test_table_has_one_row_per_host_and_marks_misfits():
    hostvars = {
        "a": {"ansible_facts": {"numa": FACTS}, "ktfleet_plan": PLAN},
        "b": {"ansible_facts": {"numa": FACTS}, "ktfleet_plan": {**PLAN, "memory": {**PLAN["memory"], "fits": False}}},
        "c": {},
    }
    lines = fleet_table(hostvars, ["a", "b", "c"]).splitlines()
    assert lines[0].split()[:3] == ["host", "nodes", "cores"]
    assert lines[2].split() == ["a", "2+1mem", "64", "2x", "shard", "62", "2", "382.0G", "1000.0G", "fits"]
    assert lines[3].endswith("DOES NOT FIT")
    assert lines[4].endswith("NO PLAN (preflight failed)")


def test_rollout_outcomes_groups_hosts_in_order():
    hostvars = {"a": {"ktfleet_rollout_outcome": "new"}, "b": {"ktfleet_rollout_outcome": "rolled_back"}, "c": {}}
    assert rollout_outcomes(hostvars, ["a", "b", "c"]) == {"new": ["a"], "rolled_back": ["b"], "old": ["c"]}


def test_a_labelled_host_says_where_its_facts_came_from():
    hostvars = {"a": {"ansible_facts": {"numa": FACTS}, "ktfleet_plan": PLAN, "ktfleet_facts_label": "synthetic"}}
    assert fleet_table(hostvars, ["a"]).splitlines()[2].startswith("a (synthetic)  ")
