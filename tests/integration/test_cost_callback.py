"""The cost callback (test equipment for CI's time table) counts what ran where."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
import cost_table  # noqa: E402

PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.set_fact: {x: 1}
    - ansible.builtin.command: "true"
      changed_when: false
    - ansible.builtin.command: "echo {{ item }}"
      loop: [a, b, c]
      changed_when: false
    - ansible.builtin.command: "true"
      when: false
    - ansible.builtin.command: "echo {{ item }}"
      loop: [a, b]
      when: item == 'a'
      changed_when: false
"""


@pytest.mark.ansible
def test_counts_target_runs_per_loop_item_and_controller_results_apart(tmp_path):
    (tmp_path / "play.yml").write_text(PLAY)
    env = dict(os.environ, ANSIBLE_CALLBACK_PLUGINS=str(REPO / "tests" / "callbacks"),
               ANSIBLE_CALLBACKS_ENABLED="ktfleet_cost", KTFLEET_COST_DIR=str(tmp_path / "cost"))
    subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
                    str(tmp_path / "play.yml")],
                   check=True, env=env, capture_output=True, cwd=tmp_path)
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "cost").glob("*.json")]
    assert record["hosts"]["localhost"] == {"controller": 1, "target": 1 + 3 + 1, "skipped": 1}
    assert [t["action"] for t in record["tasks"]][:2] == ["ansible.builtin.set_fact", "ansible.builtin.command"]
    [row] = cost_table.phase_rows(tmp_path / "cost")
    assert row["phase"] == "play" and row["target_per_host"] == 5 and row["controller"] == 1
