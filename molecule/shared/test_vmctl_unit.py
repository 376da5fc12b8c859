"""Fast, VM-free tests of vmctl.py: topology -> QEMU args, inventory, helpers.

Not under tests/, so the default pytest run does not collect it; run with
`pytest molecule/shared/test_vmctl_unit.py`.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vmctl  # noqa: E402
from vms import common, inventory, qemu, snapshot, topology, vm  # noqa: E402
from vms import image as img  # noqa: E402  (`image` is the fixture below)

SHAPES = json.loads(topology.TOPOLOGIES_FILE.read_text())["topologies"]


def numa_args(lay: dict) -> list[str]:
    a = lay["args"]
    return [a[i + 1] for i, x in enumerate(a) if x == "-numa"]


def test_shapes_present():
    assert set(SHAPES) >= {"seed2s", "snc4", "cxl", "single"}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_shape_is_valid_and_small(name):
    lay = topology.layout(SHAPES[name])
    assert lay["cpus"] <= 8
    assert 512 <= lay["mem_mib"] <= 768
    assert sorted(c for cpus in lay["node_cpus"].values() for c in cpus) == list(range(lay["cpus"]))


def test_seed2s():
    lay = topology.layout(SHAPES["seed2s"])
    assert lay["node_cpus"] == {0: [0, 1, 2, 3], 1: [4, 5, 6, 7]}
    assert lay["cpu_siblings"][0] == [0, 1] and lay["cpu_siblings"][7] == [6, 7]
    assert "cpus=8,sockets=2,cores=2,threads=2" in lay["args"]
    assert "dist,src=0,dst=1,val=21" in numa_args(lay)
    assert lay["memory_only"] == []


def test_snc4_splits_sockets_by_core():
    lay = topology.layout(SHAPES["snc4"])
    assert lay["node_cpus"] == {0: [0], 1: [1], 2: [2], 3: [3]}
    na = numa_args(lay)
    assert "cpu,node-id=1,socket-id=0,core-id=1" in na
    assert "cpu,node-id=2,socket-id=1,core-id=0" in na
    assert "dist,src=0,dst=1,val=12" in na and "dist,src=1,dst=3,val=21" in na
    assert {lay["cpu_socket"][c] for c in (0, 1)} == {0}


def test_cxl_memory_only_node():
    lay = topology.layout(SHAPES["cxl"])
    assert lay["memory_only"] == [2]
    assert lay["node_cpus"][2] == []
    na = numa_args(lay)
    assert "node,nodeid=2,memdev=m2" in na
    assert not any(a.startswith("cpu,node-id=2") for a in na)
    assert "memory-backend-ram,id=m2,size=256M" in lay["args"]


def test_single_has_no_distances():
    lay = topology.layout(SHAPES["single"])
    assert lay["node_cpus"] == {0: [0, 1]}
    assert not any(a.startswith("dist,") for a in numa_args(lay))


def test_explicit_core_slices_and_smt():
    topo = {"sockets": 1, "cores_per_socket": 3, "threads_per_core": 2,
            "nodes": [{"id": 0, "socket": 0, "mem_mib": 256, "cores": [0, 2]},
                      {"id": 1, "socket": 0, "mem_mib": 256, "cores": [1]}]}
    lay = topology.layout(topo)
    assert lay["node_cpus"] == {0: [0, 1, 4, 5], 1: [2, 3]}
    assert lay["distances"] == [[10, 20], [20, 10]]


@pytest.mark.parametrize("topo, msg", [
    ({"sockets": 2, "cores_per_socket": 2, "nodes": [{"id": 0, "socket": 0, "mem_mib": 256}]}, "socket 1 has no CPU node"),
    ({"sockets": 1, "cores_per_socket": 3, "nodes": [{"id": 0, "socket": 0, "mem_mib": 256},
                                                     {"id": 1, "socket": 0, "mem_mib": 256}]}, "split evenly"),
    ({"sockets": 1, "cores_per_socket": 1, "nodes": [{"id": 1, "socket": 0, "mem_mib": 256}]}, "node ids"),
    ({"sockets": 1, "cores_per_socket": 1, "nodes": [{"id": 0, "socket": 0, "mem_mib": 64}]}, "mem_mib"),
    ({"sockets": 1, "cores_per_socket": 1, "nodes": [{"id": 0, "cpus": False, "mem_mib": 256}]}, "needs CPUs"),
    ({"sockets": 1, "cores_per_socket": 1, "nodes": [{"id": 0, "socket": 0, "mem_mib": 256},
                                                     {"id": 1, "cpus": False, "mem_mib": 256}],
      "distances": [[10, 20], [20, 11]]}, "diagonal"),
    ({"sockets": 0, "cores_per_socket": 1, "nodes": [{"id": 0, "socket": 0, "mem_mib": 256}]}, "sockets"),
])
def test_bad_topologies(topo, msg):
    with pytest.raises(common.VmError, match=msg):
        topology.layout(topo)


def test_load_topology_forms(tmp_path):
    assert topology.load_topology("cxl")[0] == "cxl"
    inline = json.dumps(SHAPES["single"])
    assert topology.load_topology(inline) == (None, SHAPES["single"])
    f = tmp_path / "mine.json"
    f.write_text(inline)
    assert topology.load_topology(str(f)) == ("mine", SHAPES["single"])
    with pytest.raises(common.VmError, match="unknown topology"):
        topology.load_topology("nope")


def test_host_mirror_deb822_and_list(tmp_path):
    d = tmp_path / "etc/apt/sources.list.d"
    d.mkdir(parents=True)
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n")
    (d / "other.sources.disabled").write_text("Types: deb\nURIs: http://nope/\nSuites: bookworm\n")
    assert img.host_mirror(str(tmp_path)) == "http://mirror.example/debian"
    (d / "debian.sources").unlink()
    (tmp_path / "etc/apt/sources.list").write_text("# x\ndeb [arch=amd64] http://old.example/debian bookworm main\n")
    assert img.host_mirror(str(tmp_path)) == "http://old.example/debian"
    (tmp_path / "etc/apt/sources.list").write_text("")
    assert img.host_mirror(str(tmp_path)) == img.DEFAULT_MIRROR


def test_cpio_newc_roundtrip():
    data = img._cpio_newc([("bin", 0o40755, b"", 0, 0), ("dev/console", 0o20600, b"", 5, 1),
                             ("init", 0o100755, b"#!/bin/sh\n", 0, 0)])
    assert len(data) % 512 == 0
    names, i = [], 0
    while True:
        h = data[i:i + 110]
        assert h[:6] == b"070701"
        f = [int(h[6 + 8 * k:14 + 8 * k], 16) for k in range(13)]
        name = data[i + 110:i + 110 + f[11] - 1].decode()
        i = (i + 110 + f[11] + 3) & ~3
        body = data[i:i + f[6]]
        i = (i + f[6] + 3) & ~3
        if name == "TRAILER!!!":
            break
        names.append((name, f[1], body, f[9], f[10]))
    assert names == [("bin", 0o40755, b"", 0, 0), ("dev/console", 0o20600, b"", 5, 1),
                     ("init", 0o100755, b"#!/bin/sh\n", 0, 0)]
    assert gzip  # the kernel takes it uncompressed; nothing to decompress here


def test_pid_of_refuses_foreign_process(tmp_path):
    pf = tmp_path / "x.pid"
    pf.write_text(str(os.getpid()))  # alive, but not a QEMU started with this pidfile
    assert qemu.pid_of(pf) is None
    pf.write_text("not a pid")
    assert qemu.pid_of(pf) is None
    assert qemu.pid_of(tmp_path / "missing.pid") is None


def _state(tmp_path: Path, name: str, status: str = "up") -> None:
    (tmp_path / f"{name}.json").write_text(json.dumps({
        "kind": "ktfleet-vm", "name": name, "host": "127.0.0.1", "user": "root", "port": 40022,
        "key": "/k/id_ed25519", "status": status, "topology_name": "cxl", "topology": SHAPES["cxl"]}))


def test_inventory_yaml(tmp_path):
    yaml = pytest.importorskip("yaml")
    _state(tmp_path, "vm1")
    _state(tmp_path, "vm2", status="failed")
    inv = yaml.safe_load(inventory.inventory_yaml(tmp_path))
    host = inv["all"]["hosts"]["vm1"]
    assert list(inv["all"]["hosts"]) == ["vm1"]
    assert host["ansible_host"] == "127.0.0.1" and host["ansible_port"] == 40022
    assert host["ansible_user"] == "root" and host["ansible_ssh_private_key_file"] == "/k/id_ed25519"
    assert "StrictHostKeyChecking=no" in host["ansible_ssh_common_args"]
    assert host["ktfleet_vm_topology"]["nodes"][2]["cpus"] is False
    grouped = yaml.safe_load(inventory.inventory_yaml(tmp_path, group="numa"))
    assert "vm1" in grouped["all"]["children"]["numa"]["hosts"]
    assert yaml.safe_load(inventory.inventory_yaml(tmp_path / "nothing"))["all"]["hosts"] == {}


def test_down_ignores_paths_in_state(tmp_path):
    # A state file naming some other pidfile/overlay must not make down touch them.
    victim = tmp_path / "victim.qcow2"
    victim.write_text("keep me")
    (tmp_path / "vm1.json").write_text(json.dumps({"kind": "ktfleet-vm", "name": "vm1",
                                                    "pidfile": "/run/other.pid", "overlay": str(victim)}))
    assert vm.vm_down(tmp_path) == ["vm1"]
    assert victim.exists() and not (tmp_path / "vm1.json").exists()


def test_recipe_hash_is_stable_and_sensitive(monkeypatch):
    h = img.recipe_hash()
    assert h == img.recipe_hash() and len(h) == 16
    monkeypatch.setattr(img, "INCLUDE_PACKAGES", [*img.INCLUDE_PACKAGES, "less"])
    assert img.recipe_hash() != h


def test_bad_names_rejected():
    for bad in ("", "../x", "a b", "-x"):
        with pytest.raises(common.VmError):
            qemu.check_name(bad)


def test_cli_contract_used_by_the_playbooks(capsys, tmp_path):
    # verify.yml reads `topology`; destroy.yml reads `down`; create.yml reads `up`'s state keys.
    assert vmctl.main(["topology", "cxl"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["node_cpus"] == {"0": [0, 1], "1": [2, 3], "2": []}
    assert out["memory_only"] == [2]
    assert out["distances"] == SHAPES["cxl"]["distances"]
    assert out["topology"]["threads_per_core"] == 1 and out["topology"]["sockets"] == 2
    assert vmctl.main(["down", "--state-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"stopped": []}
    _state(tmp_path, "vm1")
    assert vmctl.main(["inventory", "--state-dir", str(tmp_path)]) == 0
    assert "vm1:" in capsys.readouterr().out


def test_the_standin_is_part_of_the_recipe(monkeypatch, tmp_path):
    """An edit to the stand-in (baked into the image) must rebuild the image."""
    files = img.standin_files()
    assert {"standin.py", "venvs.py", "launch_server.py"} <= {p.name for p in files}
    assert not [p for p in files if "__pycache__" in p.parts]
    before = img.recipe_hash()
    (tmp_path / "standin.py").write_text("# edited\n")
    monkeypatch.setattr(img, "STANDIN_DIR", tmp_path)
    assert img.recipe_hash() != before


def test_prepare_builds_the_venvs_once(tmp_path):
    """prepare.yml's one command per host: venvs, fail markers, curves; a second run writes nothing."""
    spec = {
        "install_dir": str(tmp_path), "backend": "sglang-kt",
        "releases": [{"sglang-kt": {"kt-kernel": "0.7.2", "sglang-kt": "0.7.2"}, "legacy": {"ktransformers": "0.2.1.post1"}},
                     {"sglang-kt": {"kt-kernel": "0.7.3", "sglang-kt": "0.7.3"}, "legacy": {"ktransformers": "0.3.3"}}],
        "fail": [str(tmp_path / "sglang-kt-kt-kernel-0.7.3_sglang-kt-0.7.3")],
        "curve": {"knee": 6, "peak": 40.0},
    }
    sys.path.insert(0, str(img.STANDIN_DIR))
    try:
        import venvs
    finally:
        sys.path.remove(str(img.STANDIN_DIR))
    changed = venvs.prepare(spec)
    good, bad = tmp_path / "sglang-kt-kt-kernel-0.7.2_sglang-kt-0.7.2", tmp_path / "sglang-kt-kt-kernel-0.7.3_sglang-kt-0.7.3"
    assert str(good) in changed and str(bad) in changed
    assert (bad / "standin-fail").is_file() and not (good / "standin-fail").exists()
    assert json.loads((good / "standin-curve.json").read_text()) == spec["curve"]
    site = next((good / "lib").glob("python3*/site-packages"))
    assert (site / "ktfleet-standin.pth").read_text() == f"{img.STANDIN_DIR}\n"
    assert "Version: 0.7.2" in (site / "kt_kernel-0.7.2.dist-info/METADATA").read_text()
    assert venvs.prepare(spec) == []
    spec["curve"] = {"knee": 5, "peak": 40.0}
    assert venvs.prepare(spec) == [str(good / "standin-curve.json"), str(bad / "standin-curve.json")]


