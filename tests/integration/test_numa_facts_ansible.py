"""ktfleet.numa.numa_facts run through Ansible for real (ad-hoc `ansible`).

The module's ``ansible_facts.numa`` must equal what gather() returns in
process for the same dump, on this machine's own ``/`` the stable keys must
agree, and a bad ``root`` must fail with a message naming it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.ktfleet.numa.plugins.module_utils.topology import gather, gather_with_report

pytestmark = pytest.mark.ansible

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DUMPS = ["16amd64-8n2c-cpusets", "256ppc-8n8s4t", "2ps3-2t"]


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    """localhost over the local connection, with this venv's Python."""
    path = tmp_path_factory.mktemp("inventory") / "hosts.ini"
    path.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    return path


def run_module(inventory, args="", check=False):
    """(rc, result dict, stderr) of `ansible localhost -m ktfleet.numa.numa_facts -a args`."""
    env = dict(
        os.environ,
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal",
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        ANSIBLE_NOCOLOR="1",
    )
    cmd = [str(BIN / "ansible"), "localhost", "-i", str(inventory), "-m", "ktfleet.numa.numa_facts"]
    if args:
        cmd += ["-a", args]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    # "localhost | SUCCESS => {...}" (a failure is preceded by an [ERROR] summary)
    start = proc.stdout.find("localhost | ")
    head, sep, body = proc.stdout[max(start, 0) :].partition(" => ")
    assert start >= 0 and sep, f"no result in ansible output:\n{proc.stdout}\n{proc.stderr}"
    result, _ = json.JSONDecoder().raw_decode(body.strip())
    result["_status"] = head.partition("|")[2].strip()  # SUCCESS, FAILED!
    return proc.returncode, result, proc.stderr


@pytest.mark.parametrize("name", DUMPS)
def test_dump_through_ansible_equals_gather(name, inventory, single_dump):
    root = single_dump(name)
    rc, result, stderr = run_module(inventory, f"root={root} gather_gpu_memory=false", check=name == DUMPS[0])
    assert rc == 0 and result["_status"] == "SUCCESS", (result, stderr)
    assert result["changed"] is False
    facts = result["ansible_facts"]["numa"]
    expected, important = gather_with_report(str(root), gpu_memory=False)
    assert facts == json.loads(json.dumps(expected))
    # the warnings that matter to a plan are shown as task warnings too
    flat = " ".join(stderr.split())
    for warning in important:
        assert " ".join(warning.split()) in flat, warning
    if name == "2ps3-2t":
        assert important and "sys/devices/system/node" in flat


def test_live_host_through_ansible(inventory):
    rc, result, stderr = run_module(inventory)
    assert rc == 0, (result, stderr)
    facts = result["ansible_facts"]["numa"]
    here = gather("/")
    for key in (
        "cpus_online",
        "cpus_allowed",
        "cores_total",
        "threads_per_core",
        "packages",
        "cpu",
        "kernel",
    ):
        assert facts[key] == json.loads(json.dumps(here[key])), key
    assert [(n["id"], n["cpus"]) for n in facts["nodes"]] == [(n["id"], n["cpus"]) for n in here["nodes"]]
    assert facts["root"] == "/"
    assert facts["memory_total_bytes"] == here["memory_total_bytes"]


@pytest.mark.parametrize(
    "root, needle", [("/nonexistent/ktfleet", "does not exist"), ("/etc/hostname", "neither a directory nor a readable tar archive"), ("/usr/share", "neither sys/ nor proc/")]
)
def test_bad_root_fails_naming_it(inventory, root, needle):
    rc, result, _ = run_module(inventory, f"root={root}")
    assert rc != 0
    assert result["_status"] == "FAILED!"
    assert f"root={root}" in result["msg"] and needle in result["msg"]


def test_ansible_doc_renders():
    proc = subprocess.run(
        [str(BIN / "ansible-doc"), "ktfleet.numa.numa_facts"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, ANSIBLE_NOCOLOR="1", PAGER="cat"),
    )
    assert proc.returncode == 0, proc.stderr
    for word in ("root", "gather_gpu_memory", "ansible_facts", "nodes_per_package", "EXAMPLES"):
        assert word in proc.stdout
    assert "ERROR" not in proc.stderr
