"""The planner's kt-kernel rules, each against the 0.7.2 code it comes from (read from the pinned wheels).

Each test names the wheel file and the line it reads (``wheels.cite`` fails when a version
bump removed that text, so the rule is re-checked rather than silently kept).
"""

from __future__ import annotations

import ast
import re

import pytest
import server_flags
import wheels
from planner_hosts import DEEPSEEK_V3_Q4KM, NodeSpec, make_facts, seed_host, single_node_host, snc3_host

from ansible_collections.ktfleet.numa.plugins.module_utils import kt_weights
from ansible_collections.ktfleet.numa.plugins.plugin_utils.errors import PlanError
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner import kt_policy, launch, planner
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.models import PlanOptions

PATHS = {"model_path": "/srv/models/DeepSeek-V3", "weights_path": "/srv/models/DeepSeek-V3-AMXINT4"}
V3 = {**DEEPSEEK_V3_Q4KM, **PATHS}
KT_EP = "sglang/srt/layers/moe/kt_ep_wrapper.py"
RUN = "kt_kernel/cli/commands/run.py"


@pytest.fixture(scope="module")
def sglang():
    return server_flags.sglang_kt()


def kt_config_created(ns) -> bool:
    """sglang_kt: kt_ep_wrapper.py create_kt_config_from_server_args returns None when
    kt_weight_path is None, and _init_kt_gpu_experts_masks when neither kt_gpu_experts_ratio
    nor kt_num_gpu_experts is set (the test below finds both lines in the wheel)."""
    if ns.kt_weight_path is None:
        return False
    return ns.kt_gpu_experts_ratio is not None or ns.kt_num_gpu_experts is not None


def test_the_wheel_still_has_the_kt_config_conditions():
    source = wheels.read("sglang-kt", KT_EP)
    weight = wheels.cite("sglang-kt", KT_EP, "if server_args.kt_weight_path is None:")
    assert source.splitlines()[weight].strip() == "return None"
    ratio = wheels.cite("sglang-kt", KT_EP, "if server_args.kt_gpu_experts_ratio is not None:")
    count = wheels.cite("sglang-kt", KT_EP, "elif server_args.kt_num_gpu_experts is not None:")
    unset = wheels.cite("sglang-kt", KT_EP, "Either kt_num_gpu_experts or kt_gpu_experts_ratio is required")
    assert ratio < count < unset and source.splitlines()[unset].strip() == "return None"  # line after the warning


@pytest.mark.parametrize("facts_fn", [seed_host, single_node_host, snc3_host])
def test_the_default_sglang_kt_plan_starts_kt_kernel_with_the_planned_pools(facts_fn, sglang):
    p = planner.make_plan(facts_fn(), V3)
    ns = sglang.parse(p.server_args[2:])  # sglang-kt's own argparse definitions
    assert kt_config_created(ns)
    assert ns.kt_numa_nodes == p.numa_nodes and ns.kt_threadpool_count == len(p.numa_nodes)
    assert ns.kt_cpuinfer == p.cpu_infer and ns.kt_method == "AMXINT4" and ns.kt_weight_path == PATHS["weights_path"]
    assert ns.kt_num_gpu_experts == 1 and ns.kt_gpu_experts_ratio is None and ns.chunked_prefill_size == 4096
    # "Length must equal --kt-threadpool-count" (sglang_kt: sglang/srt/server_args.py, --kt-numa-nodes help)
    wheels.cite("sglang-kt", "sglang/srt/server_args.py", "Length must equal --kt-threadpool-count.")


def test_without_the_expert_count_sglang_kt_would_run_plain_sglang(sglang):
    """The red case: the line ktfleet emitted before (no --kt-num-gpu-experts) builds no KT config."""
    p = planner.make_plan(seed_host(), V3)
    argv = p.server_args[2:]
    i = argv.index("--kt-num-gpu-experts")
    assert not kt_config_created(sglang.parse(argv[:i] + argv[i + 2 :]))


def test_the_defaults_are_kt_runs(sglang):
    """--kt-num-gpu-experts 1 and --chunked-prefill-size 4096 are what `kt run` passes when not told."""
    source = wheels.read("kt-kernel", RUN)
    experts = re.search(r'resolve\(gpu_experts, "inference\.gpu_experts", (\d+)\)', source)
    chunk = re.search(r'resolve\(chunked_prefill_size, "inference\.chunked_prefill_size", (\d+)\)', source)
    assert experts and int(experts[1]) == launch.DEFAULT_KT_NUM_GPU_EXPERTS
    assert chunk and int(chunk[1]) == PlanOptions().chunked_prefill_size
    assert sglang["--kt-method"].default == launch.SGLANG_DEFAULT_METHOD  # what runs without --kt-method
    assert sglang["--chunked-prefill-size"].default is None  # SGLang picks it from GPU memory
    wheels.cite("sglang-kt", "sglang/srt/server_args.py", "self.chunked_prefill_size = 16384")


def test_kt_methods_are_kt_kernels():
    """launch.KT_METHODS is kt_kernel/experts.py INFERENCE_METHODS; AMX_METHODS its AMXMoEWrapper branch."""
    tree = ast.parse(wheels.read("kt-kernel", "kt_kernel/experts.py"))
    methods = amx = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "INFERENCE_METHODS":
            methods = set(ast.literal_eval(node.value.args[0]))
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Compare)
            and "AMXMoEWrapper" in ast.unparse(node.body[0])
        ):
            amx = set(ast.literal_eval(node.test.comparators[0]))
    assert methods == set(launch.KT_METHODS)
    assert amx == set(launch.AMX_METHODS)


def _symbols(variant: str) -> str:
    return wheels.read_bytes("kt-kernel", f"kt_kernel/_kt_kernel_ext_{variant}.cpython-311-x86_64-linux-gnu.so").decode(
        "latin-1"
    )


