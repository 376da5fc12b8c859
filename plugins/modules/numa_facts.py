#!/usr/bin/python
# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: numa_facts
short_description: Gather the NUMA topology of a Linux host as facts
version_added: 0.1.0
description:
  - Reads the NUMA nodes, CPU packages, cores and SMT threads, memory, CPU model and ISA flags, GPUs and their
    NUMA locality, and the NUMA-related kernel settings of a Linux host from C(/sys) and C(/proc), and returns
    them as the C(numa) fact (C(ansible_facts.numa)), the input of every later ktfleet step.
  - Only the CPUs and memory nodes the reading process may use count, as C(lstopo) from hwloc shows them
    (online CPUs allowed by the cgroup v1 or v2 cpuset).
  - Reads files only, with the Python standard library; it changes nothing on the host.
  - Never fails on missing, unreadable or corrupt files. It falls back (for example to one NUMA node on a kernel
    without NUMA support) and explains each fallback in C(ansible_facts.numa.warnings), naming the file. The
    warnings that change a deployment plan are also shown as task warnings.
author:
  - ktfleet contributors (@ktfleet)
options:
  root:
    description:
      - The directory whose C(sys/) and C(proc/) are read.
      - Keep the default V(/) on a live host. Give the directory of an extracted C(/sys) and C(/proc) dump (for
        example one made by C(hwloc-gather-topology)) to plan for a machine you cannot reach.
      - A tar archive of such a dump (C(.tar), C(.tar.gz), C(.tar.bz2), C(.tar.xz), as O(capture) or
        C(hwloc-gather-topology) write it) is extracted to a temporary directory and read from there.
    type: path
    default: /
  capture:
    description:
      - Also save every file the facts were read from (and the directory entries listed) as a gzipped tar
        archive at this path on the target, like C(hwloc-gather-topology). Reading that archive back with
        O(root) gives the same facts, bar what changes by the second (free memory).
      - The archive is written anew on every run (reported as changed); not in check mode.
      - Used by C(playbooks/gather.yml) to attach a host's topology to a bug report or plan it offline.
    type: path
  gather_gpu_memory:
    description:
      - Run C(nvidia-smi) (with a timeout) to read the memory of NVIDIA GPUs.
      - Only on a live host (O(root=/)). AMD GPU memory comes from sysfs and needs nothing extra.
      - When V(false), or when C(nvidia-smi) is missing or fails, C(memory_bytes) of NVIDIA GPUs is V(null).
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
  platform:
    platforms: posix
notes:
  - Linux only. The full schema of the fact is in C(docs/facts.md) of the collection.
  - Run it without C(become) to see the cpuset of the login session, with C(become) to see root's; a service
    started by systemd later gets the cpuset of its own unit.
seealso:
  - module: ansible.builtin.setup
  - name: hwloc lstopo
    description: The tool whose view of the topology this module reproduces.
    link: https://www.open-mpi.org/projects/hwloc/
"""

EXAMPLES = r"""
- name: Gather the NUMA topology
  ktfleet.numa.numa_facts:

- name: Show the CPUs of each NUMA node
  ansible.builtin.debug:
    msg: "node {{ item.id }}: {{ item.cpus | length }} CPUs, {{ item.memory_total_bytes | human_readable }}"
  loop: "{{ ansible_facts.numa.nodes }}"

- name: Refuse hosts where SMT is off
  ansible.builtin.assert:
    that: ansible_facts.numa.smt_active
    fail_msg: "enable SMT in the BIOS of {{ inventory_hostname }}"

- name: Capture this host's topology files for a bug report
  ktfleet.numa.numa_facts:
    capture: /tmp/{{ inventory_hostname }}.tar.gz

- name: Read a topology dump taken on another machine, without nvidia-smi
  ktfleet.numa.numa_facts:
    root: /srv/dumps/gpu-node-17
    gather_gpu_memory: false
  delegate_to: localhost
