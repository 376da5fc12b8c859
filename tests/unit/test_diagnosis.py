"""diagnose(): every check passing and failing on synthetic numa_sample results."""

from __future__ import annotations

import copy

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ktfleet.numa.plugins.filter.diagnose import FilterModule
from ansible_collections.ktfleet.numa.plugins.plugin_utils.diagnosis.diagnosis import (
    CHECKS,
    THRESHOLD_NAMES,
    diagnose,
    render_table,
    tuned_tokens_per_second,
)

GIB = 1 << 30
NODE_CPUS = {0: [0, 1, 2, 3], 1: [4, 5, 6, 7]}

# The seed's shape, scaled down: two nodes, a sglang-kt shard plan over both.
PLAN = {
    "backend": "sglang-kt",
    "policy": "shard",
    "numa_build": None,
    "cpu_infer": 6,
    "threadpool_count": 2,
    "numa_nodes": [0, 1],
    "memory_nodes": [0, 1],
    "threads_per_node": {"0": 3, "1": 3},
    "cpus": list(range(8)),
    "systemd": {"NUMAPolicy": None, "NUMAMask": None, "CPUAffinity": "0-7"},
    "memory": {"fits": True, "headroom_ratio": 0.2},
}
FACTS = {"nodes": [{"id": 0, "cpus": NODE_CPUS[0]}, {"id": 1, "cpus": NODE_CPUS[1]}],
         "kernel": {"numa_balancing": 0}}


def healthy() -> dict:
    """A busy server spread evenly over both nodes, nothing wrong anywhere."""
    return {
        "pid": 100,
        "service": "ktransformers",
        "window_seconds": 10.0,
        "cpu_utilization": 0.9,
        "cpus": [{"cpu": c, "node": n, "busy": 0.9, "busy_seconds": 9.0} for n, cs in NODE_CPUS.items() for c in cs],
        "nodes": [
            {"id": n, "cpus": cs, "cpu_utilization": 0.9, "busy_cpu_seconds": 36.0,
             "memory_total_bytes": 64 * GIB, "memory_free_bytes": 20 * GIB, "file_pages_bytes": 30 * GIB}
            for n, cs in NODE_CPUS.items()
        ],
        "process": {
            "cpu_seconds": 70.0,
            "cpu_cores": 7.0,
            "threads": 40,
            "busy_threads": 8,
            "cpu_seconds_by_node": {"0": 35.0, "1": 35.0},
            "cpu_seconds_by_cpu": {str(c): 8.75 for c in range(8)},
            "threads_by_node": {"0": 20, "1": 20},
            "busy_threads_by_node": {"0": 4, "1": 4},
            "last_cpus": {str(c): 5 for c in range(8)},
            "bytes_per_node": {"0": 30 * GIB, "1": 30 * GIB},
            "cpus_allowed_list": "0-7",
        },
        "numastat": {
            "available": True, "reason": None,
            "nodes": {"0": {"numa_hit": 50000, "numa_miss": 0, "numa_foreign": 0, "local_node": 49950,
                            "other_node": 50, "interleave_hit": 0},
                      "1": {"numa_hit": 50000, "numa_miss": 0, "numa_foreign": 0, "local_node": 49950,
                            "other_node": 50, "interleave_hit": 0}},
            "total": {"numa_hit": 100000, "numa_miss": 0, "numa_foreign": 0, "local_node": 99900,
                      "other_node": 100, "interleave_hit": 0},
        },
        "memory": {"total_bytes": 128 * GIB, "available_bytes": 60 * GIB, "available_ratio": 60 / 128},
        "frequency": {"available": True, "reason": None, "cpus": {
            str(c): {"cur_khz": 2_600_000, "scaling_max_khz": 3_400_000, "cpuinfo_max_khz": 3_400_000,
                     "base_khz": 2_100_000} for c in range(8)}},
        "thermal": {"available": True, "reason": None, "counters": {
            "core_throttle_count": {"delta_total": 0, "cpus_rising": [], "max_count": 3},
            "package_throttle_count": {"delta_total": 0, "cpus_rising": [], "max_count": 7}}},
        "perf": {"available": True, "reason": None, "rc": 0, "events": {
            "cache-misses": {"value": 4_000_000, "status": "counted"},
            "cache-references": {"value": 10_000_000, "status": "counted"},
            "cpu-migrations": {"value": 12, "status": "counted"},
            "context-switches": {"value": 900, "status": "counted"}}},
        "sample_warnings": [],
    }