def test_amx_methods_need_avx512f_and_avx512bw_not_amx():
    """kt_kernel/_cpu_detect.py loads the avx512_base build for avx512f+avx512bw and avx2 below it;
    the avx2 build registers no AMXInt4_MOE/AMXInt8_MOE (utils/amx.py then raises "AMXINT4 backend
    not available"), the avx512_base one does."""
    wheels.cite("kt-kernel", "kt_kernel/_cpu_detect.py", '("avx512_base", ["avx512f", "avx512bw"]),')
    wheels.cite("kt-kernel", "kt_kernel/utils/amx.py", '"AMXINT4 backend not available. Required ISA:\\n"')
    avx2, avx512 = _symbols("avx2"), _symbols("avx512_base")
    for kernel in ("\0AMXInt4_MOE\0", "\0AMXInt8_MOE\0"):
        assert kernel not in avx2 and kernel in avx512


def _facts(avx512: bool, amx: bool, bw: bool | None = True) -> dict:
    facts = make_facts([NodeSpec(16, 256 * 1024**3, 0), NodeSpec(16, 256 * 1024**3, 1)], amx=amx, avx512=avx512)
    facts["cpu"]["flags"]["avx512bw"] = bw if avx512 else False
    return facts


@pytest.mark.parametrize("method", ["AMXINT4", "AMXINT8"])
def test_amx_weights_on_an_avx2_cpu_are_refused_before_deploying(method):
    model = {**V3, "kt_method": method}
    with pytest.raises(PlanError, match=rf"^ktfleet_model.kt_method: {method} needs AVX512F \+ AVX512BW.*no AVX512"):
        planner.make_plan(_facts(avx512=False, amx=False), model)
    # Knights Landing: AVX512F without AVX512BW gets the avx2 build too
    with pytest.raises(PlanError, match="AVX512F without AVX512BW"):
        planner.make_plan(_facts(avx512=True, amx=False, bw=False), model)
    slower = planner.make_plan(_facts(avx512=True, amx=False), model)
    assert any("runs without Intel AMX" in w and "slower" in w for w in slower.warnings)
    fast = planner.make_plan(_facts(avx512=True, amx=True), model)
    assert not any("AMX" in w for w in fast.warnings)
    # other methods have AVX2 kernels (AVX2BF16_MOE in the avx2 build): no refusal
    assert "\0AVX2BF16_MOE\0" in _symbols("avx2")
    planner.make_plan(_facts(avx512=False, amx=False), {**V3, "kt_method": "BF16"})


def test_facts_without_cpu_flags_only_warn_and_an_unknown_method_names_sglangs_default():
    facts = _facts(avx512=False, amx=False)
    facts["cpu"]["flags"] = {}
    p = planner.make_plan(facts, {**V3, "kt_method": "AMXINT4"})
    assert any("the facts show no CPU flags" in w for w in p.warnings)
    q = planner.make_plan(_facts(avx512=False, amx=False), {**V3, "weights_path": "/srv/weights"})
    assert any("SGLang's default AMXINT4 needs AVX512F" in w for w in q.warnings)


def test_the_compiled_pool_checks_are_the_planners():
    """The shipped kt-kernel builds carry the checks kt_policy plans around (operators/moe-tp.hpp
    TP_MOE_Common; amx_buffers.hpp BufferBInt4Impl); each is a runtime_error at load."""
    for variant in ("avx2", "amx"):
        text = _symbols(variant)
        assert "For TP, intermediate_size must be a multiple of NUMA node count" in text
        assert "intermediate_size must be divisible by QK_K (256) for Llamafile backend" in text
        assert "intermediate_size too small: cannot distribute blocks to all TP instances" in text
    assert "n or k is not aligned to N_STEP or B_K_STEP" in _symbols("amx")
    assert kt_policy.QK_K == 256 and kt_policy.AMX_SLICE_ALIGN == {"AMXINT8": 64, "AMXINT4": 128}


def test_the_shard_count_is_read_as_kt_kernels_loader_reads_it():
    """kt_kernel/utils/loader.py SafeTensorLoader.load_experts counts .numa.{i}. of expert 0's up
    projection from 0 until one is missing; kt_weights.numa_shards does the same."""
    loader = "kt_kernel/utils/loader.py"
    wheels.cite("kt-kernel", loader, 'while self.has_tensor(f"{up_base_key}.{0}.numa.{max_numa_id+1}.weight"):')
    wheels.cite("kt-kernel", "kt_kernel/utils/amx.py", 'base_key = f"blk.{self.layer_idx}"')
    keys = [f"blk.{layer}.ffn_{p}_exps.{e}.numa.{n}.{w}" for layer in (3, 4) for p in ("up", "gate", "down")
            for e in range(4) for n in range(2) for w in ("weight", "scale")]  # fmt: skip
    assert kt_weights.numa_shards(keys) == 2


def test_set_cpu_affinity_stays_explicitly_off():
    """sglang_kt: sglang/srt/environ.py defaults it to False; the scheduler reads it with
    get_bool_env_var (utils/common.py), which takes "0" as false; ktfleet sets "0" explicitly."""
    wheels.cite("sglang-kt", "sglang/srt/environ.py", "SGLANG_SET_CPU_AFFINITY = EnvBool(False)")
    wheels.cite("sglang-kt", "sglang/srt/managers/scheduler.py", 'if get_bool_env_var("SGLANG_SET_CPU_AFFINITY"):')
    wheels.cite("sglang-kt", "sglang/srt/utils/common.py", 'falsy_values = ("false", "0")')
    assert planner.make_plan(seed_host(), V3).environment == {"SGLANG_SET_CPU_AFFINITY": "0"}
