"""Filters fleet_table and rollout_outcomes: the fleet at a glance.

Thin shells over plugins/plugin_utils/fleet_table.py; docs in fleet_table.yml
and rollout_outcomes.yml.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.ktfleet.numa.plugins.plugin_utils.fleet_table import fleet_table as _table
from ansible_collections.ktfleet.numa.plugins.plugin_utils.fleet_table import rollout_outcomes as _outcomes


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


class FilterModule:
    def filters(self):
        return {"fleet_table": fleet_table, "rollout_outcomes": rollout_outcomes}
