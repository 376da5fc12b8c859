"""The planner on hand-written hosts: the seed's, KTransformers' tutorial host, SNC hosts, edge cases."""

from __future__ import annotations

import copy
import json

import pytest
from planner_hosts import (
    DEEPSEEK_V3_Q4KM,
    GB,
    GiB,
    NodeSpec,
    cxl_host,
    make_facts,
    seed_host,
    single_node_host,
    snc3_host,
    snc4_host,
    tutorial_host_1tb,
    tutorial_host_512gb,
    two_socket,
)

from ansible_collections.ktfleet.numa.plugins.plugin_utils.errors import PlanError
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner import memory, planner
from ansible_collections.ktfleet.numa.plugins.plugin_utils.sizes import format_size, parse_size

PATHS = {"model_path": "/srv/models/DeepSeek-V3", "weights_path": "/srv/models/DeepSeek-V3-AMXINT4"}
SMALL = {"name": "Qwen3-30B-A3B", "weights_bytes": 60 * GiB, "moe_intermediate_size": 768, **PATHS}
V3 = {**DEEPSEEK_V3_Q4KM, **PATHS}


def plan(facts, model=SMALL, backend="sglang-kt", **options):
    return planner.make_plan(facts, model, backend, **options)


def arg(plan_, flag):
    """The words after ``flag`` up to the next flag."""
    argv = plan_.server_args
    start = argv.index(flag) + 1
    end = next((i for i in range(start, len(argv)) if argv[i].startswith("--")), len(argv))
    return argv[start:end]


def rendered_flags(argv):
    return [word for word in argv if word.startswith("--")]


# --- the seed's host: 2 x Xeon 6430, 32 cores / 64 threads each, 2 nodes ------------------


def test_seed_host_legacy_is_the_seeds_65_threads_replicated():
    p = plan(seed_host(), backend="legacy")
    assert p.policy == "replicate" and p.numa_build is True
    assert p.cpu_infer == 65
    assert p.threads_per_node == {0: 32, 1: 32}
    assert p.threadpool_count == 2  # two copies
    assert p.numactl == [] and p.systemd.model_dump() == {
        "NUMAPolicy": None,
        "NUMAMask": None,
        "CPUAffinity": None,
    }
    assert arg(p, "--cpu_infer") == ["65"]
    # the seed's example values
    for flag, value in (
        ("--chunk_size", "256"),
        ("--max_new_tokens", "1024"),
        ("--cache_lens", "32768"),
        ("--max_batch_size", "4"),
    ):
        assert arg(p, flag) == [value]
    assert p.server_args[:2] == ["-m", "ktransformers.server.main"]
    assert any("65 on 2 x 32 cores" in r for r in p.reasons)


def test_seed_host_sglang_kt_shards_over_both_nodes_with_a_core_for_the_gpu():
    p = plan(seed_host())
    assert p.policy == "shard" and p.numa_build is None
    assert p.threadpool_count == 2 and p.numa_nodes == [0, 1]
    assert p.cpu_infer == 62  # 64 cores - 1 for the GPU rank = 63, even split -> 31 per pool
    assert p.threads_per_node == {0: 31, 1: 31}
    assert arg(p, "--kt-cpuinfer") == ["62"]
    assert arg(p, "--kt-threadpool-count") == ["2"]
    assert arg(p, "--kt-numa-nodes") == ["0", "1"]
    assert p.environment == {"SGLANG_SET_CPU_AFFINITY": "0"}
    assert "--numa-node" not in p.server_args
    assert p.numactl == []
    assert p.memory.weights_per_node_bytes == {0: 30 * GiB, 1: 30 * GiB}  # the split; + buffers + margin in required_per_node_bytes


def test_seed_host_sglang_kt_without_reservation_uses_every_physical_core():
    assert plan(seed_host(), reserve_cores=0).cpu_infer == 64


def test_threads_never_count_smt_siblings_by_default():
    p = plan(seed_host(), backend="legacy")
    assert p.cpu_infer - 1 <= 64  # 128 logical CPUs
    assert len(p.cpus) == 128  # the affinity still covers the siblings


# --- KTransformers' tutorial host: 2 x Xeon Gold 6454S ------------------------------------


def test_deepseek_v3_q4km_fits_replicated_on_1tb():
    p = plan(tutorial_host_1tb(), V3, backend="legacy")
    assert p.policy == "replicate" and p.memory.fits is True
    # a full copy + the 0.175 margin per copy (memory.MARGIN_SHARE; was 1.1x before the measured margin)
    assert p.memory.required_per_node_bytes == {0: 448_850_000_000, 1: 448_850_000_000}
    assert p.memory.tier == "tight"  # 418 GiB of ~503 GiB: 17% free, below the recommended 20%
    assert p.memory.required_total_bytes >= 2 * 382 * GB
    assert p.cpu_infer == 65


def test_deepseek_v3_q4km_on_512gb_is_not_replicated():
    p = plan(tutorial_host_512gb(), V3, backend="legacy")
    assert p.policy != "replicate" and p.numa_build is False
    assert p.policy == "interleave" and p.memory.fits is True
    assert p.numactl == ["/usr/bin/numactl", "--interleave=0-1"]
    assert any("replicate does not fit" in r for r in p.reasons)


