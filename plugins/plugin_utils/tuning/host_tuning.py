"""Decisions of roles/host_tuning as pure functions; the role's tasks only render them.

- ``irqbalance_unit``: what ``systemctl show irqbalance.service`` says (the unit's
  properties, the environment file it reads, why it is left alone);
- ``irqbalance_settings``: the IRQBALANCE_BANNED_* setting in force in that file,
  with and without ktfleet's block;
- ``report_lines``: the role's report rows as the table it prints.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .. import text_table

DEFAULT_ENV_FILE = "/etc/default/irqbalance"
# the setting irqbalance reads (BANNED_CPUS before 1.8, BANNED_CPULIST since)
BANNED = re.compile(r"^[ \t]*(IRQBALANCE_BANNED_CPU(?:S|LIST)=.*?)[ \t]*$", re.M)
# the block roles/host_tuning writes (blockinfile's markers)
BLOCK = re.compile(r"^# BEGIN ktfleet\.numa\.host_tuning:.*?^# END ktfleet\.numa\.host_tuning:[^\n]*\n?", re.M | re.S)
REPORT_HEADER = {"setting": "setting", "before": "before", "after": "after", "changed": "changed", "note": "note"}


def irqbalance_unit(show: Mapping[str, Any] | None, staged: bool = False) -> dict:
    """{unit, file, why} from the registered result of
    ``systemctl show irqbalance.service --property=LoadState,ActiveState,EnvironmentFiles``.

    ``unit`` is the properties (``LoadState``, ``ActiveState``...); ``file`` the
    environment file the unit reads (the last, when several; /etc/default/irqbalance
    when none); ``why`` is empty when irqbalance is there to configure, else the
    reason it is left as it is.  A ``staged`` root has no systemd: nothing is asked.
    """
    show = show or {}
    lines = [str(line) for line in show.get("stdout_lines") or []]
    unit = dict(line.split("=", 1) for line in lines if "=" in line)
    files = [line[len("EnvironmentFiles="):].split()[0] for line in lines
             if line.startswith("EnvironmentFiles=/")]
    state = unit.get("LoadState", "not-found")
    if staged:
        why = ""
    elif show.get("rc") != 0:
        why = "systemd did not answer (not running?): left as is"
    elif state == "not-found":
        why = "not installed"
    elif state != "loaded":
        why = f"irqbalance.service is {state}: left as is"
    else:
        why = ""
    return {"unit": unit, "file": files[-1] if files else DEFAULT_ENV_FILE, "why": why}


def irqbalance_settings(text: str) -> dict:
    """{before, host}: the last IRQBALANCE_BANNED_* line of the environment file
    (what is in force), and the one left without ktfleet's block; 'none' for none."""
    in_force = BANNED.findall(text or "")
    host = BANNED.findall(BLOCK.sub("", text or ""))
    return {"before": in_force[-1] if in_force else "none", "host": host[-1] if host else "none"}


def _changed(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "yes" if value else "no"


def report_lines(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The report rows ({setting, before, after, changed, note}) under a header,
    setting/before/after as wide as their widest cell, changed in 7."""
    table = [REPORT_HEADER, *rows]
    cells = [(str(r["setting"]), str(r["before"]), str(r["after"]), _changed(r["changed"]), str(r["note"]))
             for r in table]
    widths = [max(len(c[i]) for c in cells) for i in range(3)] + [7, 0]
    return [text_table.line(c, widths) for c in cells]
