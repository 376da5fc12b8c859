"""The classes of real sysfs the fact module got wrong (issue 15), each built as a
small synthetic tree (or a visible dump edited in a copy), with the answer a
deployment needs: the facts, then the plan or the report drawn from them."""

from __future__ import annotations

import os
import shutil

import pytest
from test_topology_robust import machine, write

from ansible_collections.ktfleet.numa.plugins.module_utils.topology import gather
from ansible_collections.ktfleet.numa.plugins.plugin_utils.errors import PlanError
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.planner import make_plan
from ansible_collections.ktfleet.numa.plugins.plugin_utils.report import check_record, topology, topology_svg

GiB = 1024**3


def drawing(facts):
    """The report's topology drawing for these facts, read as a saved record is."""
    record = check_record({"host": "h", "updated": "2026-01-01T00:00:00+00:00", "facts": facts}, "test")
    return topology_svg("h", topology(record["facts"], None))


NODE = "sys/devices/system/node/"
MODEL = {"name": "m", "weights_bytes": GiB, "model_path": "/srv/m", "weights_path": "/srv/m-cpu"}


def same_facts(a, b):
    drop = ("root",)
    return {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}


def pad_every_file(root, suffix, under="sys"):
    for dirpath, _dirs, files in os.walk(os.path.join(root, under)):
        for name in files:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                with open(path, "ab") as fh:
                    fh.write(suffix)


# 1. values padded with NULs ---------------------------------------------------------


@pytest.mark.parametrize("suffix", [b"\x00", b"\n\x00", b"\x00\x00\x00\x00"])
def test_nul_padded_values_are_not_corruption(tmp_path, suffix):
    """Kunpeng 920 reads every list file as "31\\n\\x00": the same facts as the clean tree."""
    clean = gather(machine(tmp_path / "clean"))
    root = machine(tmp_path / "padded")
    pad_every_file(root, suffix)
    padded = gather(root)
    assert padded["warnings"] == []
    assert same_facts(padded, clean)


def test_nul_padded_real_dump(single_dump, tmp_path):
    root = tmp_path / "dump"
    shutil.copytree(single_dump("48amd64-4pa2n6c-sparse"), root, symlinks=True)
    clean = gather(str(root), gpu_memory=False)
    pad_every_file(str(root), b"\n\x00")
    padded = gather(str(root), gpu_memory=False)
    assert same_facts(padded, clean)
    assert [n["cpus"] for n in padded["nodes"]] == [n["cpus"] for n in clean["nodes"]] and padded[
        "cores_total"
    ] == 48


def test_really_corrupt_is_still_corrupt_and_warned_once_per_kind(tmp_path):
    root = machine(tmp_path, nodes=((0, "0-1"), (1, "2-3"), (2, "4-5"), (3, "6-7")))
    for nid in range(4):
        write(tmp_path, f"{NODE}node{nid}/cpulist", f"{2 * nid}\x00{2 * nid + 1}\n")  # a NUL inside
    facts = gather(root)
    corrupt = [w for w in facts["warnings"] if "corrupt" in w]
    assert corrupt == [corrupt[0]] and corrupt[0].startswith(f"{NODE}node0/cpulist: corrupt")
    assert "3 more file(s) with the same problem" in corrupt[0]


# 2. CPUs in no node ---------------------------------------------------------------------


def test_cpus_of_an_offline_node_are_reported_not_lost(tmp_path):
    root = machine(tmp_path)
    shutil.rmtree(os.path.join(root, NODE, "node1"))  # node 1 offline: its directory gone
    write(tmp_path, NODE + "online", "0\n")
    write(tmp_path, NODE + "node0/distance", "10\n")  # the kernel's rows list online nodes only
    facts = gather(root)
    assert facts["cpus_without_node"] == [4, 5, 6, 7]
    assert facts["cpus_allowed"] == list(range(8)) and facts["cores_total"] == 4  # as hwloc: still usable
    assert any("NUMA node's cpulist" in w and "cpus_without_node" in w for w in facts["warnings"])
    plan = make_plan(facts, MODEL, "sglang-kt")
    assert plan.numa_nodes == [0] and not set(plan.cpus or []) & {4, 5, 6, 7}
    assert any("CPUs 4-7 belong to no NUMA node" in w for w in plan.warnings)
    svg = drawing(facts)
    assert 'class="nodeless"' in svg and "CPUs 4-7: in no NUMA node" in svg


