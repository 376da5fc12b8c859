"""deploy.yml rolls out in the batches ktfleet_serial says, wherever it is set.

A play's serial is templated without a host, so an inventory value (the demo's
group_vars) used to be ignored (a run went 1, 25%, rest); deploy.yml now carries
it to the rollout play. Checked on staged recorded hosts in check mode.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner import rollout

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
HOSTS = [f"b{i}" for i in range(5)]
pytestmark = [pytest.mark.ansible, pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd")]


def batches(tmp_path: Path, group_serial, *args: str) -> list[list[str]]:
    model = REPO / "inventory/demo_models/Qwen3-30B-A3B"
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    (inv / "hosts.yml").write_text(yaml.safe_dump({"gpu_nodes": {
        "hosts": {h: {"ktfleet_facts_root": str(REPO / "inventory/topologies/32intel64-2p8co2t+8ve.tar.bz2")} for h in HOSTS},
        "vars": {"ktfleet_model": {"name": "Qwen3-30B-A3B", "model_path": str(model), "weights_path": str(model),
                                   "weights_bytes": "18.6GB", "moe_intermediate_size": 768, "kt_method": "LLAMAFILE"},
                 "ktfleet_report": False},
    }}))
    demo = yaml.safe_load((REPO / "inventory/demo/group_vars/all.yml").read_text())
    demo.pop("ktfleet_serial")
    if group_serial is not None:
        demo["ktfleet_serial"] = group_serial
    (inv / "group_vars/all.yml").write_text(yaml.safe_dump(demo))
    run = subprocess.run([PLAYBOOK, "deploy.yml", "-i", str(inv), "--check",
                          "-e", f"ktfleet_system_root={tmp_path}/stage/{{{{ inventory_hostname }}}}", *args],
                         cwd=REPO, capture_output=True, text=True, env={"ANSIBLE_FORCE_COLOR": "0", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stdout[-3000:]
    plays = run.stdout.split("PLAY [")
    return [sorted(set(re.findall(r"\[(b\d)\]", p)), key=HOSTS.index) for p in plays if p.startswith("Roll out")]


def test_the_inventorys_batches_are_the_rollouts(tmp_path):
    assert batches(tmp_path, [2, "100%"]) == [["b0", "b1"], ["b2", "b3", "b4"]]


def test_an_extra_var_wins_and_the_default_is_a_canary_first(tmp_path):
    assert batches(tmp_path, ["100%"], "-e", '{"ktfleet_serial": [1, 3]}') == [["b0"], ["b1", "b2", "b3"], ["b4"]]
    assert batches(tmp_path, None) == [["b0"], ["b1"], ["b2", "b3", "b4"]]  # 1, 25% of 5 (1), the rest


def test_the_group_name_carries_every_batch_back():
    for serial in ([1, "25%", "100%"], ["100%"], [3], [1, "12.5%", 4, "100%"]):
        name = rollout.serial_group({"a": serial, "b": serial})
        assert rollout.serial_from_groups({name: ["a"], "all": []}, None) == rollout.rollout_batches(serial)
    assert rollout.serial_from_groups({"all": []}, [2]) == [2]


def test_hosts_that_disagree_are_named():
    with pytest.raises(rollout.PlanError, match=r"^ktfleet_serial: the hosts of one rollout must share one value"):
        rollout.serial_group({"a": [1], "b": ["100%"]})
