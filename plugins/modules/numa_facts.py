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
  - Only the CPUs and memory nodes the service may use count (online CPUs allowed by the cgroup v1 or v2 cpuset
    of C(system.slice)); the reading process's own view, the one C(lstopo) shows, is reported beside them.
  - Reads files only, with the Python standard library; it changes nothing on the host.
  - On a local connection (the controller is the host) without become, a O(root) other than C(/) (a recorded dump)
    is read by the action plugin in the controller's process instead of a module process, and a dump archive is
    extracted and read once per run, however many hosts name it; the facts are the same.
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
  preflight:
    description:
      - Also read what a deployment's preflight checks on the host, in the same call (no further module run),
        returned as RV(preflight). Each suboption is read only when given.
      - Read on the host the module runs on (for a recorded host on a local connection, the controller).
    type: dict
    suboptions:
      paths:
        description: Paths to look up (following links), such as the model directory.
        type: list
        elements: path
        default: []
      executables:
        description: Files that must be executable, such as C(/usr/bin/numactl).
        type: list
        elements: path
        default: []
      systemd:
        description: Read the systemd version (C(systemctl --version), asked up to three times).
        type: bool
        default: false
      port:
        description: A TCP port; RV(preflight.port_owner) says which process listens on it (C(ss)), if any.
        type: int
      service:
        description: The systemd service whose main process may hold O(preflight.port) (not reported as the owner).
        type: str
        default: ""
      user:
        description: An account to look up, as C(getent passwd) would.
        type: str
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
  - The CPUs and nodes are those the service will get (the cpuset of C(system.slice), where systemd starts it),
    whatever cpuset the login session or batch job running the module has; that one is in C(cpuset.gatherer).
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
preflight:
  description: What O(preflight) asked for, read on the host. Absent without O(preflight).
  returned: when O(preflight) is given
  type: dict
  contains:
    paths:
      description: Per path of O(preflight.paths), C(exists) and C(isdir) (links followed).
      returned: when O(preflight.paths) is not empty
      type: dict
      sample: {"/srv/models/DeepSeek-R1": {"exists": true, "isdir": true}}
    executables:
      description: Per path of O(preflight.executables), whether it is an executable file.
      returned: when O(preflight.executables) is not empty
      type: dict
      sample: {"/usr/bin/numactl": true}
    systemd_version:
      description: The systemd version, V(null) when C(systemctl --version) did not say.
      returned: when O(preflight.systemd) is true
      type: int
      sample: 252
    systemd_output:
      description: What C(systemctl --version) printed when it gave no version.
      returned: when RV(preflight.systemd_version) is V(null)
      type: str
    port_owner:
      description: The C(ss) line of the process that listens on O(preflight.port), V(null) when the port is free
        or held by O(preflight.service).
      returned: when O(preflight.port) is given
      type: str
    getent_passwd:
      description: The account O(preflight.user) as C(getent passwd) gives it (password, uid, gid, gecos, home,
        shell), V(null) when it does not exist.
      returned: when O(preflight.user) is given
      type: dict
      sample: {"ktfleet": ["x", "998", "998", "", "/var/lib/ktfleet", "/usr/sbin/nologin"]}
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
              C(memory_only) (memory but no CPUs at all, such as CXL, HBM or NVDIMM memory) and C(local_nodes) (the
              CPU nodes nearest to its memory, from C(access0/initiators), else the distances).
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
              local_nodes: [0]
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
          description: Online CPUs the cpuset of the service allows (C(system.slice), else the root cgroup), the CPUs
            the server may use.
          returned: always
          type: list
          elements: int
        cpus_without_node:
          description: Allowed CPUs no NUMA node lists (their node offline); usable, but no inference threads go there.
          returned: always
          type: list
          elements: int
        cpuset:
          description:
            - The two cpuset views, C(service) (what C(cpus_allowed) and C(nodes) follow, as named by C(planning)) and
              C(gatherer) (the reading process's, what C(lstopo) shows), each with C(cgroup), C(cpus) and C(mems)
              (V(null) for every node). A warning says when they differ.
          returned: always
          type: dict
          sample:
            planning: service
            service: {cgroup: sys/fs/cgroup/system.slice, cpus: [0, 1, 2, 3], mems: [0, 1]}
            gatherer: {cgroup: sys/fs/cgroup/user.slice, cpus: [0, 1], mems: [0]}
        gpu_memory_nodes:
          description:
            - NUMA nodes that are a GPU's own coherent memory (NVLink-C2C, POWER9 NVLink), left out of C(nodes), each
              with C(id), C(pci_address) (V(null) when the GPU is not known), C(memory_total_bytes),
              C(memory_free_bytes), C(local_nodes) and C(source) (C(nvidia-driver) or C(distances)).
          returned: always
          type: list
          elements: dict
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
              platform does not say), C(local_cpus), C(memory_bytes) (V(null) when unknown) and C(memory_node) (the
              id in C(gpu_memory_nodes) of its coherent memory, or V(null)).
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

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.ktfleet.numa.plugins.module_utils.facts_call import (  # noqa: E402
    ARGUMENT_SPEC,
    FactsError,
    probe,
    read,
)
from ansible_collections.ktfleet.numa.plugins.module_utils.topology import gather  # noqa: E402

__all__ = ["gather", "main"]


def _run(module, argv):
    try:
        return module.run_command(argv, handle_exceptions=False)
    except OSError as exc:  # not installed: preflight says so, naming the command
        return 127, "", f"{argv[0]}: {exc}"


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        facts, important, changed = read(
            module.params["root"], module.params["gather_gpu_memory"], module.params["capture"], module.check_mode
        )
    except FactsError as exc:
        module.fail_json(msg=str(exc), root=module.params["root"])
    for warning in important:
        module.warn(warning)
    result = dict(changed=changed, ansible_facts={"numa": facts})
    if module.params["preflight"]:
        result["preflight"] = probe(module.params["preflight"], lambda argv: _run(module, argv))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
