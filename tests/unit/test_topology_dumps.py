"""gather() on 39 real machine dumps, against hwloc's committed answers.

Each dump under /work/shared/topologies/machines is extracted once per session
(conftest's dumps_dir), read with gather(root) and compared with
expected/<name>.json (key ``hwloc``; see that directory's README).  Where the
right answer for deployment differs from hwloc's view, OVERRIDES says so, one
reason per entry; every other difference fails.
"""

from __future__ import annotations

import pytest
from conftest import DUMP_NAMES, expected

from ansible_collections.ktfleet.numa.plugins.module_utils.topology import gather

# name -> {fact: value we expect instead of hwloc's, "why": reason}
OVERRIDES = {
    "64amd64-4s2n4ca2co": {
        "cores_total": 32,
        "threads_per_core": 2,
        "why": "AMD Bulldozer compute units share one FPU between their two integer cores: for AVX-bound "
        "inference a compute unit is one core with 2 threads (thread_siblings), not hwloc's 2 cores",
    },
    "fakeheterocpunuma": {
        "node_ids": [0, 1, 2, 3],
        "why": "hwloc's answer needs HWLOC_DEBUG_ALLOW_OVERLAPPING_NODE_CPUSETS; Linux never reports a CPU in "
        "two nodes, so like hwloc's default we drop nodes 4 and 5 whose CPUs overlap node 3's",
    },
}

ARCH_NAMES = {"x86_64", "i386", "ia64", "ppc64", "s390x", "aarch64", "arm"}


@pytest.fixture(scope="module")
def facts_of(dump_root):
    cache = {}

    def _facts(name):
        if name not in cache:
            # hwloc's answer is what lstopo saw from the process that made the dump:
            # the gatherer's cpuset, not the service's (docs/facts.md "Whose cpuset")
            cache[name] = gather(str(dump_root(name)), gpu_memory=False, view="gatherer")
        return cache[name]

    return _facts


def test_every_dump_has_an_answer():
    assert len(DUMP_NAMES) == 39
    for name in OVERRIDES:
        assert name in DUMP_NAMES, name
        assert OVERRIDES[name].get("why"), name


@pytest.mark.parametrize("name", DUMP_NAMES)
def test_dump_matches_hwloc(name, facts_of, dump_root):
    exp = expected(name)
    h = exp["hwloc"]
    over = OVERRIDES.get(name, {})
    facts = facts_of(name)

    # usable CPUs
    assert facts["cpus_allowed"] == h["pus"]
    assert set(facts["cpus_allowed"]) <= set(facts["cpus_online"])

    # nodes
    ids = [n["id"] for n in facts["nodes"]]
    assert ids == over.get("node_ids", sorted(n["os_index"] for n in h["numa_nodes"]))
    ours = {n["id"]: n for n in facts["nodes"]}
    inferred = h.get("memory_only_nodes_inferred")
    for en in h["numa_nodes"]:
        node = ours.get(en["os_index"])
        if node is None:
            assert en["os_index"] not in over.get("node_ids", [en["os_index"]])
            continue
        # CPUs of CPU-bearing nodes (hwloc gives a locality, not CPUs, for memory-only ones)
        if en.get("has_cpus_inferred") or (en.get("has_cpus_inferred") is None and not node["memory_only"]):
            assert node["cpus"] == en["pus"], f"node {node['id']}"
        # memory
        mem = node["memory_total_bytes"]
        if en.get("local_memory_bytes") is not None:
            assert mem == en["local_memory_bytes"], f"node {node['id']}"
        elif en.get("local_memory_bytes_range") is not None:
            lo, hi = en["local_memory_bytes_range"]
            assert mem is not None and lo <= mem < hi, f"node {node['id']}: {mem} not in [{lo}, {hi})"
    if inferred is not None:
        assert sorted(n["id"] for n in facts["nodes"] if n["memory_only"]) == sorted(inferred)
    for node in facts["nodes"]:
        assert set(node["cpus"]) <= set(facts["cpus_allowed"])
        if node["memory_only"]:
            assert node["cpus"] == [] and node["package_ids"] == []
        if node["distances"]:
            assert len(node["distances"]) == len(facts["nodes"])

    # cores and SMT (hwloc shows no Core objects when the dump lacks core
    # information: cores == 0, nothing to compare)
    if h.get("cores"):
        assert facts["cores_total"] == over.get("cores_total", h["cores"])
        assert facts["threads_per_core"] == over.get("threads_per_core", h["smt_threads_per_core"])
        if "threads_per_core" not in over:
            assert facts["threads_per_core_histogram"] == h["threads_per_core_histogram"]
    assert sum(facts["threads_per_core_histogram"].values()) == facts["cores_total"]
    assert sum(int(k) * v for k, v in facts["threads_per_core_histogram"].items()) == len(
        facts["cpus_allowed"]
    )
    assert facts["smt_active"] == any(int(k) > 1 for k in facts["threads_per_core_histogram"])
    # core_cpus: the cores themselves, a partition of the allowed CPUs matching the histogram
    assert len(facts["core_cpus"]) == facts["cores_total"]
    assert sorted(c for core in facts["core_cpus"] for c in core) == facts["cpus_allowed"]
    widths = {}
    for core in facts["core_cpus"]:
        widths[str(len(core))] = widths.get(str(len(core)), 0) + 1
    assert widths == facts["threads_per_core_histogram"]

    # packages
    assert len(facts["packages"]) == over.get("packages", h["packages"])
    pkg_ids = [p["id"] for p in facts["packages"]]
    assert pkg_ids == sorted(set(pkg_ids))
    assert sorted(c for p in facts["packages"] for c in p["cpus"]) == sorted(
        c for p in facts["packages"] for c in set(p["cpus"])
    )
    assert sum(p["cores"] for p in facts["packages"]) == (facts["cores_total"] if facts["packages"] else 0)
    for node in facts["nodes"]:
        for pid in node["package_ids"]:
            assert node["id"] in next(p["nodes"] for p in facts["packages"] if p["id"] == pid)
    assert facts["nodes_per_package"] >= 1

    # the CPU: architecture whenever the dump has proc/cpuinfo
    has_cpuinfo = (dump_root(name) / "proc" / "cpuinfo").is_file()
    if has_cpuinfo and exp["arch"] in ARCH_NAMES:
        assert facts["cpu"]["architecture"] == exp["arch"]
    if not has_cpuinfo:
        assert facts["cpu"]["architecture"] is None
        assert any(w.startswith("proc/cpuinfo") for w in facts["warnings"])

    # the documented fallbacks say so
    if not (dump_root(name) / "sys" / "devices" / "system" / "node").is_dir():
        assert any(w.startswith("sys/devices/system/node") for w in facts["warnings"])
    if not (dump_root(name) / "proc" / "meminfo").is_file():
        assert facts["memory_total_bytes"] is None
        assert any(w.startswith("proc/meminfo") for w in facts["warnings"])


