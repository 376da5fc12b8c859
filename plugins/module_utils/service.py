# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A systemd service's main process, the one place a module asks systemd for it.

Stdlib only (runs on the target).  ``run_command`` is AnsibleModule.run_command
(or anything with its ``argv -> (rc, stdout, stderr)`` shape), so tests need no
systemd.
"""

from __future__ import annotations


def parse_main_pid(service: str, rc: int, out: str, err: str) -> int:
    """The pid in ``systemctl show -p MainPID --value`` output; 0 when the
    service runs no process.  ValueError (the message names the service) when
    systemctl failed or printed no number."""
    text = out.strip()
    if rc != 0 or not text.isdigit():
        raise ValueError(f"service: cannot read MainPID of {service}: {err.strip() or text}")
    return int(text)


def main_pid(run_command, service: str, systemctl: str = "systemctl") -> int:
    """MainPID of ``service`` (0: not running); ValueError as parse_main_pid."""
    rc, out, err = run_command([systemctl, "show", "-p", "MainPID", "--value", service])
    return parse_main_pid(service, rc, out, err)
