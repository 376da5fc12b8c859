"""Filter report_files: the fleet report's records as ktfleet.numa.release_files entries.

One release_files call writes every record (instead of a copy task per host);
docs in report_files.yml.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible.plugins.filter.core import to_nice_json


def report_files(records, directory):
    if not isinstance(directory, str) or not directory:
        raise AnsibleFilterError(f"ktfleet.numa.report_files: directory must be a path, got {directory!r}")
    if isinstance(records, (str, bytes, Mapping)) or not hasattr(records, "__iter__"):
        raise AnsibleFilterError("ktfleet.numa.report_files: the input must be the list report_records returns")
    out = []
    for record in records:
        host = record.get("host") if isinstance(record, Mapping) else None
        if not isinstance(host, str) or not host or "/" in host or host in (".", ".."):
            raise AnsibleFilterError(f"ktfleet.numa.report_files: a record without a usable host name: {host!r}")
        out.append({
            "name": f"{host}.json",
            "path": os.path.join(directory, f"{host}.json"),
            "content": to_nice_json(record, indent=2) + "\n",
            "mode": "0644",
        })
    return out


class FilterModule:
    def filters(self):
        return {"report_files": report_files}