def test_512gb_with_the_multi_numa_build_forced_does_not_fit_and_says_the_seeds_remedies():
    p = plan(tutorial_host_512gb(), V3, backend="legacy", legacy_numa_build=True)
    assert p.policy == "replicate" and p.memory.fits is False
    remedy = next(w for w in p.warnings if w.startswith("the weights do not fit"))
    assert "disable multi-NUMA" in remedy and "bind to fewer nodes" in remedy and "add memory" in remedy
    assert "one copy instead of 2" in remedy


def test_tutorial_host_sglang_kt_holds_one_copy_split_per_node():
    p = plan(tutorial_host_512gb(), V3)
    assert p.policy == "shard" and p.memory.fits is True
    assert sum(p.memory.weights_per_node_bytes.values()) == pytest.approx(382 * GB, abs=2)
    assert set(p.memory.weights_per_node_bytes.values()) == {191 * GB}


# --- SNC / NPS ---------------------------------------------------------------------------


def test_snc4_320gb_nodes_never_replicate_a_378gib_model():
    model = {"name": "DeepSeek-R1", "weights_bytes": "378GiB", **PATHS}
    p = plan(snc4_host(), model, backend="legacy")
    assert p.policy != "replicate"
    assert p.memory.fits is True  # interleaved over the four nodes
    assert any("Sub-NUMA Clustering" in w for w in p.warnings)


def test_snc4_replicate_forced_is_planned_but_does_not_fit():
    model = {"name": "DeepSeek-R1", "weights_bytes": "378GiB", **PATHS}
    p = plan(snc4_host(), model, backend="legacy", policy="replicate")
    assert p.policy == "replicate" and p.memory.fits is False
    assert p.threadpool_count == 4


@pytest.mark.parametrize(("packages", "pools", "kt_nodes"), [(1, 2, "0-1"), (2, 4, "0-1,3-4")])
def test_snc3_never_uses_3_or_6_pools_for_moe_intermediate_size_2048(packages, pools, kt_nodes):
    p = plan(snc3_host(packages), V3)
    assert p.threadpool_count == pools
    assert 2048 % p.threadpool_count == 0
    assert arg(p, "--kt-threadpool-count") == [str(pools)]
    assert arg(p, "--kt-numa-nodes") == [str(n) for n in p.numa_nodes]
    assert any("stay idle" in w for w in p.warnings)
    assert any("Sub-NUMA Clustering" in w for w in p.warnings)
    # an outer binding names every kt node and nothing else
    assert p.numactl == ["/usr/bin/numactl", f"--cpunodebind={kt_nodes}"]
    assert p.systemd.NUMAPolicy is None and p.systemd.CPUAffinity


def test_snc3_pools_are_spread_over_both_packages():
    p = plan(snc3_host(2), V3)
    assert p.numa_nodes == [0, 1, 3, 4]


def test_snc3_three_explicit_nodes_are_refused_with_the_possible_counts():
    with pytest.raises(
        PlanError,
        match=r"^ktfleet_nodes: 3 pool\(s\) are not possible: .*divide moe_intermediate_size 2048.*: 1, 2$",
    ):
        plan(snc3_host(1), V3, nodes=[0, 1, 2])


# --- AMX pre-sharded weights ---------------------------------------------------------------


def test_numa_shards_from_the_weights_name_decide_the_pool_count():
    model = {**V3, "weights_path": "/srv/models/DeepSeek-V3-AMXINT4-NUMA2"}
    p = plan(snc4_host(), model)
    assert p.threadpool_count == 2
    assert arg(p, "--kt-method") == ["AMXINT4"]
    assert any("numa_shards 2" in r for r in p.reasons)


def test_numa_shards_above_the_node_count_is_refused():
    with pytest.raises(
        PlanError,
        match=r"^ktfleet_model.numa_shards: the weights are sharded for 4 NUMA nodes but this host has 2",
    ):
        plan(seed_host(), {**V3, "numa_shards": 4})


def test_numa_shards_that_cannot_split_the_experts_is_refused():
    with pytest.raises(
        PlanError, match=r"^ktfleet_model.numa_shards: 3 shards cannot split moe_intermediate_size 2048"
    ):
        plan(snc3_host(1), {**V3, "numa_shards": 3})


def test_numa_shards_against_explicit_nodes():
    with pytest.raises(PlanError, match=r"^ktfleet_nodes: 1 pool\(s\) are not possible"):
        plan(seed_host(), {**V3, "numa_shards": 2}, nodes=[0])


def test_bind_with_pre_sharded_weights_is_refused():
    with pytest.raises(PlanError, match=r"^ktfleet_policy: bind uses one kt-kernel pool"):
        plan(seed_host(), {**V3, "numa_shards": 2}, policy="bind")


# --- single node, memory-only nodes ---------------------------------------------------------


def test_single_node_host_always_passes_threadpool_count_1():
    p = plan(single_node_host(), {**SMALL, "kt_method": "BF16"})
    assert arg(p, "--kt-threadpool-count") == ["1"]
    assert arg(p, "--kt-numa-nodes") == ["0"]
    assert p.cpu_infer == 23
    assert p.numactl == []


def test_single_node_host_legacy_binds_without_numactl():
    p = plan(single_node_host(), backend="legacy")
    assert (p.policy, p.numa_build, p.cpu_infer, p.numactl) == ("bind", False, 25, [])


