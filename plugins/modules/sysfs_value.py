#!/usr/bin/python
# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: read or set a kernel value under /proc/sys or /sys."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sysfs_value
short_description: Read or set a kernel value under /proc/sys or /sys, with check mode and diff
version_added: 0.1.0
author: ktfleet contributors (@ktfleet)
description:
  - Reads the value of one kernel file under C(/proc/sys) or C(/sys), or of every file a shell glob
    matches (for example every CPU's C(cpufreq/scaling_governor)), and sets it when asked.
  - Understands the files that list their choices with the current one in brackets, such as
    C(/sys/kernel/mm/transparent_hugepage/enabled), which reads C(always [madvise] never). The value is the
    bracketed word, and a value that is not one of the listed words is refused before anything is written.
  - The change applies now and is lost at reboot; persist it separately (C(sysctl.d), C(tmpfiles.d)).
  - A path that matches no file is not an error; RV(exists) is V(false) and nothing changes.
  - Uses only the Python standard library on the target.
options:
  path:
    description:
      - Absolute path of the kernel file, under C(/proc/sys/) or C(/sys/). Shell glob characters (C(*), C(?),
        C([...])) select several files at once.
    type: str
    required: true
  value:
    description:
      - Set every matching file to this value. Leave out (with O(values)) to only read.
    type: str
  values:
    description:
      - Per-file values, keyed by path as the host sees it (the RV(values_before) of an earlier run), to put
        back exactly what was there. Files it does not name get O(value) or stay as they are; paths it names
        that match no file are ignored (a CPU that went offline).
    type: dict
  choices_file:
    description:
      - Name of a file in the same directory as each matching file whose words are the values the kernel
        accepts there, for example C(scaling_available_governors) beside C(scaling_governor). A value that is
        not among them is refused before anything is written (also in check mode).
    type: str
  root:
    description: Read and write under this directory instead of C(/) (for tests).
    type: path
    default: /
requirements:
  - Linux. Writing needs root.
attributes:
  check_mode:
    support: full
    description: Reads, validates and reports what would be written, but writes nothing.
  diff_mode:
    support: full
    description: Shows each file's value before and after.
  platform:
    support: full
    platforms: posix
    description: Linux, whose C(/proc/sys) and C(/sys) it reads and writes.
notes:
  - Values are compared with their whitespace collapsed to single spaces, as C(sysctl) prints them.
seealso:
  - name: sysctl(8)
    description: The usual way to set C(/proc/sys) values; this module writes the same files.
    link: https://man7.org/linux/man-pages/man8/sysctl.8.html
"""

EXAMPLES = r"""
- name: Turn automatic NUMA balancing off now
  ktfleet.numa.sysfs_value:
    path: /proc/sys/kernel/numa_balancing
    value: "0"

- name: Transparent hugepages only where the application asks (madvise)
  ktfleet.numa.sysfs_value:
    path: /sys/kernel/mm/transparent_hugepage/enabled
    value: madvise

- name: Every CPU on the performance governor, where cpufreq is exposed
  ktfleet.numa.sysfs_value:
    path: /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor
    value: performance
    choices_file: scaling_available_governors
  register: governor

- name: Later, put back exactly the governors found before
  ktfleet.numa.sysfs_value:
    path: /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor
    values: "{{ governor.values_before }}"
"""

RETURN = r"""
exists:
  description: Whether O(path) matched at least one file.
  returned: always
  type: bool
  sample: true
paths:
  description: The matching files as the host sees them, in natural order (C(cpu2) before C(cpu10)).
  returned: always
  type: list
  elements: str
  sample: [/sys/kernel/mm/transparent_hugepage/enabled]
before:
  description:
    - The value before the task; when the files differ, C(mixed:) and each value with its count.
      V(null) when nothing matched.
  returned: always
  type: str
  sample: always
after:
  description: The value after the task (in check mode, the value that would be set), summarized like RV(before).
  returned: always
  type: str
  sample: madvise
values_before:
  description: Each file's value before the task, keyed by path.
  returned: always
  type: dict
  sample: {"/sys/kernel/mm/transparent_hugepage/enabled": "always"}
values_after:
  description: Each file's value after the task (in check mode, what would be set), keyed by path.
  returned: always
  type: dict
  sample: {"/sys/kernel/mm/transparent_hugepage/enabled": "madvise"}
choices:
  description: The values the first matching file accepts, when known (bracketed files and O(choices_file)).
  returned: always
  type: list
  elements: str
  sample: [always, madvise, never]
check_mode:
  description: Whether the module ran in check mode (then nothing was written).
  returned: always
  type: bool
  sample: false
"""

import errno
import glob
import os
import re

from ansible.module_utils.basic import AnsibleModule

_ALLOWED = ("/proc/sys/", "/sys/")
_DIGITS = re.compile(r"(\d+)")


def natural_key(path: str) -> list:
    """Sort key putting cpu2 before cpu10."""
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(path)]


def check_path(path: str) -> str | None:
    """Why ``path`` may not be used, or None when it may."""
    if not path.startswith(_ALLOWED):
        return f"must be an absolute path under {' or '.join(_ALLOWED)}, got {path!r}"
    if ".." in path.split("/"):
        return f"must not contain '..', got {path!r}"
    return None


def parse_value(text: str) -> tuple[str, list[str] | None]:
    """(value, choices): the bracketed word of 'always [madvise] never', else the whitespace-collapsed text."""
    words = text.split()
    selected = [w[1:-1] for w in words if len(w) > 2 and w.startswith("[") and w.endswith("]")]
    if len(words) > 1 and len(selected) == 1:
        return selected[0], [w.strip("[]") for w in words]
    return " ".join(words), None


def normalize(value: str) -> str:
    return " ".join(str(value).split())


def summarize(values: dict[str, str]) -> str | None:
    """One value when all files agree, else 'mixed: a x2, b x1'."""
    if not values:
        return None
    counts: dict[str, int] = {}
    for value in values.values():
        counts[value] = counts.get(value, 0) + 1
    if len(counts) == 1:
        return next(iter(counts))
    return "mixed: " + ", ".join(f"{value} x{counts[value]}" for value in sorted(counts))


def find(root: str, path: str) -> dict[str, str]:
    """Host path -> real path of every regular file ``path`` matches under ``root``."""
    base = os.path.abspath(root)
    pattern = os.path.join(glob.escape(base), path.lstrip("/"))
    found = {}
    for real in glob.glob(pattern):
        if os.path.isfile(real):
            host = "/" + os.path.relpath(real, base)
            found[host] = real
    return dict(sorted(found.items(), key=lambda item: natural_key(item[0])))


def read(real: str, choices_file: str | None) -> tuple[str, list[str] | None]:
    with open(real, encoding="utf-8", errors="replace") as handle:
        value, choices = parse_value(handle.read())
    if choices is None and choices_file:
        try:
            with open(os.path.join(os.path.dirname(real), choices_file), encoding="utf-8") as handle:
                choices = handle.read().split()
        except OSError:
            choices = None
    return value, choices


def write(real: str, value: str) -> None:
    # a trailing newline, as echo and sysctl write: every kernel file takes it
    with open(real, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")


def run(module: AnsibleModule) -> dict:
    params = module.params
    problem = check_path(params["path"])
    if problem:
        module.fail_json(msg=f"path: {problem}")
    requested = {str(k): normalize(v) for k, v in (params["values"] or {}).items() if v is not None}
    default = normalize(params["value"]) if params["value"] is not None else None

    files = find(params["root"], params["path"])
    before: dict[str, str] = {}
    choices: dict[str, list[str] | None] = {}
    for host, real in files.items():
        try:
            before[host], choices[host] = read(real, params["choices_file"])
        except OSError as exc:
            module.fail_json(msg=f"path: cannot read {host}: {exc.strerror or exc}")

    wanted = {}
    for host in files:
        value = requested.get(host, default)
        if value is None:
            continue
        allowed = choices[host]
        if allowed is not None and value not in allowed:
            module.fail_json(
                msg=f"value: {host} accepts {', '.join(allowed)}; {value!r} is not one of them",
                choices=allowed,
            )
        wanted[host] = value

    to_change = {host: value for host, value in wanted.items() if value != before[host]}
    after = dict(before)
    after.update(to_change)
    if to_change and not module.check_mode:
        for host, value in to_change.items():
            try:
                write(files[host], value)
            except OSError as exc:
                hint = ""
                if exc.errno == errno.EINVAL and choices[host]:
                    hint = f"; it accepts {', '.join(choices[host])}"
                module.fail_json(msg=f"value: the kernel refused {value!r} for {host}: {exc.strerror or exc}{hint}")
            try:
                after[host], _choices = read(files[host], None)
            except OSError as exc:
                module.fail_json(msg=f"path: cannot read {host} back: {exc.strerror or exc}")
            if after[host] != value:
                module.fail_json(
                    msg=f"value: {host} reads {after[host]!r} after writing {value!r}; the kernel did not take it",
                    values_before=before,
                    values_after=after,
                )

    first = next(iter(files), None)
    result = {
        "changed": bool(to_change),
        "exists": bool(files),
        "paths": list(files),
        "before": summarize(before),
        "after": summarize(after),
        "values_before": before,
        "values_after": after,
        "choices": (choices.get(first) or []) if first else [],
        "check_mode": module.check_mode,
    }
    if module._diff and to_change:
        result["diff"] = {
            "before_header": params["path"],
            "after_header": params["path"],
            "before": "".join(f"{host}: {before[host]}\n" for host in to_change),
            "after": "".join(f"{host}: {value}\n" for host, value in to_change.items()),
        }
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "str", "required": True},
            "value": {"type": "str"},
            "values": {"type": "dict"},
            "choices_file": {"type": "str"},
            "root": {"type": "path", "default": "/"},
        },
        supports_check_mode=True,
    )
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
