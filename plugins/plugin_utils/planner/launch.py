"""The server's argv (after the interpreter) and environment for each backend.

Flag names, types and nargs are the backends' own, checked against their argparse
definitions read from the pinned releases (tests/oracle/wheels.lock, server_flags.py):
- legacy:    python -m ktransformers.server.main --model_path --gguf_path --cpu_infer ...
- sglang-kt: python -m sglang.launch_server --model ... --kt-weight-path --kt-cpuinfer ...

Paths cited as ``sglang_kt:``/``kt_kernel:`` are inside the 0.7.2 wheels.
"""

from __future__ import annotations

import re

from ..errors import PlanError
from .models import CPU_INFER_FLAG, Backend, ModelSpec, PlanOptions

# kt_kernel: kt_kernel/experts.py INFERENCE_METHODS (tests/oracle checks this against the wheel)
KT_METHODS = (
    "AMXINT4",
    "AMXINT8",
    "RAWINT4",
    "FP8",
    "BF16",
    "FP8_PERCHANNEL",
    "GPTQ_INT4",
    "SYCL_GPTQ_INT4",
    "MXFP4",
    "NVFP4",
    "MXFP8",
    "LLAMAFILE",
    "MOE_INT4",
    "MOE_INT8",
)
# kt_kernel: experts.py picks AMXMoEWrapper for these (utils/amx.py); they need AVX512F + AVX512BW
AMX_METHODS = ("AMXINT4", "AMXINT8")
# sglang_kt: sglang/srt/server_args.py, --kt-method default="AMXINT4": what runs when ktfleet passes none
SGLANG_DEFAULT_METHOD = "AMXINT4"
DEFAULT_PORT = {Backend.SGLANG_KT: 30000, Backend.LEGACY: 10002}
# kt_kernel: kt_kernel/cli/commands/run.py (kt run): resolve(gpu_experts, "inference.gpu_experts", 1)
DEFAULT_KT_NUM_GPU_EXPERTS = 1
# kt_kernel: kt_kernel/cli/commands/run.py (kt run): resolve(chunked_prefill_size, ..., 4096); the same
# default is PlanOptions.chunked_prefill_size

# sglang_kt: every --kt-* flag of sglang/srt/server_args.py ServerArgs.add_cli_args (tests/oracle checks
# the set against the wheel); an extra --kt-* word outside it is a typo, refused
KT_FLAGS = frozenset(
    {
        "--kt-weight-path",
        "--kt-method",
        "--kt-cpuinfer",
        "--kt-threadpool-count",
        "--kt-numa-nodes",
        "--kt-num-gpu-experts",
        "--kt-gpu-experts-ratio",
        "--kt-max-deferred-experts-per-token",
        "--kt-gpu-prefill-token-threshold",
        "--kt-enable-dynamic-expert-update",
        "--kt-expert-placement-strategy",
        "--kt-lora-path",
        "--kt-expert-lora-path",
    }
)