def test_memory_only_node_never_gets_threads():
    facts = cxl_host()
    for backend in ("legacy", "sglang-kt"):
        p = plan(facts, {**SMALL, "weights_bytes": 300 * GiB}, backend=backend)
        assert 1 not in p.numa_nodes and 1 not in p.threads_per_node
    legacy = plan(facts, {**SMALL, "weights_bytes": 300 * GiB}, backend="legacy")
    assert legacy.policy == "interleave" and legacy.memory_nodes == [0, 1]
    # the CXL node holds pages but runs nothing; CPUs stay unrestricted (node 0 is the only CPU node)
    assert legacy.numactl == ["/usr/bin/numactl", "--interleave=0-1"]
    assert legacy.systemd.CPUAffinity is None


def test_memory_only_node_cannot_hold_a_kt_pool():
    with pytest.raises(PlanError, match=r"^ktfleet_nodes: node\(s\) 1 cannot hold a kt-kernel pool"):
        plan(cxl_host(), nodes=[0, 1])


def test_memory_only_node_rules_out_replicate():
    with pytest.raises(
        PlanError, match=r"^ktfleet_policy: replicate is not possible on this host: memory-only node\(s\) 1"
    ):
        plan(cxl_host(), backend="legacy", policy="replicate")


# --- reservations and overrides ----------------------------------------------------------


def test_each_tensor_parallel_rank_reserves_a_core():
    four = two_socket(32, 251 * GiB, model_name="Intel(R) Xeon(R) Gold 6430", gpus=(0, 0, 1, 1))
    p = plan(four, gpus=4)
    assert p.cpu_infer == 60  # (64 - 4) / 2 pools = 30 each
    assert arg(p, "--tensor-parallel-size") == ["4"]
    assert plan(four, tp_size=4).cpu_infer == 60


def test_more_gpus_than_the_facts_saw_is_refused():
    with pytest.raises(PlanError, match=r"^ktfleet_gpus: 100 GPU\(s\) .* this host has 1; set ktfleet_gpus to at most 1"):
        plan(seed_host(), gpus=100)
    blind = plan(two_socket(32, 251 * GiB, gpus=()), gpus=2)  # facts saw no GPU: planned, with a warning
    assert any(w.startswith("ktfleet_gpus: 2 GPUs planned but the facts saw none") for w in blind.warnings)


def test_zero_weights_never_fit():
    with pytest.raises(PlanError, match=r"^ktfleet_model.weights_bytes: must be > 0, got 0"):
        plan(seed_host(), model={"name": "m", "weights_bytes": 0})


def test_large_hosts_leave_cores_to_the_os():
    p = plan(make_facts([NodeSpec(48, 503 * GiB, 0), NodeSpec(48, 503 * GiB, 1)]), backend="legacy")
    assert p.cpu_infer == 2 * 47 + 1  # 96 cores - 2 for the OS, even per node, + 1


@pytest.mark.parametrize(("backend", "value"), [("sglang-kt", 65), ("legacy", 66)])
def test_cpu_infer_beyond_physical_cores_is_refused(backend, value):
    with pytest.raises(PlanError, match=r"^ktfleet_cpu_infer: .*") as err:
        plan(seed_host(), backend=backend, cpu_infer=value)
    assert "\n" not in str(err.value)


def test_cpu_infer_override_that_splits_unevenly_warns():
    kt = plan(seed_host(), cpu_infer=63)
    assert kt.cpu_infer == 63 and kt.threads_per_node == {0: 32, 1: 31}
    assert any("does not split evenly" in w for w in kt.warnings)
    legacy = plan(seed_host(), backend="legacy", cpu_infer=64)
    assert any("42 vs 41" in w for w in legacy.warnings)


def test_smt_is_an_explicit_legacy_option_with_a_warning():
    p = plan(seed_host(), backend="legacy", smt=True)
    assert p.cpu_infer == 129 and p.threads_per_node == {0: 64, 1: 64}
    assert any("~10x slower" in w for w in p.warnings)
    kt = plan(seed_host(), smt=True)
    assert kt.cpu_infer == 62 and any("ktfleet_smt ignored" in w for w in kt.warnings)


# --- explicit policies and their numactl / systemd -------------------------------------------


def test_legacy_bind_to_node_1():
    p = plan(seed_host(), backend="legacy", policy="bind", nodes=[1])
    assert p.numactl == ["/usr/bin/numactl", "--cpunodebind=1", "--membind=1"]
    assert p.systemd.model_dump() == {"NUMAPolicy": "bind", "NUMAMask": "1", "CPUAffinity": "32-63,96-127"}
    assert p.cpu_infer == 33  # the tutorial's single-socket value on 32 cores
    assert p.numa_build is False


def test_legacy_auto_binds_to_one_node_when_only_one_copy_fits():
    # 220 GiB: a USE_NUMA=1 copy per node (1.175x: 258.5 GiB) exceeds 251 GiB, one copy read in place does not
    # (was 190 GiB against the old 80% hard limit; the limit is now MemTotal, memory.py)
    p = plan(seed_host(), {**SMALL, "weights_bytes": 220 * GiB}, backend="legacy")
    assert p.policy == "bind" and len(p.numa_nodes) == 1
    assert p.numa_nodes == [0]  # the GPU's node wins the tie
    assert p.numactl == ["/usr/bin/numactl", "--cpunodebind=0", "--membind=0"]


