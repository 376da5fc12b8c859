"""Planning and rendering for a 100-host fleet in check mode (issue: deploy at scale).

Builds an inventory of N demo hosts (cycling through the recorded topologies of
inventory/topologies, all fitting) and times `deploy.yml --check` over it, with
the Ansible settings stated, next to the same run for 10 hosts so the fixed
cost (start-up, parsing) separates from the per-host cost.

    .venv/bin/python benchmarks/bench_fleet.py [--hosts 100] [--forks 20]

Writes benchmarks/results-fleet.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
SHAPES = [
    ("32intel64-2p8co2t+8ve", {"ktfleet_backend": "sglang-kt"}),
    ("32intel64-2p8co2t+8ve", {"ktfleet_backend": "legacy"}),
    ("64amd64-4s2n4ca2co", {"ktfleet_backend": "sglang-kt"}),
    ("64intel64-fakeKNL-SNC4-hybrid", {"ktfleet_backend": "legacy", "ktfleet_policy": "interleave"}),
]


def inventory(path: Path, hosts: int, stage: Path) -> None:
    lines = ["gpu_nodes:", "  hosts:"]
    for i in range(hosts):
        dump, extra = SHAPES[i % len(SHAPES)]
        lines.append(f"    bench-{i:03d}:")
        lines.append(f"      ktfleet_facts_root: {REPO}/inventory/topologies/{dump}.tar.bz2")
        lines.append(f"      ktfleet_system_root: {stage}/bench-{i:03d}")
        lines += [f"      {k}: {v}" for k, v in extra.items()]
    path.mkdir(parents=True)
    (path / "hosts.yml").write_text("\n".join(lines) + "\n")
    # the demo's group_vars (connection local, staged, model) apply unchanged
    (path / "group_vars").symlink_to(REPO / "inventory/demo/group_vars")
    (path / "model").symlink_to(REPO / "inventory/demo/model")


def run(hosts: int, forks: int, tmp: Path) -> float:
    inv = tmp / f"inv-{hosts}"
    inventory(inv, hosts, tmp / f"stage-{hosts}")
    env = {**os.environ, "ANSIBLE_FORKS": str(forks)}
    start = time.perf_counter()
    out = subprocess.run([PLAYBOOK, "deploy.yml", "-i", str(inv), "--check"], cwd=REPO, env=env,
                         capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"deploy.yml --check failed for {hosts} hosts:\n{out.stdout[-3000:]}")
    if len(re.findall(r"^bench-\d+\s+: ok=", out.stdout, re.M)) != hosts:
        sys.exit("not every host reached the recap")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--forks", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = run(10, args.forks, Path(tmp))
        big = run(args.hosts, args.forks, Path(tmp))
    per_host = (big - small) / (args.hosts - 10)
    table = (
        f"# deploy.yml --check on a demo fleet\n\n{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
        f"forks={args.forks}, strategy=linear, pipelining=True (local connection), gather_facts=false "
        "(numa_facts only).\n\n"
        "| hosts | seconds | per host |\n| ---: | ---: | ---: |\n"
        f"| 10 | {small:.1f} | {small / 10:.2f} |\n| {args.hosts} | {big:.1f} | {big / args.hosts:.2f} |\n\n"
        f"Marginal cost per host (from 10 to {args.hosts}): **{per_host:.2f} s** "
        "(facts from a dump archive, plan, fleet table, preflight, unit rendered and verified in check mode).\n"
    )
    (REPO / "benchmarks/results-fleet.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
