#!/usr/bin/env python3
"""How fast is ktfleet.numa.numa_facts, next to hwloc's lstopo and Ansible's setup?

1. gather() in process (median of many runs), and the facts as a whole Python
   process (start-up included: what one module run pays at least), against one
   whole ``HWLOC_FSROOT=<root> lstopo-no-graphics --of xml`` run (plain
   ``lstopo-no-graphics --of xml`` for this machine's ``/``), on the two largest
   dumps, a small one and the live host; both must agree on the NUMA node and
   PU counts (read from the XML). The whole process and lstopo run interleaved
   in rounds; the ratio is the median of each round's own ratio.
2. The whole module through Ansible (``ansible localhost -m
   ktfleet.numa.numa_facts``) against ``ansible localhost -m ansible.builtin.setup
   -a gather_subset=hardware``, interleaved the same way.

Prints a Markdown table and writes it to benchmarks/results-facts.md.
Run from anywhere: ``.venv/bin/python benchmarks/bench_facts.py [--quick]``.
"""

from __future__ import annotations

import argparse
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


def time_gather(root: str, runs: int) -> float:
    """Median seconds of gather(root) in this process (after one warm-up)."""
    gather(root, gpu_memory=False)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        gather(root, gpu_memory=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def interleaved(commands: dict[str, tuple[list[str], dict]], rounds: int) -> dict[str, list[float]]:
    """Wall seconds of each command per round, one warm-up each; the order rotates
    every round so drift in the machine's load falls on every command alike."""
    names = list(commands)
    for cmd, env in commands.values():
        subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rnd in range(rounds):
        for name in names[rnd % len(names):] + names[: rnd % len(names)]:
            cmd, env = commands[name]
            started = time.perf_counter()
            subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True)
            times[name].append(time.perf_counter() - started)
    return times


def ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of a/b, each a against the b of its own round."""
    return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))


def spread_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} ({min(values) * 1000:.1f}-{max(values) * 1000:.1f})"


FACTS_PROCESS = (
    "import sys; sys.path.insert(0, sys.argv[2]); "
    "from ansible_collections.ktfleet.numa.plugins.module_utils.topology import gather; "
    "gather(sys.argv[1], gpu_memory=False)"
)


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
        f", whole commands timed in interleaved rounds; load average {os.getloadavg()[0]:.1f} at the start.",
        "",
        "## gather() in process vs one `lstopo-no-graphics --of xml` run",
        "",
        f"gather(): median of {gather_runs} runs in one process. Whole process (`python -c 'gather(root)'`, "
        f"interpreter start-up and imports included) and lstopo: {lstopo_runs} rounds, interleaved, "
        "median (min-max); ratios are medians of each round's own ratio.",
        "",
        "| root | gather() in process ms | facts as a process ms | lstopo ms | in process/lstopo "
        "| process/lstopo | NUMA nodes (ours/hwloc) | PUs (ours/hwloc) | agree |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
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
            times = interleaved({
                "process": ([sys.executable, "-c", FACTS_PROCESS, root, str(REPO / ".collections")], dict(os.environ)),
                "lstopo": ([LSTOPO, "--of", "xml"], lstopo_env(root)),
            }, lstopo_runs)
            t_lstopo = statistics.median(times["lstopo"])
            lines.append(
                f"| {label} | {ms(t_gather)} | {spread_ms(times['process'])} | {spread_ms(times['lstopo'])} "
                f"| {t_gather / t_lstopo:.2f} | {ratio(times, 'process', 'lstopo'):.2f} | {nodes}/{hw_nodes} "
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
        times = interleaved({
            "module": (base + ["-m", "ktfleet.numa.numa_facts"], env),
            "setup": (base + ["-m", "ansible.builtin.setup", "-a", "gather_subset=hardware"], env),
        }, ansible_runs)
    lines += [
        "",
        "## The whole module through Ansible, on this machine",
        "",
        f"{ansible_runs} rounds of whole `ansible localhost` runs (local connection), interleaved, one warm-up each; "
        "median (min-max) ms.",
        "",
        "| command | ms | ratio to setup (same round) |",
        "| --- | ---: | ---: |",
        f"| `ansible localhost -m ktfleet.numa.numa_facts` | {spread_ms(times['module'])} | "
        f"{ratio(times, 'module', 'setup'):.2f} |",
        f"| `ansible localhost -m ansible.builtin.setup -a gather_subset=hardware` | {spread_ms(times['setup'])} | 1.00 |",
        "",
    ]
    print("\n".join(lines[-5:]))
    Path(args.output).write_text("\n".join(lines))
    print(f"\nwritten to {args.output}")
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
