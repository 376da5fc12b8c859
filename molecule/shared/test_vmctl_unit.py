"""Fast, VM-free tests of vmctl.py: topology -> QEMU args, inventory, helpers.

Not under tests/, so the default pytest run does not collect it; run with
`pytest molecule/shared/test_vmctl_unit.py`.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vmctl  # noqa: E402

SHAPES = json.loads(vmctl.TOPOLOGIES_FILE.read_text())["topologies"]


def numa_args(lay: dict) -> list[str]:
    a = lay["args"]
    return [a[i + 1] for i, x in enumerate(a) if x == "-numa"]


def test_shapes_present():
    assert set(SHAPES) >= {"seed2s", "snc4", "cxl", "single"}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_shape_is_valid_and_small(name):
    lay = vmctl.layout(SHAPES[name])
    assert lay["cpus"] <= 8
    assert 512 <= lay["mem_mib"] <= 768
    assert sorted(c for cpus in lay["node_cpus"].values() for c in cpus) == list(range(lay["cpus"]))


def test_seed2s():
    lay = vmctl.layout(SHAPES["seed2s"])
    assert lay["node_cpus"] == {0: [0, 1, 2, 3], 1: [4, 5, 6, 7]}
    assert lay["cpu_siblings"][0] == [0, 1] and lay["cpu_siblings"][7] == [6, 7]
    assert "cpus=8,sockets=2,cores=2,threads=2" in lay["args"]
    assert "dist,src=0,dst=1,val=21" in numa_args(lay)
    assert lay["memory_only"] == []


def test_snc4_splits_sockets_by_core():
    lay = vmctl.layout(SHAPES["snc4"])
    assert lay["node_cpus"] == {0: [0], 1: [1], 2: [2], 3: [3]}
    na = numa_args(lay)
    assert "cpu,node-id=1,socket-id=0,core-id=1" in na
    assert "cpu,node-id=2,socket-id=1,core-id=0" in na
    assert "dist,src=0,dst=1,val=12" in na and "dist,src=1,dst=3,val=21" in na
    assert {lay["cpu_socket"][c] for c in (0, 1)} == {0}


def test_cxl_memory_only_node():
    lay = vmctl.layout(SHAPES["cxl"])
    assert lay["memory_only"] == [2]
    assert lay["node_cpus"][2] == []
    na = numa_args(lay)
    assert "node,nodeid=2,memdev=m2" in na
    assert not any(a.startswith("cpu,node-id=2") for a in na)
    assert "memory-backend-ram,id=m2,size=256M" in lay["args"]


def test_single_has_no_distances():
    lay = vmctl.layout(SHAPES["single"])
    assert lay["node_cpus"] == {0: [0, 1]}
    assert not any(a.startswith("dist,") for a in numa_args(lay))


def test_explicit_core_slices_and_smt():
    topo = {"sockets": 1, "cores_per_socket": 3, "threads_per_core": 2,
            "nodes": [{"id": 0, "socket": 0, "mem_mib": 256, "cores": [0, 2]},
                      {"id": 1, "socket": 0, "mem_mib": 256, "cores": [1]}]}
    lay = vmctl.layout(topo)
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
    with pytest.raises(vmctl.VmError, match=msg):
        vmctl.layout(topo)


def test_load_topology_forms(tmp_path):
    assert vmctl.load_topology("cxl")[0] == "cxl"
    inline = json.dumps(SHAPES["single"])
    assert vmctl.load_topology(inline) == (None, SHAPES["single"])
    f = tmp_path / "mine.json"
    f.write_text(inline)
    assert vmctl.load_topology(str(f)) == ("mine", SHAPES["single"])
    with pytest.raises(vmctl.VmError, match="unknown topology"):
        vmctl.load_topology("nope")


def test_host_mirror_deb822_and_list(tmp_path):
    d = tmp_path / "etc/apt/sources.list.d"
    d.mkdir(parents=True)
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n")
    (d / "other.sources.disabled").write_text("Types: deb\nURIs: http://nope/\nSuites: bookworm\n")
    assert vmctl.host_mirror(str(tmp_path)) == "http://mirror.example/debian"
    (d / "debian.sources").unlink()
    (tmp_path / "etc/apt/sources.list").write_text("# x\ndeb [arch=amd64] http://old.example/debian bookworm main\n")
    assert vmctl.host_mirror(str(tmp_path)) == "http://old.example/debian"
    (tmp_path / "etc/apt/sources.list").write_text("")
    assert vmctl.host_mirror(str(tmp_path)) == vmctl.DEFAULT_MIRROR


def test_cpio_newc_roundtrip():
    data = vmctl._cpio_newc([("bin", 0o40755, b"", 0, 0), ("dev/console", 0o20600, b"", 5, 1),
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
    assert vmctl.pid_of(pf) is None
    pf.write_text("not a pid")
    assert vmctl.pid_of(pf) is None
    assert vmctl.pid_of(tmp_path / "missing.pid") is None


def _state(tmp_path: Path, name: str, status: str = "up") -> None:
    (tmp_path / f"{name}.json").write_text(json.dumps({
        "kind": "ktfleet-vm", "name": name, "host": "127.0.0.1", "user": "root", "port": 40022,
        "key": "/k/id_ed25519", "status": status, "topology_name": "cxl", "topology": SHAPES["cxl"]}))


def test_inventory_yaml(tmp_path):
    yaml = pytest.importorskip("yaml")
    _state(tmp_path, "vm1")
    _state(tmp_path, "vm2", status="failed")
    inv = yaml.safe_load(vmctl.inventory_yaml(tmp_path))
    host = inv["all"]["hosts"]["vm1"]
    assert list(inv["all"]["hosts"]) == ["vm1"]
    assert host["ansible_host"] == "127.0.0.1" and host["ansible_port"] == 40022
    assert host["ansible_user"] == "root" and host["ansible_ssh_private_key_file"] == "/k/id_ed25519"
    assert "StrictHostKeyChecking=no" in host["ansible_ssh_common_args"]
    assert host["ktfleet_vm_topology"]["nodes"][2]["cpus"] is False
    grouped = yaml.safe_load(vmctl.inventory_yaml(tmp_path, group="numa"))
    assert "vm1" in grouped["all"]["children"]["numa"]["hosts"]
    assert yaml.safe_load(vmctl.inventory_yaml(tmp_path / "nothing"))["all"]["hosts"] == {}


def test_down_ignores_paths_in_state(tmp_path):
    # A state file naming some other pidfile/overlay must not make down touch them.
    victim = tmp_path / "victim.qcow2"
    victim.write_text("keep me")
    (tmp_path / "vm1.json").write_text(json.dumps({"kind": "ktfleet-vm", "name": "vm1",
                                                    "pidfile": "/run/other.pid", "overlay": str(victim)}))
    assert vmctl.vm_down(tmp_path) == ["vm1"]
    assert victim.exists() and not (tmp_path / "vm1.json").exists()


def test_recipe_hash_is_stable_and_sensitive(monkeypatch):
    h = vmctl.recipe_hash()
    assert h == vmctl.recipe_hash() and len(h) == 16
    monkeypatch.setattr(vmctl, "INCLUDE_PACKAGES", [*vmctl.INCLUDE_PACKAGES, "less"])
    assert vmctl.recipe_hash() != h


def test_bad_names_rejected():
    for bad in ("", "../x", "a b", "-x"):
        with pytest.raises(vmctl.VmError):
            vmctl.check_name(bad)


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
