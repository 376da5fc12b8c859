"""Filters fleet_table, fleet_naive, rollout_outcomes, rollout_batches, rollout_group, rollout_serial and rollout_max_fail.

Thin shells over plugins/plugin_utils/planner/fleet_table.py and naive.py; docs in
fleet_table.yml, fleet_naive.yml and rollout_outcomes.yml.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.ktfleet.numa.plugins.plugin_utils.errors import PlanError
from ansible_collections.ktfleet.numa.plugins.plugin_utils.needs_pydantic import core
from ansible_collections.ktfleet.numa.plugins.plugin_utils.plain import plain
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.fleet_table import fleet_table as _table
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.fleet_table import (
    rollout_outcomes as _outcomes,
)
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.rollout import (
    max_fail_percentage as _max_fail,
)
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.rollout import rollout_batches as _batches
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.rollout import (
    serial_from_groups as _from_groups,
)
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.rollout import serial_group as _group


def fleet_table(hostvars, hosts):
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError("fleet_table: the input must be hostvars (a mapping of host to variables)")
    if isinstance(hosts, str):
        hosts = [hosts]
    return _table(hostvars, list(hosts))


def rollout_outcomes(hostvars, hosts):
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError("rollout_outcomes: the input must be hostvars (a mapping of host to variables)")
    return _outcomes(hostvars, [hosts] if isinstance(hosts, str) else list(hosts))


_DEFAULT_SERIAL = [1, "25%", "100%"]


def rollout_group(hostvars, hosts):
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError("rollout_group: the input must be hostvars (a mapping of host to variables)")
    hosts = [hosts] if isinstance(hosts, str) else list(hosts)
    try:
        return _group({h: plain(hostvars[h].get("ktfleet_serial", _DEFAULT_SERIAL)) for h in hosts})
    except PlanError as exc:
        raise AnsibleFilterError(str(exc)) from None


def rollout_serial(groups, default=None):
    try:
        return _from_groups(groups, plain(_DEFAULT_SERIAL if default is None else default))
    except PlanError as exc:
        raise AnsibleFilterError(str(exc)) from None


def rollout_batches(serial):
    try:
        return _batches(plain(serial))
    except PlanError as exc:
        raise AnsibleFilterError(str(exc)) from None


def rollout_max_fail(value):
    try:
        return _max_fail(plain(value))
    except PlanError as exc:
        raise AnsibleFilterError(str(exc)) from None


def fleet_naive(hostvars, hosts):
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError("fleet_naive: the input must be hostvars (a mapping of host to variables)")
    # imported on use: fleet_table and rollout_outcomes need no pydantic
    return core("planner.naive", "fleet_naive").comparison(hostvars, [hosts] if isinstance(hosts, str) else list(hosts))


class FilterModule:
    def filters(self):
        return {
            "fleet_table": fleet_table,
            "rollout_outcomes": rollout_outcomes,
            "rollout_batches": rollout_batches,
            "rollout_group": rollout_group,
            "rollout_serial": rollout_serial,
            "rollout_max_fail": rollout_max_fail,
            "fleet_naive": fleet_naive,
        }
