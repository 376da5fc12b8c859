"""The naive default next to the plan (plugins/plugin_utils/planner/naive.py): the seed's story."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.ktfleet.numa.plugins.module_utils import topology
from ansible_collections.ktfleet.numa.plugins.plugin_utils import synthetic
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner import naive
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.planner import make_plan

REPO = Path(__file__).resolve().parents[2]
R1 = {"name": "DeepSeek-R1-Q4_K_M", "weights_bytes": "377G", "model_path": "/m", "weights_path": "/m"}
V3 = {**R1, "name": "DeepSeek-V3", "weights_bytes": "305G", "moe_intermediate_size": 2048, "kt_method": "AMXINT4"}


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    def read(name):
        spec = json.loads((REPO / f"inventory/demo_machines/{name}.json").read_text())
        return topology.gather(str(synthetic.write_tree(spec, tmp_path_factory.mktemp(name) / name)))

    return read


def test_the_seeds_machine_naive_is_every_thread_on_one_socket(machine):
    facts = machine("seed-xeon6430")
    default = naive.naive_default(facts, "legacy")
    assert (default.cpu_infer, default.memory_nodes, default.sockets) == (128, [0], [0])
    assert "--cpu_infer 128" in default.reason and "one socket" in default.reason


def test_the_seeds_machine_plan_line_is_the_guides(machine):
    facts = machine("seed-xeon6430")
    plan = make_plan(facts, R1, "legacy")
    line = naive.planned_line(facts, plan, R1["weights_bytes"])
    assert line.startswith("--cpu_infer 65, threads on node(s) 0,1 (2 socket(s)), replicate: a copy of the 377.0 GiB")
    per_node = max(plan.memory.required_per_node_bytes.values())
    assert f"2 x {naive.format_size(per_node)} = {naive.format_size(plan.memory.required_total_bytes)}" in line


def test_sglang_kt_naive_is_the_servers_two_pools_on_any_node_count(machine):
    facts = machine("snc4-xeon8480")
    default = naive.naive_default(facts, "sglang-kt")
    assert (default.cpu_infer, default.threadpool_count, default.memory_nodes) == (224, 2, [0, 1])
    assert default.sockets == [0]  # SNC-4: both default pools land on socket 0
    line = naive.planned_line(facts, make_plan(facts, V3, "sglang-kt", gpus=4), V3["weights_bytes"])
    assert line.startswith("--kt-cpuinfer 104, 8 pool(s), threads on node(s) 0,1,2,3,4,5,6,7 (2 socket(s)), shard")


def test_comparison_reads_hostvars_and_skips_hosts_without_a_plan(machine):
    facts = machine("seed-xeon6430")
    plan = make_plan(facts, R1, "legacy").model_dump(mode="json")  # as set_fact leaves it
    hostvars = {
        "seed": {"ansible_facts": {"numa": facts}, "ktfleet_plan": plan, "__ktfleet_model": R1},
        "down": {},
    }
    lines = naive.comparison(hostvars, ["seed", "down"]).splitlines()
    assert lines[0] == "seed" and lines[1].startswith("  planned: --cpu_infer 65") and lines[2].startswith("  naive:   --cpu_infer 128")
    assert len(lines) == 3