def test_a_boot_hang_is_told_from_a_slow_boot(tmp_path):
    """The TCG hang CI saw (a vCPU stuck in PID 1 for minutes) ends the boot attempt at once;
    a vCPU starved for seconds on a busy host does not."""
    console = tmp_path / "console.log"
    assert qemu.lockup(console) is None  # not written yet
    slow = "[   40.98] watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [systemd:1]\n"
    console.write_text("Debian GNU/Linux 12\n" + slow)
    assert qemu.lockup(console) is None
    console.write_text(slow + "[   68.98] watchdog: BUG: soft lockup - CPU#0 stuck for 49s! [systemd:1]\n"
                       "[   96.98] watchdog: BUG: soft lockup - CPU#1 stuck for 75s! [systemd:1]\n")
    assert qemu.lockup(console) == "watchdog: soft lockup, a vCPU stuck for 75 s"


def _key(shape: str, cmdline: str = "console=ttyS0 loglevel=4", initrd: str = "initrd.img") -> str:
    image = Path("/cache/0123456789abcdef")
    return snapshot.snapshot_key(topology.layout(SHAPES[shape]), accel_argv=qemu.accel_args()[1], image=image,
                                 initrd=image / initrd, cmdline=cmdline)


@pytest.mark.skipif(not shutil.which("qemu-system-x86_64"), reason="reads QEMU's version")
def test_snapshot_key_follows_what_the_guest_saw():
    assert _key("seed2s") == _key("seed2s")
    others = {_key("cxl"), _key("seed2s", cmdline="console=ttyS0 loglevel=7"), _key("seed2s", initrd="initrd-debian.img")}
    assert _key("seed2s") not in others and len(others) == 3


