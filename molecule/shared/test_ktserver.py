"""The kt-kernel test server (ktserver/) on this host: argv refusals, real pools, pinning, weights, HTTP.

Stages the server with stage.py (the pinned kt-kernel wheel's AVX2 build, sglang-kt's flag table)
into a temporary directory and runs ``python -m sglang.launch_server`` from it, as a VM's venv
would. Needs the cached wheels (tests/oracle/wheels.py) and an AVX2 CPU; skips otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "ktserver"), str(HERE.parents[1] / "tests" / "oracle")]
import ktserver  # noqa: E402
import server_flags  # noqa: E402
import stage  # noqa: E402
import wheels  # noqa: E402

BASE = ["--model-path", "/usr/share/doc", "--kt-weight-path", "/usr/share/doc", "--kt-method", "BF16"]
POOLS = ["--kt-cpuinfer", "2", "--kt-threadpool-count", "1", "--kt-numa-nodes", "0", "--kt-num-gpu-experts", "1"]


def _avx2() -> bool:
    try:
        return " avx2" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _avx2(), reason="kt-kernel's AVX2 build needs an AVX2 CPU")


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    try:
        return stage.stage(tmp_path_factory.mktemp("ktserver"))
    except wheels.WheelError as err:
        pytest.skip(f"the pinned wheels are not available: {err}")


def _env(staged: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KT_", "KTFLEET_KTSERVER"))}
    env["PYTHONPATH"] = str(staged)
    # kt-kernel's pin of each new pool thread races with that thread's own hwloc topology load
    # (hwloc's x86 discovery binds the calling thread to every PU in turn, then restores the
    # binding it saved: a pin set in between is lost; strace shows it). Without the x86
    # component hwloc reads the same topology from sysfs and never rebinds, so the pins asserted
    # here are kt-kernel's own, every run. README: "The kt-kernel test server".
    env["HWLOC_COMPONENTS"] = "-x86"
    return env


def _launch(staged: Path, argv: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sglang.launch_server", *argv], cwd=cwd, env=_env(staged),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _refused(staged: Path, argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    proc = _launch(staged, argv, tmp_path)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (tmp_path / "standin-run.json").exists(), "a refused argv must not start serving"
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_stage_extracts_only_the_avx2_path(staged):
    kt = sorted(p.name for p in (staged / "kt_kernel").iterdir())
    assert [n for n in kt if n.endswith(".so")] == ["_kt_kernel_ext_avx2.cpython-311-x86_64-linux-gnu.so"]
    assert {"__init__.py", "_cpu_detect.py", "experts.py", "experts_base.py"} <= set(kt)
    libs = sorted(p.name.split("-")[0] for p in (staged / "kt_kernel.libs").iterdir())
    assert libs == ["libgomp", "libhwloc", "libmvec", "libnuma", "libudev"]
    size = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file())
    assert size < 8 << 20, size  # what a VM image carries for it


def test_flag_table_is_the_wheels(staged):
    """The staged table rebuilds exactly the flags tests/oracle/server_flags.py reads from the wheel."""
    staged_table = ktserver.load_flag_table(staged / stage.FLAGS_FILE)
    wheel_table = server_flags.sglang_kt()
    assert [dataclasses.asdict(f) for f in staged_table.unique()] == [dataclasses.asdict(f) for f in wheel_table.unique()]
    assert staged_table["--kt-numa-nodes"].nargs == "+"


@pytest.mark.parametrize(("extra", "message"), [
    (["--kt-no-such-flag", "1"], "unrecognized arguments: --kt-no-such-flag 1"),
    (["--kt-cpuinfer", "two"], "argument --kt-cpuinfer: invalid int value: 'two'"),
])
def test_argv_sglang_refuses(staged, tmp_path, extra, message):
    got = _refused(staged, BASE + POOLS + extra, tmp_path)
    assert got.returncode == 2, got.stderr
    assert "usage: sglang.launch_server" in got.stderr
    assert f"sglang.launch_server: error: {message}" in got.stderr


def test_no_gpu_expert_count_is_plain_sglang(staged, tmp_path):
    """kt_ep_wrapper.py: no --kt-num-gpu-experts / --kt-gpu-experts-ratio -> no KT config (issue 12)."""
    line = wheels.cite("sglang-kt", "sglang/srt/layers/moe/kt_ep_wrapper.py",
                       "Either kt_num_gpu_experts or kt_gpu_experts_ratio is required but not set")
    assert line == 4615  # ktserver.kt_plan cites 4614-4616
    got = _refused(staged, BASE + POOLS[:-2], tmp_path)
    assert got.returncode == 1, got.stderr
    assert "neither --kt-num-gpu-experts nor --kt-gpu-experts-ratio" in got.stderr
    assert "kt_ep_wrapper.py:4614-4616" in got.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["--kt-cpuinfer", "2", "--kt-threadpool-count", "2", "--kt-numa-nodes", "0", "--kt-num-gpu-experts", "1"],
     "numa_nodes length (1) must match threadpool_count (2)"),
    (POOLS + ["--kt-method", "AMXINT4"], "AMXINT4 backend not available"),
    (POOLS + ["--kt-method", "bf16"], "--kt-method bf16: kt_kernel/experts.py:206 knows only"),
])
def test_kt_kernel_refuses(staged, tmp_path, argv, message):
    got = _refused(staged, BASE + argv, tmp_path)
    assert got.returncode == 1, got.stderr
    assert message in got.stderr


@pytest.mark.parametrize(("name", "member", "needle", "line"), [
    ("sglang-kt", "sglang/srt/layers/moe/kt_ep_wrapper.py", "if server_args.kt_weight_path is None:", 4776),
    ("sglang-kt", "sglang/srt/layers/moe/kt_ep_wrapper.py", "cpuinfer_threads=server_args.kt_cpuinfer,", 4801),
    ("sglang-kt", "sglang/srt/layers/moe/kt_ep_wrapper.py", "layer.num_experts, dtype=torch.int64", 5407),
    ("kt-kernel", "kt_kernel/experts_base.py", "worker_config = kt_kernel_ext.WorkerPoolConfig()", 323),
    ("kt-kernel", "kt_kernel/experts_base.py", "if len(numa_nodes) != threadpool_count:", 326),
    ("kt-kernel", "kt_kernel/experts_base.py", "cls._cpu_infer_instance = kt_kernel_ext.CPUInfer(worker_config)", 341),
    ("kt-kernel", "kt_kernel/experts_base.py", "def submit_forward(", 730),
    ("kt-kernel", "kt_kernel/experts.py", "INFERENCE_METHODS = frozenset(", 33),
    ("kt-kernel", "kt_kernel/experts.py", "if method not in INFERENCE_METHODS:", 206),
    ("kt-kernel", "kt_kernel/utils/amx.py", 'if method == "AMXINT4" and not _HAS_AMXINT4_SUPPORT:', 329),
    ("kt-kernel", "kt_kernel/utils/amx.py", "gate_ptrs = [[t.data_ptr() for t in self.gate_weights]]", 842),
    ("kt-kernel", "kt_kernel/utils/amx.py", "moe_config.swiglu_limit = self.swiglu_limit", 884),
    ("kt-kernel", "kt_kernel/utils/amx.py", "self.moe = AVX2BF16_MOE(moe_config)", 1015),
])
def test_ktserver_cites_the_wheels(name, member, needle, line):
    """The wheel lines ktserver.py names still say what it relies on (a version bump re-checks them)."""
    assert wheels.cite(name, member, needle) == line


def test_help_lists_the_wheels_flags(staged, tmp_path):
    got = _refused(staged, ["--help"], tmp_path)
    assert got.returncode == 0
    assert "--kt-numa-nodes KT_NUMA_NODES [KT_NUMA_NODES ...]" in got.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _serving(staged: Path, argv: list[str], cwd: Path):
    """A running server (its record read) for the block; stopped by its own pid/process group after."""
    port = _free_port()
    argv = argv + ["--host", "127.0.0.1", "--port", str(port)]
    proc = _launch(staged, argv, cwd, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        record = cwd / "standin-run.json"
        while not record.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start (rc {proc.poll()}): {proc.stderr.read() if proc.poll() is not None else ''}")
            time.sleep(0.2)
        time.sleep(0.2)  # written before serve_forever(); the socket is bound already
        yield {"proc": proc, "argv": argv, "url": f"http://127.0.0.1:{port}", "record": json.loads(record.read_text())}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def server(staged, tmp_path_factory):
    with _serving(staged, BASE + POOLS, tmp_path_factory.mktemp("state")) as running:
        yield running


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def test_serves_health_models_and_a_streamed_completion(server):
    assert _get(server["url"] + "/health") == {"status": "ok"}
    assert _get(server["url"] + "/v1/models")["data"][0]["id"] == "/usr/share/doc"
    body = json.dumps({"prompt": "The capital of France is", "max_tokens": 6, "stream": True}).encode()
    req = urllib.request.Request(server["url"] + "/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        events = [line[6:] for line in resp.read().decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    texts = [c["choices"][0]["text"] for c in chunks if c["choices"]]
    assert len(texts) == 6 and all(re.fullmatch(r" t\d+", t) for t in texts)
    assert chunks[-1]["usage"]["completion_tokens"] == 6


def _node_cores(node: int) -> list[list[int]]:
    """The node's cores in hwloc's order (by first PU), each its PUs, from sysfs."""
    cpus = _cpulist(Path(f"/sys/devices/system/node/node{node}/cpulist").read_text())
    cores: dict[tuple[str, str], list[int]] = {}
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        key = ((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip())
        cores.setdefault(key, []).append(cpu)
    return sorted((sorted(c) for c in cores.values()), key=lambda c: c[0])


def _cpulist(text: str) -> list[int]:
    out = []
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def test_pool_threads_pinned_one_core_each(server):
    """worker_pool.cpp: numa_<node>_m_<i> / numa_<node>_t_<i> bound to the i-th core of the node, one PU."""
    threads = ktserver.kt_threads(server["proc"].pid)
    assert sorted(t["name"] for t in threads) == ["numa_0_m_0", "numa_0_t_1"]
    cores = _node_cores(0)
    if len(cores) < 2:
        pytest.skip(f"node 0 has {len(cores)} core(s): kt-kernel leaves the second thread unbound")
    for t in threads:
        assert t["cpus"] == str(cores[t["index"]][0]), (t, cores)
    assert server["record"]["kt_kernel"]["threads"] == threads


def test_two_pools_on_one_node_take_the_next_cores(staged, tmp_path):
    """WorkerPool::init counts thread ids per node: pool 1 on node 0 starts at core 1 (worker_pool.cpp)."""
    cores = _node_cores(0)
    if len(cores) < 2:
        pytest.skip(f"node 0 has {len(cores)} core(s)")
    argv = BASE + ["--kt-cpuinfer", "2", "--kt-threadpool-count", "2", "--kt-numa-nodes", "0", "0",
                   "--kt-num-gpu-experts", "1"]
    with _serving(staged, argv, tmp_path) as running:
        threads = {t["name"]: t["cpus"] for t in ktserver.kt_threads(running["proc"].pid)}
        kt = running["record"]["kt_kernel"]
    assert threads == {"numa_0_m_0": str(cores[0][0]), "numa_0_m_1": str(cores[1][0])}
    assert (kt["subpool_numa_map"], kt["subpool_thread_count"]) == ([0, 0], [1, 1])


def test_weights_on_node_zero(server):
    """kt-kernel's copy of the expert weights (moe-tp.hpp TP_MOE::load_weights) sits on the pool's node."""
    per_node: dict[int, int] = {}
    for line in Path(f"/proc/{server['proc'].pid}/numa_maps").read_text().splitlines():
        page = int(re.search(r"kernelpagesize_kB=(\d+)", line).group(1)) * 1024 if "kernelpagesize_kB" in line else 4096
        for node, pages in re.findall(r"\bN(\d+)=(\d+)", line):
            per_node[int(node)] = per_node.get(int(node), 0) + int(pages) * page
    weights = server["record"]["model"]["weight_bytes"]
    assert weights >= 16 << 20
    assert per_node.get(0, 0) >= weights, per_node
    assert set(per_node) == {0}  # this host has one node


def test_run_record(server):
    record = server["record"]
    assert record["module"] == "sglang.launch_server"
    assert record["argv"] == server["argv"]
    assert record["pid"] == server["proc"].pid
    assert record["prefix"] == sys.prefix
    kt = record["kt_kernel"]
    assert (kt["variant"], kt["operator"], kt["method"]) == ("avx2", "AVX2BF16_MOE", "BF16")
    assert (kt["subpool_numa_map"], kt["subpool_thread_count"]) == ([0], [2])
    assert record["startup_seconds"] > 0
