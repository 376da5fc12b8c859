"""The thread-count search (plugin_utils/tuning/tuning.py) on known curves, and the bench client on a real server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from planner_hosts import DEEPSEEK_V3_Q4KM, GB, NodeSpec, make_facts, seed_host

from ansible_collections.ktfleet.numa.plugins.module_utils import decode_bench
from ansible_collections.ktfleet.numa.plugins.plugin_utils.errors import PlanError
from ansible_collections.ktfleet.numa.plugins.plugin_utils.tuning import tuning

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "molecule" / "shared" / "standin"
sys.path.insert(0, str(STANDIN))
from standin import tokens_per_second  # noqa: E402  (test equipment, not shipped)

CURVE = {"knee": 7, "peak": 40.0, "drop": 0.15}
PATHS = {"model_path": "/srv/models/DeepSeek-V3", "weights_path": "/srv/gguf/DeepSeek-V3-Q4_K_M"}
MODEL = DEEPSEEK_V3_Q4KM | PATHS


def run_search(start, allowed, speed, **kw):
    """Drive next_threads like tune.yml does; return the table and the order measured."""
    table, order = [], []
    while (threads := tuning.next_threads(table, start, allowed, **kw)) is not None:
        order.append(threads)
        table.append({"threads": threads, "samples": [speed(threads)] * 3})
        assert len(order) < 100, "search does not end"
    return table, order


def test_search_finds_the_knee_of_a_rise_then_fall_curve():
    table, order = run_search(4, list(range(2, 10)), lambda t: tokens_per_second(t, CURVE))
    assert order == [4, 5, 6, 7, 8, 3]  # up past the knee, then one step down
    choice = tuning.choose(table, list(range(2, 10)), backoff=2)
    assert choice["knee"] == 7
    assert choice["chosen"] == 5
    assert "backing off 2" in choice["reason"]


def test_search_goes_down_when_fewer_threads_are_faster():
    # SMT-oversubscribed start: speed falls as threads rise
    table, order = run_search(6, list(range(1, 9)), lambda t: 30.0 - 3 * abs(t - 3))
    assert order == [6, 7, 5, 4, 3, 2]
    assert tuning.choose(table, list(range(1, 9)), backoff=0)["knee"] == 3


def test_plateau_within_tolerance_keeps_climbing():
    _table, order = run_search(2, [2, 3, 4, 5], lambda t: 20.0 + 0.1 * t, tolerance=0.03)
    assert order == [2, 3, 4, 5]


def test_step_and_allowed_counts_shape_the_ladder():
    # kt-kernel with 2 pools: only even counts are balanced
    _table, order = run_search(8, [2, 4, 6, 8, 10, 12], lambda t: tokens_per_second(t, {"knee": 10, "peak": 30}), step=2)
    assert order == [8, 10, 12, 6]


def test_resume_continues_from_saved_measurements():
    speed = lambda t: tokens_per_second(t, CURVE)  # noqa: E731
    saved = [{"threads": t, "samples": [speed(t)]} for t in (4, 5, 6)]
    assert tuning.next_threads(saved, 4, list(range(2, 10))) == 7


def test_noisy_single_dip_below_tolerance_is_not_a_knee():
    values = {3: 15.0, 4: 20.0, 5: 25.0, 6: 24.6, 7: 30.0, 8: 20.0}
    table, order = run_search(4, [3, 4, 5, 6, 7, 8], values.get)
    assert 7 in order  # 6 was 1.6 % below 5: within 3 %, keep going
    assert tuning.choose(table, [3, 4, 5, 6, 7, 8])["knee"] == 7


def test_backoff_never_leaves_the_allowed_counts():
    choice = tuning.choose([{"threads": 2, "median": 10.0}, {"threads": 3, "median": 9.0}], [2, 3], backoff=3)
    assert choice["chosen"] == 2
    assert "nothing smaller" in choice["reason"]


@pytest.mark.parametrize(
    ("call", "variable"),
    [
        (lambda: tuning.next_threads([], 4, [2, 3], step=1), "ktfleet_tune_start"),
        (lambda: tuning.next_threads([], 2, [2, 3], step=0), "ktfleet_tune_step"),
        (lambda: tuning.next_threads([], 2, [2, 3], tolerance=1.5), "ktfleet_tune_tolerance"),
        (lambda: tuning.choose([], [2, 3]), "ktfleet_tune_result"),
        (lambda: tuning.choose([{"threads": 2, "median": 1.0}], [2], backoff=-1), "ktfleet_tune_backoff"),
    ],
)
def test_bad_input_names_the_variable(call, variable):
    with pytest.raises(PlanError, match=f"^{variable}:"):
        call()


def test_space_on_the_seed_host_is_what_the_planner_accepts():
    facts = seed_host()  # 2 x 32 cores, SMT
    kt = tuning.space(facts, MODEL, "sglang-kt")
    assert kt[0] == 2 and kt[-1] == 64  # one thread per pool .. every physical core
    legacy = tuning.space(facts, MODEL | {"weights_bytes": 100 * GB}, "legacy", smt=True, policy="bind", nodes=[0])
    assert max(legacy) == 65  # 64 SMT threads of node 0 + the scheduling thread
    assert min(legacy) == 2


def test_space_drops_counts_whose_plan_does_not_fit():
    small = make_facts([NodeSpec(4, 8 * 1024**3)], gpus=())
    assert tuning.space(small, {"name": "m", "weights_bytes": 2 * GB} | PATHS, "legacy") != []
    too_big = {"name": "m", "weights_bytes": 64 * GB} | PATHS
    assert tuning.space(small, too_big, "legacy") == [tuning.planner.make_plan(small, too_big, "legacy").cpu_infer]


def test_table_text_marks_knee_and_choice():
    table = [{"threads": t, "median": tokens_per_second(t, CURVE)} for t in range(4, 9)]
    text = tuning.table_text(table, tuning.choose(table, list(range(2, 10))))
    assert "<- knee" in text.splitlines()[5] and "<- chosen" in text.splitlines()[3]


# --- the bench client against the stand-in server over real HTTP -------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def standin_server(tmp_path):
    def start(threads: int, curve: dict | None, *, healthy: bool = True):
        prefix = tmp_path / "venv"
        prefix.mkdir(exist_ok=True)
        if curve:
            (prefix / "standin-curve.json").write_text(__import__("json").dumps(curve))
        port = _free_port()
        code = (
            "import sys; sys.prefix = sys.argv.pop(1); sys.path.insert(0, sys.argv.pop(1)); "
            "from standin import serve; serve('sglang.launch_server', sys.argv[1:])"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(prefix), str(STANDIN), "--port", str(port), "--kt-cpuinfer", str(threads)],
            cwd=tmp_path,
        )
        servers.append(proc)
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if healthy:
                    decode_bench.served_model(url, timeout=1)
                else:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return url
            except (decode_bench.BenchError, OSError):
                time.sleep(0.05)
        raise RuntimeError("stand-in did not start")

    servers: list[subprocess.Popen] = []
    yield start
    for proc in servers:
        proc.kill()
        proc.wait()


def test_bench_measures_the_curve_speed(standin_server):
    url = standin_server(4, CURVE)  # 4 threads on the curve: 40 * 4/7 = 22.9 tokens/s
    result = decode_bench.bench(url, max_tokens=24, warmup=1, samples=3)
    # sleeps only get longer on a loaded machine: never faster than the curve, not much slower
    assert 0.6 * 40 * 4 / 7 <= result["median"] <= 1.05 * 40 * 4 / 7
    assert len(result["samples"]) == 3
    assert all(t >= 0.04 for t in result["time_to_first_token"])  # prefill excluded from the rate


def test_a_killed_standin_leaves_no_spinners_behind(standin_server):
    url = standin_server(2, CURVE)
    decode_bench.bench(url, max_tokens=4, warmup=0, samples=1)  # load: the spinners start
    port = int(url.rsplit(":", 1)[1])
    server = next(p for p in psutil.Process().children() if str(port) in p.cmdline())
    spinners = server.children()
    assert len(spinners) == 2
    server.kill()  # as the fixture and systemd's SIGKILL do: no clean-up in the server
    _gone, alive = psutil.wait_procs(spinners, timeout=5)
    assert not alive, f"spinners left running: {[p.pid for p in alive]}"


def test_bench_reports_a_failing_server_clearly(tmp_path, standin_server):
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "standin-fail").write_text("")
    url = standin_server(2, None, healthy=False)
    with pytest.raises(decode_bench.BenchError, match="503"):
        decode_bench.bench(url, model="m", max_tokens=4, warmup=0, samples=1)


def test_bench_refuses_nonsense_settings():
    with pytest.raises(decode_bench.BenchError, match="samples >= 1"):
        decode_bench.bench("http://127.0.0.1:1", model="m", samples=0)


def test_sse_parsing():
    assert decode_bench.parse_sse_line(b"data: [DONE]\n") is None
    assert decode_bench.parse_sse_line(b": keep-alive\n") is None
    assert decode_bench.chunk_has_text(decode_bench.parse_sse_line(b'data: {"choices":[{"delta":{"content":"x"}}]}'))
    with pytest.raises(decode_bench.BenchError, match="not JSON"):
        decode_bench.parse_sse_line(b"data: {oops")
    assert decode_bench.decode_rate([0.0, 0.5, 1.0], None) == pytest.approx(2.0)
    assert decode_bench.decode_rate([0.0, 1.0], 11) == pytest.approx(10.0)  # usage says 11 tokens in 2 chunks


# --- the filter shell -----------------------------------------------------------------------


def test_filters_wrap_bad_input_in_one_line_errors():
    from ansible.errors import AnsibleFilterError

    from ansible_collections.ktfleet.numa.plugins.filter import tune as tune_filters

    with pytest.raises(AnsibleFilterError, match=r"^ktfleet.numa.tune_next: ktfleet_tune_step: must be >= 1"):
        tune_filters.tune_next([], 4, [4, 5], step=0)
    with pytest.raises(AnsibleFilterError, match=r"^ktfleet.numa.tune_result: unusable input"):
        tune_filters.tune_result([{"median": 3.0}], [4])  # row without threads
    result = tune_filters.tune_result([{"threads": 4, "samples": [10, 11, 12]}], [2, 3, 4], backoff=1)
    assert result["chosen"] == 3 and "<- knee" in result["text"]
