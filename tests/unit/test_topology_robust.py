"""gather() on damaged and synthetic trees: never an exception, never a hang,
and a warning naming the file whenever a file it needs is garbage."""

from __future__ import annotations

import contextlib
import os
import shutil
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.ktfleet.numa.plugins.module_utils import sysfs, topology
from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import parse_cpumask
from ansible_collections.ktfleet.numa.plugins.module_utils.topology import (
    gather,
    parse_cpulist,
)

SCHEMA_KEYS = {
    "schema_version", "root", "nodes", "packages", "nodes_per_package", "cpus_online", "cpus_offline",
    "cpus_allowed", "cores_total", "core_cpus", "threads_per_core", "threads_per_core_histogram", "smt_active",
    "memory_total_bytes", "memory_available_bytes", "cpu", "gpus", "kernel", "warnings",
    "gpu_memory_nodes", "cpus_without_node", "cpuset",
}  # fmt: skip

# a real 48-CPU, 8-node AMD machine with *_list files, node cpulists, distances and proc/meminfo
DUMP = "48amd64-4pa2n6c-sparse"
# files gather() always reads on that dump (cpu0 is the first usable CPU, node0 the first node)
ALWAYS_READ = [
    "sys/devices/system/cpu/online",
    "sys/devices/system/node/node0/cpulist",
    "sys/devices/system/node/node0/meminfo",
    "sys/devices/system/node/node0/distance",
    "sys/devices/system/cpu/cpu0/topology/thread_siblings_list",
    "sys/devices/system/cpu/cpu0/topology/core_siblings_list",
    "sys/devices/system/cpu/cpu0/topology/physical_package_id",
    "proc/meminfo",
]
OTHERS = [
    "sys/devices/system/node/node33/cpulist",
    "sys/devices/system/node/node73/distance",
    "sys/devices/system/cpu/cpu47/topology/thread_siblings_list",
    "sys/devices/system/cpu/present",
    "proc/cpuinfo",
]
CGROUP_DUMP = "32amd64-4s2n4c-cgroup2"
CGROUP_FILES = [
    "cgroup/unified/uid_2008/job_15389/step_0/cpuset.cpus.effective",
    "cgroup/unified/uid_2008/job_15389/step_0/cpuset.mems.effective",
    "cgroup/unified/cgroup.controllers",
    "proc/self/cpuset",
    "proc/mounts",
]