def verdict(result: dict, check: str) -> dict:
    [found] = [v for v in result["verdicts"] if v["check"] == check]
    return found


def status(sample: dict, check: str, plan=PLAN, **kwargs) -> str:
    return verdict(diagnose(sample, plan, FACTS, **kwargs), check)["status"]


def test_a_healthy_server_passes_every_measurable_check():
    result = diagnose(healthy(), PLAN, FACTS, throughput={"measured": 10.0, "tuned": 10.5})
    assert [v["check"] for v in result["verdicts"]] == list(CHECKS)
    statuses = {v["check"]: v["status"] for v in result["verdicts"]}
    assert statuses == {c: "ok" for c in CHECKS} | {"cache": "info"}
    assert result["status"] == "ok"
    assert result["window_seconds"] == 10.0
    for v in result["verdicts"]:
        assert set(v) == {"check", "status", "summary", "remedy", "numbers"}
        assert all(isinstance(x, int | float | str) for x in v["numbers"].values()), v


# --- (a) node balance -------------------------------------------------------------------


def test_only_one_socket_used_fails_with_the_multi_numa_remedy():
    sample = healthy()
    sample["process"]["cpu_seconds_by_node"] = {"0": 63.0, "1": 1.0}
    sample["cpu_utilization"] = 0.5
    v = verdict(diagnose(sample, PLAN), "node_balance")
    assert v["status"] == "fail"
    assert "only one socket used" in v["summary"]
    assert "classic ~50% symptom" in v["summary"]
    assert "--kt-threadpool-count 2" in v["remedy"] and "--kt-numa-nodes 0 1" in v["remedy"]
    assert v["numbers"]["node1_cpu_seconds"] == 1.0
    legacy = dict(PLAN, backend="legacy", policy="replicate")
    assert "USE_NUMA=1" in verdict(diagnose(sample, legacy), "node_balance")["remedy"]


def test_uneven_split_warns_and_threshold_moves_it():
    sample = healthy()
    sample["process"]["cpu_seconds_by_node"] = {"0": 40.0, "1": 20.0}
    assert status(sample, "node_balance") == "warn"
    assert status(sample, "node_balance", uneven_ratio=0.4) == "ok"
    assert status(sample, "node_balance", one_node_ratio=0.6) == "fail"


def test_node_balance_falls_back_to_host_utilisation_and_handles_idle_and_single_node():
    sample = healthy()
    sample["process"]["cpu_seconds_by_node"] = {}
    sample["nodes"][1]["busy_cpu_seconds"] = 2.0
    v = verdict(diagnose(sample, PLAN), "node_balance")
    assert v["status"] == "fail" and "host-wide" in v["numbers"]["source"]

    idle = healthy()
    idle["process"]["cpu_cores"] = 0.1
    v = verdict(diagnose(idle, PLAN), "node_balance")
    assert v["status"] == "info" and "idle" in v["summary"]

    one = dict(PLAN, numa_nodes=[0], memory_nodes=[0], cpus=NODE_CPUS[0])
    assert status(healthy(), "node_balance", plan=one) == "ok"


def test_server_entirely_off_the_planned_nodes_fails():
    sample = healthy()
    sample["process"]["cpu_seconds_by_node"] = {"1": 60.0}
    plan = dict(PLAN, numa_nodes=[0, 2])
    v = verdict(diagnose(sample, plan), "node_balance")
    assert v["status"] == "fail" and "none of the server's CPU time" in v["summary"]