"""

RETURN = r"""
ansible_facts:
  description: The facts, under the single key C(numa).
  returned: always
  type: dict
  contains:
    numa:
      description: The NUMA topology of the host (C(docs/facts.md)). All sizes in bytes, all CPU lists sorted.
      returned: always
      type: dict
      contains:
        schema_version:
          description: Version of this layout.
          returned: always
          type: int
          sample: 1
        root:
          description: The directory the facts were read from.
          returned: always
          type: str
          sample: /
        nodes:
          description:
            - NUMA nodes sorted by id, only those the cpuset allows. Each has C(id), C(cpus) (online and allowed),
              C(cores), C(package_ids), C(memory_total_bytes), C(memory_free_bytes), C(hugepages) (per page size
              in kB, C(total) and C(free) pages), C(distances) (the SLIT row, in the order of C(nodes)) and
              C(memory_only) (memory but no CPUs at all, such as CXL, HBM or NVDIMM memory).
          returned: always
          type: list
          elements: dict
          sample:
            - id: 0
              cpus: [0, 1, 2, 3]
              cores: 2
              package_ids: [0]
              memory_total_bytes: 68719476736
              memory_free_bytes: 60129542144
              hugepages: {"2048": {"total": 0, "free": 0}}
              distances: [10, 21]
              memory_only: false
        packages:
          description: CPU packages (sockets) sorted by id, each with C(id), C(nodes), C(cores) and C(cpus).
          returned: always
          type: list
          elements: dict
          sample:
            - {id: 0, nodes: [0], cores: 2, cpus: [0, 1, 2, 3]}
        nodes_per_package:
          description: Largest number of CPU-bearing nodes in one package; above 1 means Sub-NUMA Clustering or AMD NPS.
          returned: always
          type: int
          sample: 1
        cpus_online:
          description: Online CPUs.
          returned: always
          type: list
          elements: int
        cpus_offline:
          description: CPUs present but offline.
          returned: always
          type: list
          elements: int
        cpus_allowed:
          description: Online CPUs the cgroup cpuset allows, the CPUs a process may use.
          returned: always
          type: list
          elements: int
        cores_total:
          description: Physical cores among the allowed CPUs.
          returned: always
          type: int
        core_cpus:
          description: The allowed CPUs of each physical core (its thread siblings), sorted.
          returned: always
          type: list
          elements: list
          sample: [[0, 32], [1, 33]]
        threads_per_core:
          description: SMT width, V(null) when cores differ (hybrid CPUs).
          returned: always
          type: int
        threads_per_core_histogram:
          description: SMT width (as a string) to the number of cores of that width.
          returned: always
          type: dict
          sample: {"2": 6, "1": 8}
        smt_active:
          description: Whether some core runs more than one allowed thread.
          returned: always
          type: bool
        memory_total_bytes:
          description: MemTotal of C(/proc/meminfo), V(null) when unknown.
          returned: always
          type: int
        memory_available_bytes:
          description: MemAvailable of C(/proc/meminfo), V(null) when unknown.
          returned: always
          type: int
        cpu:
          description:
            - C(architecture), C(vendor), C(model_name), C(hypervisor) and the C(flags) the inference kernels
              care about (C(avx2), C(avx512f), C(avx512_bf16), C(avx512_vnni), C(avx512_vbmi), C(amx_tile),
              C(amx_int8), C(amx_bf16)).
          returned: always
          type: dict
        gpus:
          description:
            - NVIDIA and AMD GPUs with C(pci_address), C(vendor), C(device_id), C(numa_node) (V(null) when the
              platform does not say), C(local_cpus) and C(memory_bytes) (V(null) when unknown).
          returned: always
          type: list
          elements: dict
        kernel:
          description:
            - C(numa_balancing), C(transparent_hugepage) (the selected mode), C(isolcpus) and C(nohz_full).
          returned: always
          type: dict
        warnings:
          description: What could not be read or had to be assumed, each naming the file relative to O(root).
          returned: always
          type: list
          elements: str
"""

import os  # noqa: E402  (Ansible modules document themselves first)
import tarfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.ktfleet.numa.plugins.module_utils.topology import (  # noqa: E402
    capture_archive,
    gather,
    gather_with_report,
    open_root,
)

__all__ = ["gather", "main"]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", default="/"),
            gather_gpu_memory=dict(type="bool", default=True),
            capture=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    root = module.params["root"]
    if not os.path.exists(root):
        module.fail_json(
            msg=f"root={root} does not exist: give / on a live host, or an extracted topology dump or its tar archive",
            root=root,
        )
    try:
        with open_root(root) as tree:
            if not (os.path.isdir(os.path.join(tree, "sys")) or os.path.isdir(os.path.join(tree, "proc"))):
                module.fail_json(
                    msg=f"root={root} has neither sys/ nor proc/: give / on a live host, or the top directory of "
                    "an extracted topology dump (the one that contains sys/ and proc/), or its tar archive",
                    root=root,
                )
            facts, important = gather_with_report(tree, gpu_memory=module.params["gather_gpu_memory"])
            archive = module.params["capture"]
            changed = bool(archive) and not module.check_mode
            if changed:
                try:
                    capture_archive(tree, archive, gpu_memory=False)
                except OSError as exc:
                    module.fail_json(msg=f"capture={archive}: cannot write the archive: {exc}")
    except (OSError, EOFError, tarfile.TarError) as exc:
        module.fail_json(msg=f"root={root} is neither a directory nor a readable tar archive of a dump: {exc}")
    facts["root"] = root
    for warning in important:
        module.warn(warning)
    module.exit_json(changed=changed, ansible_facts={"numa": facts})


if __name__ == "__main__":
    main()
