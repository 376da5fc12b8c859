"""kt-kernel test server: ``python -m sglang.launch_server ARGV`` on real kt-kernel pools (test equipment).

Staged by stage.py next to the AVX2 build of the pinned kt-kernel 0.7.2 wheel; stdlib and
that wheel only (no torch, no CUDA, no sglang). What it does, each step as the real code does it
(paths are inside the wheels: kt_kernel-0.7.2 "kt:", sglang_kt-0.7.2 "sg:"; C++ from
kvcache-ai/ktransformers kt-kernel/):

1. Parses ARGV with sglang-kt's own argparse definitions (the table stage.py extracted from
   sg:sglang/srt/server_args.py with tests/oracle/server_flags.py): what sglang-kt's parser
   refuses exits 2 with argparse's usage error. Then the kt-kernel rules sglang-kt applies
   before any worker pool exists: no KT config (sg:sglang/srt/layers/moe/kt_ep_wrapper.py:4776
   no --kt-weight-path, :4614-4616 neither --kt-num-gpu-experts nor --kt-gpu-experts-ratio)
   means plain SGLang without CPU experts, so it refuses (exit 1) instead of pretending.
2. Builds the worker pools as kt:kt_kernel/experts_base.py:323-341 (_MoEBase._get_cpu_infer)
   does: WorkerPoolConfig(subpool_count, subpool_numa_map, subpool_thread_count), CPUInfer.
   The C++ (cpu_backend/worker_pool.cpp, WorkerPool::init, InNumaPool, NumaJobDistributor::init)
   starts per pool a coordinator thread ``numa_<node>_m_<first>`` and workers
   ``numa_<node>_t_<first+i>``, each bound with hwloc to one PU of the (first+i)-th core of the
   node (hwloc_bitmap_singlify), the id counter indexed by node id (issue 12's node-id bug).
3. Loads a synthetic MoE (random BF16 experts, size from KTFLEET_KTSERVER_MIB) through
   kt-kernel's BF16 operator as kt:kt_kernel/utils/amx.py:857-892,1009-1019 (NativeMoEWrapper,
   method BF16) does: MOEConfig with per-expert pointers, AVX2BF16_MOE (the AVX2 build has no
   AMXBF16_MOE), load_weights_task. The C++ (operators/avx2/bf16-moe.hpp TP_MOE::load_weights,
   operators/moe-tp.hpp TP_MOE_Common) cuts every expert's intermediate dimension into one slice
   per pool and copies it on that pool's threads, so the bytes land where kt-kernel puts them.
4. Serves /health, /v1/models and /v1/completions (streamed or not) on --host/--port; every
   token is a chain of real MoE forward passes (forward_task, one per layer) through the pools,
   as kt:kt_kernel/experts_base.py:730-784 (submit_forward) submits them; a prompt is one prefill pass (qlen > 1).
5. Writes ``standin-run.json`` in the working directory, the record the stand-in writes
   (module, argv, pid, prefix, environment) plus what kt-kernel built.

Environment: KTFLEET_KTSERVER_MIB (expert weight MiB, default 24), KTFLEET_KTSERVER_LAYERS
(MoE layers, default 2), KTFLEET_KTSERVER_FLAGS (the flag table, default next to this file).
"""

from __future__ import annotations

import ast
import ctypes
import glob
import importlib.util
import json
import mmap
import os
import re
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULE = "sglang.launch_server"

# the synthetic model: DeepSeek-like shape, scaled down (hidden, intermediate per expert, top-k)
HIDDEN = 512  # a multiple of 16 (avx2/moe_base.hpp sums expert outputs 16 values at a time)
INTERMEDIATE = 384  # a multiple of 1, 2, 3, 4, 6, 8 pools (moe-tp.hpp: intermediate_size % tp_count)
TOP_K = 2
VOCAB = 256
PREFILL_CAP = 32  # prompt tokens run through one prefill pass
DEFAULT_MAX_LEN = 512  # --chunked-prefill-size unset: sglang sizes it from GPU memory, absent here

# kt:kt_kernel/utils/amx.py:26-27,329-340: AMXMoEWrapper needs these classes in the loaded build
AMX_CLASSES = {"AMXINT4": "AMXInt4_MOE", "AMXINT8": "AMXInt8_MOE"}
KT_THREAD = re.compile(r"numa_(\d+)_([mt])_(\d+)$")