def test_without_a_plan_every_cpu_node_is_expected():
    sample = healthy()
    sample["process"]["cpu_seconds_by_node"] = {"0": 60.0, "1": 0.0}
    assert status(sample, "node_balance", plan=None) == "fail"


# --- (b) threads placement ---------------------------------------------------------------


def test_threads_outside_the_plan_cpus():
    sample = healthy()
    plan = dict(PLAN, numa_nodes=[0], memory_nodes=[0], cpus=NODE_CPUS[0])
    sample["process"]["cpu_seconds_by_cpu"] = {"0": 30.0, "1": 30.0, "5": 10.0}
    v = verdict(diagnose(sample, plan), "threads_placement")
    assert v["status"] == "fail"
    assert v["numbers"]["outside_cpus"] == "5" and v["numbers"]["outside_nodes"] == "1"
    assert "CPUAffinity=" in v["remedy"] and "SGLANG_SET_CPU_AFFINITY=0" in v["remedy"]
    sample["process"]["cpu_seconds_by_cpu"] = {"0": 60.0, "1": 38.0, "5": 2.0}
    assert status(sample, "threads_placement", plan=plan) == "warn"
    sample["process"]["cpu_seconds_by_cpu"] = {"0": 60.0, "1": 40.0}
    assert status(sample, "threads_placement", plan=plan) == "ok"


def test_threads_placement_needs_a_plan_and_load():
    assert status(healthy(), "threads_placement", plan=None) == "info"
    idle = healthy()
    idle["process"]["cpu_cores"] = 0.0
    assert status(idle, "threads_placement") == "info"
    missing = healthy()
    del missing["process"]["cpu_seconds_by_cpu"]
    assert status(missing, "threads_placement") == "info"


# --- (c) remote memory and memory placement --------------------------------------------------


def test_remote_memory_from_numa_miss_and_other_node():
    sample = healthy()
    sample["numastat"]["total"].update(numa_hit=70000, numa_miss=30000)
    sample["numastat"]["nodes"]["1"]["numa_miss"] = 30000
    v = verdict(diagnose(sample, PLAN), "remote_memory")
    assert v["status"] == "fail" and v["numbers"]["node1_numa_miss"] == 30000
    sample["numastat"]["total"].update(numa_hit=92000, numa_miss=8000)
    assert status(sample, "remote_memory") == "warn"
    assert status(sample, "remote_memory", remote_warn_ratio=0.1) == "ok"

    other = healthy()
    other["numastat"]["total"].update(local_node=50000, other_node=50000)
    assert status(other, "remote_memory") == "fail"
    # interleave spreads pages over nodes on purpose: other_node is not judged there
    assert status(other, "remote_memory", plan=dict(PLAN, policy="interleave")) == "ok"


def test_remote_memory_needs_allocations_and_numastat():
    quiet = healthy()
    quiet["numastat"]["total"] = {"numa_hit": 10, "numa_miss": 10, "local_node": 10, "other_node": 10}
    v = verdict(diagnose(quiet, PLAN), "remote_memory")
    assert v["status"] == "ok" and "few page allocations" in v["summary"]
    gone = healthy()
    gone["numastat"] = {"available": False, "reason": "sys/devices/system/node/node*/numastat: unreadable or absent"}
    v = verdict(diagnose(gone, PLAN), "remote_memory")
    assert v["status"] == "info" and "numastat: unreadable" in v["summary"]


