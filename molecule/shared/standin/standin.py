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
* fails its health check (HTTP 503) when a file ``standin-fail`` sits in its
  virtual environment (sys.prefix): the fault scenario's broken release.
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _arg(argv: list[str], *names: str, default: str | None = None) -> str | None:
    for name in names:
        if name in argv and argv.index(name) + 1 < len(argv):
            return argv[argv.index(name) + 1]
    return default


def serve(module: str, argv: list[str]) -> None:
    host = _arg(argv, "--host", default="127.0.0.1")
    port = int(_arg(argv, "--port", default="30000"))
    model = _arg(argv, "--served-model-name", "--model", "--model_path", default="model")
    failing = os.path.exists(os.path.join(sys.prefix, "standin-fail"))
    ballast = bytearray(int(os.environ.get("KTFLEET_STANDIN_MIB", "32")) * 1024 * 1024)
    for i in range(0, len(ballast), 4096):  # touch every page so it is resident
        ballast[i] = 1
    record = {
        "module": module,
        "argv": argv,
        "pid": os.getpid(),
        "prefix": sys.prefix,
        "failing": failing,
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