def test_node_directory_that_node_online_does_not_list(tmp_path):
    """hwloc reads node/online: a node taken offline may keep its directory."""
    root = machine(tmp_path)
    write(tmp_path, NODE + "online", "0\n")
    write(tmp_path, NODE + "node0/distance", "10\n")
    facts = gather(root)
    assert [n["id"] for n in facts["nodes"]] == [0]
    assert facts["cpus_without_node"] == [4, 5, 6, 7]
    assert any(w.startswith(NODE + "online: nodes 1 are not online") for w in facts["warnings"])


def test_cpus_of_a_node_the_cpuset_hides_are_node_less(tmp_path):
    root = machine(tmp_path)
    write(tmp_path, "sys/fs/cgroup/cpuset.cpus.effective", "0-7\n")
    write(tmp_path, "sys/fs/cgroup/system.slice/cpuset.mems.effective", "0\n")
    facts = gather(root)
    assert [n["id"] for n in facts["nodes"]] == [0] and facts["cpus_without_node"] == [4, 5, 6, 7]


# 3. memoryless CPU nodes, memory-only nodes' locality --------------------------------------


def test_memoryless_cpu_node_is_never_a_membind_target(tmp_path):
    root = machine(tmp_path, nodes=((0, "0-3"), (1, "4-7"), (2, "")))
    write(tmp_path, NODE + "node1/meminfo", "Node 1 MemTotal: 0 kB\nNode 1 MemFree: 0 kB\n")
    write(tmp_path, NODE + "node0/distance", "10 20 30\n")
    write(tmp_path, NODE + "node1/distance", "20 10 15\n")
    write(tmp_path, NODE + "node2/distance", "30 15 10\n")
    facts = gather(root)
    assert facts["nodes"][1]["memory_total_bytes"] == 0 and facts["nodes"][1]["cpus"] == [4, 5, 6, 7]
    model = MODEL
    for backend, options in (("legacy", {"policy": "bind", "nodes": [1]}), ("legacy", {"policy": "bind"}),
                             ("sglang-kt", {}), ("legacy", {"policy": "interleave"})):  # fmt: skip
        plan = make_plan(facts, model, backend, **options)
        assert 1 not in plan.memory_nodes, (backend, options, plan.memory_nodes)
        assert "--membind=1" not in plan.numactl and "--interleave=0,1,2" not in plan.numactl
    # bound to node 1's CPUs, its memory comes from the nearest memory node (node 2 at 15)
    plan = make_plan(facts, model, "legacy", policy="bind", nodes=[1])
    assert plan.numa_nodes == [1] and plan.memory_nodes == [2]
    assert "--membind=2" in plan.numactl


def test_memory_only_locality_from_initiators(tmp_path):
    root = machine(tmp_path, nodes=((0, "0-3"), (1, "4-7"), (2, "")))
    os.makedirs(os.path.join(root, NODE, "node2/access0/initiators/node1"))
    facts = gather(root)
    assert facts["nodes"][2]["memory_only"] and facts["nodes"][2]["local_nodes"] == [1]
    assert [n["local_nodes"] for n in facts["nodes"][:2]] == [[0], [1]]


@pytest.mark.parametrize("row, local", [("17 30 10", [0]), ("21 21 10", []), ("30 17 10", [1])])
def test_memory_only_locality_from_distances(tmp_path, row, local):
    root = machine(tmp_path, nodes=((0, "0-3"), (1, "4-7"), (2, "")))
    write(tmp_path, NODE + "node2/distance", row + "\n")
    assert gather(root)["nodes"][2]["local_nodes"] == local


# 4. coherent GPU memory as NUMA nodes --------------------------------------------------------

GPU = "0009:01:00.0"


