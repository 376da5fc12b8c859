#!/usr/bin/python
# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: is the installed KTransformers server the one the plan was made for?"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: server_check
short_description: Check that the installed KTransformers server is the one the plan was made for
version_added: 0.1.0
author: ktfleet contributors (@ktfleet)
description:
  - For C(sglang-kt), requires the C(sglang-kt) fork (upstream SGLang has no C(--kt-*) flags), the pinned
    C(sglang-kt) and C(kt-kernel) versions, and every flag the plan passes in C(python -m sglang.launch_server --help),
    as KTransformers' own C(kt) CLI probes it.
  - For C(legacy), requires the pinned C(ktransformers), its C(ktransformers.server.main), every planned flag in
    its C(--help), and the build the plan needs (with or without C(USE_NUMA=1), told by whether its C(cpuinfer_ext)
    links libnuma); when that cannot be told it warns instead of failing.
  - Only reads; fails with the problems and their remedies. Uses only the Python standard library on the target.
options:
  python:
    description: The interpreter that runs the server (the unit's).
    type: path
    required: true
  backend:
    description: C(sglang-kt) or C(legacy).
    type: str
    required: true
    choices: [sglang-kt, legacy]
  server_args:
    description: The plan's C(server_args); every C(--flag) in it must be accepted.
    type: list
    elements: str
    default: []
  versions:
    description: The pinned versions, C(ktfleet_versions[backend]) (package name to version).
    type: dict
    required: true
  numa_build:
    description: The plan's C(numa_build) (legacy); null to skip the build check.
    type: bool
requirements:
  - The server's interpreter on the target.
attributes:
  check_mode:
    support: full
    description: Only reads.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
  platform:
    support: full
    platforms: posix
    description: Runs the server's interpreter on the target.
"""

EXAMPLES = r"""
- name: Check the installed server
  ktfleet.numa.server_check:
    python: /opt/ktfleet/sglang-kt-kt-kernel-0.7.2_sglang-kt-0.7.2/bin/python
    backend: sglang-kt
    server_args: "{{ ktfleet_plan.server_args }}"
    versions: {kt-kernel: "0.7.2", sglang-kt: "0.7.2"}
"""

RETURN = r"""
installed:
  description: The distributions found (name to version).
  type: dict
  returned: always
warnings_found:
  description: What could not be checked (for example the USE_NUMA build without its extension file).
  type: list
  elements: str
  returned: always
problems:
  description: Why the server is not the one the plan was made for, each with its remedy.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ktfleet.numa.plugins.module_utils.server_check import judge, probe


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "python": {"type": "path", "required": True},
            "backend": {"type": "str", "required": True, "choices": ["sglang-kt", "legacy"]},
            "server_args": {"type": "list", "elements": "str", "default": []},
            "versions": {"type": "dict", "required": True},
            "numa_build": {"type": "bool"},
        },
        supports_check_mode=True,
    )
    p = module.params
    found = probe(p["python"], p["backend"])
    versions = {str(k): str(v) for k, v in p["versions"].items()}
    problems, notes = judge(p["backend"], found, p["server_args"], versions, p["numa_build"], p["python"])
    for note in notes:
        module.warn(note)
    result = {"changed": False, "installed": found.get("dists", {}), "warnings_found": notes, "problems": problems}
    if problems:
        module.fail_json(msg=" | ".join(problems), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