def _fake_snapshot(image: Path, key: str) -> Path:
    """A snapshot directory with every file vmctl looks for (contents never read by these tests)."""
    d = snapshot.snapshot_dir(image, key)
    d.mkdir(parents=True)
    for f in snapshot.SNAPSHOT_FILES:
        (d / f).write_text("{}")
    return d


@pytest.fixture
def image(tmp_path, monkeypatch):
    """A stand-in image directory that build_image returns (these tests boot nothing)."""
    d = tmp_path / "image"
    d.mkdir()
    (d / "initrd.img").write_text("")
    monkeypatch.setattr(vm, "build_image", lambda cache=None: d)
    return d


def test_a_snapshot_that_fails_to_restore_is_removed_and_the_vm_booted(tmp_path, monkeypatch, image):
    snap = _fake_snapshot(image, "k1")
    calls = []
    monkeypatch.setattr(vm, "snapshot_key", lambda *a, **k: "k1")
    monkeypatch.setattr(vm, "_restore_once", lambda name, st, *a, **k: calls.append("restore") or "no SSH")

    def boot(name, st, *a, **k):
        calls.append("boot")
        st["pid"] = None
        return None

    monkeypatch.setattr(vm, "_boot_once", boot)
    monkeypatch.setattr(vm, "_save_snapshot", lambda name, st, s: calls.append(("save", s.name)))
    st = vm.vm_up("vm1", "single", tmp_path / "vms")
    assert calls == ["restore", "boot", ("save", "k1")]
    assert not snap.exists() and st["status"] == "up" and st["failed_boots"] == ["no SSH"]
    monkeypatch.setenv("KTFLEET_VM_SNAPSHOTS", "0")
    calls.clear()
    vm.vm_up("vm2", "single", tmp_path / "vms")
    assert calls == ["boot"]


def test_snapshot_boots_each_shape_without_one_once_and_reports_the_rest(monkeypatch, image):
    _fake_snapshot(image, "single")
    monkeypatch.setattr(vm, "snapshot_key", lambda lay, **k: {2: "single", 4: "cxl"}.get(lay["cpus"], "seed2s"))
    booted = []

    def up(name, spec, state_dir, cache=None, **k):
        booted.append((name, spec))
        if spec == "seed2s":
            raise common.VmError("seed2s: no SSH after 180 s of host CPU\nconsole ...")
        _fake_snapshot(image, "cxl")
        return {"boot_seconds": 30.0}

    monkeypatch.setattr(vm, "vm_up", up)
    out = vm.snapshot_shapes(["single", "cxl", "seed2s", "cxl"])
    assert booted == [("snap-cxl", "cxl"), ("snap-seed2s", "seed2s")]
    assert {k: v["status"] for k, v in out.items()} == {
        "single": "cached", "cxl": "saved", "seed2s": "failed: seed2s: no SSH after 180 s of host CPU"}
    assert vmctl.main(["snapshot", "single", "cxl"]) == 0
    assert vmctl.main(["snapshot", "seed2s"]) == 1