class Refused(Exception):
    """An argv sglang-kt + kt-kernel would not serve with CPU experts."""


# --- 1. argv ---------------------------------------------------------------------------


def load_flag_table(path: str | Path | None = None):
    """The sglang-kt flag table stage.py wrote (server_flags.FlagTable)."""
    import server_flags  # staged next to this file (tests/oracle/server_flags.py)

    path = Path(path or os.environ.get("KTFLEET_KTSERVER_FLAGS") or HERE / "sglang-kt-flags.json")
    data = json.loads(path.read_text())
    table = server_flags.FlagTable(data["source"], data["module"])
    for raw in data["flags"]:
        raw["names"] = tuple(raw["names"])
        if raw["choices"] is not None:
            raw["choices"] = tuple(raw["choices"])
        flag = server_flags.Flag(**raw)
        for name in flag.names:
            table.flags[name] = flag
    return table


def parse_argv(argv: list[str], table):
    """argv as sglang-kt's parser reads it; SystemExit(2) with its usage error when it would refuse."""
    parser = table.parser()
    if "-h" in argv or "--help" in argv:
        parser.print_help()
        raise SystemExit(0)
    try:
        return table.parse(argv)
    except ValueError as err:
        parser.error(str(err))  # argparse: usage + "error: ..." on stderr, exit 2


