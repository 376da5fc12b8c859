"""deploy.yml for real on the demo fleet: refusal, staged units, verification, idempotence.

The demo hosts stand for recorded machines (inventory/topologies) and stage
their files under a directory, so the whole chain facts -> plan -> unit runs
here without a fleet; the Molecule scenarios run the same playbook on VMs.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
FITTING = ["xeon-2s-smt", "xeon-2s-smt-legacy", "opteron-4s-nps2", "knl-snc4-mcdram", "cxl-memtiers"]
pytestmark = [pytest.mark.ansible, pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd")]


def deploy(stage: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [PLAYBOOK, "deploy.yml", "-i", "inventory/demo", "-e", f"ktfleet_system_root={stage}/{{{{ inventory_hostname }}}}", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={"ANSIBLE_FORCE_COLOR": "0", "PATH": "/usr/bin:/bin"})


def recap(out: str) -> dict[str, dict[str, int]]:
    hosts = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", out, re.M):
        hosts[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return hosts


def unit_of(stage: Path, host: str) -> Path:
    return stage / host / "etc/systemd/system/ktransformers.service"


def exec_argv(unit: Path) -> list[str]:
    line = next(line for line in unit.read_text().splitlines() if line.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """The fitting hosts deployed once into a staging directory."""
    stage = tmp_path_factory.mktemp("stage")
    run = deploy(stage, "--limit", "!opteron-2n-small")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return stage, run


def test_whole_fleet_is_refused_before_any_host_changes(tmp_path):
    run = deploy(tmp_path)
    assert run.returncode != 0
    assert "opteron-2n-small: the plan does NOT fit" in run.stdout
    assert "DOES NOT FIT" in run.stdout  # the fleet table came first
    assert not any(tmp_path.iterdir()), "a host changed although preflight failed"


def test_every_fitting_host_gets_a_unit_that_systemd_accepts(staged):
    stage, run = staged
    assert set(recap(run.stdout)) == set(FITTING)
    for host in FITTING:
        unit = unit_of(stage, host)
        check = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
        assert check.returncode == 0 and "ktransformers.service" not in check.stderr, (host, check.stderr)
        env = stage / host / "etc/ktfleet/ktransformers.env"
        assert oct(env.stat().st_mode & 0o777) == "0o600"


def test_units_carry_each_policy_and_backend(staged):
    stage, _ = staged
    shard = exec_argv(unit_of(stage, "xeon-2s-smt"))
    assert shard[1:3] == ["-m", "sglang.launch_server"]
    flags = dict(zip(shard, shard[1:], strict=False))
    assert flags["--kt-cpuinfer"] == "14" and flags["--kt-threadpool-count"] == "2"
    assert shard[shard.index("--kt-numa-nodes") + 1 :][:2] == ["0", "1"]
    assert 'Environment="SGLANG_SET_CPU_AFFINITY=0"' in unit_of(stage, "xeon-2s-smt").read_text()
    assert "--numa-node" not in shard

    eight = exec_argv(unit_of(stage, "opteron-4s-nps2"))
    assert eight[eight.index("--kt-threadpool-count") + 1] == "8"

    legacy = exec_argv(unit_of(stage, "xeon-2s-smt-legacy"))
    assert legacy[1:3] == ["-m", "ktransformers.server.main"]
    assert legacy[legacy.index("--cpu_infer") + 1] == "17"  # 16 physical cores + 1

    interleave = unit_of(stage, "knl-snc4-mcdram").read_text()
    assert "NUMAPolicy=interleave" in interleave and "NUMAMask=0-7" in interleave  # MCDRAM nodes included

    bind = exec_argv(unit_of(stage, "cxl-memtiers"))
    assert bind[:3] == ["/usr/bin/numactl", "--cpunodebind=0", "--membind=0"]


def test_second_run_and_check_mode_change_nothing(staged):
    stage, _ = staged
    for extra in ([], ["--check", "--diff"]):
        run = deploy(stage, "--limit", "!opteron-2n-small", *extra)
        assert run.returncode == 0, run.stdout[-2000:]
        assert all(c["changed"] == 0 for c in recap(run.stdout).values()), (extra, run.stdout[-2000:])


def test_check_diff_shows_a_changed_unit_without_writing_it(staged):
    stage, _ = staged
    unit = unit_of(stage, "xeon-2s-smt")
    before = unit.read_text()
    run = deploy(stage, "--limit", "xeon-2s-smt", "--check", "--diff", "-e", "ktfleet_cpu_infer=12")
    assert run.returncode == 0, run.stdout[-2000:]
    assert "-ExecStart=" in run.stdout and "--kt-cpuinfer 12" in run.stdout
    assert unit.read_text() == before


def test_a_unit_that_fails_verification_never_lands(tmp_path):
    run = deploy(tmp_path, "--limit", "xeon-2s-smt", "-e", "ktfleet_python=/nonexistent/bin/python")
    assert run.returncode != 0
    assert "is not executable" in run.stdout + run.stderr
    assert not unit_of(tmp_path, "xeon-2s-smt").exists()


def test_bad_variable_is_named_without_a_traceback(tmp_path):
    run = deploy(tmp_path, "--limit", "xeon-2s-smt", "-e", json.dumps({"ktfleet_nodes": [7]}))
    assert run.returncode != 0
    assert "ktfleet_nodes" in run.stdout and "Traceback" not in run.stdout + run.stderr
