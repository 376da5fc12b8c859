"""Byte sizes as operators write them (382G, 378GiB, 400GB), and every way ktfleet prints them.

The one home of byte formatting, three styles by where the text goes:

- ``format_size``: '355.8 GiB', the planner's reasons and warnings;
- ``format_size_short``: '382.0G', table cells (the fleet table, the report);
- ``format_size_coarse``: '1.5 GiB' / '512 MiB', the diagnosis' verdict lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# Binary unless the unit says "B" after an SI prefix: "382G" is what du -h and ls -h
# print (GiB), so reading it as binary never under-counts the weights.
_FACTORS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "ki": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mi": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gi": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "ti": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")

MIB = 1 << 20
GIB = 1 << 30

SIZE_HELP = "bytes as an integer, or a size like 382G, 378GiB or 400GB (K/M/G/T and KiB.. are binary, KB/MB/GB/TB decimal)"


def parse_size(value: object) -> int:
    """Bytes from an int or a human size string; ValueError with a readable message otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected {SIZE_HELP}, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-\d+", text):
            return int(text)
        match = _SIZE.match(text)
        if match and match.group(2).lower() in _FACTORS:
            return int(float(match.group(1)) * _FACTORS[match.group(2).lower()])
    raise ValueError(f"expected {SIZE_HELP}, got {value!r}")


def format_size(num_bytes: int | None) -> str:
    """'355.8 GiB' style, for reasons and warnings."""
    if num_bytes is None:
        return "unknown"
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            break
        value /= 1024
    if unit == "GiB" and abs(value) >= 10 * 1024:
        return f"{value / 1024:.2f} TiB"
    return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"


def format_size_short(value: object) -> str:
    """1024-based size with one decimal and a one-letter unit, e.g. 382.0G; '?' when unknown."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "?"
    size = float(value)
    for unit in ("B", "K", "M", "G", "T", "P"):
        if abs(size) < 1024 or unit == "P":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return "?"


def format_size_coarse(value: float) -> str:
    """GiB with one decimal from 1 GiB up, whole MiB below: '1.5 GiB', '512 MiB'."""
    return f"{value / GIB:.1f} GiB" if value >= GIB else f"{value / MIB:.0f} MiB"


def files_bytes(files: Iterable[Mapping[str, object]]) -> int:
    """The bytes of ansible.builtin.find's files, each file once.

    ``find`` with ``follow: true`` (weights are often symlinks into a shared
    volume or the Hugging Face blob store) walks a symlink loop again at every
    level; one (device, inode) is one file however many paths reach it.
    """
    seen: dict[tuple[object, object], int] = {}
    for entry in files:
        key = (entry.get("dev"), entry.get("inode")) if entry.get("inode") is not None else ("path", entry.get("path"))
        seen[key] = int(entry.get("size") or 0)
    return sum(seen.values())
