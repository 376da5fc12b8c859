"""The chosen NUMA policy as a numactl prefix and as systemd.exec(5) settings.

Both say the same thing; the role uses one or the other. Nothing is emitted when it
would restrict nothing (every CPU-bearing node used and no memory policy), so a
single-node host gets an empty prefix.

- bind:       --cpunodebind=N --membind=N        NUMAPolicy=bind NUMAMask=N
- shard:      --cpunodebind=<kt nodes>           kt-kernel binds each pool's memory itself
- replicate:  (nothing: every node is used)      the server places a copy on each node
- interleave: --cpunodebind=<cpu nodes> --interleave=<nodes>   NUMAPolicy=interleave
CPUAffinity= is always an explicit CPU list: CPUAffinity=numa fails when the mask
names a CPU-less (memory-only) node.
"""

from __future__ import annotations

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import format_cpulist as id_list

from .host import HostView
from .models import Policy, SystemdNuma


def binding(
    policy: Policy, cpu_nodes: list[int], memory_nodes: list[int], host: HostView, numactl_path: str
) -> tuple[list[str], SystemdNuma]:
    restrict_cpus = set(cpu_nodes) != set(host.cpu_nodes)
    if policy is Policy.INTERLEAVE:
        memory_mode = "interleave"
    elif policy is Policy.BIND and set(memory_nodes) != set(host.memory_nodes):
        memory_mode = "bind"
    else:
        memory_mode = None
    if not restrict_cpus and memory_mode is None:
        return [], SystemdNuma()
    argv = [numactl_path]
    if restrict_cpus:
        argv.append(f"--cpunodebind={id_list(cpu_nodes)}")
    if memory_mode == "bind":
        argv.append(f"--membind={id_list(memory_nodes)}")
    elif memory_mode == "interleave":
        argv.append(f"--interleave={id_list(memory_nodes)}")
    cpus = [cpu for node in cpu_nodes for cpu in host.cpus[node]]
    systemd = SystemdNuma(
        NUMAPolicy=memory_mode,
        NUMAMask=id_list(memory_nodes) if memory_mode else None,
        CPUAffinity=id_list(cpus) if restrict_cpus else None,
    )
    return argv, systemd