def inference_methods(kt_dir: Path | None = None) -> frozenset[str]:
    """kt_kernel/experts.py:33 INFERENCE_METHODS, read from the staged file (it imports torch)."""
    tree = ast.parse(((kt_dir or HERE / "kt_kernel") / "experts.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "INFERENCE_METHODS" for t in node.targets):
            return frozenset(ast.literal_eval(node.value.args[0]))  # frozenset([...])
    raise Refused("kt_kernel/experts.py defines no INFERENCE_METHODS")


def kt_plan(ns) -> dict:
    """What sglang-kt hands kt-kernel for these args (kt_ep_wrapper.py:4798-4806), or Refused."""
    where = "sglang_kt-0.7.2:sglang/srt/layers/moe/kt_ep_wrapper.py"
    if ns.kt_weight_path is None:
        raise Refused(f"no --kt-weight-path: {where}:4776 builds no KT config, so SGLang would run "
                      "without kt-kernel (no CPU experts)")
    if ns.kt_num_gpu_experts is None and ns.kt_gpu_experts_ratio is None:
        raise Refused(f"neither --kt-num-gpu-experts nor --kt-gpu-experts-ratio: {where}:4614-4616 "
                      "('Either kt_num_gpu_experts or kt_gpu_experts_ratio is required but not set') "
                      "builds no KT config, so SGLang would run without kt-kernel (no CPU experts)")
    if ns.kt_cpuinfer is None:
        raise Refused("no --kt-cpuinfer: kt_kernel/experts_base.py:333 divides it by --kt-threadpool-count")
    pools = ns.kt_threadpool_count
    if pools is None or pools < 1 or ns.kt_cpuinfer < 1:
        raise Refused(f"--kt-cpuinfer {ns.kt_cpuinfer} --kt-threadpool-count {pools}: need at least one of each")
    method = ns.kt_method  # as sglang-kt passes it on (kt_ep_wrapper.py:4806): experts.py compares it as is
    methods = inference_methods()
    if method not in methods:
        raise Refused(f"--kt-method {ns.kt_method}: kt_kernel/experts.py:206 knows only {sorted(methods)}")
    # kt_kernel/experts_base.py:325-336, verbatim in effect
    if ns.kt_numa_nodes is not None:
        if len(ns.kt_numa_nodes) != pools:
            raise Refused(f"numa_nodes length ({len(ns.kt_numa_nodes)}) must match threadpool_count ({pools}) "
                          "(kt_kernel/experts_base.py:326-329)")
        numa_map = list(ns.kt_numa_nodes)
    else:
        numa_map = list(range(pools))
    threads = [ns.kt_cpuinfer // pools + (1 if i < ns.kt_cpuinfer % pools else 0) for i in range(pools)]
    return {"method": method, "numa_map": numa_map, "thread_count": threads,
            "max_len": ns.chunked_prefill_size or DEFAULT_MAX_LEN}


# --- 2. pools ----------------------------------------------------------------------------


def load_extension(kt_dir: Path | None = None):
    """kt-kernel's CPU extension, chosen and loaded by its own kt_kernel/_cpu_detect.py.

    kt_kernel/__init__.py:40-58 does this and then imports torch (experts.py:21); this loads
    _cpu_detect.py alone by path and registers the module as __init__.py:54 does.
    """
    kt_dir = kt_dir or HERE / "kt_kernel"
    spec = importlib.util.spec_from_file_location("kt_kernel_cpu_detect", kt_dir / "_cpu_detect.py")
    if spec is None or spec.loader is None:
        raise Refused(f"no kt-kernel at {kt_dir} (run stage.py)")
    detect = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(detect)
    ext, variant = detect.initialize()
    sys.modules["kt_kernel_ext"] = ext
    return ext, variant


def build_pools(ext, plan: dict):
    """kt_kernel/experts_base.py:323-341: one WorkerPoolConfig, one CPUInfer."""
    config = ext.WorkerPoolConfig()
    config.subpool_count = len(plan["numa_map"])
    config.subpool_numa_map = plan["numa_map"]
    config.subpool_thread_count = plan["thread_count"]
    return ext.CPUInfer(config)


def kt_threads(pid: int | str = "self") -> list[dict]:
    """kt-kernel's pool threads of a process: name, tid, Cpus_allowed_list (/proc/<pid>/task)."""
    out = []
    for task in sorted(glob.glob(f"/proc/{pid}/task/*"), key=lambda p: int(p.rsplit("/", 1)[1])):
        try:
            comm = Path(task, "comm").read_text().strip()
            status = Path(task, "status").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        match = KT_THREAD.match(comm)
        if match:
            cpus = re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.M).group(1)
            out.append({"name": comm, "tid": int(task.rsplit("/", 1)[1]), "node": int(match.group(1)),
                        "role": match.group(2), "index": int(match.group(3)), "cpus": cpus})
    return out


# --- 3. weights --------------------------------------------------------------------------

_BF16_HIGH = bytes((b & 0x80) | 0x3C for b in range(256))  # sign kept, exponent ~2^-7: no inf/NaN


def random_bf16(count: int) -> bytearray:
    """``count`` random BF16 values of magnitude 2^-7..2^-6 (little-endian: odd bytes hold sign+exponent)."""
    buf = bytearray(os.urandom(2 * count))
    buf[1::2] = buf[1::2].translate(_BF16_HIGH)
    return buf


def random_bf16_mapped(count: int, items: int) -> mmap.mmap:
    """``items`` x ``count`` random BF16 values in an anonymous mapping (unmapped on close()).

    The source copy of the weights lives only until kt-kernel has made its own: a mapping gives
    its pages back when closed, where freed heap would stay resident and be counted per node.
    """
    mapped = mmap.mmap(-1, 2 * count * items)
    for i in range(items):
        mapped[2 * count * i:2 * count * (i + 1)] = random_bf16(count)
    return mapped


def address(buf) -> int:
    """The buffer's address, as torch's data_ptr() gives it to kt-kernel (amx.py:842)."""
    if isinstance(buf, bytearray | mmap.mmap):
        return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
    return ctypes.addressof(buf)


class Model:
    """A stack of kt-kernel MoE layers with random BF16 experts, on the pools of ``cpu_infer``."""

    def __init__(self, ext, cpu_infer, max_len: int, mib: int, layers: int):
        self.ext, self.cpu_infer, self.max_len = ext, cpu_infer, max_len
        expert_bytes = 3 * HIDDEN * INTERMEDIATE * 2  # gate, up [I, H] and down [H, I], BF16
        self.layers = max(1, layers)
        self.experts = max(TOP_K, (mib << 20) // (self.layers * expert_bytes))
        self.weight_bytes = self.layers * self.experts * expert_bytes
        # kt:kt_kernel/experts_base.py:429-431: no GPU here, every expert runs on the CPU pools
        self.gpu_mask = (ctypes.c_uint8 * self.experts)()
        # sg:kt_ep_wrapper.py:5406-5408: identity physical -> logical map without EPLB metadata
        self.p2l = (ctypes.c_int64 * self.experts)(*range(self.experts))
        self.moes = [self._layer(i) for i in range(self.layers)]
        self.embed = random_bf16(VOCAB * HIDDEN)
        rows = min(PREFILL_CAP, max_len)
        self.hidden = [random_bf16(rows * HIDDEN), random_bf16(rows * HIDDEN)]
        self.ids = (ctypes.c_int64 * (rows * TOP_K))()
        self.weights = (ctypes.c_float * (rows * TOP_K))()
        self.qlen = (ctypes.c_int32 * 1)()

    def _layer(self, index: int):
        moe_mod = self.ext.moe
        # kt:kt_kernel/utils/amx.py:857-866
        config = moe_mod.MOEConfig(self.experts, TOP_K, HIDDEN, INTERMEDIATE, address(self.gpu_mask))
        config.layer_idx = index
        config.pool = self.cpu_infer.backend_
        config.max_len = self.max_len
        config.swiglu_limit = 0.0
        # amx.py:840-850, 886-892: [numa][expert] pointers, one numa row; BF16 has no scales
        size = INTERMEDIATE * HIDDEN  # gate, up [I, H]; down [H, I]
        sources = [random_bf16_mapped(size, self.experts) for _ in range(3)]
        gate, up, down = ([base + 2 * size * e for e in range(self.experts)] for base in map(address, sources))
        config.gate_projs, config.up_projs, config.down_projs = [gate], [up], [down]
        config.gate_scales = config.up_scales = config.down_scales = [[0] * self.experts]
        # amx.py:1009-1015: AMXBF16_MOE where compiled in, else AVX2BF16_MOE
        cls = getattr(moe_mod, "AMXBF16_MOE", None) or moe_mod.AVX2BF16_MOE
        moe = cls(config)
        self.cpu_infer.submit(moe.load_weights_task(address(self.p2l)))  # amx.py:1018-1019
        self.cpu_infer.sync()
        self.operator = cls.__name__
        for source in sources:  # amx.py:1022-1024: kt-kernel holds its own copy now
            source.close()
        return moe

    def _forward(self, rows: int) -> bytearray:
        """One pass through every layer for ``rows`` tokens in hidden[0]; returns the last output."""
        self.qlen[0] = rows
        src, dst = self.hidden
        for layer, moe in enumerate(self.moes):
            for r in range(rows):  # the router: top-k experts and weights from the hidden state
                h = zlib.crc32(src[r * HIDDEN * 2:(r + 1) * HIDDEN * 2], layer)
                first = h % self.experts
                second = (first + 1 + (h >> 8) % (self.experts - 1)) % self.experts
                self.ids[r * TOP_K], self.ids[r * TOP_K + 1] = first, second
                self.weights[r * TOP_K], self.weights[r * TOP_K + 1] = 0.6, 0.4
            # kt:kt_kernel/experts_base.py:776-784 (submit_forward: forward_task), then sync as :861
            self.cpu_infer.submit(moe.forward_task(address(self.qlen), TOP_K, address(self.ids),
                                                   address(self.weights), address(src), address(dst), False))
            self.cpu_infer.sync()
            src, dst = dst, src
        return src

    def _embed(self, tokens: list[int]) -> None:
        row = HIDDEN * 2
        for r, token in enumerate(tokens):
            self.hidden[0][r * row:(r + 1) * row] = self.embed[token * row:(token + 1) * row]

    def generate(self, prompt: str, n: int):
        """Yield ``n`` token ids: one prefill pass over the prompt, then one decode pass per token."""
        tokens = [b % VOCAB for b in prompt.encode()][-min(PREFILL_CAP, self.max_len):] or [0]
        self._embed(tokens)
        out = self._forward(len(tokens))
        last = out[(len(tokens) - 1) * HIDDEN * 2:len(tokens) * HIDDEN * 2]
        for step in range(n):
            token = zlib.crc32(last, step) % VOCAB  # the position mixed in: no fixed point
            yield token
            self._embed([token])
            last = self._forward(1)[:HIDDEN * 2]


def token_text(token: int) -> str:
    return f" t{token}"


# --- 4, 5. serving, the run record -------------------------------------------------------


def process_age() -> float:
    """Seconds since this process started (/proc/self/stat starttime against /proc/uptime)."""
    start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    return float(Path("/proc/uptime").read_text().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")


def serve(argv: list[str]) -> None:
    ns = parse_argv(argv, load_flag_table())
    plan = kt_plan(ns)
    ext, variant = load_extension()
    if plan["method"] in AMX_CLASSES and getattr(ext.moe, AMX_CLASSES[plan["method"]], None) is None:
        raise Refused(f"{plan['method']} backend not available on this CPU (kt-kernel variant {variant}): "
                      "kt_kernel/utils/amx.py:329-340 needs AVX512F + AVX512BW")
    cpu_infer = build_pools(ext, plan)
    mib = int(os.environ.get("KTFLEET_KTSERVER_MIB", "24"))
    model = Model(ext, cpu_infer, plan["max_len"], mib, int(os.environ.get("KTFLEET_KTSERVER_LAYERS", "2")))
    name = (ns.served_model_name or ns.model_path or "model")
    lock = threading.Lock()  # one request at a time through the one CPUInfer queue

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path == "/health":
                self._reply(200, {"status": "ok"})
            elif self.path == "/v1/models":
                self._reply(200, {"object": "list", "data": [{"id": name, "object": "model"}]})
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self):  # noqa: N802
            if self.path != "/v1/completions":
                self._reply(404, {"error": "not found"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                n = int(body.get("max_tokens", 16))
                prompt = str(body.get("prompt", ""))
            except (ValueError, TypeError) as err:
                self._reply(400, {"error": f"bad request: {err}"})
                return
            usage = {"prompt_tokens": max(1, min(len(prompt.encode()), PREFILL_CAP)), "completion_tokens": n}
            usage["total_tokens"] = usage["prompt_tokens"] + n
            with lock:
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for token in model.generate(prompt, n):
                        chunk = {"object": "text_completion", "model": name,
                                 "choices": [{"index": 0, "text": token_text(token), "finish_reason": None}]}
                        self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                        self.wfile.flush()
                    tail = {"object": "text_completion", "model": name, "choices": [], "usage": usage}
                    self.wfile.write(b"data: " + json.dumps(tail).encode() + b"\n\ndata: [DONE]\n\n")
                    self.wfile.flush()
                else:
                    text = "".join(token_text(t) for t in model.generate(prompt, n))
                    self._reply(200, {"object": "text_completion", "model": name, "usage": usage,
                                      "choices": [{"index": 0, "text": text, "finish_reason": "length"}]})

        def _reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # keep the journal quiet
            pass

    httpd = ThreadingHTTPServer((ns.host, ns.port), Handler)
    record = {
        "module": MODULE,
        "argv": argv,
        "pid": os.getpid(),
        "prefix": sys.prefix,
        "failing": False,
        "tokens_per_second": None,  # measured by the client: real compute, no configured curve
        "environment": {k: v for k, v in os.environ.items() if k.startswith(("SGLANG_", "KTFLEET_", "KT_"))},
        "server": "ktserver",
        "kt_kernel": {
            "variant": variant,
            "operator": model.operator,
            "method": plan["method"],
            "subpool_numa_map": plan["numa_map"],
            "subpool_thread_count": plan["thread_count"],
            "max_len": plan["max_len"],
            "threads": kt_threads(),
        },
        "model": {"layers": model.layers, "experts": model.experts, "top_k": TOP_K, "hidden": HIDDEN,
                  "intermediate": INTERMEDIATE, "weight_bytes": model.weight_bytes},
        "startup_seconds": round(process_age(), 2),
    }
    with open("standin-run.json", "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1)
    print(f"ktserver: serving {name} on {ns.host}:{ns.port}: kt-kernel {variant}, {model.operator}, "
          f"pools {plan['numa_map']} x {plan['thread_count']} threads, {model.weight_bytes >> 20} MiB experts, "
          f"ready in {record['startup_seconds']} s", flush=True)
    httpd.serve_forever()


def main(argv: list[str]) -> int:
    try:
        serve(argv)
    except Refused as err:
        print(f"{MODULE}: error: {err}", file=sys.stderr)
        return 1
    return 0