ROBUST = settings(
    max_examples=40,
    deadline=None,  # the machine may be busy: damage() bounds each gather() itself
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@pytest.fixture(scope="module")
def damaged(single_dump, tmp_path_factory):
    """damage(name, rel, content) -> gather() with root/rel replaced by content
    (bytes; None removes it; "dir" makes it a directory); restored afterwards."""
    roots = {}

    def _root(name):
        if name not in roots:
            roots[name] = tmp_path_factory.mktemp("copy") / name
            shutil.copytree(single_dump(name), roots[name], symlinks=True)
        return roots[name]

    for name in (DUMP, CGROUP_DUMP):
        _root(name)

    def damage(name, rel, content):
        root = _root(name)
        path = root / rel
        saved = path.read_bytes() if path.is_file() else None
        try:
            if path.exists():
                path.unlink()
            if content == "dir":
                path.mkdir()
            elif content is not None:
                path.write_bytes(content)
            started = time.monotonic()
            facts = gather(str(root), gpu_memory=False)
            assert time.monotonic() - started < 2, "gather() took too long"
            return facts
        finally:
            if path.is_dir():
                path.rmdir()
            elif path.exists():
                path.unlink()
            if saved is not None:
                path.write_bytes(saved)

    return damage


def check_shape(facts):
    assert isinstance(facts, dict)
    assert set(facts) == SCHEMA_KEYS
    assert all(isinstance(w, str) for w in facts["warnings"])
    assert set(facts["cpus_allowed"]) <= set(facts["cpus_online"])
    for node in facts["nodes"]:
        assert set(node["cpus"]) <= set(facts["cpus_allowed"])
    assert sum(facts["threads_per_core_histogram"].values()) == facts["cores_total"]
    assert len(facts["core_cpus"]) == facts["cores_total"]


def truncations(original):
    return st.integers(min_value=0, max_value=max(len(original) - 1, 0)).map(lambda n: original[:n])


# garbage that no parser accepts: a cpulist/number/meminfo text with a poison character and no ':'.
# A NUL is poison only with a value after it: trailing NULs are padding (Kunpeng 920 writes "31\n\x00"),
# so "0" + "\x00" + "" is a valid value and was a 1-in-many flaky example.
POISON = st.builds(
    lambda head, bad, tail: (head + bad + tail).encode(),
    st.text(alphabet="0123456789-, \n", max_size=20),
    st.sampled_from(["g", "%", "z", ".", "\x001", "é"]),
    st.text(alphabet="0123456789-, \nabc", max_size=20),
)


@ROBUST
@given(
    rel=st.sampled_from(ALWAYS_READ + OTHERS),
    content=st.one_of(st.binary(max_size=300), st.none(), st.just("dir"), POISON),
)
def test_any_damage_never_raises(damaged, rel, content):
    check_shape(damaged(DUMP, rel, content))


@ROBUST
@given(rel=st.sampled_from(ALWAYS_READ), cut=st.integers(min_value=0, max_value=400))
def test_truncation_never_raises(damaged, single_dump, rel, cut):
    original = (single_dump(DUMP) / rel).read_bytes()
    check_shape(damaged(DUMP, rel, original[: cut % max(len(original), 1)]))


@ROBUST
@given(rel=st.sampled_from(ALWAYS_READ), content=POISON)
def test_garbage_is_named_in_a_warning(damaged, rel, content):
    facts = damaged(DUMP, rel, content)
    check_shape(facts)
    assert any(w.startswith(rel) for w in facts["warnings"]), facts["warnings"]


@pytest.mark.parametrize("rel", ALWAYS_READ)
def test_unreadable_is_named_in_a_warning(damaged, rel):
    """A directory where a file should be (EISDIR): the warning names it."""
    facts = damaged(DUMP, rel, "dir")
    check_shape(facts)
    assert any(w.startswith(rel) for w in facts["warnings"]), facts["warnings"]


@ROBUST
@given(rel=st.sampled_from(CGROUP_FILES), content=st.one_of(st.binary(max_size=200), st.none(), POISON))
def test_cgroup_damage_never_raises(damaged, rel, content):
    facts = damaged(CGROUP_DUMP, rel, content)
    check_shape(facts)
    assert facts["cpus_allowed"]  # a broken cpuset never leaves the host without CPUs


def test_huge_cpulist_is_refused_quickly(damaged):
    rel = "sys/devices/system/node/node0/cpulist"
    facts = damaged(DUMP, rel, b"0-999999999999")
    assert any(w.startswith(rel) for w in facts["warnings"])
    facts = damaged(DUMP, "sys/devices/system/cpu/online", b"0-65535")  # valid: only existing CPUs count
    assert facts["cpus_online"] == list(range(48))


# ----------------------------------------------------------------------------
# parsers


@pytest.mark.parametrize(
    "text, cpus",
    [
        ("", []),
        ("\n", []),
        ("0", [0]),
        ("0-3", [0, 1, 2, 3]),
        ("0-3,8,10-11\n", [0, 1, 2, 3, 8, 10, 11]),
        ("3,1,2", [1, 2, 3]),
        ("0-7:2/4", [0, 1, 4, 5]),
        ("0-3,2-5", [0, 1, 2, 3, 4, 5]),
    ],
)
def test_parse_cpulist(text, cpus):
    assert parse_cpulist(text) == cpus


@pytest.mark.parametrize("text", ["a", "1-", "-1", "3-1", "1,,2", "0x3", "+1", "١", "0-99999999", "1 2"])
def test_parse_cpulist_rejects(text):
    with pytest.raises(ValueError):
        parse_cpulist(text)


@ROBUST
@given(st.sets(st.integers(min_value=0, max_value=4095), max_size=64))
def test_parse_cpulist_roundtrip(cpus):
    text = ",".join(str(c) for c in sorted(cpus))
    assert parse_cpulist(text) == sorted(cpus)
    mask = 0
    for c in cpus:
        mask |= 1 << c
    words = f"{mask:x}"
    words = words.zfill((len(words) + 7) // 8 * 8)
    assert parse_cpumask(",".join(words[i : i + 8] for i in range(0, len(words), 8))) == sorted(cpus)


@ROBUST
@given(st.text(max_size=40))
def test_parsers_raise_only_value_error(text):
    for parse in (parse_cpulist, parse_cpumask):
        with contextlib.suppress(ValueError):
            assert all(isinstance(c, int) and c >= 0 for c in parse(text))


@pytest.mark.parametrize(
    "text, cpus",
    [("0", []), ("00000000,00000103", [0, 1, 8]), ("fffff", list(range(20))), ("1,00000000", [32])],
)
def test_parse_cpumask(text, cpus):
    assert parse_cpumask(text) == cpus


@pytest.mark.parametrize("text", ["xyz", "0x1", "1,,2", "f" * 20000])
def test_parse_cpumask_rejects(text):
    with pytest.raises(ValueError):
        parse_cpumask(text)


# ----------------------------------------------------------------------------
# synthetic trees

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni amx_tile amx_int8 amx_bf16 hypervisor

processor\t: 1
vendor_id\t: GenuineIntel
"""
MEMINFO = "MemTotal:       16384000 kB\nMemFree:         8000000 kB\nMemAvailable:   12000000 kB\n"


def write(root, rel, text):
    path = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def machine(root, ncpus=8, nodes=((0, "0-3"), (1, "4-7")), siblings=None, online=None, present=None,
            cpuinfo=X86_CPUINFO, meminfo=MEMINFO, packages=None):  # fmt: skip
    """A small x86 host: CPUs in `nodes`, SMT pairs unless `siblings` says otherwise."""
    cpu = "sys/devices/system/cpu/"
    write(root, cpu + "online", online or f"0-{ncpus - 1}")
    write(root, cpu + "present", present or f"0-{ncpus - 1}")
    for i in range(ncpus):
        t = f"{cpu}cpu{i}/topology/"
        sib = siblings[i] if siblings else f"{i - i % 2}-{i - i % 2 + 1}"
        if sib is not None:
            write(root, t + "thread_siblings_list", sib)
        pkg = packages[i] if packages else (0 if i < ncpus // 2 else 1)
        write(root, t + "physical_package_id", str(pkg))
        half = ncpus // 2
        write(root, t + "core_siblings_list", f"0-{half - 1}" if i < half else f"{half}-{ncpus - 1}")
    for nid, cpus in nodes or ():
        d = f"sys/devices/system/node/node{nid}/"
        write(root, d + "cpulist", cpus)
        write(root, d + "meminfo", f"Node {nid} MemTotal:  8192000 kB\nNode {nid} MemFree:  4096000 kB\n")
        write(root, d + "distance", " ".join("10" if n == nid else "21" for n, _ in nodes))
        write(root, d + "hugepages/hugepages-2048kB/nr_hugepages", "16")
        write(root, d + "hugepages/hugepages-2048kB/free_hugepages", "8")
    if cpuinfo is not None:
        write(root, "proc/cpuinfo", cpuinfo)
    if meminfo is not None:
        write(root, "proc/meminfo", meminfo)
    return str(root)


def test_synthetic_machine(tmp_path):
    root = machine(tmp_path)
    write(tmp_path, "proc/sys/kernel/numa_balancing", "1\n")
    write(tmp_path, "sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never\n")
    write(tmp_path, "proc/cmdline", "BOOT_IMAGE=/vmlinuz isolcpus=nohz,domain,2-3 nohz_full=2-3 quiet\n")
    facts = gather(root)
    assert facts["warnings"] == []
    assert [n["id"] for n in facts["nodes"]] == [0, 1]
    assert facts["nodes"][0] == {
        "id": 0, "cpus": [0, 1, 2, 3], "cores": 2, "package_ids": [0], "memory_total_bytes": 8192000 * 1024,
        "memory_free_bytes": 4096000 * 1024, "hugepages": {"2048": {"total": 16, "free": 8}},
        "distances": [10, 21], "memory_only": False, "local_nodes": [0],
    }  # fmt: skip
    assert facts["packages"] == [
        {"id": 0, "nodes": [0], "cores": 2, "cpus": [0, 1, 2, 3]},
        {"id": 1, "nodes": [1], "cores": 2, "cpus": [4, 5, 6, 7]},
    ]
    assert (facts["cores_total"], facts["threads_per_core"], facts["smt_active"]) == (4, 2, True)
    assert facts["memory_total_bytes"] == 16384000 * 1024
    assert facts["memory_available_bytes"] == 12000000 * 1024
    assert facts["cpu"]["vendor"] == "GenuineIntel"
    assert facts["cpu"]["model_name"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert facts["cpu"]["hypervisor"] is True
    assert facts["cpu"]["flags"] == dict.fromkeys(
        ["avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16"], True
    ) | {"avx512_vbmi": False, "avx512bw": False}
    assert facts["kernel"] == {
        "numa_balancing": 1, "transparent_hugepage": "madvise", "isolcpus": [2, 3], "nohz_full": [2, 3],
    }  # fmt: skip


def test_no_node_directory(tmp_path):
    facts = gather(machine(tmp_path, nodes=None))
    assert len(facts["nodes"]) == 1
    node = facts["nodes"][0]
    assert node["id"] == 0 and node["cpus"] == list(range(8)) and node["cores"] == 4
    assert node["memory_total_bytes"] == 16384000 * 1024
    assert node["memory_free_bytes"] == 8000000 * 1024
    assert node["package_ids"] == [0, 1] and node["memory_only"] is False
    assert any(w.startswith("sys/devices/system/node") for w in facts["warnings"])


def test_no_meminfo(tmp_path):
    facts = gather(machine(tmp_path, meminfo=None))
    assert facts["memory_total_bytes"] is None and facts["memory_available_bytes"] is None
    assert [w for w in facts["warnings"] if w.startswith("proc/meminfo")]
    assert facts["nodes"][0]["memory_total_bytes"] == 8192000 * 1024  # node meminfo still read


def test_no_meminfo_and_no_nodes(tmp_path):
    facts = gather(machine(tmp_path, meminfo=None, nodes=None))
    assert facts["nodes"][0]["memory_total_bytes"] is None
    assert len(facts["warnings"]) == 2


def test_no_cpuinfo(tmp_path):
    facts = gather(machine(tmp_path, cpuinfo=None))
    cpu = facts["cpu"]
    assert cpu["vendor"] is None and cpu["model_name"] is None
    assert not any(cpu["flags"].values())
    assert [w for w in facts["warnings"] if w.startswith("proc/cpuinfo")]


def test_non_x86_cpuinfo(tmp_path):
    arm = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
    facts = gather(machine(tmp_path, cpuinfo=arm + "\n" + arm.replace(": 0", ": 1", 1)))
    assert facts["cpu"]["architecture"] in ("aarch64", os.uname().machine)
    assert facts["cpu"]["vendor"] == "ARM"
    assert facts["warnings"] == []


def test_offline_cpus(tmp_path):
    root = machine(tmp_path, online="0-5", present="0-7")
    facts = gather(root)
    assert facts["cpus_online"] == [0, 1, 2, 3, 4, 5]
    assert facts["cpus_offline"] == [6, 7]
    assert facts["nodes"][1]["cpus"] == [4, 5]
    assert facts["packages"][1]["cores"] == 1


def test_per_cpu_online_files_when_no_online_list(tmp_path):
    root = machine(tmp_path)
    os.remove(os.path.join(root, "sys/devices/system/cpu/online"))
    write(tmp_path, "sys/devices/system/cpu/cpu7/online", "0\n")
    write(tmp_path, "sys/devices/system/cpu/cpu6/online", "1\n")
    facts = gather(root)
    assert facts["cpus_online"] == list(range(7))
    assert facts["threads_per_core_histogram"] == {"2": 3, "1": 1}


def test_hybrid_histogram(tmp_path):
    siblings = ["0-1", "0-1", "2-3", "2-3", "4", "5", "6", "7"]
    facts = gather(machine(tmp_path, nodes=((0, "0-7"),), siblings=siblings, packages=[0] * 8))
    assert facts["threads_per_core"] is None
    assert facts["threads_per_core_histogram"] == {"2": 2, "1": 4}
    assert facts["cores_total"] == 6 and facts["smt_active"] is True


def test_no_topology_each_cpu_is_a_core(tmp_path):
    facts = gather(machine(tmp_path, siblings=[None] * 8))
    assert facts["cores_total"] == 8 and facts["threads_per_core"] == 1
    assert any("own core" in w for w in facts["warnings"])


def test_memory_only_node(tmp_path):
    root = machine(tmp_path, nodes=((0, "0-3"), (1, "4-7"), (2, "")))
    facts = gather(root)
    cxl = facts["nodes"][2]
    assert cxl["memory_only"] is True and cxl["cpus"] == [] and cxl["package_ids"] == []
    assert cxl["distances"] == [21, 21, 10]
    assert facts["nodes_per_package"] == 1


def test_cgroup_v2(tmp_path):
    root = machine(tmp_path)
    write(tmp_path, "sys/fs/cgroup/cpuset.cpus.effective", "0-7\n")
    write(tmp_path, "proc/self/cgroup", "0::/kt.slice/job\n")
    write(tmp_path, "sys/fs/cgroup/kt.slice/job/cpuset.cpus.effective", "2-5\n")
    write(tmp_path, "sys/fs/cgroup/kt.slice/job/cpuset.mems.effective", "1\n")
    facts = gather(root, view="gatherer")
    assert facts["cpus_allowed"] == [2, 3, 4, 5]
    assert [n["id"] for n in facts["nodes"]] == [1]
    assert facts["nodes"][0]["cpus"] == [4, 5]
    assert facts["nodes"][0]["distances"] == [10]
    assert [p["cpus"] for p in facts["packages"]] == [[2, 3], [4, 5]]


def test_cgroup_v2_without_cpuset_controller_inherits(tmp_path):
    """A v2 cgroup without the cpuset controller has no cpuset files: the nearest ancestor's apply."""
    root = machine(tmp_path)
    write(tmp_path, "sys/fs/cgroup/cpuset.cpus.effective", "0-7\n")
    write(tmp_path, "proc/self/cgroup", "0::/kt.slice/session-1.scope\n")
    write(tmp_path, "sys/fs/cgroup/kt.slice/cpuset.cpus.effective", "0-1\n")
    os.makedirs(os.path.join(root, "sys/fs/cgroup/kt.slice/session-1.scope"))
    assert gather(root, view="gatherer")["cpus_allowed"] == [0, 1]


def test_cgroup_v1_and_status(tmp_path):
    root = machine(tmp_path)
    write(tmp_path, "sys/fs/cgroup/cpuset/cpuset.cpus", "0-7\n")
    write(tmp_path, "proc/self/cgroup", "5:memory:/x\n3:cpuset:/job\n0::/\n")
    write(tmp_path, "sys/fs/cgroup/cpuset/job/cpuset.cpus", "0-5\n")
    write(tmp_path, "sys/fs/cgroup/cpuset/job/cpuset.mems", "0-1\n")
    write(tmp_path, "proc/self/status", "Name:\tpython\nCpus_allowed_list:\t1-7\nMems_allowed_list:\t0-1\n")
    facts = gather(root, view="gatherer")
    assert facts["cpus_allowed"] == [1, 2, 3, 4, 5]
    assert [n["cpus"] for n in facts["nodes"]] == [[1, 2, 3], [4, 5]]
    assert facts["cores_total"] == 3


def test_cgroup_that_allows_nothing_is_ignored(tmp_path):
    root = machine(tmp_path)
    write(tmp_path, "sys/fs/cgroup/cpuset/cpuset.cpus", "0-7\n")
    write(tmp_path, "proc/self/cpuset", "/job\n")
    write(tmp_path, "sys/fs/cgroup/cpuset/job/cpuset.cpus", "100-101\n")
    facts = gather(root)
    assert facts["cpus_allowed"] == list(range(8))
    assert any("allows none" in w for w in facts["warnings"])


def test_gpus(tmp_path):
    root = machine(tmp_path)
    pci = "sys/bus/pci/devices/"
    devices = {
        "0000:17:00.0": {"vendor": "0x10de", "class": "0x030200", "device": "0x2330", "numa_node": "-1",
                         "local_cpulist": "0-3"},
        "0000:17:00.1": {"vendor": "0x10de", "class": "0x040300", "device": "0x22a3", "numa_node": "0"},
        "0000:c1:00.0": {"vendor": "0x1002", "class": "0x038000", "device": "0x74a1", "numa_node": "1",
                         "local_cpus": "000000f0", "mem_info_vram_total": "206141652992"},
        "0000:03:00.0": {"vendor": "0x1a03", "class": "0x030000", "device": "0x2000", "numa_node": "0"},
    }  # fmt: skip
    for addr, files in devices.items():
        for name, text in files.items():
            write(tmp_path, pci + addr + "/" + name, text + "\n")
    facts = gather(root, gpu_memory=False)
    assert facts["gpus"] == [
        {"pci_address": "0000:17:00.0", "vendor": "nvidia", "device_id": "0x2330", "numa_node": None,
         "local_cpus": [0, 1, 2, 3], "memory_bytes": None, "memory_node": None},
        {"pci_address": "0000:c1:00.0", "vendor": "amd", "device_id": "0x74a1", "numa_node": 1,
         "local_cpus": [4, 5, 6, 7], "memory_bytes": 206141652992, "memory_node": None},
    ]  # fmt: skip
    assert facts["warnings"] == []  # nvidia-smi only ever runs on a live host


def fake_nvidia_smi(tmp_path, monkeypatch, script):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    return topology._Reader("/")


def test_nvidia_smi_memory(tmp_path, monkeypatch):
    rd = fake_nvidia_smi(
        tmp_path, monkeypatch, 'printf "00000000:17:00.0, 81559\\n00000009:65:00.0, [N/A]\\n"\n'
    )
    assert topology._nvidia_smi_memory(rd) == {"0000:17:00.0": 81559 * 1024 * 1024}
    assert rd.warnings == []


def test_nvidia_smi_failure_is_a_warning(tmp_path, monkeypatch):
    rd = fake_nvidia_smi(tmp_path, monkeypatch, "echo 'NVIDIA-SMI has failed' >&2; exit 9\n")
    assert topology._nvidia_smi_memory(rd) == {}
    assert rd.warnings and "nvidia-smi exited 9 (NVIDIA-SMI has failed)" in rd.warnings[0]
    assert rd.important == []  # GPU memory unknown does not change the CPU/NUMA plan


def test_nvidia_smi_missing_is_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    rd = topology._Reader("/")
    assert topology._nvidia_smi_memory(rd) == {}
    assert rd.warnings == ["nvidia-smi not found: NVIDIA GPU memory unknown"]


def test_overlapping_nodes_keep_the_first(tmp_path):
    facts = gather(machine(tmp_path, nodes=((0, "0-7"), (1, "0-7"))))
    assert [n["id"] for n in facts["nodes"]] == [0]
    assert facts["nodes"][0]["distances"] == [10]
    assert any(w.startswith("sys/devices/system/node/node1/cpulist") for w in facts["warnings"])


def test_package_id_minus_one_numbers_packages(tmp_path):
    facts = gather(machine(tmp_path, packages=[-1] * 8))
    assert [p["id"] for p in facts["packages"]] == [0, 1]
    assert any("physical_package_id" in w for w in facts["warnings"])


def test_live_host():
    facts = gather("/", gpu_memory=False, view="gatherer")  # this process's affinity, not a service's
    assert set(facts) == SCHEMA_KEYS
    assert facts["cpus_allowed"] == sorted(os.sched_getaffinity(0))
    assert facts["nodes"] and facts["cores_total"] >= 1


# ----------------------------------------------------------------------------
# the file reader against hostile trees (issue 13): never hang, never read
# what is not a regular file under the root, cap every size


def run_bounded(fn, *args, limit=10.0):
    """fn(*args) in a worker thread; fails (instead of hanging the suite) when it blocks."""
    import threading

    box = {}

    def target():
        box["value"] = fn(*args)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(limit)
    assert not worker.is_alive(), f"{fn.__name__} blocked for {limit} s"
    return box["value"]


def test_fifo_in_a_dump_does_not_hang(tmp_path):
    root = machine(tmp_path)
    rel = "sys/devices/system/node/node0/cpulist"
    os.remove(os.path.join(root, rel))
    os.mkfifo(os.path.join(root, rel))
    os.remove(os.path.join(root, "proc/cpuinfo"))
    os.mkfifo(os.path.join(root, "proc/cpuinfo"))
    facts = run_bounded(gather, root)
    # one warning for the kind of problem, naming the first file and counting the other
    assert [w for w in facts["warnings"] if "not a regular file" in w] == [
        f"{rel}: not a regular file, not read; and 1 more file(s) with the same problem"
    ], facts["warnings"]


def test_link_leaving_the_root_is_neither_read_nor_quoted(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("hunter2 0-3\n")
    root = machine(tmp_path / "dump")
    rel = "sys/devices/system/node/node0/cpulist"
    os.remove(os.path.join(root, rel))
    os.symlink(secret, os.path.join(root, rel))
    facts = gather(root)
    assert any(w.startswith(rel) and "leaves the root" in w for w in facts["warnings"]), facts["warnings"]
    assert not any("hunter2" in w for w in facts["warnings"])
    # a directory link out of the root is refused the same way
    shutil.rmtree(os.path.join(root, "sys/devices/system/cpu/cpu2/topology"))
    os.symlink(tmp_path, os.path.join(root, "sys/devices/system/cpu/cpu2/topology"))
    facts = gather(root)
    # cpulist and cpu2's topology files: one warning for the kind, with the count
    assert any("leaves the root" in w and "more file(s)" in w for w in facts["warnings"]), facts["warnings"]
    assert not any("cpumap" in w for w in facts["warnings"])  # a refused cpulist is no sign of an old kernel


def test_link_inside_the_root_is_followed(tmp_path):
    root = machine(tmp_path)
    rel = "sys/devices/system/node/node1/cpulist"
    os.rename(os.path.join(root, rel), os.path.join(root, "node1-cpus"))
    os.symlink("../../../../../node1-cpus", os.path.join(root, rel))
    facts = gather(root)
    assert facts["warnings"] == [] and facts["nodes"][1]["cpus"] == [4, 5, 6, 7]


def test_oversized_file_is_refused(tmp_path):
    root = machine(tmp_path)
    rel = "proc/meminfo"
    write(tmp_path, rel, MEMINFO + " " * (sysfs.READ_LIMIT + 1))
    facts = gather(root)
    assert any(w.startswith(rel) and "larger than" in w for w in facts["warnings"]), facts["warnings"]
    assert facts["memory_total_bytes"] is None


def test_absurd_memtotal_is_corruption(tmp_path):
    root = machine(tmp_path)
    rel = "sys/devices/system/node/node0/meminfo"
    write(tmp_path, rel, f"Node 0 MemTotal: {10**29} kB\nNode 0 MemFree: 1 kB\n")
    write(tmp_path, "proc/meminfo", f"MemTotal: {10**29} kB\nMemFree: 1 kB\n")
    facts = gather(root)
    assert facts["nodes"][0]["memory_total_bytes"] is None and facts["memory_total_bytes"] is None
    # proc/meminfo and the node's meminfo: one warning for the kind, with the count
    assert any("beyond any machine" in w and "1 more file(s)" in w for w in facts["warnings"]), facts["warnings"]


def test_archive_that_expands_too_far_is_refused(tmp_path, monkeypatch):
    """A small compressed archive whose members add up past the cap stops at the
    member's header, before its data is written (a 1 MB bomb expanding to 1 GB)."""
    import tarfile

    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as tar:
        big = tmp_path / "zeros"
        with open(big, "wb") as fh:
            fh.truncate(64 << 20)  # 64 MiB of zeros: a few dozen kB compressed
        tar.add(big, arcname="dump/sys/zeros")
    monkeypatch.setattr(topology, "ARCHIVE_MAX_BYTES", 16 << 20)
    started = time.monotonic()
    with pytest.raises(tarfile.TarError, match="expands beyond 16 MiB"), topology.open_root(str(bomb)):
        pass
    assert time.monotonic() - started < 5


def test_archive_of_a_dump_still_opens(tmp_path):
    import tarfile

    root = machine(tmp_path / "m")
    archive = tmp_path / "m.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="m")
    with topology.open_root(str(archive)) as tree:
        assert gather(tree)["cpus_allowed"] == list(range(8))


# ----------------------------------------------------------------------------
# benign variations real kernels produce: the same facts as the clean file


def without_root(facts):
    return {k: v for k, v in facts.items() if k != "root"}


BENIGN = {
    "trailing NULs": lambda b, n: b + b"\x00" * n,
    "newline then NULs": lambda b, n: b.rstrip(b"\n") + b"\n" + b"\x00" * n,
    "CRLF": lambda b, n: b.replace(b"\n", b"\r\n"),
    "trailing spaces": lambda b, n: b.rstrip(b"\n") + b" " * n + b"\n",
    "no final newline": lambda b, n: b.rstrip(b"\n"),
}


@pytest.fixture(scope="module")
def clean_facts(damaged, single_dump):
    rel = ALWAYS_READ[0]
    return without_root(damaged(DUMP, rel, (single_dump(DUMP) / rel).read_bytes()))


@ROBUST
@given(rel=st.sampled_from(ALWAYS_READ + OTHERS), kind=st.sampled_from(sorted(BENIGN)), n=st.integers(1, 16))
def test_benign_variations_give_the_same_facts(damaged, single_dump, clean_facts, rel, kind, n):
    original = (single_dump(DUMP) / rel).read_bytes()
    assert without_root(damaged(DUMP, rel, BENIGN[kind](original, n))) == clean_facts


@pytest.mark.parametrize(
    "cpumap",
    [
        "0000000f\n",
        "00000000,0000000f\n",  # leading zero words (a kernel built for more CPUs)
        "0000000f\n\x00",
        "00000000," * 116000 + "0000000f\n",  # ~1 MiB of leading zeros: still parsed, still the same
    ],
)
def test_masks_with_leading_zeros_and_padding(tmp_path, cpumap):
    clean = machine(tmp_path / "clean", nodes=((0, "0-3"), (1, "4-7")))
    root = machine(tmp_path / "mask", nodes=((0, "0-3"), (1, "4-7")))
    for r in (clean, root):
        for nid in (0, 1):
            os.remove(os.path.join(r, f"sys/devices/system/node/node{nid}/cpulist"))
        write(r, "sys/devices/system/node/node1/cpumap", "000000f0\n")
    write(clean, "sys/devices/system/node/node0/cpumap", "0000000f\n")
    write(root, "sys/devices/system/node/node0/cpumap", cpumap)
    assert len(cpumap) < sysfs.READ_LIMIT
    assert without_root(gather(root)) == without_root(gather(clean))


@pytest.mark.parametrize("empty", ["", "\n", "\n\x00", "\n\x00\x00", " \r\n"])
def test_empty_lists(tmp_path, empty):
    """A memory-only node's cpulist and the isolated CPUs: empty, however the kernel pads it."""
    def tree(path, text):
        root = machine(path, nodes=((0, "0-3"), (1, "4-7"), (2, text)))
        write(path, "sys/devices/system/cpu/isolated", text)
        return root

    clean = gather(tree(tmp_path / "clean", "\n"))
    facts = gather(tree(tmp_path / "padded", empty))
    assert without_root(facts) == without_root(clean)
    assert facts["nodes"][2]["memory_only"] and facts["kernel"]["isolcpus"] == []


def test_nul_bytes_with_no_line_before_them_are_no_value(tmp_path):
    """Padding follows a value's newline ("31\\n\\0", "\\n\\0"); a file of NULs alone is corrupt, named,
    not an empty list (hypothesis found a node's cpulist so damaged losing its CPUs unnamed)."""
    root = machine(tmp_path / "nul", nodes=((0, "0-3"), (1, "4-7")))
    write(root, "sys/devices/system/node/node0/cpulist", "\x00\x00")
    facts = gather(root)
    assert any(w.startswith("sys/devices/system/node/node0/cpulist: only NUL bytes") for w in facts["warnings"])


def test_one_mib_cpulist(tmp_path):
    """A 1 MiB cpulist (every CPU listed one by one, many times over) parses to the same CPUs."""
    clean = gather(machine(tmp_path / "clean"))
    root = machine(tmp_path / "big")
    text = ",".join(["0,1,2,3"] * (1 << 18))[: 1 << 20]
    text = text[: text.rfind(",")] + "\n"
    write(root, "sys/devices/system/node/node0/cpulist", text)
    assert len(text) > 1000000
    assert without_root(gather(root)) == without_root(clean)
