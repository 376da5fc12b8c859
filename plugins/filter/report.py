# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters fleet_report and report_records: the fleet report (playbooks/report.yml).

Thin shells over the package plugins/plugin_utils/report/; docs in fleet_report.yml and
report_records.yml beside this file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.ktfleet.numa.plugins.plugin_utils import report as _report

FORMATS = {"html": _report.render_html, "markdown": _report.render_markdown}


def _records(records, name: str) -> list:
    if isinstance(records, Mapping):
        return list(records.values())  # {host: record} works as well as a list
    if isinstance(records, str) or not isinstance(records, list | tuple):
        raise AnsibleFilterError(f"ktfleet.numa.{name}: the input must be a list of records, got {type(records).__name__}")
    return list(records)


def fleet_report(records, format="html"):
    render = FORMATS.get(str(format).lower())
    if render is None:
        raise AnsibleFilterError(f"ktfleet.numa.fleet_report: format must be html or markdown, got {format!r}")
    try:
        return render([_report.plain(r, "record") for r in _records(records, "fleet_report")])
    except ValueError as exc:
        raise AnsibleFilterError(f"ktfleet.numa.fleet_report: {exc}") from None


def report_records(hostvars, hosts, directory, updated=None):
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError("ktfleet.numa.report_records: the input must be hostvars (a mapping of host to variables)")
    if isinstance(hosts, str):
        hosts = [hosts]
    if not isinstance(directory, str) or not directory:
        raise AnsibleFilterError(f"ktfleet.numa.report_records: directory must be a path, got {directory!r}")
    try:
        saved = _report.load_records(os.path.expanduser(directory))
        return _report.merge_hostvars(saved, hostvars, [str(h) for h in hosts], str(updated) if updated else None)
    except ValueError as exc:
        raise AnsibleFilterError(f"ktfleet.numa.report_records: {exc}") from None


class FilterModule:
    def filters(self):
        return {"fleet_report": fleet_report, "report_records": report_records}
