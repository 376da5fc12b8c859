"""deploy.yml --check over a fleet of recorded demo hosts: this tree (B) against a baseline (A).

Builds an inventory of N hosts (cycling through the recorded topologies of
inventory/topologies, all fitting, facts from the dump archives) and times
``deploy.yml --check`` over it for each size, A and B interleaved in rounds
(A then B in even rounds, B then A in odd ones, so drift in the machine's load
falls on both alike). Reports, per size, the median and the spread (min-max) of
each and the median of the per-round ratios B/A (each B against the A of its
own round), and checks that both print the same fleet table.

    .venv/bin/python benchmarks/bench_fleet.py --baseline-rev aa40b06 [--sizes 10 50 100 200] [--rounds 3]
    .venv/bin/python benchmarks/bench_fleet.py --sizes 100 --rounds 1     # B alone

The baseline is ``git archive REV`` unpacked into a temporary directory (no
worktree), run by the same virtual environment. Writes benchmarks/results-fleet.md.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
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


def inventory(tree: Path, path: Path, hosts: int, stage: Path) -> None:
    # a 2 GiB MoE model (the recorded machines carry 4-120 GiB), its config from this tree's demo
    # models for A and B alike (a baseline from before inventory/demo_models has no such directory)
    model = REPO / "inventory/demo_models/Qwen3-30B-A3B"
    # per host: host vars beat the demo's group_vars, which name their own model (a baseline's too)
    spec = (f"{{name: OLMoE-1B-7B, weights_bytes: 2G, moe_intermediate_size: 1024, "
            f"model_path: {model}, weights_path: {model}}}")
    lines = ["gpu_nodes:", "  hosts:"]
    for i in range(hosts):
        dump, extra = SHAPES[i % len(SHAPES)]
        lines.append(f"    bench-{i:03d}:")
        lines.append(f"      ktfleet_model: {spec}")
        lines.append(f"      ktfleet_facts_root: {tree}/inventory/topologies/{dump}.tar.bz2")
        lines.append(f"      ktfleet_system_root: {stage}/bench-{i:03d}")
        lines += [f"      {k}: {v}" for k, v in extra.items()]
    path.mkdir(parents=True)
    (path / "hosts.yml").write_text("\n".join(lines) + "\n")
    # the demo's group_vars (connection local, staged) apply unchanged
    (path / "group_vars").symlink_to(tree / "inventory/demo/group_vars")


def fleet_table(stdout: str) -> str:
    part = stdout[stdout.index("TASK [Show the plan for the whole fleet]") :].split("TASK [", 2)[1]
    return "\n".join(line for line in part.splitlines() if line.strip().startswith(("bench-", "host ")))


def _same_work(table: str) -> list[str]:
    """The table without its "needs" column: a baseline from before kt-kernel's scratch buffers
    were counted (issue 12's memory model) needs less per host, for the same plan otherwise."""
    lines = table.splitlines()
    if not lines or " needs " not in lines[0]:
        return lines
    start, end = lines[0].index(" needs "), lines[0].index(" available ")  # aligned columns
    return [line[:start] + line[end:] for line in lines]


def run(tree: Path, hosts: int, forks: int, tmp: Path, tag: str) -> tuple[float, str]:
    inv = tmp / f"inv-{tag}-{hosts}-{time.monotonic_ns()}"
    inventory(tree, inv, hosts, inv.with_name(inv.name + "-stage"))
    env = {**os.environ, "ANSIBLE_FORKS": str(forks), "ANSIBLE_FORCE_COLOR": "0"}
    start = time.perf_counter()
    out = subprocess.run([PLAYBOOK, "deploy.yml", "-i", str(inv), "--check", "-e", f"ktfleet_report_dir={inv}-report"],
                         cwd=tree, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{tag}: deploy.yml --check failed for {hosts} hosts:\n{out.stdout[-3000:]}")
    if len(re.findall(r"^bench-\d+\s+: ok=", out.stdout, re.M)) != hosts:
        sys.exit(f"{tag}: not every host reached the recap")
    return elapsed, fleet_table(out.stdout)


def baseline_tree(rev: str, tmp: Path) -> Path:
    tree = tmp / f"baseline-{rev}"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    link = tree / ".collections/ansible_collections/ktfleet"
    link.mkdir(parents=True)
    (link / "numa").symlink_to("../../..")
    return tree


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100, 200])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--forks", type=int, default=20)
    parser.add_argument("--baseline-rev", help="git revision to compare against (A); none: B alone")
    args = parser.parse_args()
    rev = args.baseline_rev
    results: dict[int, dict[str, list[float]]] = {n: {"A": [], "B": [], "ratio": []} for n in args.sizes}
    with tempfile.TemporaryDirectory() as tmp:
        base = baseline_tree(rev, Path(tmp)) if rev else None
        for rnd in range(args.rounds):
            for n in args.sizes:
                order = [("A", base), ("B", REPO)] if rnd % 2 == 0 else [("B", REPO), ("A", base)]
                tables = {}
                for tag, tree in order:
                    if tree is None:
                        continue
                    seconds, tables[tag] = run(tree, n, args.forks, Path(tmp), tag)
                    results[n][tag].append(seconds)
                    print(f"round {rnd + 1} {n} hosts {tag}: {seconds:.1f} s", flush=True)
                if base is not None:
                    if _same_work(tables["A"]) != _same_work(tables["B"]):
                        sys.exit(f"the fleet tables differ at {n} hosts:\nA:\n{tables['A']}\nB:\n{tables['B']}")
                    results[n]["ratio"].append(results[n]["B"][-1] / results[n]["A"][-1])
    head = (
        f"# deploy.yml --check on a fleet of recorded demo hosts\n\n{time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the end), forks={args.forks}, "
        "strategy=linear, local connection, check mode (every unit that would be written is verified by "
        f"systemd-analyze), {args.rounds} round(s), A and B interleaved. B: this tree"
        + (f"; A: `{rev}`." if rev else ".")
        + "\n\nSeconds: median (min-max); ratio: median of each round's B/A.\n\n"
    )
    if rev:
        rows = "| hosts | A (s) | B (s) | B per host | ratio B/A |\n| ---: | ---: | ---: | ---: | ---: |\n" + "".join(
            f"| {n} | {spread(r['A'])} | {spread(r['B'])} | {statistics.median(r['B']) / n:.2f} | "
            f"{statistics.median(r['ratio']):.2f} |\n" for n, r in results.items())
    else:
        rows = "| hosts | B (s) | per host |\n| ---: | ---: | ---: |\n" + "".join(
            f"| {n} | {spread(r['B'])} | {statistics.median(r['B']) / n:.2f} |\n" for n, r in results.items())
    cmd = " ".join(["python benchmarks/bench_fleet.py", *(["--baseline-rev", rev] if rev else []),
                    "--sizes", *map(str, args.sizes), "--rounds", str(args.rounds)])
    text = head + rows + f"\nCommand: `{cmd}`\n"
    (REPO / "benchmarks/results-fleet.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
