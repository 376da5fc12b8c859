"""The filters through Ansible itself: ansible-playbook and ansible-doc from the repository root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from planner_hosts import DEEPSEEK_V3_Q4KM, GiB, seed_host, tutorial_host_1tb, two_socket

pytestmark = pytest.mark.ansible

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PATHS = {"model_path": "/srv/models/DeepSeek-V3", "weights_path": "/srv/models/DeepSeek-V3-AMXINT4"}

# the tutorial host with the two GPUs the playbook's gpus=2 asks for (both on node 0, as before)
TWO_GPUS = two_socket(32, 503 * GiB, gpus=(0, 0))
assert {k: v for k, v in TWO_GPUS.items() if k != "gpus"} == {k: v for k, v in tutorial_host_1tb().items() if k != "gpus"}

PLAYBOOK = """
- name: Exercise the ktfleet.numa planner filters
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Whole plan, legacy
      ansible.builtin.copy:
        dest: "{{ out }}/legacy.json"
        content: "{{ facts | ktfleet.numa.plan(model, backend='legacy') | to_json }}"
        mode: "0644"
    - name: Whole plan, sglang-kt, options from inventory-style variables (nulls are defaults)
      ansible.builtin.copy:
        dest: "{{ out }}/kt.json"
        content: >-
          {{ {'ansible_facts': {'numa': facts}} | ktfleet.numa.plan(model, backend=ktfleet_backend,
             policy=ktfleet_policy, nodes=ktfleet_nodes, cpu_infer=ktfleet_cpu_infer, gpus=2,
             reserve_cores=ktfleet_reserve_cores) | to_json }}
        mode: "0644"
    - name: The call roles/ktransformers/tasks/plan.yml makes, with the role's defaults
      ansible.builtin.copy:
        dest: "{{ out }}/role.json"
        content: >-
          {{ facts | ktfleet.numa.plan(model,
               backend='legacy', policy='auto', nodes=[],
               cpu_infer=none, reserve_cores=none, gpus=1,
               headroom=0.20, smt=false, numa_build=true,
               host='0.0.0.0', port=30000, extra_args=[]) | to_json }}
        mode: "0644"
    - name: Thread count alone
      ansible.builtin.copy:
        dest: "{{ out }}/cpu_infer.json"
        content: "{{ facts | ktfleet.numa.cpu_infer(backend='legacy') | to_json }}"
        mode: "0644"
    - name: Memory fit alone
      ansible.builtin.copy:
        dest: "{{ out }}/fit.json"
        content: "{{ facts | ktfleet.numa.memory_fit({'name': 'V3', 'weights_bytes': '382GB'}, backend='legacy') | to_json }}"
        mode: "0644"
    - name: Bad input is caught
      block:
        - name: Negative size
          ansible.builtin.debug:
            msg: "{{ facts | ktfleet.numa.plan({'name': 'x', 'weights_bytes': -5}) }}"
      rescue:
        - name: Keep the message
          ansible.builtin.copy:
            dest: "{{ out }}/error.txt"
            content: "{{ ansible_failed_result.msg }}"
            mode: "0644"
"""


def _env() -> dict:
    env = dict(
        os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0"
    )
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _vars(tmp_path: Path, facts: dict, **extra) -> Path:
    data = {
        "facts": facts,
        "model": {**DEEPSEEK_V3_Q4KM, **PATHS},
        "out": str(tmp_path),
        "ansible_python_interpreter": sys.executable,
        "ktfleet_backend": "sglang-kt",
        "ktfleet_policy": "auto",
        "ktfleet_nodes": [],
        "ktfleet_cpu_infer": None,
        "ktfleet_reserve_cores": None,
        **extra,
    }
    path = tmp_path / "vars.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def playbook_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("filters")
    (tmp / "play.yml").write_text(PLAYBOOK)
    run = subprocess.run(
        [BIN / "ansible-playbook", "-i", "localhost,", "-c", "local", str(tmp / "play.yml"), "-e", f"@{_vars(tmp, TWO_GPUS)}"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return tmp


def test_plan_filter_renders_the_legacy_plan(playbook_run):
    plan = json.loads((playbook_run / "legacy.json").read_text())
    assert plan["policy"] == "replicate" and plan["cpu_infer"] == 65 and plan["numa_build"] is True
    assert plan["memory"]["fits"] is True
    # a full copy + the measured 0.175 margin per copy (memory.MARGIN_SHARE; was 1.1x)
    assert plan["memory"]["required_per_node_bytes"] == {"0": 448_850_000_000, "1": 448_850_000_000}
    assert plan["server_args"][:2] == ["-m", "ktransformers.server.main"]
    assert plan["reasons"] and isinstance(plan["warnings"], list)


def test_plan_filter_takes_inventory_style_options(playbook_run):
    plan = json.loads((playbook_run / "kt.json").read_text())
    assert plan["policy"] == "shard" and plan["threadpool_count"] == 2
    assert plan["cpu_infer"] == 62  # (64 - 2 GPU ranks) / 2 pools
    argv = plan["server_args"]
    assert argv[argv.index("--kt-numa-nodes") + 1 : argv.index("--kt-numa-nodes") + 3] == ["0", "1"]
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert plan["environment"] == {"SGLANG_SET_CPU_AFFINITY": "0"}


def test_the_roles_call_shape(playbook_run):
    plan = json.loads((playbook_run / "role.json").read_text())
    assert plan["policy"] == "replicate" and plan["numa_build"] is True and plan["memory"]["fits"] is True
    argv = plan["server_args"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0" and argv[argv.index("--port") + 1] == "30000"


def test_cpu_infer_and_memory_fit_filters(playbook_run):
    assert json.loads((playbook_run / "cpu_infer.json").read_text()) == 65
    fit = json.loads((playbook_run / "fit.json").read_text())
    assert fit["policy"] == "replicate" and fit["fits"] is True and fit["headroom_ratio"] == 0.2


def test_filter_error_is_the_planners_one_line(playbook_run):
    message = (playbook_run / "error.txt").read_text()
    assert "ktfleet.numa.plan: ktfleet_model.weights_bytes: must be > 0, got -5" in message


def test_failing_filter_shows_no_traceback(tmp_path):
    run = subprocess.run(
        [
            BIN / "ansible", "localhost", "-i", "localhost,", "-c", "local", "-m", "ansible.builtin.debug",
            "-a", "msg={{ facts | ktfleet.numa.plan(model, backend='legacy', nodes=[5]) }}",
            "-e", f"@{_vars(tmp_path, seed_host())}",
        ],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "ktfleet_nodes: node(s) 5 do not exist on this host; it has node(s) 0,1" in output
    assert "Traceback" not in output and "ValidationError" not in output


@pytest.mark.parametrize("name", ["plan", "cpu_infer", "memory_fit"])
def test_ansible_doc_renders(name):
    run = subprocess.run(
        [BIN / "ansible-doc", "-t", "filter", f"ktfleet.numa.{name}"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0 and not run.stderr.strip(), run.stderr
    assert f"ktfleet.numa.{name}" in run.stdout
    assert "legacy_numa_build" in run.stdout and "EXAMPLES" in run.stdout