def test_sglang_kt_bind_takes_one_node():
    p = plan(seed_host(), policy="bind", nodes=[1])
    assert (p.threadpool_count, arg(p, "--kt-numa-nodes")) == (1, ["1"])
    assert p.numactl == ["/usr/bin/numactl", "--cpunodebind=1", "--membind=1"]
    with pytest.raises(PlanError, match=r"^ktfleet_nodes: bind with sglang-kt takes exactly one node"):
        plan(seed_host(), policy="bind", nodes=[0, 1])


def test_multi_numa_build_conflicts_with_bind():
    with pytest.raises(
        PlanError, match=r"^ktfleet_legacy_numa_build: true conflicts with ktfleet_policy bind"
    ):
        plan(seed_host(), backend="legacy", policy="bind", legacy_numa_build=True)


def test_replicate_needs_the_multi_numa_build():
    with pytest.raises(PlanError, match=r"^ktfleet_policy: replicate needs the multi-NUMA build"):
        plan(seed_host(), backend="legacy", policy="replicate", legacy_numa_build=False)


def test_replicate_cannot_take_a_subset_of_nodes():
    with pytest.raises(PlanError, match=r"numactl cannot narrow it"):
        plan(seed_host(), backend="legacy", policy="replicate", nodes=[0])


def test_policies_foreign_to_a_backend_are_refused():
    with pytest.raises(
        PlanError,
        match=r"^ktfleet_policy: replicate is not possible with sglang-kt.*allowed: auto, shard, bind",
    ):
        plan(seed_host(), policy="replicate")
    with pytest.raises(PlanError, match=r"^ktfleet_policy: shard is sglang-kt only"):
        plan(seed_host(), backend="legacy", policy="shard")


# --- memory unknown, warnings -------------------------------------------------------------


def test_unknown_memory_gives_fits_null_and_no_replication():
    facts = make_facts([NodeSpec(32, None, 0), NodeSpec(32, None, 1)])
    p = plan(facts, backend="legacy")
    assert p.memory.fits is None and p.policy == "interleave"
    assert any("memory sizes unknown" in w for w in p.warnings)


def test_missing_node_meminfo_is_estimated_from_memtotal():
    facts = make_facts([NodeSpec(32, None, 0), NodeSpec(32, None, 1)])
    facts["memory_total_bytes"] = 1000 * GiB
    p = plan(facts, backend="legacy")
    assert p.memory.available_per_node_bytes == {0: 500 * GiB, 1: 500 * GiB}
    assert any("no node meminfo" in w for w in p.warnings)


def test_host_warnings():
    facts = make_facts(
        [NodeSpec(32, 251 * GiB, 0), NodeSpec(32, 251 * GiB, 1)], numa_balancing=1, hypervisor=True, amx=False
    )
    p = plan(facts)
    text = " | ".join(p.warnings)
    assert "kernel.numa_balancing is on" in text
    assert "virtual machine" in text
    assert "runs without Intel AMX" in text and "slower" in text  # kt_kernel: AVX512 kernels, not a refusal


def test_memavailable_below_the_need_warns():
    facts = tutorial_host_1tb()
    facts["memory_available_bytes"] = 100 * GiB
    p = plan(facts, V3, backend="legacy")
    assert any("MemAvailable" in w for w in p.warnings)


def test_cache_lens_rule_of_balance_serve():
    p = plan(seed_host(), backend="legacy", cache_lens=4096)
    assert any("ktfleet_cache_lens 4096" in w for w in p.warnings)


# --- server argv -------------------------------------------------------------------------


# every rendered flag against the servers' own argparse definitions: tests/oracle/test_oracle_flags.py


def test_sglang_kt_argv_in_full():
    p = plan(
        seed_host(),
        V3,
        listen_host="0.0.0.0",
        port=8000,
        kt_num_gpu_experts=8,
        server_extra_args=["--mem-fraction-static", "0.92"],
    )
    assert p.server_args == [
        "-m", "sglang.launch_server",
        "--host", "0.0.0.0", "--port", "8000",
        "--model", "/srv/models/DeepSeek-V3", "--served-model-name", "DeepSeek-V3-Q4_K_M",
        "--trust-remote-code", "--tensor-parallel-size", "1",
        "--kt-weight-path", "/srv/models/DeepSeek-V3-AMXINT4", "--kt-method", "AMXINT4",
        "--kt-cpuinfer", "62", "--kt-threadpool-count", "2", "--kt-numa-nodes", "0", "1",
        "--kt-num-gpu-experts", "8", "--chunked-prefill-size", "4096",
        "--mem-fraction-static", "0.92",
    ]  # fmt: skip
    assert (p.listen_host, p.port) == ("0.0.0.0", 8000)


def test_legacy_argv_in_full():
    model = {
        **V3,
        "weights_path": "/srv/gguf/DeepSeek-V3-Q4_K_M",
        "optimize_config_path": "/srv/DeepSeek-V3-Chat-serve.yaml",
    }
    p = plan(tutorial_host_1tb(), model, backend="legacy")
    assert p.server_args == [
        "-m", "ktransformers.server.main", "--host", "127.0.0.1", "--port", "10002",
        "--model_path", "/srv/models/DeepSeek-V3", "--gguf_path", "/srv/gguf/DeepSeek-V3-Q4_K_M",
        "--optimize_config_path", "/srv/DeepSeek-V3-Chat-serve.yaml",
        "--cpu_infer", "65", "--chunk_size", "256", "--max_new_tokens", "1024",
        "--cache_lens", "32768", "--max_batch_size", "4", "--backend_type", "balance_serve",
    ]  # fmt: skip
    # no ktfleet_port: the backend's own default, stated for what calls the server
    assert (p.listen_host, p.port) == ("127.0.0.1", 10002)
    assert plan(seed_host(), V3).port == 30000


