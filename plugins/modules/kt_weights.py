#!/usr/bin/python
# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the NUMA shard count of kt-kernel weights, read from their tensor names."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kt_weights
short_description: Read how many NUMA shards pre-sharded kt-kernel weights hold
version_added: 0.1.0
author: ktfleet contributors (@ktfleet)
description:
  - Reads the headers of every C(*.safetensors) file under O(path) and counts the C(.numa.{i}.) shards of each
    layer's first up-projection expert, as kt-kernel's loader does (C(kt_kernel/utils/loader.py),
    C(SafeTensorLoader.load_experts)).
  - kt-kernel loads that many shards whatever its thread-pool count is, so the planner's pool count must equal it.
  - Only reads; it never changes the host.
options:
  path:
    description: The weights directory (C(ktfleet_model.weights_path)).
    type: path
    required: true
  numa_shards:
    description:
      - The shard count the inventory states (C(ktfleet_model.numa_shards)); the module fails when the tensors
        say otherwise.
    type: int
requirements:
  - Read access to the weight files (only their headers are read).
extends_documentation_fragment:
  - ktfleet.numa.read_only
"""

EXAMPLES = r"""
- name: Read the shard count of the CPU expert weights
  ktfleet.numa.kt_weights:
    path: /srv/models/DeepSeek-V3-AMXINT4-NUMA2
  register: weights
"""

RETURN = r"""
exists:
  description: Whether O(path) is a directory; when it is not, nothing is read (preflight refuses a missing one).
  returned: success
  type: bool
  sample: true
numa_shards:
  description: The shard count the tensor names show; null when the weights are not NUMA-sharded (or no
    C(*.safetensors) files are there, e.g. GGUF weights).
  returned: success
  type: int
  sample: 2
files:
  description: The C(*.safetensors) files read.
  returned: success
  type: int
  sample: 14
tensors:
  description: The tensor names they hold.
  returned: success
  type: int
  sample: 107520
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ktfleet.numa.plugins.module_utils.kt_weights import read_weights_dir


def main():
    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "required": True}, "numa_shards": {"type": "int"}},
        supports_check_mode=True,
    )
    path, stated = module.params["path"], module.params["numa_shards"]
    try:
        result = read_weights_dir(path)
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"ktfleet_model.weights_path: cannot read the tensor names under {path}: {exc}")
    found = result["numa_shards"]
    if stated is not None and found is not None and stated != found:
        module.fail_json(
            msg=f"ktfleet_model.numa_shards: {stated} given, but the tensors under {path} are sharded for {found} "
            f"NUMA node(s) (.numa.0 to .numa.{found - 1}); kt-kernel would read past the shards it has. "
            "Set it to the weights' count or convert the weights again",
            **result,
        )
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
