#!/usr/bin/python
# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: where a running process (or a service's main process) runs."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: numa_placement
short_description: Report the CPUs, memory nodes and NUMA memory policy a process really has
version_added: 0.1.0
author: ktfleet contributors (@ktfleet)
description:
  - Reads C(Cpus_allowed_list) and C(Mems_allowed_list) from C(/proc/<pid>/status) and the memory
    policy and per-node resident memory from C(/proc/<pid>/numa_maps).
  - Give either O(pid) or O(service); for a service the main process (systemd's C(MainPID)) is read.
  - Only reads; it never changes the host.
options:
  pid:
    description: Process to inspect.
    type: int
  service:
    description: systemd service whose main process to inspect.
    type: str
  root:
    description: Read C(proc/) under this directory instead of C(/) (for tests).
    type: path
    default: /
requirements:
  - Linux with C(/proc/<pid>/numa_maps) (a NUMA kernel).
extends_documentation_fragment:
  - ktfleet.numa.read_only
"""

EXAMPLES = r"""
- name: Where does the KTransformers server run?
  ktfleet.numa.numa_placement:
    service: ktransformers
  register: placement

- name: Show its CPUs and task memory policy
  ansible.builtin.debug:
    msg: "{{ placement.cpus_allowed_list }} {{ placement.task_policy }}"
"""

RETURN = r"""
pid:
  description: The process inspected.
  returned: success
  type: int
  sample: 4242
cpus_allowed_list:
  description: The process's CPU affinity as the kernel prints it.
  returned: success
  type: str
  sample: "0-31,64-95"
cpus_allowed:
  description: The same CPUs as a sorted list.
  returned: success
  type: list
  elements: int
mems_allowed_list:
  description: Memory nodes its cpuset allows (moves only with systemd AllowedMemoryNodes=, not with numactl).
  returned: success
  type: str
  sample: "0-1"
mems_allowed:
  description: The same nodes as a sorted list.
  returned: success
  type: list
  elements: int
task_policy:
  description: The process-wide memory policy as numa_maps shows it on the stack mapping, e.g. C(bind:0), C(interleave:0-1) or C(default).
  returned: success
  type: str
  sample: "bind:0"
memory_policies:
  description: Every policy seen on any mapping (kt-kernel binds its own buffers per node).
  returned: success
  type: list
  elements: str
bytes_per_node:
  description: Resident bytes per NUMA node id (keys are strings).
  returned: success
  type: dict
  sample: {"0": 1073741824, "1": 4096}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ktfleet.numa.plugins.module_utils.placement import read_placement
from ansible_collections.ktfleet.numa.plugins.module_utils.service import main_pid


def main():
    module = AnsibleModule(
        argument_spec={
            "pid": {"type": "int"},
            "service": {"type": "str"},
            "root": {"type": "path", "default": "/"},
        },
        required_one_of=[("pid", "service")],
        mutually_exclusive=[("pid", "service")],
        supports_check_mode=True,
    )
    pid = module.params["pid"]
    if module.params["service"]:
        service = module.params["service"]
        try:
            pid = main_pid(module.run_command, service)
        except ValueError as exc:
            module.fail_json(msg=str(exc))
        if pid == 0:
            module.fail_json(msg=f"service: {service} has no running main process (is it started?)")
    try:
        result = read_placement(pid, module.params["root"])
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"pid: cannot read /proc/{pid}/status and numa_maps: {exc}")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
