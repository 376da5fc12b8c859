"""roles/host_tuning through ansible-playbook, on a staged host.

The role's private ``__ktfleet_tuning_root`` puts every file it reads or
writes under a directory, /proc/sys and /sys included, and keeps systemd out
(numad is then "not asked", irqbalance is "installed" when its environment
file exists). So the whole cycle runs for real on this machine without
touching its kernel: tune, tune again (no change), undo in check mode (no
byte changes), undo (the values found first are back, nothing of ktfleet is
left), undo again (no change). The real kernels are the Molecule VMs' job
(molecule/shared/host_tuning_check.yml).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ansible

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

NUMA = "proc/sys/kernel/numa_balancing"
THP = "sys/kernel/mm/transparent_hugepage/enabled"
DEFRAG = "sys/kernel/mm/transparent_hugepage/defrag"
GOVERNOR = "sys/devices/system/cpu/cpu{}/cpufreq/scaling_governor"
IRQBALANCE = "etc/default/irqbalance"
STATE = "var/lib/ktfleet/host_tuning.json"
BOOT_FILES = [
    "etc/sysctl.d/60-ktfleet-numa.conf",
    "etc/tmpfiles.d/ktfleet-thp.conf",
    "etc/tmpfiles.d/ktfleet-thp-defrag.conf",
    "etc/tmpfiles.d/ktfleet-governor.conf",
]
IRQBALANCE_TEXT = (
    "# irqbalance is a daemon process that distributes interrupts across CPUs.\n"
    'ENABLED="1"\n'
    "#IRQBALANCE_BANNED_CPULIST=\n"
    "IRQBALANCE_BANNED_CPULIST=3\n"
    'OPTIONS=""\n'
)

TUNE = {
    "ktfleet_tuning_numa_balancing": "present",
    "ktfleet_tuning_thp": "madvise",
    "ktfleet_tuning_thp_defrag": "defer+madvise",
    "ktfleet_tuning_governor": "performance",
    "ktfleet_tuning_numad": "stopped",
    "ktfleet_tuning_irqbalance": "isolate",
    "ktfleet_tuning_inference_cpus": "0-1",
}
UNDO = {key: "absent" for key in TUNE if key != "ktfleet_tuning_inference_cpus"}

WRAPPER = """
- name: Run the role and keep its report
  hosts: all
  gather_facts: false
  tasks:
    - name: Tune
      ansible.builtin.include_role:
        name: ktfleet.numa.host_tuning
    - name: Keep the report
      ansible.builtin.copy:
        content: "{{ ktfleet_host_tuning_report | to_json }}"
        dest: "{{ report_path }}"
        mode: "0644"
      check_mode: false
      changed_when: false  # test equipment: the recap counts the role alone
