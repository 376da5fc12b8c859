"""The server's argv (after the interpreter) and environment for each backend.

Flag names are the backends' own (tests/unit/fixtures/backend_flags.yml lists each
with the documentation it was taken from):
- legacy:    python -m ktransformers.server.main --model_path --gguf_path --cpu_infer ...
- sglang-kt: python -m sglang.launch_server --model ... --kt-weight-path --kt-cpuinfer ...
"""

from __future__ import annotations

import re

from .errors import PlanError
from .models import Backend, ModelSpec, PlanOptions

KT_METHODS = (
    "AMXINT4",
    "AMXINT8",
    "RAWINT4",
    "BF16",
    "FP8",
    "FP8_PERCHANNEL",
    "MXFP4",
    "LLAMAFILE",
    "MOE_INT4",
    "MOE_INT8",
)
AMX_METHODS = ("AMXINT4", "AMXINT8")
DEFAULT_PORT = {Backend.SGLANG_KT: 30000, Backend.LEGACY: 10002}

# flags the plan sets itself -> the variable to use instead (None: never pass it)
_PLANNED = {
    Backend.SGLANG_KT: {
        "--model": "ktfleet_model.model_path",
        "--model-path": "ktfleet_model.model_path",
        "--host": "ktfleet_listen_host",
        "--port": "ktfleet_port",
        "--tensor-parallel-size": "ktfleet_gpus",
        "--tp-size": "ktfleet_gpus",
        "--kt-weight-path": "ktfleet_model.weights_path",
        "--kt-method": "ktfleet_model.kt_method",
        "--kt-cpuinfer": "ktfleet_cpu_infer",
        "--kt-threadpool-count": "ktfleet_policy / ktfleet_nodes",
        "--kt-numa-nodes": "ktfleet_nodes",
        "--kt-num-gpu-experts": "ktfleet_kt_num_gpu_experts",
        "--numa-node": None,
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
    planned = _PLANNED[backend]
    for word in words:
        flag = word.split("=", 1)[0]
        if flag not in planned:
            continue
        if planned[flag] is None:
            raise PlanError(
                "ktfleet_server_extra_args", f"{flag} fights kt-kernel's own NUMA pinning; remove it"
            )
        raise PlanError(
            "ktfleet_server_extra_args", f"{flag} is set by the plan; use {planned[flag]} instead"
        )


def _need(value: str | None, variable: str, what: str) -> str:
    if not value:
        raise PlanError(variable, f"missing; the server needs {what}")
    return value


def server_args(
    backend: Backend,
    model: ModelSpec,
    options: PlanOptions,
    cpu_infer: int,
    kt_nodes: list[int],
    kt_method: str | None,
) -> list[str]:
    check_extra_args(backend, options.extra_args)
    port = str(options.port or DEFAULT_PORT[backend])
    model_path = _need(model.model_path, "ktfleet_model.model_path", "the model's config directory")
    weights_path = _need(model.weights_path, "ktfleet_model.weights_path", "the CPU weights' directory")
    if backend is Backend.SGLANG_KT:
        argv = ["-m", "sglang.launch_server", "--host", options.host, "--port", port]
        argv += ["--model", model_path, "--served-model-name", model.name]
        argv += ["--trust-remote-code"] if options.trust_remote_code else []
        argv += ["--tensor-parallel-size", str(options.gpus)]
        argv += ["--kt-weight-path", weights_path]
        argv += ["--kt-method", kt_method] if kt_method else []
        argv += ["--kt-cpuinfer", str(cpu_infer)]
        # always explicit: SGLang's default of 2 pools crashes single-node hosts
        argv += ["--kt-threadpool-count", str(len(kt_nodes))]
        # one word per node id (nargs="+"), as KTransformers' own docs pass them
        argv += ["--kt-numa-nodes", *(str(n) for n in kt_nodes)]
        if options.kt_num_gpu_experts is not None:
            argv += ["--kt-num-gpu-experts", str(options.kt_num_gpu_experts)]
    else:
        argv = ["-m", "ktransformers.server.main", "--host", options.host, "--port", port]
        argv += ["--model_path", model_path, "--gguf_path", weights_path]
        if model.optimize_config_path:
            argv += ["--optimize_config_path", model.optimize_config_path]
        argv += ["--cpu_infer", str(cpu_infer)]
        argv += ["--chunk_size", str(options.chunk_size), "--max_new_tokens", str(options.max_new_tokens)]
        argv += ["--cache_lens", str(options.cache_lens), "--max_batch_size", str(options.max_batch_size)]
        argv += ["--backend_type", options.backend_type]
    return argv + list(options.extra_args)


def environment(backend: Backend) -> dict[str, str]:
    if backend is Backend.SGLANG_KT:
        # SGLang's own CPU affinity would fight kt-kernel's per-pool pinning
        return {"SGLANG_SET_CPU_AFFINITY": "0"}
    return {}