def test_kt_method_from_gguf_weights_and_unknown():
    gguf = plan(seed_host(), {**SMALL, "weights_path": "/srv/Qwen3-30B-A3B-GGUF"})
    assert arg(gguf, "--kt-method") == ["LLAMAFILE"]
    unknown = plan(seed_host(), {**SMALL, "weights_path": "/srv/weights"})
    assert "--kt-method" not in unknown.server_args
    assert any("kt_method unknown" in w for w in unknown.warnings)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--numa-node", "0"], "--numa-node fights kt-kernel's own NUMA pinning"),
        (["--kt-cpuinfer=8"], "--kt-cpuinfer is set by the plan; use ktfleet_cpu_infer instead"),
        (["--kt-numa-nodes", "1"], "--kt-numa-nodes is set by the plan; use ktfleet_nodes instead"),
    ],
)
def test_extra_args_cannot_override_the_plan(extra, message):
    with pytest.raises(PlanError, match=f"^ktfleet_server_extra_args: {message}"):
        plan(seed_host(), server_extra_args=extra)


# --- bad input: one line naming the variable -----------------------------------------------


@pytest.mark.parametrize(
    ("facts", "model", "backend", "options", "message"),
    [
        (
            seed_host(),
            {**SMALL, "weights_bytes": -5},
            "legacy",
            {},
            "ktfleet_model.weights_bytes: must be > 0, got -5",
        ),
        (
            seed_host(),
            {**SMALL, "weights_bytes": "lots"},
            "legacy",
            {},
            "ktfleet_model.weights_bytes: expected bytes as an integer",
        ),
        (
            seed_host(),
            {**SMALL, "weights_bytes": True},
            "legacy",
            {},
            "ktfleet_model.weights_bytes: expected bytes",
        ),
        (seed_host(), {"name": "x"}, "legacy", {}, "ktfleet_model.weights_bytes: missing (required)"),
        (
            seed_host(),
            {**SMALL, "weight_bytes": 1},
            "legacy",
            {},
            "ktfleet_model.weight_bytes: unknown key; allowed: hidden_size, kt_method",
        ),
        (seed_host(), "DeepSeek", "legacy", {}, "ktfleet_model: must be a mapping"),
        (
            seed_host(),
            {**SMALL, "moe_intermediate_size": 0},
            "legacy",
            {},
            "ktfleet_model.moe_intermediate_size: must be > 0, got 0",
        ),
        (seed_host(), SMALL, "vllm", {}, "ktfleet_backend: must be one of legacy, sglang-kt, got 'vllm'"),
        (
            seed_host(),
            SMALL,
            "legacy",
            {"policy": "fast"},
            "ktfleet_policy: must be one of 'auto', 'bind', 'shard', 'replicate' or 'interleave', got 'fast'",
        ),
        (
            seed_host(),
            SMALL,
            "legacy",
            {"nodes": [0, 7]},
            "ktfleet_nodes: node(s) 7 do not exist on this host; it has node(s) 0,1",
        ),
        (seed_host(), SMALL, "legacy", {"nodes": [-1]}, "ktfleet_nodes: node ids are >= 0, got [-1]"),
        (seed_host(), SMALL, "legacy", {"headroom": 1.5}, "ktfleet_headroom: must be < 1.0, got 1.5"),
        (seed_host(), SMALL, "legacy", {"gpus": 0}, "ktfleet_gpus: must be >= 1, got 0"),
        (
            seed_host(),
            SMALL,
            "legacy",
            {"cpu_infer": "many"},
            "ktfleet_cpu_infer: must be a whole number, got 'many'",
        ),
        (
            seed_host(),
            SMALL,
            "legacy",
            {"polcy": "bind"},
            "ktfleet_polcy: unknown key; allowed: backend_type, cache_lens",
        ),
        (
            seed_host(),
            SMALL,
            "legacy",
            {"server_extra_args": "--foo"},
            "ktfleet_server_extra_args: must be a list of argv words",
        ),
        (None, SMALL, "legacy", {}, "ansible_facts.numa: missing or not a mapping"),
        ({}, SMALL, "legacy", {}, "ansible_facts.numa.nodes: missing"),
        ({"nodes": []}, SMALL, "legacy", {}, "ansible_facts.numa.nodes: must have at least 1 item(s)"),
        (
            {"nodes": [{"id": "zero"}]},
            SMALL,
            "legacy",
            {},
            "ansible_facts.numa.nodes[0].id: must be a whole number",
        ),
        (
            {"nodes": [{"id": 0, "memory_only": True}]},
            SMALL,
            "legacy",
            {},
            "ansible_facts.numa.nodes: no node has CPUs",
        ),
        (
            seed_host(),
            {**SMALL, "model_path": None},
            "legacy",
            {},
            "ktfleet_model.model_path: missing; the server needs the model's config directory",
        ),
    ],
)
def test_bad_input_names_the_variable(facts, model, backend, options, message):
    with pytest.raises(PlanError) as err:
        planner.make_plan(facts, model, backend, **options)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value) and "pydantic" not in str(err.value)
    assert isinstance(err.value, ValueError)


