"""Hand-built ``ansible_facts.numa`` dicts (docs/facts.md schema) for the planner tests.

CPUs are numbered as Linux numbers them on Intel servers: first thread of every
core node by node, then the SMT siblings in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1024**3
GB = 1000**3


@dataclass(frozen=True)
class NodeSpec:
    cores: int = 0
    memory: int | None = 256 * GiB
    package: int = 0
    threads: int = 2
    memory_only: bool = False


def make_facts(
    nodes: list[NodeSpec],
    *,
    model_name: str = "Intel(R) Xeon(R) Gold 6454S",
    amx: bool = True,
    avx512: bool = True,
    gpus: tuple[int | None, ...] = (0,),
    numa_balancing: int = 0,
    hypervisor: bool = False,
) -> dict:
    cpu_nodes = [spec for spec in nodes if not spec.memory_only]
    total_cores = sum(spec.cores for spec in cpu_nodes)
    first = 0
    out_nodes = []
    for node_id, spec in enumerate(nodes):
        cpus: list[int] = []
        if not spec.memory_only:
            for sibling in range(spec.threads):
                cpus += [sibling * total_cores + first + core for core in range(spec.cores)]
            first += spec.cores
        out_nodes.append(
            {
                "id": node_id,
                "cpus": sorted(cpus),
                "cores": 0 if spec.memory_only else spec.cores,
                "package_ids": [] if spec.memory_only else [spec.package],
                "memory_total_bytes": spec.memory,
                "memory_free_bytes": None if spec.memory is None else spec.memory * 9 // 10,
                "hugepages": {"2048": {"total": 0, "free": 0}},
                "distances": [10 if i == node_id else 21 for i in range(len(nodes))],
                "memory_only": spec.memory_only,
            }
        )
    all_cpus = sorted(c for n in out_nodes for c in n["cpus"])
    packages: dict[int, dict] = {}
    for node, spec in zip(out_nodes, nodes, strict=True):
        if spec.memory_only:
            continue
        pkg = packages.setdefault(spec.package, {"id": spec.package, "nodes": [], "cores": 0, "cpus": []})
        pkg["nodes"].append(node["id"])
        pkg["cores"] += spec.cores
        pkg["cpus"] = sorted(pkg["cpus"] + node["cpus"])
    per_package = max((len(p["nodes"]) for p in packages.values()), default=1)
    widths = {spec.threads for spec in cpu_nodes}
    known = [spec.memory for spec in nodes if spec.memory is not None]
    total_memory = sum(known) if known else None
    return {
        "schema_version": 1,
        "root": "/",
        "nodes": out_nodes,
        "packages": [packages[k] for k in sorted(packages)],
        "nodes_per_package": per_package,
        "cpus_online": all_cpus,
        "cpus_offline": [],
        "cpus_allowed": all_cpus,
        "cores_total": total_cores,
        "threads_per_core": widths.pop() if len(widths) == 1 else None,
        "threads_per_core_histogram": {str(spec.threads): total_cores for spec in cpu_nodes[:1]},
        "smt_active": any(spec.threads > 1 for spec in cpu_nodes),
        "memory_total_bytes": total_memory,
        "memory_available_bytes": None if total_memory is None else total_memory * 9 // 10,
        "cpu": {
            "architecture": "x86_64",
            "vendor": "GenuineIntel",
            "model_name": model_name,
            "hypervisor": hypervisor,
            "flags": {
                "avx2": True,
                "avx512f": avx512,
                "avx512bw": avx512,
                "avx512_bf16": amx,
                "avx512_vnni": True,
                "avx512_vbmi": True,
                "amx_tile": amx,
                "amx_int8": amx,
                "amx_bf16": amx,
            },
        },
        "gpus": [
            {
                "pci_address": f"0000:{0x17 + i:02x}:00.0",
                "vendor": "nvidia",
                "device_id": "0x2684",
                "numa_node": node,
                "local_cpus": [],
                "memory_bytes": 24 * GiB,
            }
            for i, node in enumerate(gpus)
        ],
        "kernel": {
            "numa_balancing": numa_balancing,
            "transparent_hugepage": "madvise",
            "isolcpus": [],
            "nohz_full": [],
        },
        "warnings": [],
    }


def two_socket(cores: int, node_memory: int, **kwargs) -> dict:
    return make_facts([NodeSpec(cores, node_memory, 0), NodeSpec(cores, node_memory, 1)], **kwargs)


# The seed's host: 2 x Xeon 6430 (32 cores / 64 threads each), 2 nodes, 2 x 256 GiB.
def seed_host() -> dict:
    return two_socket(32, 251 * GiB, model_name="Intel(R) Xeon(R) Gold 6430")


# KTransformers' tutorial host: 2 x Xeon Gold 6454S, 1 TB (MemTotal ~503 GiB per node).
def tutorial_host_1tb() -> dict:
    return two_socket(32, 503 * GiB)


# The same CPUs with 512 GB (MemTotal ~251 GiB per node).
def tutorial_host_512gb() -> dict:
    return two_socket(32, 251 * GiB)


# Sub-NUMA Clustering: 2 packages x SNC2 = 4 nodes of 320 GB.
def snc4_host() -> dict:
    return make_facts(
        [NodeSpec(16, 320 * GB, p) for p in (0, 0, 1, 1)], model_name="Intel(R) Xeon(R) Platinum 8480+"
    )


# Xeon 6 (Granite Rapids) in SNC3: 2 packages x 3 nodes of 43/43/42 cores.
def snc3_host(packages: int = 2, gpus: tuple[int | None, ...] = (0,)) -> dict:
    specs = [NodeSpec(c, 256 * GiB, p) for p in range(packages) for c in (43, 43, 42)]
    return make_facts(specs, model_name="Intel(R) Xeon(R) 6980P", gpus=gpus)


def single_node_host() -> dict:
    return make_facts([NodeSpec(24, 503 * GiB)], model_name="AMD EPYC 9474F", amx=False)


# One socket with a CXL memory expander (memory-only node 1).
def cxl_host() -> dict:
    return make_facts([NodeSpec(32, 251 * GiB, 0), NodeSpec(0, 128 * GiB, memory_only=True)])


# the shape from DeepSeek-V3's config.json (hidden_size, moe_intermediate_size, n_routed_experts, num_experts_per_tok)
DEEPSEEK_V3_Q4KM = {
    "name": "DeepSeek-V3-Q4_K_M",
    "weights_bytes": 382 * GB,
    "moe_intermediate_size": 2048,
    "hidden_size": 7168,
    "num_experts": 256,
    "num_experts_per_tok": 8,
}
