"""Stand-in for the KTransformers servers inside the Molecule VMs (test equipment only).

There is no GPU and no model in CI, so this answers for the real server at the
same import path (``python -m sglang.launch_server`` / ``python -m
ktransformers.server.main``) under the unit ktfleet rendered, unchanged:

* records its exact argv, environment and pid to ``standin-run.json`` in the
  working directory (the unit's WorkingDirectory, ktfleet's state dir), so tests
  assert the real --kt-cpuinfer, --kt-threadpool-count, --kt-numa-nodes,
  --cpu_infer values;
* allocates and touches ``KTFLEET_STANDIN_MIB`` MiB (default 32) so its memory
  placement shows in /proc/<pid>/numa_maps;
* serves GET /health and /v1/models on --host/--port, as SGLang and the legacy
  server's OpenAI-compatible API do;
* answers ``--help`` with the flags the real release's argparse defines
  (``help/sglang-kt.txt``, ``help/legacy.txt``), and its venv carries the
  dist-info metadata of the release it stands in for (written by prepare.yml),
  so ktfleet's server check (``ktfleet.numa.server_check``) sees what it would
  on a real host; it has no ``cpuinfer_ext``, so the USE_NUMA build cannot be
  told (a warning);
* fails its health check (HTTP 503) when a file ``standin-fail`` sits in its
  virtual environment (sys.prefix): the fault scenario's broken release;
* answers POST /v1/completions (streamed or not) at a decode speed that follows
  a throughput curve over its thread count (--kt-cpuinfer / --cpu_infer): rising
  linearly to a known knee, then falling, as memory bandwidth saturates and
  threads contend on a real host. The curve is ``standin-curve.json`` in its
  virtual environment ({"knee": 7, "peak": 40.0, "drop": 0.15}; with "rise" the
  way up falls off by that fraction per thread too, and "floor" bounds both
  sides, default 0.1 of the peak); without it, a flat 50 tokens/s. While it generates, one spinning process per thread
  (pinned to the CPUs the unit allows it) makes the load visible to per-node
  CPU accounting, as kt-kernel's pools do.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import json
import multiprocessing
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _arg(argv: list[str], *names: str, default: str | None = None) -> str | None:
    for name in names:
        if name in argv and argv.index(name) + 1 < len(argv):
            return argv[argv.index(name) + 1]
    return default


def tokens_per_second(threads: int, curve: dict | None) -> float:
    """The decode speed the curve gives this thread count (test equipment's ground truth)."""
    if not curve:
        return 50.0
    knee, peak, drop = int(curve["knee"]), float(curve["peak"]), float(curve.get("drop", 0.15))
    floor = float(curve.get("floor", 0.1))
    if threads <= knee:
        if "rise" in curve:  # a peak sharper than the measuring noise of a busy emulated guest
            return peak * max(floor, 1.0 - float(curve["rise"]) * (knee - threads))
        return peak * threads / knee
    return peak * max(floor, 1.0 - drop * (threads - knee))


def _spin(cpu: int, busy) -> None:
    parent = os.getppid()
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {cpu})
    # 40% duty while busy: visible per node, yet leaves the (emulated) CPUs room to serve.
    # A server killed outright (SIGKILL skips multiprocessing's clean-up) must not leave its
    # spinners behind, idle or spinning: they stop once they are orphaned.
    while os.getppid() == parent:
        if not busy.wait(timeout=1.0):
            continue
        end = time.monotonic() + 0.004
        while time.monotonic() < end:
            pass
        time.sleep(0.006)


def _across_nodes(cpus: set[int]) -> list[int]:
    """The CPUs taken node by node in turn, so N threads spread like pools do."""
    per_node = []
    for path in sorted(glob.glob("/sys/devices/system/node/node*/cpulist")):
        with open(path, encoding="utf-8") as fh:
            node = [c for c in _cpulist(fh.read()) if c in cpus]
        if node:
            per_node.append(node)
    order = [c for group in itertools.zip_longest(*per_node) for c in group if c is not None]
    return order + sorted(cpus - set(order)) or sorted(cpus)


def _cpulist(text: str) -> list[int]:
    out = []
    for part in text.strip().split(","):
        if part:
            lo, _sep, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    return out