def test_ansible_facts_wrapper_is_accepted():
    wrapped = {"ansible_facts": {"numa": seed_host()}}
    assert plan(wrapped) == plan(seed_host())


def test_role_and_inventory_spellings_of_options_are_the_same():
    role = plan(
        seed_host(), backend="legacy", numa_build=False, host="0.0.0.0", extra_args=["--use_cuda_graph"]
    )
    inventory = plan(
        seed_host(),
        backend="legacy",
        legacy_numa_build=False,
        listen_host="0.0.0.0",
        server_extra_args=["--use_cuda_graph"],
    )
    assert role == inventory
    assert (
        role.policy == "bind" and role.server_args[-1] == "--use_cuda_graph" and "0.0.0.0" in role.server_args
    )
    with pytest.raises(PlanError, match=r"^ktfleet_legacy_numa_build: must be true or false, got 'maybe'"):
        plan(seed_host(), backend="legacy", numa_build="maybe")
    with pytest.raises(PlanError, match=r"^ktfleet_listen_host: must be a non-empty string"):
        plan(seed_host(), host="")


def test_null_options_mean_defaults():
    assert plan(seed_host(), cpu_infer=None, nodes=[], reserve_cores=None, policy="AUTO") == plan(seed_host())


def test_cpu_infer_and_memory_fit_need_no_paths():
    facts = seed_host()
    assert planner.cpu_infer(facts, backend="legacy") == 65
    assert planner.cpu_infer(facts) == 62
    policy, fit = planner.memory_fit(facts, {"name": "V3", "weights_bytes": "382GB"}, "legacy")
    assert policy == "interleave" and fit.fits is True


# --- determinism and sizes ------------------------------------------------------------------


def test_plans_are_deterministic_and_json_ready():
    facts = snc3_host()
    first = plan(facts, V3)
    shuffled = copy.deepcopy(facts)
    shuffled["nodes"].reverse()
    assert plan(shuffled, V3) == first == plan(facts, V3)
    dumped = first.model_dump(mode="json")
    assert json.loads(json.dumps(dumped)) == dumped
    assert set(dumped["threads_per_node"]) == {"0", "1", "3", "4"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("382GB", 382 * GB),
        ("378GiB", 378 * GiB),
        ("382G", 382 * GiB),
        ("1.5T", int(1.5 * 1024**4)),
        ("1024", 1024),
        (5, 5),
        ("-5", -5),
    ],
)
def test_sizes(text, expected):
    assert parse_size(text) == expected


def test_format_size():
    assert (format_size(512), format_size(382 * GB), format_size(None)) == ("512 B", "355.8 GiB", "unknown")


# --- kt-kernel 0.7.2's own rules (tests/oracle reads each from the wheel) -----------------------


def test_the_expert_count_and_prefill_chunk_are_always_passed_with_their_reasons():
    p = plan(seed_host(), V3)
    assert arg(p, "--kt-num-gpu-experts") == ["1"] and arg(p, "--chunked-prefill-size") == ["4096"]
    assert any(r.startswith("kt_num_gpu_experts 1: KTransformers' own `kt run` default") for r in p.reasons)
    assert any(r.startswith("chunked_prefill_size 4096: KTransformers' `kt run` default") for r in p.reasons)
    q = plan(seed_host(), V3, kt_num_gpu_experts=0, chunked_prefill_size=8192)
    assert arg(q, "--kt-num-gpu-experts") == ["0"] and arg(q, "--chunked-prefill-size") == ["8192"]
    assert any("set by ktfleet_kt_num_gpu_experts" in r for r in q.reasons)
    assert any("set by ktfleet_chunked_prefill_size" in r for r in q.reasons)
    legacy = plan(seed_host(), V3, backend="legacy")
    assert "--chunked-prefill-size" not in legacy.server_args and "--kt-num-gpu-experts" not in legacy.server_args
    with pytest.raises(PlanError, match=r"^ktfleet_chunked_prefill_size: must be > 0"):
        plan(seed_host(), V3, chunked_prefill_size=-1)


def test_the_gpu_experts_ratio_is_refused_since_it_overrides_the_count():
    with pytest.raises(PlanError, match=r"^ktfleet_server_extra_args: --kt-gpu-experts-ratio silently overrides"):
        plan(seed_host(), V3, server_extra_args=["--kt-gpu-experts-ratio", "0.1"])


@pytest.mark.parametrize(
    ("method", "size", "pools"),
    [
        # LLAMAFILE: 768 = 3 blocks of 256, so at most 3 pools (moe-tp.hpp base_blocks >= 1)
        ("LLAMAFILE", 768, 3),
        # AMXINT4: 768 / 4 = 192 is no multiple of 128 (BufferBInt4Impl k % 128): 3 pools of 256
        ("AMXINT4", 768, 3),
        # AMXINT8: 192 is a multiple of 64: all 4
        ("AMXINT8", 768, 4),
        ("BF16", 768, 4),
    ],
)
def test_pool_counts_follow_the_kernels_split_rules(method, size, pools):
    model = {**SMALL, "moe_intermediate_size": size, "kt_method": method}
    p = plan(snc4_host(), model)
    assert p.threadpool_count == pools
    if pools < 4:
        assert any("stay idle" in w for w in p.warnings)