def test_memory_on_a_node_the_plan_does_not_use_fails():
    sample = healthy()
    plan = dict(PLAN, numa_nodes=[0], memory_nodes=[0], cpus=NODE_CPUS[0], policy="bind")
    sample["process"]["bytes_per_node"] = {"0": 40 * GIB, "1": 20 * GIB}
    v = verdict(diagnose(sample, plan), "memory_placement")
    assert v["status"] == "fail" and "node 1 20.0 GiB" in v["summary"]
    sample["process"]["bytes_per_node"] = {"0": 60 * GIB, "1": GIB // 100}
    assert status(sample, "memory_placement", plan=plan) == "ok"


def test_weights_missing_from_a_planned_node_warn():
    sample = healthy()
    sample["process"]["bytes_per_node"] = {"0": 60 * GIB, "1": 2 * GIB}
    v = verdict(diagnose(sample, dict(PLAN, backend="legacy", policy="replicate")), "memory_placement")
    assert v["status"] == "warn" and "a copy per node" in v["summary"]
    # a small server (weights not loaded) is not judged on its spread
    sample["process"]["bytes_per_node"] = {"0": 100 << 20, "1": 1 << 20}
    assert status(sample, "memory_placement") == "ok"


def test_memory_placement_unmeasurable_or_planless():
    empty = healthy()
    empty["process"]["bytes_per_node"] = {}
    assert status(empty, "memory_placement") == "info"
    v = verdict(diagnose(healthy(), None), "memory_placement")
    assert v["status"] == "info" and "no plan" in v["summary"]


# --- (d) memory headroom ------------------------------------------------------------------------


@pytest.mark.parametrize("available, expected", [(0.5, "ok"), (0.15, "warn"), (0.05, "fail")])
def test_memory_headroom_against_the_seeds_20_percent(available, expected):
    sample = healthy()
    sample["memory"]["available_ratio"] = available
    v = verdict(diagnose(sample, PLAN), "memory_headroom")
    assert v["status"] == expected
    if expected != "ok":
        assert v["remedy"].startswith("disable multi-NUMA (each node holds a full copy: legacy USE_NUMA=1) or add memory")


def test_headroom_threshold_and_plan_headroom():
    sample = healthy()
    sample["memory"]["available_ratio"] = 0.25
    assert status(sample, "memory_headroom") == "ok"
    assert status(sample, "memory_headroom", headroom=0.3) == "warn"
    assert status(sample, "memory_headroom", plan=dict(PLAN, memory={"headroom_ratio": 0.3})) == "warn"


def test_an_exhausted_node_warns_and_fails_once_allocations_spill():
    sample = healthy()
    sample["nodes"][1]["memory_free_bytes"] = GIB // 2
    v = verdict(diagnose(sample, PLAN), "memory_headroom")
    assert v["status"] == "warn" and "node 1 MemFree 1%" in v["summary"]
    sample["numastat"]["nodes"]["1"]["numa_foreign"] = 5000
    v = verdict(diagnose(sample, PLAN), "memory_headroom")
    assert v["status"] == "fail" and "5000 allocations meant for it" in v["summary"]


def test_memory_headroom_unmeasurable():
    sample = healthy()
    sample["memory"] = {"total_bytes": None, "available_bytes": None, "available_ratio": None}
    for node in sample["nodes"]:
        node["memory_total_bytes"] = None
    assert status(sample, "memory_headroom") == "info"


# --- (e) frequency and thermal ------------------------------------------------------------------


def test_frequency_below_base_is_unstable():
    sample = healthy()
    for row in sample["frequency"]["cpus"].values():
        row["cur_khz"] = 1_800_000
    v = verdict(diagnose(sample, PLAN), "cpu_frequency")
    assert v["status"] == "warn" and "unstable: check cooling and power" in v["remedy"]
    for row in sample["frequency"]["cpus"].values():
        row["cur_khz"] = 1_200_000
    assert status(sample, "cpu_frequency") == "fail"
    assert status(sample, "cpu_frequency", freq_base_fail=0.5, freq_base_warn=0.5) == "ok"


def test_frequency_without_base_uses_max_and_sees_a_capped_governor():
    sample = healthy()
    for row in sample["frequency"]["cpus"].values():
        row.update(base_khz=None, cur_khz=1_500_000)
    v = verdict(diagnose(sample, PLAN), "cpu_frequency")
    assert v["status"] == "warn" and "of max 3.40 GHz" in v["summary"]
    capped = healthy()
    for row in capped["frequency"]["cpus"].values():
        row["scaling_max_khz"] = 2_000_000
    v = verdict(diagnose(capped, PLAN), "cpu_frequency")
    assert v["status"] == "warn" and "caps the hardware" in v["summary"]


def test_frequency_unavailable_or_idle_is_info():
    vm = healthy()
    vm["frequency"] = {"available": False, "cpus": {}, "reason": "sys/devices/system/cpu/cpu*/cpufreq: absent"}
    v = verdict(diagnose(vm, PLAN), "cpu_frequency")
    assert v["status"] == "info" and "cpufreq: absent" in v["summary"]
    idle = healthy()
    for row in idle["cpus"]:
        row["busy"] = 0.1
    assert status(idle, "cpu_frequency") == "info"


def test_thermal_counters_rising():
    sample = healthy()
    sample["thermal"]["counters"]["core_throttle_count"].update(delta_total=4, cpus_rising=[2])
    v = verdict(diagnose(sample, PLAN), "thermal")
    assert v["status"] == "warn" and "unstable: check cooling and power" in v["remedy"]
    sample["thermal"]["counters"]["package_throttle_count"].update(delta_total=40, cpus_rising=[0, 1, 2, 3])
    assert status(sample, "thermal") == "fail"
    assert status(sample, "thermal", throttle_fail_share=0.9) == "warn"
    gone = healthy()
    gone["thermal"] = {"available": False, "counters": {}, "reason": "thermal_throttle: absent"}
    assert status(gone, "thermal") == "info"


# --- (f) perf -------------------------------------------------------------------------------------


def test_migrations_rate():
    sample = healthy()
    sample["perf"]["events"]["cpu-migrations"]["value"] = 2100  # 30 per CPU-second
    v = verdict(diagnose(sample, PLAN), "migrations")
    assert v["status"] == "warn" and "pin them" in v["remedy"]
    sample["perf"]["events"]["cpu-migrations"]["value"] = 21000
    assert status(sample, "migrations") == "fail"
    assert status(sample, "migrations", migrations_fail=400, migrations_warn=400) == "ok"


def test_perf_unavailable_or_unsupported_is_info():
    sample = healthy()
    sample["perf"] = {"available": False, "reason": "perf is not installed (linux-perf / linux-tools)", "events": {}}
    result = diagnose(sample, PLAN)
    for check in ("migrations", "cache"):
        assert verdict(result, check)["status"] == "info"
        assert "perf is not installed" in verdict(result, check)["summary"]
    vm = healthy()
    vm["perf"]["events"]["cache-misses"] = {"value": None, "status": "not supported"}
    v = verdict(diagnose(vm, PLAN), "cache")
    assert v["status"] == "info" and "cache-misses not supported" in v["summary"]
    assert verdict(diagnose(healthy(), PLAN), "cache")["numbers"]["miss_ratio"] == 0.4


def test_migrations_of_an_idle_server_are_not_judged():
    sample = healthy()
    sample["process"].update(cpu_cores=0.01, cpu_seconds=0.1)
    v = verdict(diagnose(sample, PLAN), "migrations")
    assert v["status"] == "info" and v["numbers"]["cpu_migrations"] == 12


# --- (g) throughput --------------------------------------------------------------------------------


def test_throughput_drop_means_fewer_threads():
    v = verdict(diagnose(healthy(), PLAN, throughput={"measured": 8.0, "tuned": 10.0}), "throughput")
    assert v["status"] == "fail"
    assert "fewer threads" in v["remedy"] and "(6 -> 3..4)" in v["remedy"]
    assert verdict(diagnose(healthy(), PLAN, throughput={"measured": 9.0, "tuned": 10.0}), "throughput")[
        "status"] == "ok"
    assert verdict(diagnose(healthy(), PLAN, throughput={"measured": 9.0, "tuned": 10.0}, throughput_drop=0.05),
                   "throughput")["status"] == "fail"
    v = verdict(diagnose(healthy(), PLAN), "throughput")
    assert v["status"] == "info" and "not compared" in v["summary"]


def test_throughput_from_a_tune_result():
    tune = {"chosen": 30, "knee": 32, "table": [{"threads": 30, "samples": [9.0, 11.0, 10.0]},
                                                {"threads": 32, "median": 12.0}]}
    assert tuned_tokens_per_second(tune) == 10.0
    assert tuned_tokens_per_second({"chosen": 5, "table": [], "peak_tokens_per_second": 7}) == 7.0
    assert tuned_tokens_per_second(None) is None
    v = verdict(diagnose(healthy(), PLAN, throughput={"measured": 8.0, "tune_result": tune}), "throughput")
    assert v["status"] == "fail" and v["numbers"]["tuned_tokens_per_second"] == 10.0


# --- inputs, thresholds, table, filters ------------------------------------------------------------


def test_a_bare_sample_gives_info_not_errors():
    result = diagnose({"window_seconds": 1.0}, None, None)
    assert {v["check"] for v in result["verdicts"]} == set(CHECKS)
    assert all(v["status"] in ("info", "ok") for v in result["verdicts"]), result
    assert render_table(result)


def test_unknown_or_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="unknown threshold"):
        diagnose(healthy(), PLAN, bogus=1)
    with pytest.raises(ValueError, match="must be a number"):
        diagnose(healthy(), PLAN, headroom="lots")
    with pytest.raises(ValueError, match=">= 0"):
        diagnose(healthy(), PLAN, headroom=-1)
    assert diagnose(healthy(), PLAN, headroom=None)["thresholds"]["headroom"] is None
    assert set(diagnose(healthy(), PLAN)["thresholds"]) == set(THRESHOLD_NAMES)


