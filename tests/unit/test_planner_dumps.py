"""The planner over every real machine dump in ../shared/topologies (facts from the fact gatherer).

Invariants, for both backends and a small, a large and an impossible model:
threads never exceed the physical cores of a used node, memory-only nodes never get
threads, kt-kernel pools divide the intermediate size, the argv matches the plan,
and the same facts always give the same plan.
"""

from __future__ import annotations

import json

import pytest
from conftest import DUMP_NAMES

from ansible_collections.ktfleet.numa.plugins.plugin_utils.errors import PlanError
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner import planner

gather = pytest.importorskip(
    "ansible_collections.ktfleet.numa.plugins.module_utils.topology",
    reason="the fact gatherer (plugins/module_utils/topology.py) is not there yet",
).gather

GiB = 1024**3
MODELS = {
    "small": 1 * GiB,
    "deepseek": 378 * GiB,
    "impossible": 16 * 1024 * GiB,  # more than any dump has
}
BACKENDS = ("legacy", "sglang-kt")


@pytest.fixture(scope="module")
def facts_of(dump_root):
    cache: dict[str, dict] = {}

    def _facts(name: str) -> dict:
        if name not in cache:
            cache[name] = gather(str(dump_root(name)), gpu_memory=False)
        return cache[name]

    return _facts


def _model(size: int) -> dict:
    return {
        "name": "DeepSeek-V3",
        "weights_bytes": size,
        "moe_intermediate_size": 2048,
        "model_path": "/srv/models/DeepSeek-V3",
        "weights_path": "/srv/models/DeepSeek-V3-AMXINT4",
    }


def _runnable_model(facts: dict, size: int, backend: str) -> dict:
    """The AMXINT4 model, or BF16 weights where kt-kernel cannot run AMXINT4 (then that refusal is checked)."""
    model = _model(size)
    flags = (facts.get("cpu") or {}).get("flags") or {}
    if backend == "sglang-kt" and any(flags.values()) and not (flags.get("avx512f") and flags.get("avx512bw")):
        # kt-kernel's avx2 build has no AMX kernels (tests/oracle/test_oracle_kt_rules.py)
        with pytest.raises(PlanError, match=r"^ktfleet_model.kt_method: AMXINT4 needs AVX512F \+ AVX512BW"):
            planner.make_plan(facts, model, backend)
        model = {**model, "weights_path": "/srv/models/DeepSeek-V3-BF16"}
    return model


def _cores(node: dict) -> int:
    # the planner counts each CPU as a core when the dump has no core topology
    return node["cores"] or len(node["cpus"])


def test_every_dump_is_covered():
    assert len(DUMP_NAMES) == 39


@pytest.mark.parametrize("size", MODELS.values(), ids=MODELS.keys())
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", DUMP_NAMES)
def test_plan_invariants(name, backend, size, facts_of):
    facts = facts_of(name)
    nodes = {n["id"]: n for n in facts["nodes"]}
    plan = planner.make_plan(facts, _runnable_model(facts, size, backend), backend)

    cpu_nodes = {i for i, n in nodes.items() if n["cpus"] and not n["memory_only"]}
    assert set(plan.numa_nodes) <= cpu_nodes, "threads only on nodes with usable CPUs"
    assert set(plan.threads_per_node) == set(plan.numa_nodes)
    for node, threads in plan.threads_per_node.items():
        assert not nodes[node]["memory_only"]
        assert 1 <= threads <= _cores(nodes[node]), (
            f"node {node}: {threads} threads, {_cores(nodes[node])} cores"
        )
    assert set(plan.memory_nodes) <= set(nodes)
    assert plan.cpus == sorted(c for n in plan.numa_nodes for c in nodes[n]["cpus"])

    argv = plan.server_args
    if backend == "sglang-kt":
        assert plan.policy == "shard"
        assert 2048 % plan.threadpool_count == 0
        assert plan.threadpool_count == len(plan.numa_nodes)
        assert plan.cpu_infer == sum(plan.threads_per_node.values())
        assert len(set(plan.threads_per_node.values())) == 1, "kt-kernel splits evenly"
        at = argv.index("--kt-threadpool-count")
        assert argv[at + 1] == str(plan.threadpool_count)
        at = argv.index("--kt-numa-nodes")
        assert argv[at + 1 : at + 1 + len(plan.numa_nodes)] == [str(n) for n in plan.numa_nodes]
        assert argv[argv.index("--kt-cpuinfer") + 1] == str(plan.cpu_infer)
        assert plan.environment == {"SGLANG_SET_CPU_AFFINITY": "0"}
    else:
        assert plan.cpu_infer == sum(plan.threads_per_node.values()) + 1
        assert argv[argv.index("--cpu_infer") + 1] == str(plan.cpu_infer)
        assert plan.numa_build is (plan.policy == "replicate")
    if plan.numactl:
        bound = [w for w in plan.numactl if w.startswith("--cpunodebind=")]
        assert not bound or _expand(bound[0].split("=", 1)[1]) == set(plan.numa_nodes)
    if plan.memory.fits is None:
        assert facts["memory_total_bytes"] is None
    if size == MODELS["impossible"]:
        assert plan.memory.fits is not True
        assert plan.memory.fits is None or any(w.startswith("the weights do not fit") for w in plan.warnings)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", DUMP_NAMES)
def test_plans_are_deterministic(name, backend, facts_of):
    facts = facts_of(name)
    model = _runnable_model(facts, MODELS["small"], backend)
    first = planner.make_plan(facts, model, backend).model_dump(mode="json")
    again = planner.make_plan(json.loads(json.dumps(facts)), model, backend).model_dump(mode="json")
    assert first == again
    assert json.loads(json.dumps(first, sort_keys=True)) == first


def _expand(ids: str) -> set[int]:
    out: set[int] = set()
    for part in ids.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out