# flags the plan sets itself -> the variable to use instead
_PLANNED = {
    Backend.SGLANG_KT: {
        "--model": "ktfleet_model.model_path",
        "--model-path": "ktfleet_model.model_path",
        "--host": "ktfleet_listen_host",
        "--port": "ktfleet_port",
        "--tensor-parallel-size": "ktfleet_gpus",
        "--tp-size": "ktfleet_gpus",
        "--served-model-name": "ktfleet_model.name",
        "--kt-weight-path": "ktfleet_model.weights_path",
        "--kt-method": "ktfleet_model.kt_method",
        "--kt-cpuinfer": "ktfleet_cpu_infer",
        "--kt-threadpool-count": "ktfleet_policy / ktfleet_nodes",
        "--kt-numa-nodes": "ktfleet_nodes",
        "--kt-num-gpu-experts": "ktfleet_kt_num_gpu_experts",
        # kt-kernel sizes each pool's scratch buffers by it (KTConfig.chunked_prefill_size,
        # sglang_kt: sglang/srt/layers/moe/kt_ep_wrapper.py create_kt_config_from_server_args)
        "--chunked-prefill-size": "ktfleet_chunked_prefill_size",
    },
    Backend.LEGACY: {
        "--model_path": "ktfleet_model.model_path",
        "--gguf_path": "ktfleet_model.weights_path",
        "--optimize_config_path": "ktfleet_model.optimize_config_path",
        "--host": "ktfleet_listen_host",
        "--port": "ktfleet_port",
        "--cpu_infer": "ktfleet_cpu_infer",
        "--chunk_size": "ktfleet_chunk_size",
        "--max_new_tokens": "ktfleet_max_new_tokens",
        "--cache_lens": "ktfleet_cache_lens",
        "--max_batch_size": "ktfleet_max_batch_size",
        "--backend_type": "ktfleet_backend_type",
    },
}
# flags never to pass, and why
_REFUSED = {
    Backend.SGLANG_KT: {
        "--numa-node": "fights kt-kernel's own NUMA pinning; remove it",
        # sglang_kt: kt_ep_wrapper.py _init_kt_gpu_experts_masks: a ratio wins over --kt-num-gpu-experts
        "--kt-gpu-experts-ratio": "silently overrides --kt-num-gpu-experts (sglang-kt uses the ratio when both are given); "
        "set ktfleet_kt_num_gpu_experts instead",
    },
    Backend.LEGACY: {},
}


def infer_kt_method(model: ModelSpec) -> tuple[str | None, str | None]:
    """The kt-kernel method: given, or read from the weights' directory name; and why."""
    if model.kt_method:
        return model.kt_method, None
    for text in (model.weights_path, model.name):
        words = re.sub(r"[-/.\s]+", " ", (text or "").upper())
        for method in sorted(KT_METHODS, key=len, reverse=True):
            if re.search(rf"(?<![A-Z0-9_]){method}(?![A-Z0-9_])", words):
                return method, f"kt_method {method}: read from the weights' name ({text})"
        if "GGUF" in words:
            return "LLAMAFILE", f"kt_method LLAMAFILE: GGUF weights ({text})"
    return None, None


def infer_numa_shards(model: ModelSpec) -> tuple[int | None, str | None]:
    """AMX-converted weights named ...-NUMA2 are pre-sharded for 2 pools."""
    if model.numa_shards:
        return model.numa_shards, None
    for text in (model.weights_path, model.name):
        match = re.search(r"NUMA[-_]?(\d+)(?![0-9])", text or "", re.IGNORECASE)
        if match and int(match.group(1)) > 0:
            return int(match.group(1)), f"numa_shards {match.group(1)}: read from the weights' name ({text})"
    return None, None


def check_extra_args(backend: Backend, words: tuple[str, ...]) -> None:
    planned, refused = _PLANNED[backend], _REFUSED[backend]
    for word in words:
        flag = word.split("=", 1)[0]
        if flag in refused:
            raise PlanError("ktfleet_server_extra_args", f"{flag} {refused[flag]}")
        if flag in planned:
            raise PlanError(
                "ktfleet_server_extra_args", f"{flag} is set by the plan; use {planned[flag]} instead"
            )
        if backend is Backend.SGLANG_KT and flag.startswith("--kt-") and flag not in KT_FLAGS:
            # argparse would take a prefix of a real flag as that flag, or stop the server at start
            raise PlanError(
                "ktfleet_server_extra_args",
                f"{flag} is not a flag of sglang-kt; its kt-kernel flags are {', '.join(sorted(KT_FLAGS))}",
            )


def _need(value: str | None, variable: str, what: str) -> str:
    if not value:
        raise PlanError(variable, f"missing; the server needs {what}")
    return value


def port(backend: Backend, options: PlanOptions) -> int:
    """The port the server listens on: ktfleet_port, else the backend's own default."""
    return options.port or DEFAULT_PORT[backend]


