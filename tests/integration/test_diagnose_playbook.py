"""playbooks/diagnose.yml for real on this machine: numa_sample through Ansible, verdicts, JSON.

The server is a busy Python loop pinned to CPU 0: a transient systemd unit
when systemd is PID 1 here (sampled by service name, as on a fleet), else a
plain child process (sampled by pid).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ansible_collections.ktfleet.numa.plugins.plugin_utils.diagnosis.diagnosis import CHECKS

pytestmark = pytest.mark.ansible

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
BUSY = "import os\nos.sched_setaffinity(0, {0})\nwhile True:\n    pass\n"
SYSTEMD = (
    subprocess.run(["ps", "-p", "1", "-o", "comm="], capture_output=True, text=True).stdout.strip() == "systemd"
    and shutil.which("systemd-run") is not None
)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    path = tmp_path_factory.mktemp("inventory") / "hosts.yml"
    # a model directory of its own: the plan reads tensor names from every
    # *.safetensors under it (kt-kernel walks the tree), so /tmp would read other tests' files
    model = tmp_path_factory.mktemp("model")
    path.write_text(
        "all:\n  children:\n    gpu_nodes:\n      hosts:\n        live:\n"
        "          ansible_connection: local\n"
        f"          ansible_python_interpreter: {sys.executable}\n"
        f"          ktfleet_model: {{name: tiny, weights_bytes: 1G, model_path: {model}, weights_path: {model}}}\n"
    )
    return path


@pytest.fixture(scope="module")
def server():
    """-e arguments that point the playbook at a running busy server."""
    if SYSTEMD:
        unit = f"ktfleet-diagnose-test-{uuid.uuid4().hex[:8]}"
        subprocess.run(["systemd-run", "--unit", unit, "--property", "CPUAffinity=0", sys.executable, "-c", BUSY],
                       check=True, capture_output=True)
        try:
            yield ["-e", f"ktfleet_service_name={unit}"]
        finally:
            subprocess.run(["systemctl", "stop", unit], capture_output=True)
    else:
        proc = subprocess.Popen([sys.executable, "-c", BUSY])
        try:
            time.sleep(0.3)
            yield ["-e", f"ktfleet_diagnose_pid={proc.pid}"]
        finally:
            proc.kill()
            proc.wait()


def run(inventory, *args):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0")
    return subprocess.run(
        [PLAYBOOK, "playbooks/diagnose.yml", "-i", str(inventory), "-e", "ktfleet_diagnose_window=1", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )


def test_diagnose_writes_verdicts_for_the_running_server(inventory, server, tmp_path):
    proc = run(inventory, *server, "-e", f"ktfleet_report_dir={tmp_path}",
               "-e", "ktfleet_diagnose_tokens_per_second=7", "-e", "ktfleet_diagnose_tuned_tokens_per_second=10",
               "-e", '{"ktfleet_diagnose_thresholds": {"headroom": 0.01, "idle_cores": 0}}')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "diagnosis/live.json").read_text())
    assert report["host"] == "live"
    diagnosis = report["diagnosis"]
    assert [v["check"] for v in diagnosis["verdicts"]] == list(CHECKS)
    assert report["status"] == diagnosis["status"] == "fail"  # the 30% throughput drop
    assert diagnosis["thresholds"]["headroom"] == 0.01 and diagnosis["thresholds"]["idle_cores"] == 0
    verdicts = {v["check"]: v for v in diagnosis["verdicts"]}
    assert verdicts["memory_headroom"]["numbers"]["headroom"] == 0.01
    # judged even on this crowded 2-CPU machine (idle_cores 0): the pinned loop ran on the plan's CPUs
    assert verdicts["threads_placement"]["status"] == "ok", verdicts["threads_placement"]
    assert verdicts["throughput"]["status"] == "fail" and "fewer threads" in verdicts["throughput"]["remedy"]
    assert verdicts["memory_headroom"]["numbers"]["available_ratio"] > 0
    sample = report["sample"]
    assert 0.5 < sample["window_seconds"] < 3
    assert "changed" not in sample and "invocation" not in sample
    # the loop is pinned to CPU 0: whatever CPU time it got this window was on CPU 0
    assert set(sample["process"]["cpu_seconds_by_cpu"]) <= {"0"}
    assert sample["process"]["cpus_allowed"] == [0]
    assert report["plan"]["numa_nodes"] and "server_args" not in report["plan"]
    assert "check              status  summary" in proc.stdout
    assert "1 of 1 host(s) diagnosed; 1 with a failed check:" in proc.stdout
    assert "live: throughput" in proc.stdout


def test_check_mode_writes_nothing(inventory, server, tmp_path):
    proc = run(inventory, *server, "--check", "-e", f"ktfleet_report_dir={tmp_path}/report")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "overall" in proc.stdout
    assert not (tmp_path / "report").exists()


def test_a_service_that_is_not_running_fails_naming_it(inventory, tmp_path):
    proc = run(inventory, "-e", "ktfleet_service_name=ktfleet-no-such-service", "-e", f"ktfleet_report_dir={tmp_path}")
    assert proc.returncode != 0
    out = " ".join((proc.stdout + proc.stderr).split())
    assert "live: cannot diagnose service ktfleet-no-such-service:" in out
    assert not (tmp_path / "diagnosis").exists()


def test_the_role_entry_point_checks_its_variables_before_sampling(inventory, tmp_path):
    """diagnose is a role entry point: its argument spec names a bad variable, nothing is sampled."""
    proc = run(inventory, "-e", "ktfleet_diagnose_window=soon", "-e", f"ktfleet_report_dir={tmp_path}")
    assert proc.returncode != 0
    out = " ".join((proc.stdout + proc.stderr).split())
    assert "ktfleet_diagnose_window" in out and "float" in out, out[-2000:]
    assert "Sample the server over the window" not in out
    assert not (tmp_path / "diagnosis").exists()