class _Load:
    """One spinning process per inference thread, spinning while any request runs.

    The processes live as long as the server (as kt-kernel's pools do), so a
    sampler that diffs per-process CPU time over a window sees them.
    """

    def __init__(self, threads: int) -> None:
        allowed = _across_nodes(os.sched_getaffinity(0))
        self.cpus = [allowed[i % len(allowed)] for i in range(max(1, threads))]
        self.lock = threading.Lock()
        self.users = 0
        self.busy = multiprocessing.Event()
        self.procs: list = []

    def __enter__(self):
        with self.lock:
            if not self.procs:
                self.procs = [multiprocessing.Process(target=_spin, args=(c, self.busy), daemon=True)
                              for c in self.cpus]
                for p in self.procs:
                    p.start()
            self.users += 1
            self.busy.set()
        return self

    def __exit__(self, *exc):
        with self.lock:
            self.users -= 1
            if self.users == 0:
                self.busy.clear()


def _help(module: str) -> None:
    """--help as the real launcher answers it: its flags (help/*.txt, taken from the release's own argparse)."""
    name = "sglang-kt" if module == "sglang.launch_server" else "legacy"
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "help", f"{name}.txt"), encoding="utf-8") as fh:
        flags = [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    print(f"usage: python -m {module} [-h] " + " ".join(f"[{flag} ...]" for flag in flags[:3]) + " ...")
    print("\noptions:\n  -h, --help  show this help message and exit")
    for flag in flags:
        print(f"  {flag}")


def serve(module: str, argv: list[str]) -> None:
    if "--help" in argv or "-h" in argv:
        _help(module)
        return
    host = _arg(argv, "--host", default="127.0.0.1")
    port = int(_arg(argv, "--port", default="30000"))
    model = _arg(argv, "--served-model-name", "--model", "--model_path", default="model")
    failing = os.path.exists(os.path.join(sys.prefix, "standin-fail"))
    threads = int(_arg(argv, "--kt-cpuinfer", "--cpu_infer", default="1"))
    curve_file = os.path.join(sys.prefix, "standin-curve.json")
    curve = None
    if os.path.exists(curve_file):
        with open(curve_file, encoding="utf-8") as fh:
            curve = json.load(fh)
    rate = tokens_per_second(threads, curve)
    load = _Load(threads)
    ballast = bytearray(int(os.environ.get("KTFLEET_STANDIN_MIB", "32")) * 1024 * 1024)
    for i in range(0, len(ballast), 4096):  # touch every page so it is resident
        ballast[i] = 1
    record = {
        "module": module,
        "argv": argv,
        "pid": os.getpid(),
        "prefix": sys.prefix,
        "failing": failing,
        "tokens_per_second": rate,
        "environment": {k: v for k, v in os.environ.items() if k.startswith(("SGLANG_", "KTFLEET_", "KT_"))},
    }
    with open("standin-run.json", "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            if failing:
                self._reply(503, {"error": "stand-in told to fail"})
            elif self.path == "/health":
                self._reply(200, {"status": "ok"})
            elif self.path == "/v1/models":
                self._reply(200, {"object": "list", "data": [{"id": model, "object": "model"}]})
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self):  # noqa: N802
            if failing:
                self._reply(503, {"error": "stand-in told to fail"})
                return
            if self.path != "/v1/completions":
                self._reply(404, {"error": "not found"})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            n = int(body.get("max_tokens", 16))
            with load:
                if body.get("stream"):
                    self._stream(n)
                else:
                    time.sleep(n / rate)
                    self._reply(200, {"object": "text_completion", "model": model,
                                      "choices": [{"index": 0, "text": " tok" * n, "finish_reason": "length"}],
                                      "usage": {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}})

        def _stream(self, n):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            time.sleep(0.05)  # prefill
            start = time.monotonic()
            for i in range(n):
                # on a schedule, not sleep-after-write: a late wake-up on a busy
                # (emulated) CPU must not slow every later token
                time.sleep(max(0.0, start + i / rate - time.monotonic()))
                chunk = {"object": "text_completion", "choices": [{"index": 0, "text": " tok", "finish_reason": None}]}
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                self.wfile.flush()
            usage = {"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}}
            self.wfile.write(b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n")
            self.wfile.flush()

        def _reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # keep the journal quiet
            pass

    ThreadingHTTPServer((host, port), Handler).serve_forever()
