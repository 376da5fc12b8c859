"""How Ansible and ssh reach the VMs that are up: inventory YAML and ssh_config blocks, from the
state dir."""

from __future__ import annotations

import json
from pathlib import Path

from .qemu import read_states


def _q(v) -> str:
    return json.dumps(v)  # a JSON string is a valid YAML double-quoted scalar


def inventory_yaml(state_dir: Path, group: str = "all") -> str:
    states = [s for s in read_states(state_dir.expanduser().resolve()) if s.get("status") == "up"]
    lines = []
    if group == "all":
        lines += ["all:", "  hosts:"]
        ind = "    "
    else:
        lines += ["all:", "  children:", f"    {group}:", "      hosts:"]
        ind = "        "
    if not states:
        lines[-1] += " {}"
    for st in states:
        lines += [f"{ind}{st['name']}:",
                  f"{ind}  ansible_host: {_q(st['host'])}",
                  f"{ind}  ansible_port: {st['port']}",
                  f"{ind}  ansible_user: {_q(st['user'])}",
                  f"{ind}  ansible_ssh_private_key_file: {_q(st['key'])}",
                  f"{ind}  ansible_ssh_common_args: "
                  f"{_q('-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null')}",
                  f"{ind}  ansible_python_interpreter: \"/usr/bin/python3\"",
                  f"{ind}  ktfleet_vm_topology_name: {_q(st.get('topology_name'))}",
                  f"{ind}  ktfleet_vm_topology: {json.dumps(st['topology'])}"]
    return "\n".join(lines) + "\n"


def ssh_config(state_dir: Path) -> str:
    out = []
    for st in read_states(state_dir.expanduser().resolve()):
        out.append(f"Host {st['name']}\n  HostName {st['host']}\n  Port {st['port']}\n  User {st['user']}\n"
                   f"  IdentityFile {st['key']}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
                   f"  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n")
    return "\n".join(out)