"""


def stage(root: Path, cpufreq=True, thp=True, irqbalance=True) -> Path:
    """A host with NUMA balancing on, THP always, mixed governors and irqbalance."""

    def put(path, text):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)

    put(NUMA, "1\n")
    put("sys/devices/system/cpu/online", "0-3\n")
    if thp:
        put(THP, "[always] madvise never\n")
        put(DEFRAG, "always defer defer+madvise [madvise] never\n")
    if cpufreq:
        for cpu in range(4):
            put(GOVERNOR.format(cpu), "schedutil\n" if cpu == 3 else "powersave\n")
            put(GOVERNOR.format(cpu).replace("scaling_governor", "scaling_available_governors"),
                "performance powersave schedutil\n")
    if irqbalance:
        put(IRQBALANCE, IRQBALANCE_TEXT)
    for directory in ("etc/sysctl.d", "etc/tmpfiles.d"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def value(root: Path, path: str) -> str:
    """The value as the kernel would show it (the bracketed word, else the text)."""
    text = (root / path).read_text()
    match = re.search(r"\[(\S+)\]", text)
    return match.group(1) if match else text.strip()


def playbook(tmp_path, root, variables, check=False, real_playbook=False):
    """(rc, output, report rows by setting) of one run against the staged root."""
    report = tmp_path / "report.json"
    report.unlink(missing_ok=True)
    extra = {
        "__ktfleet_tuning_root": str(root),
        "ktfleet_target": "all",
        "ansible_python_interpreter": sys.executable,
        "report_path": str(report),
        **variables,
    }
    extra_file = tmp_path / "extra.json"
    extra_file.write_text(json.dumps(extra))
    if real_playbook:
        book = REPO / "playbooks" / "host_tuning.yml"
    else:
        book = tmp_path / "wrapper.yml"
        book.write_text(WRAPPER)
    cmd = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(book), "-e", f"@{extra_file}"]
    if check:
        cmd.append("--check")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    rows = {row["setting"]: row for row in json.loads(report.read_text())} if report.exists() else {}
    return proc.returncode, output, rows


def recap_changed(output: str) -> int:
    return int(re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", output).group(1))


def test_tune_retune_check_undo_undo_cycle(tmp_path):
    root = stage(tmp_path / "root")
    original = {path: value(root, path) for path in (NUMA, THP, DEFRAG)}
    original_governors = {cpu: value(root, GOVERNOR.format(cpu)) for cpu in range(4)}

    # tune
    rc, out, rows = playbook(tmp_path, root, TUNE)
    assert rc == 0, out
    assert value(root, NUMA) == "0"
    assert value(root, THP) == "madvise"
    assert value(root, DEFRAG) == "defer+madvise"
    assert {value(root, GOVERNOR.format(cpu)) for cpu in range(4)} == {"performance"}
    assert (root / "etc/sysctl.d/60-ktfleet-numa.conf").read_text().splitlines()[-1] == "kernel.numa_balancing = 0"
    assert (root / "etc/tmpfiles.d/ktfleet-thp.conf").read_text().splitlines()[-1] == (
        "w /sys/kernel/mm/transparent_hugepage/enabled - - - - madvise"
    )
    assert (root / "etc/tmpfiles.d/ktfleet-governor.conf").read_text().splitlines()[-1] == (
        "w /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor - - - - performance"
    )
    irq = (root / IRQBALANCE).read_text()
    assert irq.startswith(IRQBALANCE_TEXT)
    assert re.search(r"(?m)^# BEGIN ktfleet\.numa\.host_tuning: .*\nIRQBALANCE_BANNED_CPULIST=0-1\n# END ", irq)

    state = json.loads((root / STATE).read_text())
    assert sorted(state) == ["governor", "irqbalance", "numa_balancing", "thp", "thp_defrag"]
    assert state["numa_balancing"] == {"before": "1", "values": {"/proc/sys/kernel/numa_balancing": "1"}}
    assert state["governor"]["values"]["/sys/devices/system/cpu/cpu3/cpufreq/scaling_governor"] == "schedutil"
    assert state["irqbalance"] == {"file": "/etc/default/irqbalance", "before": "IRQBALANCE_BANNED_CPULIST=3"}

    assert list(rows) == ["kernel.numa_balancing", "THP enabled", "THP defrag", "CPU governor", "numad", "irqbalance"]
    assert rows["kernel.numa_balancing"] == {
        "setting": "kernel.numa_balancing", "before": "1", "after": "0", "changed": True,
        "note": "kept across reboots by /etc/sysctl.d/60-ktfleet-numa.conf",
    }
    assert rows["CPU governor"]["before"] == "mixed: powersave x3, schedutil x1"
    assert rows["CPU governor"]["after"] == "performance"
    assert rows["numad"]["note"] == "staged root: systemd not asked"
    assert not rows["numad"]["changed"]
    assert rows["irqbalance"]["before"] == "IRQBALANCE_BANNED_CPULIST=3"
    assert rows["irqbalance"]["after"] == "IRQBALANCE_BANNED_CPULIST=0-1"
    assert "host tuning on localhost\n" in out

    # tune again: nothing changes
    rc, out, rows = playbook(tmp_path, root, TUNE)
    assert rc == 0, out
    assert recap_changed(out) == 0, out
    assert not [row for row in rows.values() if row["changed"]]
    tuned = snapshot(root)

    # undo in check mode: says what it would restore, changes no byte
    rc, out, rows = playbook(tmp_path, root, UNDO, check=True)
    assert rc == 0, out
    assert snapshot(root) == tuned
    assert "(check mode: nothing was changed; after = what would be set)" in out
    assert rows["kernel.numa_balancing"]["after"] == "1"
    assert rows["THP enabled"]["after"] == "always"
    assert rows["CPU governor"]["after"] == "mixed: powersave x3, schedutil x1"
    assert rows["irqbalance"]["after"] == "IRQBALANCE_BANNED_CPULIST=3"
    assert all(rows[s]["changed"] for s in ("kernel.numa_balancing", "THP enabled", "THP defrag", "CPU governor", "irqbalance"))

    # undo: every value found first is back, nothing of ktfleet is left
    rc, out, rows = playbook(tmp_path, root, UNDO)
    assert rc == 0, out
    assert {path: value(root, path) for path in (NUMA, THP, DEFRAG)} == original
    assert {cpu: value(root, GOVERNOR.format(cpu)) for cpu in range(4)} == original_governors
    assert (root / IRQBALANCE).read_text() == IRQBALANCE_TEXT
    assert not (root / STATE).exists()
    assert not [f for f in BOOT_FILES if (root / f).exists()]
    assert rows["THP defrag"]["note"] == (
        "restored the value found before the first change; /etc/tmpfiles.d/ktfleet-thp-defrag.conf removed"
    )

    # undo again: nothing left to undo
    rc, out, rows = playbook(tmp_path, root, UNDO)
    assert rc == 0, out
    assert recap_changed(out) == 0, out
    assert rows["kernel.numa_balancing"]["note"] == "no value recorded by ktfleet: left as is"
    assert rows["irqbalance"]["note"] == "no ktfleet block in /etc/default/irqbalance: left as is"


def test_what_the_host_lacks_is_reported_and_nothing_is_recorded(tmp_path):
    root = stage(tmp_path / "root", cpufreq=False, thp=False, irqbalance=False)
    variables = {
        "ktfleet_tuning_thp": "never",
        "ktfleet_tuning_governor": "performance",
        "ktfleet_tuning_irqbalance": "isolate",
        "ktfleet_tuning_inference_cpus": "0-1",
    }
    rc, out, rows = playbook(tmp_path, root, variables)
    assert rc == 0, out
    assert rows["THP enabled"]["note"] == "not exposed (kernel without transparent hugepages)"
    assert rows["CPU governor"]["note"] == "not exposed (no cpufreq: VM or BIOS-controlled)"
    assert rows["irqbalance"]["note"] == "not installed (no /etc/default/irqbalance)"
    assert not [row for row in rows.values() if row["changed"]]
    assert recap_changed(out) == 0, out
    assert not (root / STATE).exists()
    assert not [f for f in BOOT_FILES if (root / f).exists()]


def test_nothing_asked_publishes_an_empty_report(tmp_path):
    root = stage(tmp_path / "root")
    before = snapshot(root)
    rc, out, rows = playbook(tmp_path, root, {})
    assert rc == 0, out
    assert rows == {}
    assert "nothing asked" in out
    assert snapshot(root) == before


def test_the_playbook_plans_the_host_for_its_inference_cpus(tmp_path):
    """No CPU list: playbooks/host_tuning.yml plans this machine and bans the plan's CPUs."""
    root = stage(tmp_path / "root")
    put_online = root / "sys/devices/system/cpu/online"
    put_online.write_text(f"0-{max(os.cpu_count() or 1, 4) * 2 - 1}\n")  # room left for interrupts
    model = {"name": "tiny", "model_path": "/usr/share", "weights_path": "/usr/share", "weights_bytes": "1M"}
    rc, out, rows = playbook(
        tmp_path, root, {"ktfleet_tuning_irqbalance": "isolate", "ktfleet_model": model}, real_playbook=True
    )
    assert rc == 0, out
    assert "Plan this host for its inference CPUs" in out
    # the last line wins: our block, after the host's own
    banned = re.findall(r"(?m)^IRQBALANCE_BANNED_CPULIST=(\S+)$", (root / IRQBALANCE).read_text())[-1]
    assert banned != "3"
    assert re.fullmatch(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*", banned)
    assert f"inference CPUs {banned} banned" in out


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"ktfleet_tuning_thp": "sometimes"}, "ktfleet_tuning_thp must be one of"),
        ({"ktfleet_tuning_numad": "off"}, "ktfleet_tuning_numad must be one of"),
        ({"ktfleet_tuning_irqbalance": "isolate"}, "ktfleet_tuning_inference_cpus: empty, and localhost has no"),
        ({"ktfleet_tuning_irqbalance": "isolate", "ktfleet_tuning_inference_cpus": "0-x"},
         'ktfleet_tuning_inference_cpus: "0-x" is not a CPU list'),
        ({"ktfleet_tuning_irqbalance": "isolate", "ktfleet_tuning_inference_cpus": "0-3"},
         "ktfleet_tuning_inference_cpus: 0-3 covers every online CPU of localhost"),
        ({"ktfleet_tuning_irqbalance": "isolate", "ktfleet_tuning_inference_cpus": "2-5"},
         "ktfleet_tuning_inference_cpus: 2-5 names CPUs that are not online on localhost"),
    ],
)
def test_bad_input_fails_naming_the_variable_and_changes_nothing(tmp_path, variables, message):
    root = stage(tmp_path / "root")
    before = snapshot(root)
    rc, out, _rows = playbook(tmp_path, root, variables)
    assert rc != 0
    assert message in " ".join(out.split()), out
    assert snapshot(root) == before


def test_a_governor_the_cpus_do_not_offer_fails_before_writing_and_undo_cleans_up(tmp_path):
    root = stage(tmp_path / "root")
    rc, out, _rows = playbook(tmp_path, root, {"ktfleet_tuning_governor": "ondemand"})
    assert rc != 0
    assert "accepts performance, powersave, schedutil; 'ondemand' is not one of them" in out
    assert value(root, GOVERNOR.format(0)) == "powersave"
    assert not (root / "etc/tmpfiles.d/ktfleet-governor.conf").exists()
    # the values were recorded before the attempt; "absent" puts them back and drops the record
    assert "governor" in json.loads((root / STATE).read_text())
    rc, out, rows = playbook(tmp_path, root, {"ktfleet_tuning_governor": "absent"})
    assert rc == 0, out
    assert not (root / STATE).exists()
    assert value(root, GOVERNOR.format(3)) == "schedutil"
