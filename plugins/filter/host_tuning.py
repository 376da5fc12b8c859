# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ktfleet.numa.irqbalance_unit, irqbalance_settings and tuning_report_lines: thin
filters over plugins/plugin_utils/tuning/host_tuning.py (the decisions of roles/host_tuning).

Documentation: irqbalance_unit.yml, irqbalance_settings.yml and tuning_report_lines.yml beside this file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.ktfleet.numa.plugins.plugin_utils.plain import plain
from ansible_collections.ktfleet.numa.plugins.plugin_utils.tuning import host_tuning as _core


def irqbalance_unit(show: Any, staged: Any = False) -> dict:
    if show is not None and not isinstance(show, Mapping):
        raise AnsibleFilterError(f"irqbalance_unit: expected a registered systemctl result, got {type(show).__name__}")
    return _core.irqbalance_unit(plain(show), bool(staged))


def irqbalance_settings(text: Any) -> dict:
    if not isinstance(text, str):
        raise AnsibleFilterError(f"irqbalance_settings: expected the file's text, got {type(text).__name__}")
    return _core.irqbalance_settings(str(text))


def tuning_report_lines(rows: Any) -> list[str]:
    try:
        return _core.report_lines(plain(list(rows)))
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"tuning_report_lines: each row needs setting, before, after, changed, note ({exc})") from None


class FilterModule:
    def filters(self) -> dict:
        return {
            "irqbalance_unit": irqbalance_unit,
            "irqbalance_settings": irqbalance_settings,
            "tuning_report_lines": tuning_report_lines,
        }