@pytest.mark.parametrize("name", sorted(OVERRIDES))
def test_overrides_differ_from_hwloc(name, facts_of):
    """An override must be needed: if hwloc and we agree, drop it."""
    h = expected(name)["hwloc"]
    over = OVERRIDES[name]
    facts = facts_of(name)
    hw = {
        "cores_total": h["cores"],
        "threads_per_core": h["smt_threads_per_core"],
        "node_ids": [n["os_index"] for n in h["numa_nodes"]],
        "packages": h["packages"],
    }
    ours = {
        "cores_total": facts["cores_total"],
        "threads_per_core": facts["threads_per_core"],
        "node_ids": [n["id"] for n in facts["nodes"]],
        "packages": len(facts["packages"]),
    }
    for key in over:
        if key != "why":
            assert hw[key] != over[key] and ours[key] == over[key], key


def test_schema_keys(facts_of):
    """Every dump gives exactly the docs/facts.md keys."""
    top = {
        "schema_version", "root", "nodes", "packages", "nodes_per_package", "cpus_online", "cpus_offline",
        "cpus_allowed", "cores_total", "core_cpus", "threads_per_core", "threads_per_core_histogram", "smt_active",
        "memory_total_bytes", "memory_available_bytes", "cpu", "gpus", "kernel", "warnings",
        "gpu_memory_nodes", "cpus_without_node", "cpuset",
    }  # fmt: skip
    node_keys = {
        "id", "cpus", "cores", "package_ids", "memory_total_bytes", "memory_free_bytes", "hugepages",
        "distances", "memory_only", "local_nodes",
    }  # fmt: skip
    for name in DUMP_NAMES:
        facts = facts_of(name)
        assert set(facts) == top, name
        assert facts["schema_version"] == 1
        for node in facts["nodes"]:
            assert set(node) == node_keys, name
        for pkg in facts["packages"]:
            assert set(pkg) == {"id", "nodes", "cores", "cpus"}, name
        assert set(facts["cpu"]) == {"architecture", "vendor", "model_name", "hypervisor", "flags"}
        assert set(facts["kernel"]) == {"numa_balancing", "transparent_hugepage", "isolcpus", "nohz_full"}
        assert all(isinstance(w, str) for w in facts["warnings"])