def test_diagnose_does_not_modify_its_inputs():
    sample, plan = healthy(), copy.deepcopy(PLAN)
    before = copy.deepcopy(sample)
    diagnose(sample, plan, FACTS)
    assert sample == before and plan == PLAN


def test_render_table_lists_every_check_and_remedies_of_failures():
    sample = healthy()
    sample["process"]["cpu_seconds_by_node"] = {"0": 63.0, "1": 1.0}
    table = render_table(diagnose(sample, PLAN))
    lines = table.splitlines()
    assert lines[0].split() == ["check", "status", "summary"]
    for check in CHECKS:
        assert any(line.startswith(check + " ") for line in lines), check
    assert any(line.startswith("node_balance") and " FAIL " in line for line in lines)
    assert "remedy: sglang-kt: shard across the nodes" in " ".join(" ".join(lines).split())
    assert lines[-1] == "overall FAIL over a 10 s window"
    assert max(len(line) for line in lines) <= 110


def test_filters_wrap_the_core():
    filters = FilterModule().filters()
    result = filters["diagnose"](healthy(), PLAN, {"numa": FACTS}, headroom=0.3)
    assert result["thresholds"]["headroom"] == 0.3
    assert verdict(result, "remote_memory")["numbers"]["numa_balancing"] == 0
    assert filters["diagnosis_table"](result).startswith("check")
    with pytest.raises(AnsibleFilterError, match="numa_sample result"):
        filters["diagnose"]("nope", PLAN)
    with pytest.raises(AnsibleFilterError, match="plan must be a mapping"):
        filters["diagnose"](healthy(), "nope")
    with pytest.raises(AnsibleFilterError, match="unknown threshold"):
        filters["diagnose"](healthy(), PLAN, typo=1)
    with pytest.raises(AnsibleFilterError, match="diagnose result"):
        filters["diagnosis_table"]({})
