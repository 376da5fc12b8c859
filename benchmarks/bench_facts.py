#!/usr/bin/env python3
"""How fast is ktfleet.numa.numa_facts, next to hwloc's lstopo and Ansible's setup?

1. gather() in process (median of many runs) against one whole
   ``HWLOC_FSROOT=<root> lstopo-no-graphics --of xml`` run (plain
   ``lstopo-no-graphics --of xml`` for this machine's ``/``), on the two largest
   dumps, a small one and the live host; both must agree on the NUMA node and
   PU counts (read from the XML).
2. The whole module through Ansible (``ansible localhost -m
   ktfleet.numa.numa_facts``) against ``ansible localhost -m ansible.builtin.setup
   -a gather_subset=hardware``.

Prints a Markdown table and writes it to benchmarks/results-facts.md.
Run from anywhere: ``.venv/bin/python benchmarks/bench_facts.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / ".collections"))

from ansible_collections.ktfleet.numa.plugins.module_utils.topology import gather  # noqa: E402

TOPOLOGIES = REPO.parent / "shared" / "topologies"
DUMPS = ["256ia64-64n2s2c", "256ppc-8n8s4t", "8em64t-4c2t"]
BIN = Path(sys.executable).parent
LSTOPO = shutil.which("lstopo-no-graphics") or "lstopo-no-graphics"
HYPERFINE = shutil.which("hyperfine")


def time_gather(root: str, runs: int) -> float:
    """Median seconds of gather(root) in this process (after one warm-up)."""
    gather(root, gpu_memory=False)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        gather(root, gpu_memory=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_command(cmd: list[str], env: dict, runs: int, warmup: int = 1) -> float:
    """Median wall seconds of a whole command: hyperfine when installed, else a loop."""
    if HYPERFINE:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run(
                [HYPERFINE, "--shell=none", "--style=none", f"--warmup={warmup}", f"--runs={runs}",
                 "--export-json", out.name, subprocess.list2cmdline(cmd)],
                env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            return json.loads(Path(out.name).read_text())["results"][0]["median"]
    for _ in range(warmup):
        subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def lstopo_env(root: str) -> dict:
    env = dict(os.environ)
    env.pop("HWLOC_FSROOT", None)
    if root != "/":
        env["HWLOC_FSROOT"] = root
    return env


def hwloc_counts(root: str) -> tuple[int, int]:
    """(NUMA nodes, PUs) in lstopo's XML for root."""
    xml = subprocess.run(
        [LSTOPO, "--of", "xml"], env=lstopo_env(root), capture_output=True, text=True, check=True
    ).stdout
    return len(re.findall(r'<object type="NUMANode"', xml)), len(re.findall(r'<object type="PU"', xml))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results-facts.md"))
    args = parser.parse_args()
    gather_runs, lstopo_runs, ansible_runs = (20, 5, 2) if args.quick else (200, 30, 8)

    lines = [
        "# numa_facts benchmark",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}: {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {subprocess.run([LSTOPO, '--version'], capture_output=True, text=True).stdout.strip()}"
        f", {'hyperfine' if HYPERFINE else 'subprocess loop'} for whole commands.",
        "",
        "## gather() in process vs one `lstopo-no-graphics --of xml` run",
        "",
        f"gather(): median of {gather_runs} runs in one process; lstopo: median of {lstopo_runs} whole runs.",
        "",
        "| root | gather() ms | lstopo ms | gather/lstopo | NUMA nodes (ours/hwloc) | PUs (ours/hwloc) | agree |",
        "| --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    disagreements = 0
    with tempfile.TemporaryDirectory(prefix="bench-facts-") as tmp:
        roots = []
        for name in DUMPS:
            with tarfile.open(TOPOLOGIES / "machines" / f"{name}.tar.bz2") as tar:
                tar.extractall(tmp, filter="tar")
            roots.append((name, os.path.join(tmp, name)))
        roots.append(("live `/`", "/"))
        for label, root in roots:
            ours = gather(root, gpu_memory=False)
            nodes, pus = len(ours["nodes"]), len(ours["cpus_allowed"])
            hw_nodes, hw_pus = hwloc_counts(root)
            agree = (nodes, pus) == (hw_nodes, hw_pus)
            disagreements += not agree
            t_gather = time_gather(root, gather_runs)
            t_lstopo = time_command([LSTOPO, "--of", "xml"], lstopo_env(root), lstopo_runs)
            lines.append(
                f"| {label} | {ms(t_gather)} | {ms(t_lstopo)} | {t_gather / t_lstopo:.2f} | {nodes}/{hw_nodes} "
                f"| {pus}/{hw_pus} | {'yes' if agree else '**NO**'} |"
            )
            print(lines[-1], flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-facts-inv-") as tmp:
        inventory = Path(tmp) / "hosts.ini"
        inventory.write_text(
            f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        )
        env = dict(os.environ, ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_NOCOLOR="1")
        base = [str(BIN / "ansible"), "localhost", "-i", str(inventory)]
        t_module = time_command(base + ["-m", "ktfleet.numa.numa_facts"], env, ansible_runs)
        t_setup = time_command(
            base + ["-m", "ansible.builtin.setup", "-a", "gather_subset=hardware"], env, ansible_runs
        )
    lines += [
        "",
        "## The whole module through Ansible, on this machine",
        "",
        f"Median of {ansible_runs} whole `ansible localhost` runs (local connection), one warm-up each.",
        "",
        "| command | seconds | ratio to setup |",
        "| --- | ---: | ---: |",
        f"| `ansible localhost -m ktfleet.numa.numa_facts` | {t_module:.3f} | {t_module / t_setup:.2f} |",
        f"| `ansible localhost -m ansible.builtin.setup -a gather_subset=hardware` | {t_setup:.3f} | 1.00 |",
        "",
    ]
    print("\n".join(lines[-5:]))
    Path(args.output).write_text("\n".join(lines))
    print(f"\nwritten to {args.output}")
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
