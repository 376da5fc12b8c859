"""Filters that write argv and environment in systemd unit-file syntax.

Thin shells over plugins/plugin_utils/planner/systemd_syntax.py; docs in
systemd_exec.yml and systemd_environment.yml beside this file.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.ktfleet.numa.plugins.plugin_utils.errors import PlanError
from ansible_collections.ktfleet.numa.plugins.plugin_utils.plain import plain
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.systemd_syntax import (
    env_file,
    environment_lines,
    exec_line,
    existing_account,
    unit_fields,
)


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


def systemd_unit_fields(inputs):
    if not isinstance(inputs, dict):
        raise AnsibleFilterError(f"systemd_unit_fields: expected a mapping, got {type(inputs).__name__}")
    values = plain(inputs)
    for name in ("environment", "plan_environment"):
        if not isinstance(values.get(name), dict):
            variable = "ktfleet_environment" if name == "environment" else "plan.environment"
            raise AnsibleFilterError(f"{variable}: must be a mapping, got {type(values.get(name)).__name__}")
    try:
        return unit_fields(**values)
    except PlanError as exc:
        raise AnsibleFilterError(str(exc)) from None


def systemd_env_file(variables):
    """{'KTFLEET_API_KEY': ['ktfleet_api_key', value], ...} -> the environment file's content."""
    if not isinstance(variables, dict):
        raise AnsibleFilterError(f"systemd_env_file: expected a mapping, got {type(variables).__name__}")
    try:
        return env_file((key, source, value) for key, (source, value) in plain(variables).items())
    except PlanError as exc:
        raise AnsibleFilterError(str(exc)) from None


def systemd_existing_account(entry, variable, name):
    try:
        return existing_account(variable, name, plain(entry))
    except PlanError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):
        return {
            "systemd_exec": systemd_exec,
            "systemd_environment": systemd_environment,
            "systemd_unit_fields": systemd_unit_fields,
            "systemd_env_file": systemd_env_file,
            "systemd_existing_account": systemd_existing_account,
        }
