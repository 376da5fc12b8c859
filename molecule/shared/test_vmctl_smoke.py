"""Smoke test of the VM layer: real QEMU guests with emulated NUMA topologies.

Skipped unless KTFLEET_VM_TESTS=1 (needs root, qemu-system-x86, qemu-utils,
debootstrap, e2fsprogs, openssh-client; builds the base image on first use,
~1.5 min, then cached). Boots `seed2s` then `cxl`, one at a time, checks what
the guest sees through ssh (lscpu, numactl --hardware, sysfs), and tears down.

    KTFLEET_VM_TESTS=1 .venv/bin/pytest -s molecule/shared/test_vmctl_smoke.py

KTFLEET_IMAGE_CACHE moves the image cache; KTFLEET_VM_STATE_DIR keeps the
state dir (console logs) somewhere known instead of pytest's tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
VMCTL = [sys.executable, str(HERE / "vmctl.py")]

pytestmark = [
    pytest.mark.skipif(os.environ.get("KTFLEET_VM_TESTS") != "1", reason="set KTFLEET_VM_TESTS=1 to boot VMs"),
    pytest.mark.skipif(os.geteuid() != 0, reason="vmctl needs root"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("qemu-system-x86_64", "qemu-img", "debootstrap", "ssh")),
                       reason="qemu-system-x86, qemu-utils, debootstrap, openssh-client needed"),
]

TIMINGS: dict[str, object] = {}


def vmctl(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    p = subprocess.run([*VMCTL, *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"vmctl {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return p


@pytest.fixture(scope="module")
def image():
    t0 = time.monotonic()
    d = Path(vmctl("image").stdout.strip())
    TIMINGS["image_s"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    vmctl("image")
    TIMINGS["image_cached_s"] = round(time.monotonic() - t0, 2)
    manifest = json.loads((d / "manifest.json").read_text())
    TIMINGS["image_cold_build_s"] = manifest["build_seconds"]
    yield d
    print("\nvmctl smoke timings:", json.dumps(TIMINGS, indent=1))


@pytest.fixture
def state_dir(tmp_path):
    d = Path(os.environ.get("KTFLEET_VM_STATE_DIR") or tmp_path / "vms")
    d.mkdir(parents=True, exist_ok=True)
    return d


def numactl_hardware(text: str) -> dict:
    """{'nodes': {id: {'cpus': [...], 'size_mb': int}}, 'distances': [[...]]}"""
    nodes: dict[int, dict] = {}
    for m in re.finditer(r"^node (\d+) cpus:(.*)$", text, re.M):
        nodes.setdefault(int(m.group(1)), {})["cpus"] = [int(x) for x in m.group(2).split()]
    for m in re.finditer(r"^node (\d+) size: (\d+) MB$", text, re.M):
        nodes.setdefault(int(m.group(1)), {})["size_mb"] = int(m.group(2))
    dist = [[int(x) for x in m.group(2).split()] for m in re.finditer(r"^\s*(\d+):\s+([\d ]+)$", text, re.M)]
    return {"nodes": nodes, "distances": dist}


def lscpu(text: str) -> dict:
    return {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in text.splitlines() if ":" in ln)}


EXPECT = {
    "seed2s": {"nodes": {0: [0, 1, 2, 3], 1: [4, 5, 6, 7]}, "siblings0": "0-1", "threads": "2",
               "sockets": "2", "distances": [[10, 21], [21, 10]], "memory_only": []},
    "cxl": {"nodes": {0: [0, 1], 1: [2, 3], 2: []}, "siblings0": "0", "threads": "1",
            "sockets": "2", "distances": [[10, 21, 20], [21, 10, 30], [20, 30, 10]], "memory_only": [2]},
}


@pytest.mark.parametrize("shape", ["seed2s", "cxl"])
def test_boot_and_topology(image, state_dir, shape):
    name = f"smoke-{shape}"
    want = EXPECT[shape]
    try:
        t0 = time.monotonic()
        st = json.loads(vmctl("up", "--name", name, "--topology", shape, "--state-dir", str(state_dir)).stdout)
        TIMINGS[f"{shape}_up_s"] = round(time.monotonic() - t0, 1)
        TIMINGS[f"{shape}_host_cpu_s"] = st.get("host_cpu_seconds_to_ssh")
        TIMINGS[f"{shape}_rss_mib"] = st.get("rss_after_boot", {}).get("vmrss_mib")
        assert st["status"] == "up" and st["port"] > 0
        assert Path(st["console_log"]).exists()

        def sh(cmd: str) -> str:
            return vmctl("ssh", "--state-dir", str(state_dir), "--name", name, "--", cmd, timeout=120).stdout

        hw = numactl_hardware(sh("numactl --hardware"))
        assert {n: v["cpus"] for n, v in hw["nodes"].items()} == want["nodes"]
        assert hw["distances"] == want["distances"]
        for n in want["memory_only"]:
            assert hw["nodes"][n]["cpus"] == [] and hw["nodes"][n]["size_mb"] > 128
        assert all(v["size_mb"] > 100 for v in hw["nodes"].values())

        info = lscpu(sh("lscpu"))
        assert info["CPU(s)"] == str(sum(len(c) for c in want["nodes"].values()))
        assert info["Thread(s) per core"] == want["threads"]
        assert info["Socket(s)"] == want["sockets"]
        assert info["NUMA node(s)"] == str(len(want["nodes"]))
        assert sh("cat /sys/devices/system/cpu/cpu0/topology/thread_siblings_list").strip() == want["siblings0"]
        assert sh("hostname").strip() == name

        chk = vmctl("check", "--state-dir", str(state_dir), "--name", name, check=False)
        assert chk.returncode == 0, chk.stdout + chk.stderr

        inv = vmctl("inventory", "--state-dir", str(state_dir)).stdout
        assert f"{name}:" in inv and f"ansible_port: {st['port']}" in inv
        ansible = Path(sys.executable).parent / "ansible"
        if ansible.exists():  # the repo's venv: prove the inventory drives Ansible
            (state_dir / "inventory.yml").write_text(inv)
            r = subprocess.run([str(ansible), "all", "-i", str(state_dir / "inventory.yml"), "-m", "ansible.builtin.setup",
                                "-a", "gather_subset=!all,!min,hardware"],
                               capture_output=True, text=True, timeout=300,
                               env={**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False"})
            assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
            nproc = re.search(r'ansible_processor_nproc"?: (\d+)', r.stdout)  # json or yaml callback
            assert nproc and nproc.group(1) == info["CPU(s)"], r.stdout[-3000:]
    finally:
        out = vmctl("down", "--state-dir", str(state_dir), "--name", name, check=False)
        assert out.returncode == 0, out.stderr
    assert not (state_dir / f"{name}.qcow2").exists()
    assert not (state_dir / f"{name}.pid").exists()
    assert (state_dir / f"{name}.console.log").exists()  # kept for post-mortems


def test_a_guest_restored_from_the_snapshot_has_its_own_name_and_the_clock(image, state_dir):
    """The first `up` of a shape saves it (vmctl's snapshots); the next one restores that."""
    names = ["snap-a", "snap-b"]
    try:
        states = [json.loads(vmctl("up", "--name", n, "--topology", "seed2s", "--state-dir", str(state_dir)).stdout)
                  for n in names]
        restored = states[1]
        assert restored.get("restored_from"), restored
        TIMINGS["restored_up_s"] = restored["boot_seconds"]
        TIMINGS["restored_host_cpu_s"] = restored.get("host_cpu_seconds_to_ssh")
        for n in names:
            out = vmctl("ssh", "--state-dir", str(state_dir), "--name", n, "--", "hostname; date +%s; nproc",
                        timeout=120).stdout.split()
            assert out[0] == n and abs(int(out[1]) - time.time()) < 60 and out[2] == "8", out
            chk = vmctl("check", "--state-dir", str(state_dir), "--name", n, check=False)
            assert chk.returncode == 0, chk.stdout + chk.stderr
    finally:
        vmctl("down", "--state-dir", str(state_dir), check=False)
