"""Is the installed server the one the plan was made for? (stdlib only; runs on the host)

``probe`` asks the server's interpreter what is installed (package metadata, the
legacy extension's file) and what its launcher accepts (``--help``); ``judge`` decides
from that, and is what the tests call directly.

- sglang-kt: the ``sglang-kt`` distribution must be installed (upstream ``sglang`` has
  no ``--kt-*`` flags and fails at argparse); KTransformers' own ``kt`` CLI decides the
  same way: ``pip show sglang-kt`` proves the fork (kt_kernel/cli/utils/sglang_checker.py:46-52
  in kt_kernel-0.7.2), and it probes ``python -m sglang.launch_server --help`` for a kt
  flag (sglang_checker.py:324-333). Here every flag the plan passes must be in ``--help``,
  and sglang-kt and kt-kernel must be the pinned versions.
- legacy: ``ktransformers`` at the pinned version, with ``ktransformers.server.main`` (no
  0.4+ wheel has it), every planned flag in its ``--help``, and the build the plan needs:
  CMake links libnuma into ``cpuinfer_ext`` only for a ``USE_NUMA`` build
  (ktransformers_ext/CMakeLists.txt:234-250 in ktransformers-0.2.1.post1), so the
  extension naming ``libnuma.so`` tells a multi-NUMA build. Without the extension's file
  that cannot be told: a warning, not a refusal.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence

# Run by the server's interpreter: what is installed, without importing the server.
PROBE = r"""
import glob, importlib.metadata as md, importlib.util as iu, json, os, sys
names = ("sglang-kt", "sglang", "kt-kernel", "ktransformers")
dists = {}
for name in names:
    try:
        dists[name] = md.version(name)
    except md.PackageNotFoundError:
        pass
def found(module):
    try:
        return iu.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
ext = None
for entry in sys.path:
    hits = sorted(glob.glob(os.path.join(entry or ".", "cpuinfer_ext*.so")))
    if hits:
        ext = hits[0]
        break
print(json.dumps({"dists": dists, "modules": {m: found(m) for m in ("sglang.launch_server", "ktransformers.server.main")},
                  "cpuinfer_ext": ext}))
"""

LAUNCHERS = {"sglang-kt": "sglang.launch_server", "legacy": "ktransformers.server.main"}
HELP_TIMEOUT = 90  # kt's own probe allows 90 s (slow CUDA init), sglang_checker.py:326

Runner = Callable[[list[str], int], tuple[int, str]]


def _run(argv: list[str], timeout: int) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return 127, f"{argv[0]}: not found"
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout} s"
    return done.returncode, done.stdout + done.stderr


def probe(python: str, backend: str, run: Runner = _run) -> dict:
    """What the host's server interpreter has: ``{dists, modules, cpuinfer_ext, libnuma, help_rc, help}``."""
    rc, out = run([python, "-c", PROBE], 60)
    if rc != 0:
        return {"error": f"{python} could not be asked what is installed (exit {rc}): {out.strip()[-300:]}"}
    try:
        found = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"{python} gave no answer the check understands: {out.strip()[-300:]}"}
    ext = found.get("cpuinfer_ext")
    found["libnuma"] = None
    if ext:
        try:
            with open(ext, "rb") as fh:
                found["libnuma"] = b"libnuma.so" in fh.read()
        except OSError:
            pass
    found["help_rc"], found["help"] = run([python, "-m", LAUNCHERS[backend], "--help"], HELP_TIMEOUT)
    return found


def planned_flags(server_args: Sequence[str]) -> list[str]:
    """The flags the plan passes (``--kt-numa-nodes``; ``--x=1`` counts as ``--x``)."""
    return sorted({word.split("=", 1)[0] for word in server_args if re.match(r"^--[A-Za-z0-9]", word)})


def judge(
    backend: str,
    found: Mapping,
    server_args: Sequence[str],
    versions: Mapping[str, str],
    numa_build: bool | None,
    python: str = "the server's python",
) -> tuple[list[str], list[str]]:
    """(errors, warnings): each error says what is wrong and the remedy."""
    if "error" in found:
        return [f"{found['error']}; install the server (ktfleet_install: true) or point ktfleet_python at it"], []
    errors: list[str] = []
    warnings: list[str] = []
    dists = found.get("dists") or {}
    pins = ", ".join(f"{k}=={v}" for k, v in versions.items())
    if backend == "sglang-kt":
        if "sglang-kt" not in dists:
            other = f"upstream sglang {dists['sglang']}" if "sglang" in dists else "no SGLang"
            errors.append(
                f"{python} has {other}, not the sglang-kt fork: upstream SGLang has no --kt-* flags and fails at argparse "
                f"(kt's own check: kt_kernel/cli/utils/sglang_checker.py); install {pins} (ktfleet_install: true)"
            )
    elif not (found.get("modules") or {}).get("ktransformers.server.main"):
        have = f"ktransformers {dists['ktransformers']}" if "ktransformers" in dists else "no ktransformers"
        errors.append(
            f"{python} has {have} without ktransformers.server.main (no 0.4+ release has the legacy server); "
            f"install a 0.2/0.3 release: {pins}, or ktfleet_legacy_package (a wheel file, URL or requirement)"
        )
    for name, want in versions.items():
        have = dists.get(name)
        if have is not None and have != want:
            errors.append(
                f"{name} {have} is installed but the plan was made for {name}=={want} (ktfleet_versions.{backend}); "
                "install the pinned release or pin the installed one"
            )
        elif have is None and not errors:
            errors.append(f"{name} is not installed in {python}; install {pins}")
    if not errors:
        errors += _flags(backend, found, server_args)
    if backend == "legacy" and numa_build is not None and not errors:
        built = found.get("libnuma")
        if built is None:
            warnings.append(
                "cannot tell whether the installed legacy server was built with USE_NUMA=1 (no cpuinfer_ext*.so on its "
                f"path); the plan needs a build {'with' if numa_build else 'without'} it (ktfleet_legacy_numa_build)"
            )
        elif built != numa_build:
            errors.append(
                f"the installed legacy server was built {'with' if built else 'without'} USE_NUMA=1 (its cpuinfer_ext "
                f"{'links' if built else 'does not link'} libnuma) but the plan needs a build {'with' if numa_build else 'without'} it: "
                + (
                    "rebuild from source with USE_NUMA=1 set (export USE_NUMA=1; pip install --no-binary ktransformers ...), "
                    "or set ktfleet_legacy_numa_build: false (one copy: bind or interleave)"
                    if numa_build
                    else "install a build without USE_NUMA, or set ktfleet_legacy_numa_build: true (a copy per node)"
                )
            )
    return errors, warnings


def _flags(backend: str, found: Mapping, server_args: Sequence[str]) -> list[str]:
    launcher = LAUNCHERS[backend]
    text = found.get("help") or ""
    if found.get("help_rc") != 0:
        return [f"python -m {launcher} --help failed (exit {found.get('help_rc')}): {text.strip()[-300:]}"]
    accepted = set(re.findall(r"(?<![\w-])--[A-Za-z0-9][A-Za-z0-9_-]*", text))
    missing = [flag for flag in planned_flags(server_args) if flag not in accepted]
    if missing:
        return [
            f"python -m {launcher} --help lacks {' '.join(missing)}, which the plan passes: the server would fail at "
            "argparse; install the release the plan was made for (ktfleet_versions) or drop them from ktfleet_server_extra_args"
        ]
    return []