def grace_hopper(tmp_path, driver=True, far=80):
    """One Grace node (0) and its Hopper's memory as CPU-less node 1 (GH200), ids as the driver gives them."""
    root = machine(tmp_path, ncpus=4, nodes=((0, "0-3"), (1, "")), packages=[0] * 4)
    write(tmp_path, NODE + "node1/meminfo", "Node 1 MemTotal: 100663296 kB\nNode 1 MemFree: 100000000 kB\n")
    write(tmp_path, NODE + "node0/distance", f"10 {far}\n")
    write(tmp_path, NODE + "node1/distance", f"{far} 10\n")
    d = f"sys/bus/pci/devices/{GPU}/"
    for name, text in {"vendor": "0x10de", "class": "0x030200", "device": "0x2342", "numa_node": "0",
                       "local_cpulist": "0-3"}.items():  # fmt: skip
        write(tmp_path, d + name, text + "\n")
    if driver:
        write(tmp_path, f"proc/driver/nvidia/gpus/{GPU}/numa_status",
              "Node: 1\nStatus: online\nMemory block size: 0x20000000\n")  # fmt: skip
    return root


@pytest.mark.parametrize("driver", [True, False])
def test_gpu_memory_node_is_gpu_memory_not_a_node(tmp_path, driver):
    facts = gather(grace_hopper(tmp_path, driver))
    assert [n["id"] for n in facts["nodes"]] == [0]
    assert facts["nodes"][0]["distances"] == [10]
    assert facts["gpu_memory_nodes"] == [
        {"id": 1, "pci_address": GPU, "memory_total_bytes": 100663296 * 1024, "memory_free_bytes": 100000000 * 1024,
         "local_nodes": [0], "source": "nvidia-driver" if driver else "distances"}
    ]  # fmt: skip
    assert facts["gpus"][0]["memory_node"] == 1
    for backend, options in (("legacy", {"policy": "interleave"}), ("legacy", {}), ("sglang-kt", {})):
        try:
            plan = make_plan(facts, MODEL, backend, **options)
        except Exception as exc:  # one CPU node: interleave is refused, never spread onto GPU memory
            assert "one" in str(exc)
            continue
        assert 1 not in plan.memory_nodes and "1" not in " ".join(plan.numactl)
        assert any("node 1 is GPU memory" in w for w in plan.warnings)
    with pytest.raises(PlanError, match="ktfleet_nodes: node.s. 1 are GPU memory"):
        make_plan(facts, MODEL, "legacy", policy="bind", nodes=[1])
    svg = drawing(facts)
    assert 'class="gpumem"' in svg and "GPU memory" in svg and f'data-pci="{GPU}"' in svg


def test_near_cpu_less_node_is_not_gpu_memory(tmp_path):
    """A CXL expander at distance 20 on a host with a GPU stays a memory-only node."""
    facts = gather(grace_hopper(tmp_path, driver=False, far=20))
    assert facts["gpu_memory_nodes"] == [] and facts["nodes"][1]["memory_only"]
    assert facts["gpus"][0]["memory_node"] is None


def test_power9_gpu_memory_nodes_far_ids(tmp_path):
    """POWER9 + NVLink V100: GPU memory as nodes 252-255 next to CPU nodes 0 and 8."""
    root = machine(tmp_path, nodes=((0, "0-3"), (8, "4-7"), (252, ""), (253, "")))
    rows = {0: "10 40 80 80", 8: "40 10 80 80", 252: "80 80 10 80", 253: "80 80 80 10"}
    for nid, row in rows.items():
        write(tmp_path, f"{NODE}node{nid}/distance", row + "\n")
    gpus = {"0004:04:00.0": 252, "0035:03:00.0": 253}
    for addr, nid in gpus.items():
        for name, text in {
            "vendor": "0x10de",
            "class": "0x030200",
            "device": "0x1db1",
            "numa_node": "0",
        }.items():
            write(tmp_path, f"sys/bus/pci/devices/{addr}/{name}", text + "\n")
        write(tmp_path, f"proc/driver/nvidia/gpus/{addr}/numa_status", f"Node:  {nid}\n")
    facts = gather(root)
    assert [n["id"] for n in facts["nodes"]] == [0, 8]
    assert [n["distances"] for n in facts["nodes"]] == [[10, 40], [40, 10]]
    assert {g["id"]: g["pci_address"] for g in facts["gpu_memory_nodes"]} == {
        252: "0004:04:00.0",
        253: "0035:03:00.0",
    }
    plan = make_plan(facts, MODEL, "legacy", policy="interleave")
    assert plan.memory_nodes == [0, 8] and "--interleave=0,8" in plan.numactl