def server_args(
    backend: Backend,
    model: ModelSpec,
    options: PlanOptions,
    cpu_infer: int,
    kt_nodes: list[int],
    kt_method: str | None,
) -> list[str]:
    check_extra_args(backend, options.extra_args)
    listen_port = str(port(backend, options))
    model_path = _need(model.model_path, "ktfleet_model.model_path", "the model's config directory")
    weights_path = _need(model.weights_path, "ktfleet_model.weights_path", "the CPU weights' directory")
    if backend is Backend.SGLANG_KT:
        argv = ["-m", "sglang.launch_server", "--host", options.host, "--port", listen_port]
        argv += ["--model", model_path, "--served-model-name", model.name]
        argv += ["--trust-remote-code"] if options.trust_remote_code else []
        argv += ["--tensor-parallel-size", str(options.gpus)]
        argv += ["--kt-weight-path", weights_path]
        argv += ["--kt-method", kt_method] if kt_method else []
        argv += [CPU_INFER_FLAG[backend], str(cpu_infer)]
        # always explicit: SGLang's default of 2 pools crashes single-node hosts
        argv += ["--kt-threadpool-count", str(len(kt_nodes))]
        # one word per node id (nargs="+"), as KTransformers' own docs pass them
        argv += ["--kt-numa-nodes", *(str(n) for n in kt_nodes)]
        # always: without --kt-num-gpu-experts (or a ratio) sglang-kt builds no KT config and runs the
        # model as plain SGLang, no CPU experts (sglang_kt: kt_ep_wrapper.py _init_kt_gpu_experts_masks)
        argv += ["--kt-num-gpu-experts", str(kt_num_gpu_experts(options))]
        argv += ["--chunked-prefill-size", str(options.chunked_prefill_size)]
    else:
        argv = ["-m", "ktransformers.server.main", "--host", options.host, "--port", listen_port]
        argv += ["--model_path", model_path, "--gguf_path", weights_path]
        if model.optimize_config_path:
            argv += ["--optimize_config_path", model.optimize_config_path]
        argv += [CPU_INFER_FLAG[backend], str(cpu_infer)]
        argv += ["--chunk_size", str(options.chunk_size)] if balance_serve(options) else []
        argv += ["--max_new_tokens", str(options.max_new_tokens)]
        argv += ["--cache_lens", str(options.cache_lens), "--max_batch_size", str(options.max_batch_size)]
        argv += ["--backend_type", options.backend_type] if balance_serve(options) else []
    return argv + list(options.extra_args)


def balance_serve(options: PlanOptions) -> bool:
    """Whether the legacy release has 0.3's balance_serve flags (--chunk_size, --backend_type).

    ktransformers 0.2.1.post1 (the package index's only 0.2/0.3 server, tests/oracle/wheels.lock)
    has neither in ktransformers/server/args.py: argparse would stop it at start.
    """
    release = options.legacy_release
    if release is None:
        return True
    major_minor = tuple(int(part) for part in release.split(".")[:2] if part.isdigit())
    return major_minor >= (0, 3)


def kt_num_gpu_experts(options: PlanOptions) -> int:
    """--kt-num-gpu-experts: the user's, else what KTransformers' own ``kt run`` passes."""
    if options.kt_num_gpu_experts is not None:
        return options.kt_num_gpu_experts
    return DEFAULT_KT_NUM_GPU_EXPERTS


def environment(backend: Backend) -> dict[str, str]:
    if backend is Backend.SGLANG_KT:
        # sglang-kt 0.7.2 already defaults it to off (sglang_kt: sglang/srt/environ.py
        # SGLANG_SET_CPU_AFFINITY = EnvBool(False)); set explicitly so an inherited value cannot turn
        # it on: the scheduler (sglang/srt/managers/scheduler.py) would then pin each TP rank to
        # physical cores counted from CPU 0 (utils/common.py set_gpu_proc_affinity), whatever nodes
        # the kt-kernel pools run on
        return {"SGLANG_SET_CPU_AFFINITY": "0"}
    return {}
