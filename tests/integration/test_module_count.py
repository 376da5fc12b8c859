"""Module runs per host stay few, so a fleet run cannot creep back to ~10 per host.

deploy.yml on recorded hosts (staged, the demo's settings), counted by the cost
callback (tests/callbacks/ktfleet_cost.py: every result of an action that is not
answered by the controller alone counts as one module run on the host, loop items
one by one): a deploy that changes nothing and a check run need at most 4 per host
(facts with preflight's reads, kt_weights, release_files; the report's one
release_files call on the host that runs it), a changing deploy at most 6 (5, the
replaced unit kept as the previous release and its backup removed). Each dump
archive is read once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
DUMPS = ["32intel64-2p8co2t+8ve", "64amd64-4s2n4ca2co"]
pytestmark = [pytest.mark.ansible, pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd")]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Four recorded hosts on two dump archives, the demo's group_vars."""
    base = tmp_path_factory.mktemp("count")
    model = REPO / "inventory/demo_models/Qwen3-30B-A3B"
    lines = ["gpu_nodes:", "  vars:",
             f"    ktfleet_model: {{name: Qwen3-30B-A3B, weights_bytes: 2G, moe_intermediate_size: 768,"
             f" kt_method: LLAMAFILE, model_path: {model}, weights_path: {model}}}", "  hosts:"]
    for i in range(4):
        lines += [f"    rec-{i}:", f"      ktfleet_facts_root: {REPO}/inventory/topologies/{DUMPS[i % 2]}.tar.bz2"]
    (base / "inv").mkdir()
    (base / "inv/hosts.yml").write_text("\n".join(lines) + "\n")
    (base / "inv/group_vars").symlink_to(REPO / "inventory/demo/group_vars")
    return base


def counted(fleet: Path, name: str, *args: str) -> dict:
    cost = fleet / f"cost-{name}"
    env = {**os.environ, "ANSIBLE_CALLBACK_PLUGINS": str(REPO / "tests/callbacks"),
           "ANSIBLE_CALLBACKS_ENABLED": "ktfleet_cost", "KTFLEET_COST_DIR": str(cost), "ANSIBLE_FORCE_COLOR": "0"}
    run = subprocess.run(
        [PLAYBOOK, "deploy.yml", "-i", str(fleet / "inv"), "-e", f"ktfleet_system_root={fleet}/stage/{{{{ inventory_hostname }}}}",
         "-e", f"ktfleet_report_dir={fleet}/report", *args],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    [record] = [json.loads(p.read_text()) for p in cost.glob("*.json")]
    return record["hosts"]


def test_module_runs_per_host_for_check_first_deploy_idempotent_and_changing_runs(fleet):
    check = counted(fleet, "check", "--check")
    assert not (fleet / "stage").exists()
    first = counted(fleet, "first")
    again = counted(fleet, "again")
    changing = counted(fleet, "changing", "-e", "ktfleet_cpu_infer=6")
    for name, hosts, most in (("check", check, 4), ("first", first, 4), ("again", again, 4), ("changing", changing, 6)):
        assert sorted(hosts) == [f"rec-{i}" for i in range(4)], name
        per_host = {h: c.get("target", 0) for h, c in hosts.items()}
        assert max(per_host.values()) <= most, (name, per_host)
        # the recorded dumps were read on the controller, each archive once per run
        assert all(c["facts_on_controller"] == 1 for c in hosts.values()), (name, hosts)
        assert sum(c["facts_cached"] for c in hosts.values()) == len(hosts) - len(DUMPS), (name, hosts)
    # what each needs, stated: 3 on every host (facts, kt_weights, release_files), the report's host one more
    assert sorted(c["target"] for c in again.values()) == [3, 3, 3, 4]