# 5. whose cpuset ---------------------------------------------------------------------------


def restricted_session(tmp_path):
    """A login session whose cpuset allows CPUs 0-3 and node 0; the machine (and system.slice) has all."""
    root = machine(tmp_path)
    write(tmp_path, "sys/fs/cgroup/cpuset.cpus.effective", "0-7\n")
    write(tmp_path, "sys/fs/cgroup/cpuset.mems.effective", "0-1\n")
    write(tmp_path, "proc/self/cgroup", "0::/user.slice/user-1000.slice/session-3.scope\n")
    write(tmp_path, "sys/fs/cgroup/user.slice/cpuset.cpus.effective", "0-3\n")
    write(tmp_path, "sys/fs/cgroup/user.slice/cpuset.mems.effective", "0\n")
    write(tmp_path, "proc/self/status", "Name:\tpython\nCpus_allowed_list:\t0-1\nMems_allowed_list:\t0\n")
    return root


def test_planning_view_is_the_services_cpuset(tmp_path):
    facts = gather(restricted_session(tmp_path))
    assert facts["cpus_allowed"] == list(range(8)) and [n["id"] for n in facts["nodes"]] == [0, 1]
    assert facts["cpuset"] == {
        "planning": "service",
        "service": {"cgroup": "sys/fs/cgroup/system.slice", "cpus": list(range(8)), "mems": [0, 1]},
        "gatherer": {"cgroup": "sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope", "cpus": [0, 1],
                     "mems": [0]},
    }  # fmt: skip
    assert any("differs from the service's" in w for w in facts["warnings"])
    gatherer = gather(restricted_session(tmp_path), view="gatherer")
    assert gatherer["cpus_allowed"] == [0, 1] and [n["id"] for n in gatherer["nodes"]] == [0]
    plan = make_plan(facts, MODEL, "sglang-kt")
    assert plan.numa_nodes == [0, 1]


def test_system_slice_with_its_own_cpuset(tmp_path):
    root = restricted_session(tmp_path)
    write(tmp_path, "sys/fs/cgroup/system.slice/cpuset.cpus.effective", "4-7\n")
    write(tmp_path, "sys/fs/cgroup/system.slice/cpuset.mems.effective", "1\n")
    facts = gather(root)
    assert facts["cpus_allowed"] == [4, 5, 6, 7] and [n["id"] for n in facts["nodes"]] == [1]


def test_same_views_no_warning(tmp_path):
    facts = gather(machine(tmp_path))
    assert facts["cpuset"]["service"]["cpus"] == facts["cpuset"]["gatherer"]["cpus"] == list(range(8))
    assert facts["warnings"] == []


# 6. package and core ids that lie --------------------------------------------------------------


def test_package_ids_that_disagree_with_sibling_lists(tmp_path):
    facts = gather(machine(tmp_path, packages=[0, 1, 0, 1, 2, 3, 2, 3]))
    assert [p["cpus"] for p in facts["packages"]] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert any("disagrees with their core_siblings" in w for w in facts["warnings"])


def test_overlapping_package_sibling_lists(tmp_path):
    root = machine(tmp_path)
    for cpu in range(4, 8):
        write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/topology/core_siblings_list", "2-7\n")
    facts = gather(root)
    cpus = [c for p in facts["packages"] for c in p["cpus"]]
    assert sorted(cpus) == list(range(8)) and len(cpus) == 8  # each CPU in one package
    assert any("sibling lists of two packages" in w for w in facts["warnings"])
