# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How many NUMA shards pre-sharded kt-kernel weights hold, read from their tensor names.

kt-kernel counts them the same way (kt_kernel 0.7.2 wheel, kt_kernel/utils/loader.py,
SafeTensorLoader.load_experts): for a layer's ``{base}.ffn_up_exps.0.numa.{i}.weight`` it
takes i = 0, 1, ... until a name is missing, and loads that many shards whatever the
thread-pool count is, so a mismatch reads out of bounds instead of failing. The tensor
names come from the safetensors headers (8-byte little-endian length, then JSON), which
is what kt-kernel reads (it walks the directory for ``*.safetensors``; an index file is
not consulted). Stdlib only: runs on the managed host and in ``ktfleet plan``.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Iterable

_UP_EXPERT0 = re.compile(r"^(?P<base>.+)\.ffn_up_exps\.0\.numa\.(?P<shard>\d+)\.weight$")
_HEADER_LIMIT = 256 << 20  # a header larger than this is not a safetensors header


def numa_shards(keys: Iterable[str]) -> int | None:
    """The shard count the names say (None: not NUMA-sharded); ValueError when layers disagree."""
    shards: dict[str, set[int]] = {}
    for key in keys:
        match = _UP_EXPERT0.match(key)
        if match:
            shards.setdefault(match["base"], set()).add(int(match["shard"]))
    counts = {}
    for base, found in shards.items():
        count = 0
        while count in found:  # as load_experts: .numa.0, .numa.1, ... until one is missing
            count += 1
        counts[base] = count
    distinct = sorted(set(counts.values()))
    if not distinct:
        return None
    if len(distinct) > 1:
        sample = ", ".join(f"{base}: {n}" for base, n in sorted(counts.items())[:4])
        raise ValueError(f"the layers are sharded differently ({', '.join(map(str, distinct))} shards; {sample})")
    if distinct[0] == 0:
        raise ValueError("tensors name .numa.{i}. shards but none is shard 0")
    return distinct[0]


def header_keys(path: str) -> list[str]:
    """The tensor names in one .safetensors file's header."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: shorter than a safetensors header")
        (length,) = struct.unpack("<Q", raw)
        if not 0 < length <= _HEADER_LIMIT:
            raise ValueError(f"{path}: header length {length} is not a safetensors header")
        header = json.loads(fh.read(length))
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is not a JSON object")
    return [key for key in header if key != "__metadata__"]


def read_weights_dir(path: str) -> dict:
    """``{exists, numa_shards, files, tensors}`` for a weights directory (numa_shards None: not sharded).

    A missing directory is no error here (the plan stays read-only; preflight refuses it).
    """
    if not os.path.isdir(path):
        return {"exists": False, "numa_shards": None, "files": 0, "tensors": 0}
    files = []
    for root, _dirs, names in os.walk(path):
        files += [os.path.join(root, n) for n in sorted(names) if n.endswith(".safetensors")]
    keys: list[str] = []
    for file in sorted(files):
        keys += header_keys(file)
    return {"exists": True, "numa_shards": numa_shards(keys), "files": len(files), "tensors": len(keys)}
