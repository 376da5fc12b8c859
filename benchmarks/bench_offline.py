"""Offline fleet planning: ``ktfleet plan --inventory`` (A) over N recorded hosts, against the
per-host path it replaces (B: one ``ktfleet plan --root`` process per host).

Writes an inventory of N hosts into a temporary directory: they cycle through the
dump archives of inventory/topologies (hwloc's corpus, the demo's recorded hosts)
and the demo's synthetic machines (inventory/demo_machines, written as trees by
plugins/plugin_utils/synthetic.py into the same directory), each with the demo's
model for it; a few live hosts (ktfleet_facts_root /) are added to show they are
skipped. A is timed with ``/usr/bin/time -v`` (wall, CPU, peak memory) in rounds;
B is timed over ``--per-host`` hosts (one process each, as a shell loop would run
it) and scaled to N, with the same rounds interleaved (A then B in even rounds, B
then A in odd ones). B plans only (no render, no verify), so the ratio flatters B.

    .venv/bin/python benchmarks/bench_offline.py [--hosts 1000] [--rounds 3] [--per-host 20]

Writes benchmarks/results-offline.md (the figures, the command, the load average).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KTFLEET = str(Path(sys.executable).parent / "ktfleet")
MODELS = REPO / "inventory" / "demo_models"
QWEN = {"name": "Qwen3-30B-A3B", "model_path": f"{MODELS}/Qwen3-30B-A3B", "weights_path": f"{MODELS}/Qwen3-30B-A3B",
        "weights_bytes": "18.6GB", "moe_intermediate_size": 768, "kt_method": "LLAMAFILE"}
R1 = {"name": "DeepSeek-R1-Q4_K_M", "model_path": f"{MODELS}/DeepSeek-R1-Q4_K_M",
      "weights_path": f"{MODELS}/DeepSeek-R1-Q4_K_M", "weights_bytes": "377G", "moe_intermediate_size": 2048}
V3 = {"name": "DeepSeek-V3-0324", "model_path": f"{MODELS}/DeepSeek-V3-0324-AMXINT4",
      "weights_path": f"{MODELS}/DeepSeek-V3-0324-AMXINT4", "weights_bytes": "305G", "moe_intermediate_size": 2048,
      "kt_method": "AMXINT4"}
SMALL = {"name": "OLMoE-1B-7B", "model_path": f"{MODELS}/Qwen3-30B-A3B", "weights_path": f"{MODELS}/Qwen3-30B-A3B",
         "weights_bytes": "2G", "moe_intermediate_size": 1024}
# (dump, host variables): every archive of inventory/topologies, then the demo's synthetic machines
SHAPES = [
    ("32intel64-2p8co2t+8ve.tar.bz2", {"ktfleet_model": QWEN}),
    ("64amd64-4s2n4ca2co.tar.bz2", {"ktfleet_model": QWEN}),
    ("2amd64-2n.tar.bz2", {"ktfleet_model": SMALL, "ktfleet_backend": "legacy"}),
    ("64intel64-fakeKNL-SNC4-hybrid.tar.bz2", {"ktfleet_model": SMALL, "ktfleet_backend": "legacy",
                                               "ktfleet_policy": "interleave"}),
    ("fakeheteromemtiers.tar.bz2", {"ktfleet_model": SMALL, "ktfleet_backend": "legacy"}),
    ("seed-xeon6430", {"ktfleet_model": R1, "ktfleet_backend": "legacy", "ktfleet_gpus": 2}),
    ("snc4-xeon8480", {"ktfleet_model": V3, "ktfleet_gpus": 4}),
    ("cxl-xeon6430", {"ktfleet_model": R1, "ktfleet_backend": "legacy", "ktfleet_numa_mechanism": "numactl"}),
]
LIVE = 3


def write_inventory(tmp: Path, hosts: int) -> tuple[Path, list[tuple[str, dict]]]:
    """The inventory (group_vars all + one host entry each) and, per recorded host, (dump, vars)."""
    machines = tmp / "machines"
    subprocess.run(
        [sys.executable, "-m", "ansible_collections.ktfleet.numa.plugins.plugin_utils.synthetic",
         str(REPO / "inventory" / "demo_machines"), str(machines)], check=True, capture_output=True,
    )
    inventory = tmp / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "group_vars" / "all.yml").write_text(json.dumps({
        "ansible_connection": "local", "ktfleet_install": False, "ktfleet_manage_service": False,
        "ktfleet_check_server": False, "ktfleet_python": sys.executable, "ktfleet_facts_label": "recorded",
        "ktfleet_topologies": str(REPO / "inventory" / "topologies"), "ktfleet_machines": str(machines),
    }))
    entries, recorded = {}, []
    for i in range(hosts):
        dump, extra = SHAPES[i % len(SHAPES)]
        where = "{{ ktfleet_topologies }}" if dump.endswith(".tar.bz2") else "{{ ktfleet_machines }}"
        entries[f"bench-{i:04d}"] = {"ktfleet_facts_root": f"{where}/{dump}", **extra}
        recorded.append((str((REPO / "inventory" / "topologies" / dump) if dump.endswith(".tar.bz2")
                             else machines / dump), extra))
    for i in range(LIVE):
        entries[f"live-{i}"] = {"ansible_host": f"10.0.0.{i + 1}"}
    (inventory / "hosts.yml").write_text(json.dumps({"gpu_nodes": {"hosts": entries}}))
    return inventory, recorded


def time_v(argv: list[str]) -> dict:
    """Wall and CPU seconds and peak RSS of argv under /usr/bin/time -v."""
    done = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True, check=False)
    report = dict(re.findall(r"^\s*(.+?(?:\(h:mm:ss or m:ss\))?): (\S+)$", done.stderr, re.M))
    wall = report["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")
    seconds = sum(float(part) * 60 ** i for i, part in enumerate(reversed(wall)))
    return {"rc": done.returncode, "wall": seconds,
            "cpu": float(report["User time (seconds)"]) + float(report["System time (seconds)"]),
            "rss_mib": int(report["Maximum resident set size (kbytes)"]) / 1024, "stdout": done.stdout}


def per_host(recorded: list[tuple[str, dict]], count: int) -> float:
    """Seconds for ``ktfleet plan --root`` over the first ``count`` hosts, one process each."""
    start = time.perf_counter()
    for root, extra in recorded[:count]:
        model = extra["ktfleet_model"]
        argv = [KTFLEET, "plan", "--root", root, "--weights-bytes", model["weights_bytes"], "--model-name",
                model["name"], "--model-path", model["model_path"], "--weights-path", model["weights_path"],
                "--moe-intermediate-size", str(model["moe_intermediate_size"]),
                "--backend", extra.get("ktfleet_backend", "sglang-kt"), "--gpus", str(extra.get("ktfleet_gpus", 1))]
        if "kt_method" in model:
            argv += ["--kt-method", model["kt_method"]]
        if "ktfleet_policy" in extra:
            argv += ["--policy", extra["ktfleet_policy"]]
        subprocess.run(argv, capture_output=True, check=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-host", type=int, default=20, help="hosts the per-host path is timed on (scaled)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ktfleet-bench-offline-"))
    try:
        inventory, recorded = write_inventory(tmp, args.hosts)
        a_runs, b_runs = [], []
        for rnd in range(args.rounds):
            order = ("A", "B") if rnd % 2 == 0 else ("B", "A")
            for which in order:
                if which == "A":
                    out = tmp / "out"
                    shutil.rmtree(out, ignore_errors=True)
                    result = time_v([KTFLEET, "plan", "--inventory", str(inventory), "--out", str(out)])
                    a_runs.append(result)
                    summary = result["stdout"].strip().splitlines()[-1]
                    print(f"round {rnd + 1} A: {result['wall']:.1f} s wall, {result['cpu']:.1f} s CPU, "
                          f"{result['rss_mib']:.0f} MiB, rc {result['rc']}: {summary}", flush=True)
                else:
                    seconds = per_host(recorded, args.per_host)
                    b_runs.append(seconds / args.per_host * args.hosts)
                    print(f"round {rnd + 1} B: {seconds:.1f} s for {args.per_host} hosts "
                          f"= {b_runs[-1]:.0f} s scaled to {args.hosts}", flush=True)
        walls = [r["wall"] for r in a_runs]
        a_med, b_med = statistics.median(walls), statistics.median(b_runs)
        ratios = [a["wall"] / b for a, b in zip(a_runs, b_runs, strict=True)]
        lines = [
            f"A ktfleet plan --inventory, {args.hosts} recorded hosts (+{LIVE} live, skipped): median "
            f"{a_med:.1f} s wall (min {min(walls):.1f}, max {max(walls):.1f}), CPU median "
            f"{statistics.median(r['cpu'] for r in a_runs):.1f} s, peak RSS {max(r['rss_mib'] for r in a_runs):.0f} MiB",
            f"B ktfleet plan --root per host, {args.per_host} hosts scaled to {args.hosts}: median {b_med:.0f} s "
            f"(min {min(b_runs):.0f}, max {max(b_runs):.0f}); plans only, no render or verify",
            f"A/B median of per-round ratios: {statistics.median(ratios):.4f} ({1 / statistics.median(ratios):.0f}x faster)",
            f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)",
        ]
        print("\n" + "\n".join(lines))
        (REPO / "benchmarks" / "results-offline.md").write_text(
            "# Offline fleet planning (benchmarks/bench_offline.py)\n\n"
            f"`.venv/bin/python benchmarks/bench_offline.py --hosts {args.hosts} --rounds {args.rounds} "
            f"--per-host {args.per_host}`; A and B interleaved in rounds, each A under `/usr/bin/time -v`.\n\n"
            + "\n".join(f"- {line}" for line in lines) + "\n\nRounds:\n\n"
            + "\n".join(f"- round {i + 1}: A {a['wall']:.1f} s wall / {a['cpu']:.1f} s CPU, B {b:.0f} s (scaled)"
                         for i, (a, b) in enumerate(zip(a_runs, b_runs, strict=True))) + "\n"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