def test_no_possible_pool_count_is_refused_with_the_rule():
    model = {**SMALL, "moe_intermediate_size": 1000, "kt_method": "LLAMAFILE"}
    with pytest.raises(
        PlanError,
        match=r"^ktfleet_model.moe_intermediate_size: no kt-kernel pool count works: .*LLAMAFILE splits it in blocks of 256.*: none$",
    ):
        plan(seed_host(), model)
    with pytest.raises(PlanError, match=r"^ktfleet_nodes: 4 pool\(s\) are not possible: .*multiple of 128"):
        plan(snc4_host(), {**SMALL, "kt_method": "AMXINT4"}, nodes=[0, 1, 2, 3])


def test_pools_prefer_nodes_0_to_k_minus_1_when_they_are_as_good():
    # two of four equal SNC nodes: 0,1 rather than one per package (0,2), which kt-kernel gets wrong
    p = plan(snc4_host(), {**V3, "numa_shards": 2})
    assert p.numa_nodes == [0, 1] and not any("worker_pool.cpp" in w for w in p.warnings)


def test_pools_on_other_node_ids_say_exactly_what_kt_kernel_does():
    # 2 x SNC3 (43/43/42 cores): 4 pools on 0,1,3,4 give 172 cores, 0-3 only 168
    p = plan(snc3_host(2), V3)
    assert p.numa_nodes == [0, 1, 3, 4]
    text = " | ".join(p.warnings)
    assert "per-node thread counter has 4 slot(s) but is indexed by node id" in text
    assert "the pool(s) on node(s) 4 read and write past its end" in text
    assert "the coordinator of the pool on node 3 allocates on node 2, the coordinator of the pool on node 4" in text
    assert any("rather than 0 1 2 3: an even split gives 172 cores there against 168" in r for r in p.reasons)


def test_a_bind_prefers_node_0_and_a_bind_to_node_1_warns():
    facts = make_facts([NodeSpec(32, 251 * GiB, 0), NodeSpec(32, 251 * GiB, 1)], gpus=(1,))
    p = plan(facts, policy="bind")  # the GPU is on node 1, but node 0 is as good and kt-kernel is right there
    assert p.numa_nodes == [0] and any("node 0 rather than node 1" in r for r in p.reasons)
    q = plan(seed_host(), policy="bind", nodes=[1])
    assert any("the pool(s) on node(s) 1 read and write past its end" in w for w in q.warnings)
    assert any("the coordinator of the pool on node 1 allocates on node 0" in w for w in q.warnings)
    assert any("ktfleet_nodes asks for them" in r for r in q.reasons)
# --- memory: three tiers, kt-kernel scratch, the published fits (memory.py) --------------------

# KTransformers' DeepSeek-R1/V3 tutorial (kvcache-ai/ktransformers doc/en/DeepseekR1_V3_tutorial.md,
# "Show Case Environment" and "Dual socket version (64 cores)"): 2 x Xeon Gold 6454S, 1 TB DRAM,
# the USE_NUMA=1 build of the Q4_K_M GGUF (~377 GiB), "Dual socket: 1T DRAM".
TUTORIAL_Q4KM = {**V3, "weights_bytes": 377 * GiB}


