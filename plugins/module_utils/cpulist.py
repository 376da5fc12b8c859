# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel's CPU and node list vocabulary, read and written in one place.

Stdlib only: the fact module, the placement and sampling modules (on the target)
and the planner, report and diagnosis (on the controller) all speak it.

* a *cpulist* is ``0-3,8,10-11`` (also ``0-15:2/4``, every 2 of each 4): what
  ``cpulist``/``*_list`` files, ``Cpus_allowed_list``, numactl and systemd's
  ``CPUAffinity=``/``NUMAMask=`` use;
* a *cpumask* is ``00000000,0000ffff``: 32-bit hex words, highest first.

Parsing is strict by default (the kernel's syntax, ValueError on garbage, numbers
below ``MAX_CPU``); ``lenient=True`` also takes white space as a separator and
empty items (lists a person or another tool wrote: ``"0-3 8"``).  Padding the
kernel appends (NULs, newlines) is the sysfs reader's business, not this one's.
"""

from __future__ import annotations

import re

# CPU and node numbers above this are treated as corrupt data (Linux's NR_CPUS
# tops out at 8192 on x86 and 16384 elsewhere today).
MAX_CPU = 1 << 16

_DIGITS = re.compile(r"[0-9]+\Z")
_SEPARATORS = re.compile(r"[,\s]+")


def parse_uint(text: str) -> int:
    """A non-negative decimal int, strictly ASCII digits (white space around it allowed)."""
    text = text.strip()
    if not _DIGITS.match(text):
        raise ValueError(f"not a number: {text[:40]!r}")
    return int(text)


def _add_part(out: set, part: str) -> None:
    lo, dash, hi = part.partition("-")
    used = group = None
    if dash:
        hi, colon, stride = hi.partition(":")
        if colon:
            u, slash, g = stride.partition("/")
            used, group = parse_uint(u), (parse_uint(g) if slash else parse_uint(u))
            if not used or not group:
                raise ValueError(f"bad cpulist stride in {part[:40]!r}")
    else:
        hi = lo
    lo, hi = parse_uint(lo), parse_uint(hi)
    if lo > hi or hi >= MAX_CPU:
        raise ValueError(f"bad cpulist range {part[:40]!r}")
    if group:
        out.update(i for i in range(lo, hi + 1) if (i - lo) % group < used)
    else:
        out.update(range(lo, hi + 1))


def cpulist_set(text: str, lenient: bool = False) -> set:
    """A cpulist ("0-3,8,10-11", "0-15:2/4") as a set of ints; ValueError on garbage."""
    text = text.strip()
    out: set = set()
    if not text:
        return out
    parts = [p for p in _SEPARATORS.split(text) if p] if lenient else [p.strip() for p in text.split(",")]
    for part in parts:
        _add_part(out, part)
    return out


def parse_cpulist(text: str, lenient: bool = False) -> list:
    """Cpulist text -> sorted list of CPU numbers; ValueError on garbage.

    >>> parse_cpulist("0-3,8,10-11")
    [0, 1, 2, 3, 8, 10, 11]
    >>> parse_cpulist("")
    []
    >>> parse_cpulist("0-1 4,,6", lenient=True)
    [0, 1, 4, 6]
    """
    return sorted(cpulist_set(text, lenient))


def cpumask_set(text: str) -> set:
    """A kernel cpumask ("00000000,0000ffff") as a set of ints; ValueError on garbage."""
    text = text.strip()
    if not text:
        return set()
    digits = text.replace(",", "")  # kernel words are 8 hex digits wide
    # (cheaper than a regex on 1000-digit masks: int() rejects g-z itself)
    if (
        not (digits.isascii() and digits.isalnum())
        or "x" in digits
        or "X" in digits
        or ",," in text
        or (text[0] == "," or text[-1] == ",")
    ):
        raise ValueError(f"not a cpumask: {text[:40]!r}")
    try:
        value = int(digits, 16)
    except ValueError:
        raise ValueError(f"not a cpumask: {text[:40]!r}") from None
    if value.bit_length() > MAX_CPU:
        raise ValueError("cpumask too wide")
    if not value & (value - 1):  # zero or one CPU: the common case for cores and small nodes
        return {value.bit_length() - 1} if value else set()
    bits = bin(value)[:1:-1]  # least significant first
    out = set()
    i = bits.find("1")
    while i >= 0:
        out.add(i)
        i = bits.find("1", i + 1)
    return out


def parse_cpumask(text: str) -> list:
    """Kernel hex cpumask text -> sorted list of CPU numbers; ValueError on garbage.

    >>> parse_cpumask("00000000,00000103")
    [0, 1, 8]
    """
    return sorted(cpumask_set(text))


def format_cpulist(cpus) -> str:
    """The kernel's cpulist text for ``cpus`` ("0-3,8"; "" for none): what
    numactl and systemd both read.

    >>> format_cpulist([8, 0, 1, 2, 3, 10, 11])
    '0-3,8,10-11'
    """
    ordered = sorted(set(cpus))
    out = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def format_cpumask(cpus) -> str:
    """Hex mask in 32-bit groups, highest first, as the kernel prints cpumasks: '1,00000003'.

    >>> format_cpumask([0, 1, 32])
    '1,00000003'
    """
    mask = 0
    for cpu in cpus:
        mask |= 1 << cpu
    digits = f"{mask:x}"
    digits = "0" * ((-len(digits)) % 8) + digits
    groups = [digits[i : i + 8] for i in range(0, len(digits), 8)]
    groups[0] = groups[0].lstrip("0") or "0"
    return ",".join(groups)


def join_ids(ids) -> str:
    """Ids one by one, in the order given, comma-separated ("0,1,3"): for
    messages that name each node rather than a range.

    >>> join_ids([0, 1, 3])
    '0,1,3'
    """
    return ",".join(str(i) for i in ids)
