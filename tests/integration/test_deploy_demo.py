"""deploy.yml for real on the demo fleet: refusal, staged units, verification, idempotence.

The demo hosts stand for recorded machines (inventory/topologies) or synthetic
ones (inventory/demo_machines, generated here) and stage their files under a directory, so the whole chain facts -> plan -> unit runs
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

from ansible_collections.ktfleet.numa.plugins.plugin_utils import synthetic

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
MISFIT = "xeon6430-512g"
SYNTHETIC = ["seed-xeon6430", "snc4-xeon8480", "cxl-xeon6430"]
FITTING = [*SYNTHETIC, "xeon-2s-smt", "opteron-4s-nps2"]
pytestmark = [pytest.mark.ansible, pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd")]


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    """The demo's synthetic machines, generated as ./run demo does."""
    dest = tmp_path_factory.mktemp("machines")
    assert synthetic.main([str(REPO / "inventory/demo_machines"), str(dest)]) == 0
    return dest


def deploy(stage: Path, machines: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        PLAYBOOK, "deploy.yml", "-i", "inventory/demo", "-e", f"ktfleet_system_root={stage}/{{{{ inventory_hostname }}}}",
        "-e", f"ktfleet_synthetic_machines={machines}", "-e", f"ktfleet_report_dir={stage}.report", *args,
    ]
    # PATH without /usr/sbin: nothing here may need numactl or systemctl for the dump-backed hosts
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
def staged(tmp_path_factory, machines):
    """The fitting hosts deployed once into a staging directory."""
    stage = tmp_path_factory.mktemp("stage")
    run = deploy(stage, machines, "--limit", f"!{MISFIT}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return stage, run, machines


def test_whole_fleet_is_refused_before_any_host_changes(tmp_path, machines):
    run = deploy(tmp_path, machines)
    assert run.returncode != 0
    # a USE_NUMA=1 build keeps a 377 GiB copy on each 256 GiB node: no memory model makes that fit
    assert f"{MISFIT}: the plan does NOT fit" in run.stdout
    assert "disable multi-NUMA" in run.stdout  # the seed's remedy
    table = run.stdout[run.stdout.index("TASK [Show the plan for the whole fleet]") :]
    assert re.search(rf"{MISFIT} \(synthetic\) .* DOES NOT FIT", table)  # the fleet table came first
    assert not any(tmp_path.iterdir()), "a host changed although preflight failed"


def test_the_table_labels_synthetic_and_recorded_machines(staged):
    _, run, _ = staged
    table = run.stdout[run.stdout.index("TASK [Show the plan for the whole fleet]") :].split("TASK [", 2)[1]
    for host in SYNTHETIC:
        assert f"{host} (synthetic)" in table
    for host in ("xeon-2s-smt", "opteron-4s-nps2"):
        assert f"{host} (recorded)" in table


def test_the_seeds_machine_gets_the_guides_plan_next_to_the_naive_one(staged):
    """The seed's guide by hand: --cpu_infer 65, both sockets, a copy of the weights per node;
    the server's default: every logical CPU (128) and one socket's memory."""
    stage, run, _ = staged
    story = run.stdout[run.stdout.index("TASK [Show each plan next to") :].split("PLAY [", 1)[0]
    story = " ".join(story.split())  # the debug output wraps long lines
    seed = story[story.index("- seed-xeon6430") :].split("- snc4-xeon8480", 1)[0]
    assert "planned: --cpu_infer 65, threads on node(s) 0,1 (2 socket(s)), replicate: a copy" in seed
    assert "per node: 2 x" in seed
    assert "naive: --cpu_infer 128 (every logical CPU" in seed and "one socket" in seed
    argv = exec_argv(unit_of(stage, "seed-xeon6430"))
    assert argv[1:3] == ["-m", "ktransformers.server.main"]
    assert argv[argv.index("--cpu_infer") + 1] == "65"


def test_dump_backed_hosts_say_what_is_not_checked(staged):
    _, run, _ = staged
    text = " ".join(run.stdout.split())
    for host in FITTING:
        assert f"{host}: recorded host (facts from" in text
    assert "not checked: systemd version (assumed 252" in text


def test_every_fitting_host_gets_a_unit_that_systemd_accepts(staged):
    stage, run, _ = staged
    assert set(recap(run.stdout)) == set(FITTING)
    for host in FITTING:
        unit = unit_of(stage, host)
        check = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
        assert check.returncode == 0 and "ktransformers.service" not in check.stderr, (host, check.stderr)
        env = stage / host / "etc/ktfleet/ktransformers.env"
        assert oct(env.stat().st_mode & 0o777) == "0o600"


def test_units_carry_each_policy_and_backend(staged):
    stage, _, _ = staged
    shard = exec_argv(unit_of(stage, "xeon-2s-smt"))
    assert shard[1:3] == ["-m", "sglang.launch_server"]
    flags = dict(zip(shard, shard[1:], strict=False))
    assert flags["--kt-cpuinfer"] == "14" and flags["--kt-threadpool-count"] == "2"
    assert shard[shard.index("--kt-numa-nodes") + 1 :][:2] == ["0", "1"]
    assert 'Environment="SGLANG_SET_CPU_AFFINITY=0"' in unit_of(stage, "xeon-2s-smt").read_text()
    assert "--numa-node" not in shard

    # 8 nodes, but Qwen3-30B-A3B's moe_intermediate_size 768 is 3 LLAMAFILE blocks of 256 and
    # kt-kernel gives every pool at least one (operators/moe-tp.hpp): 3 pools on nodes 0,1,2
    eight = exec_argv(unit_of(stage, "opteron-4s-nps2"))
    assert eight[eight.index("--kt-threadpool-count") + 1] == "3"
    assert eight[eight.index("--kt-numa-nodes") + 1 :][:3] == ["0", "1", "2"]

    snc = exec_argv(unit_of(stage, "snc4-xeon8480"))  # SNC-4: a pool per sub-NUMA node
    assert snc[snc.index("--kt-threadpool-count") + 1] == "8"
    assert snc[snc.index("--kt-numa-nodes") + 1 :][:8] == [str(n) for n in range(8)]
    assert snc[snc.index("--kt-method") + 1] == "AMXINT4"

    seed = unit_of(stage, "seed-xeon6430").read_text()
    assert "NUMAPolicy=" not in seed  # USE_NUMA=1 places its copies itself

    # CPU-less CXL nodes hold weights (interleaved) but get no threads; numactl on a dump-backed host
    cxl = exec_argv(unit_of(stage, "cxl-xeon6430"))
    assert cxl[:2] == ["/usr/bin/numactl", "--interleave=0-3"]
    assert cxl[cxl.index("--cpu_infer") + 1] == "65"


def test_second_run_and_check_mode_change_nothing(staged):
    stage, _, machines = staged
    for extra in ([], ["--check", "--diff"]):
        run = deploy(stage, machines, "--limit", f"!{MISFIT}", *extra)
        assert run.returncode == 0, run.stdout[-2000:]
        assert all(c["changed"] == 0 for c in recap(run.stdout).values()), (extra, run.stdout[-2000:])


def test_check_diff_shows_a_changed_unit_without_writing_it(staged):
    stage, _, machines = staged
    unit = unit_of(stage, "xeon-2s-smt")
    before = unit.read_text()
    run = deploy(stage, machines, "--limit", "xeon-2s-smt", "--check", "--diff", "-e", "ktfleet_cpu_infer=12")
    assert run.returncode == 0, run.stdout[-2000:]
    assert "-ExecStart=" in run.stdout and "--kt-cpuinfer 12" in run.stdout
    assert unit.read_text() == before


def test_a_unit_that_fails_verification_never_lands(tmp_path, machines):
    run = deploy(tmp_path, machines, "--limit", "xeon-2s-smt", "-e", "ktfleet_python=/nonexistent/bin/python")
    assert run.returncode != 0
    assert "is not executable" in run.stdout + run.stderr
    assert not unit_of(tmp_path, "xeon-2s-smt").exists()


def test_bad_variable_is_named_without_a_traceback(tmp_path, machines):
    run = deploy(tmp_path, machines, "--limit", "xeon-2s-smt", "-e", json.dumps({"ktfleet_nodes": [7]}))
    assert run.returncode != 0
    assert "ktfleet_nodes" in run.stdout and "Traceback" not in run.stdout + run.stderr