def test_the_tutorials_1tb_dual_socket_use_numa_run_plans_as_fitting_but_tight():
    p = plan(tutorial_host_1tb(), TUTORIAL_Q4KM, backend="legacy", legacy_numa_build=True)
    assert p.policy == "replicate" and p.memory.fits is True and p.memory.tier == "tight"
    # one copy per node (legacy moe.cpp MOE::MOE, #ifdef USE_NUMA: numa_alloc_onnode + memcpy per node)
    assert p.memory.weights_per_node_bytes == {0: 377 * GiB, 1: 377 * GiB}
    assert p.memory.buffers_per_node_bytes == {0: 0, 1: 0}
    margin = -(-377 * GiB * 7 // 40)  # the seed's measured 2.35x for two copies: 0.175 per copy
    assert p.memory.margin_per_node_bytes == {0: margin, 1: margin}
    assert p.memory.required_per_node_bytes[0] == 377 * GiB + margin <= 503 * GiB
    assert 0 < p.memory.free_ratio < 0.20
    tight = next(w for w in p.warnings if w.startswith("memory is tight"))
    assert "below the recommended 20%" in tight and "it deploys" in tight
    line = next(r for r in p.reasons if r.startswith("memory fits, tight"))
    assert "weights 377.0 GiB" in line and "margin" in line and "of 503.0 GiB" in line
    # the same under auto: replicate is the fastest that fits
    assert plan(tutorial_host_1tb(), TUTORIAL_Q4KM, backend="legacy").policy == "replicate"


def test_the_published_ooms_are_still_refused():
    # 512 GB with the USE_NUMA=1 build: a copy per node does not fit in 251 GiB
    p = plan(tutorial_host_512gb(), TUTORIAL_Q4KM, backend="legacy", legacy_numa_build=True)
    assert p.memory.fits is False and p.memory.tier == "does_not_fit"
    assert any(r.startswith("memory does NOT fit") and "short by" in r for r in p.reasons)


def test_roomy_fit_is_fits_not_tight():
    p = plan(tutorial_host_1tb(), SMALL)
    assert p.memory.tier == "fits" and p.memory.free_ratio >= 0.20
    assert not any(w.startswith("memory is tight") for w in p.warnings)


def test_kt_kernel_scratch_follows_moe_base_hpp():
    # amx/moe_base.hpp AMX_MOE_BASE::init: bf16 m_local_* of k*max_len rows, then the
    # gate_up_ba/gate_bc/up_bc/down_ba/down_bc pools of pool_count_ = max_len*k + experts*M_STEP rows
    shape = memory.MoeShape(hidden_size=7168, intermediate_size=2048, num_experts=256, num_experts_per_tok=8)
    at_4096 = memory.scratch_per_pool("AMXINT4", shape, pools=2, chunk=4096)
    rows, pool_rows, h, i = 8 * 4096, 8 * 4096 + 256 * 32, 7168, 1024
    expected = (
        2 * rows * (2 * h + 2 * i)
        + (pool_rows * h + 4 * pool_rows)
        + 2 * 4 * pool_rows * i
        + (pool_rows * i + 4 * pool_rows)
        + 4 * pool_rows * h
        + 5 * 64 * pool_rows
    )
    assert at_4096 == expected
    assert 2.8e9 < at_4096 < 3.0e9  # the "about 3 GB per node at 4096"
    at_16384 = memory.scratch_per_pool("AMXINT4", shape, pools=2, chunk=16384)
    assert 10e9 < at_16384 < 11e9  # one pool (bind): ~12.5 GB
    assert 12e9 < memory.scratch_per_pool("AMXINT4", shape, pools=1, chunk=16384) < 13e9
    # llamafile/moe.hpp LLAMA_MOE_TP: fp32 and Q8_K staging of group_max_len tokens
    assert 2e9 < memory.scratch_per_pool("LLAMAFILE", shape, pools=2, chunk=4096) < 2.5e9


def test_sglang_kt_plan_counts_the_scratch_and_its_chunked_prefill_size():
    p4k = plan(tutorial_host_512gb(), V3)
    p16k = plan(tutorial_host_512gb(), V3, chunked_prefill_size=16384)
    b4k, b16k = p4k.memory.buffers_per_node_bytes[0], p16k.memory.buffers_per_node_bytes[0]
    assert 2.8e9 < b4k < 3.0e9 and 10e9 < b16k < 11e9
    assert p16k.memory.required_per_node_bytes[0] - p4k.memory.required_per_node_bytes[0] == b16k - b4k
    assert any("kt-kernel scratch" in r and "chunked_prefill_size 4096" in r for r in p4k.reasons)
    assert any(r.startswith("memory fits") and "kt-kernel buffers" in r for r in p4k.reasons)


def test_sglang_kt_without_the_shape_warns_that_scratch_is_not_counted():
    p = plan(tutorial_host_512gb(), {**V3, "hidden_size": None})
    assert p.memory.buffers_per_node_bytes == {0: 0, 1: 0}
    assert any("scratch buffers are not in the memory check" in w for w in p.warnings)


def test_sglang_kt_remedies_never_say_more_gpu_experts_for_amx_or_llamafile():
    # AMX and LLAMAFILE load every expert into CPU memory, the GPU ones too
    # (kt_kernel/utils/loader.py:267-268; amx/moe_base.hpp init(); llamafile/moe.hpp LLAMA_MOE_TP)
    big = {**V3, "weights_bytes": 600 * GiB}
    for method in ("AMXINT4", "LLAMAFILE"):
        p = plan(tutorial_host_512gb(), {**big, "kt_method": method})
        remedy = next(w for w in p.warnings if w.startswith("the weights do not fit"))
        assert "ktfleet_kt_num_gpu_experts" not in remedy
        assert "does not help" in remedy and "every expert into CPU memory" in remedy
        assert "lower ktfleet_chunked_prefill_size" in remedy
    bound = plan(tutorial_host_512gb(), {**big, "kt_method": "AMXINT4"}, policy="bind")
    assert "shard over more nodes" in next(w for w in bound.warnings if w.startswith("the weights do not fit"))


def test_chunked_prefill_size_is_validated():
    with pytest.raises(PlanError, match=r"^ktfleet_chunked_prefill_size: "):
        plan(seed_host(), chunked_prefill_size=0)


def test_the_argv_and_the_plan_state_the_same_thread_count_port_and_host():
    """cpu_infer, threadpool_count, port and listen_host are fields and argv words: a plan whose two disagree
    cannot be made (tuning reads the field, the unit runs the argv)."""
    from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.models import Plan

    for backend in ("sglang-kt", "legacy"):
        plan = planner.make_plan(seed_host(), SMALL, backend)
        data = plan.model_dump(mode="json")
        assert Plan.model_validate(data) == plan
        flag = "--kt-cpuinfer" if backend == "sglang-kt" else "--cpu_infer"
        with pytest.raises(ValueError, match=f"server_args give {flag} {plan.cpu_infer}, the plan {plan.cpu_infer + 1}"):
            Plan.model_validate({**data, "cpu_infer": plan.cpu_infer + 1})
        with pytest.raises(ValueError, match="server_args give --port"):
            Plan.model_validate({**data, "port": 1})
    data = planner.make_plan(seed_host(), SMALL, "sglang-kt").model_dump(mode="json")
    with pytest.raises(ValueError, match="server_args give --kt-threadpool-count"):
        Plan.model_validate({**data, "threadpool_count": 7})
