"""Filters that write argv and environment in systemd unit-file syntax.

Thin shells over plugins/plugin_utils/systemd_syntax.py; docs in
systemd_exec.yml and systemd_environment.yml beside this file.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.ktfleet.numa.plugins.plugin_utils.systemd_syntax import environment_lines, exec_line


def systemd_exec(argv):
    if isinstance(argv, (str, bytes)) or not hasattr(argv, "__iter__"):
        raise AnsibleFilterError(f"systemd_exec: expected a list of arguments, got {type(argv).__name__}")
    try:
        return exec_line(argv)
    except ValueError as exc:
        raise AnsibleFilterError(f"systemd_exec: {exc}") from None


def systemd_environment(env):
    if not isinstance(env, dict):
        raise AnsibleFilterError(f"systemd_environment: expected a mapping, got {type(env).__name__}")
    try:
        return environment_lines(env)
    except ValueError as exc:
        raise AnsibleFilterError(f"systemd_environment: {exc}") from None


class FilterModule:
    def filters(self):
        return {"systemd_exec": systemd_exec, "systemd_environment": systemd_environment}
