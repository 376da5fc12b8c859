"""ktfleet plan --inventory writes byte for byte what deploy.yml stages, for every demo host that fits.

deploy.yml runs for real on the demo fleet (staged under a temporary directory, as
tests/integration/test_deploy_demo.py does), then the offline planner runs on the same
inventory with the same extra variables; each unit and environment file must be
identical: synthetic (directory) and recorded (archive) dumps, sglang-kt and legacy,
the systemd and the numactl mechanism.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.ktfleet.numa.plugins.plugin_utils import synthetic
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner import fleet_plan

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
FITTING = ["seed-xeon6430", "snc4-xeon8480", "cxl-xeon6430", "xeon-2s-smt", "opteron-4s-nps2"]
pytestmark = [pytest.mark.ansible, pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd")]


def test_offline_files_equal_what_deploy_stages(tmp_path):
    machines = tmp_path / "machines"
    assert synthetic.main([str(REPO / "inventory/demo_machines"), str(machines)]) == 0
    stage = tmp_path / "stage"
    extra = {"ktfleet_system_root": f"{stage}/{{{{ inventory_hostname }}}}", "ktfleet_synthetic_machines": str(machines),
             "ktfleet_report_dir": f"{stage}.report",
             # the demo's ktfleet_python is ansible_playbook_python: the running interpreter, another one here
             "ktfleet_python": sys.executable}
    options = [f"{key}={value}" for key, value in extra.items()]
    cmd = [PLAYBOOK, "deploy.yml", "-i", "inventory/demo", "--limit", ",".join(FITTING)]
    for option in options:
        cmd += ["-e", option]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={"ANSIBLE_FORCE_COLOR": "0", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]

    out = tmp_path / "offline"
    fleet = fleet_plan.plan_inventory([str(REPO / "inventory/demo")], out, extra_vars=options)  # -e as given to both
    assert [h.host for h in fleet.by_status("planned")] == FITTING
    assert [h.host for h in fleet.by_status("refused")] == ["xeon6430-512g"]  # deploy.yml refuses it too
    for host in FITTING:
        for relative in ("etc/systemd/system/ktransformers.service", "etc/ktfleet/ktransformers.env"):
            staged = (stage / host / relative).read_text()
            assert (out / host / relative).read_text() == staged, f"{host}: {relative} differs"
