"""Markdown table of what each phase of a run cost, from ktfleet_cost's JSON files.

    python tests/cost_table.py build/molecule-cost/default [more dirs...]

A Molecule scenario is a sequence of ansible-playbook runs; the second run of
converge.yml is the idempotence check, and verify.yml's own nested runs (deploy.yml
--check) appear as their own rows. 'waits' are the seconds of tasks that wait by
design (health polls, uri/wait_for, retries), so sleeping shows apart from work.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

WAITING = ("uri", "wait_for", "wait_for_connection", "pause", "decode_bench")


def phase_rows(directory: Path) -> list[dict]:
    rows, seen = [], {}
    for path in sorted(directory.glob("*.json"), key=lambda p: float(p.name.split("-", 1)[0])):
        run = json.loads(path.read_text())
        name = run["playbook"].removesuffix(".yml")
        seen[name] = seen.get(name, 0) + 1
        if name == "converge" and seen[name] == 2:
            name = "idempotence"
        hosts = run["hosts"] or {"-": {}}
        per_host = max(counts.get("target", 0) for counts in hosts.values())
        waits = sum(t.get("seconds", 0) for t in run["tasks"] if t["action"].rsplit(".", 1)[-1] in WAITING)
        rows.append({
            "phase": name,
            "seconds": run["seconds"],
            "hosts": len(run["hosts"]),
            "target_per_host": per_host,
            "controller": sum(c.get("controller", 0) for c in hosts.values()),
            "retries": sum(c.get("retries", 0) for c in hosts.values()),
            "waits": round(waits, 1),
        })
    return rows


def table(directories: list[Path]) -> str:
    lines = ["| scenario | phase | wall s | hosts | target tasks/host (max) | s per target task | controller results | retries | waiting s |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for directory in directories:
        total = 0.0
        for r in phase_rows(directory):
            total += r["seconds"]
            per = r["seconds"] / r["target_per_host"] if r["target_per_host"] else 0
            lines.append(f"| {directory.name} | {r['phase']} | {r['seconds']:.0f} | {r['hosts']} | {r['target_per_host']} | "
                         f"{per:.1f} | {r['controller']} | {r['retries']} | {r['waits']:.0f} |")
        lines.append(f"| {directory.name} | **all phases** | **{total:.0f}** | | | | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table([Path(a) for a in sys.argv[1:]]))
