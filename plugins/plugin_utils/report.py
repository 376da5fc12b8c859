"""The fleet report: one self-contained HTML page and one Markdown file for the whole fleet.

One JSON record per host (docs/report.md): ``host``, ``updated`` and the optional
parts ``facts`` (``ansible_facts.numa``), ``plan`` (the ``ktfleet.numa.plan``
dict), ``rollout``, ``tune`` and ``diagnosis``. playbooks/report.yml merges what a
run left in hostvars into ``<dir>/<host>.json`` and renders every record.

The page needs nothing but itself: CSS in <style>, drawings as inline SVG, no
JavaScript, no URL. Every text goes through an escaper (Jinja autoescape for the
page, markupsafe for the SVG, ``_md`` for Markdown). Pure Python: stdlib + jinja2.
"""

from __future__ import annotations

import functools
import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined, Template
from markupsafe import Markup, escape

from .fleet_table import _nodes as nodes_label  # the same "2+4mem (2/pkg)" as the rollout table
from .fleet_table import human_bytes


class RecordError(ValueError):
    """A record that cannot be used; the message names the record and the field."""


# --- record schema ----------------------------------------------------------------
# Every key is optional and null means missing (the fact module writes null for
# what it could not see); a present value of the wrong type is an error. Specs: a
# scalar kind, a dict (keys checked, others kept but not read), [spec] (a list of
# it, no nulls inside), or ("nodes" | "names", kind) for maps keyed by node id or
# by any name.

Spec = Any
ENUMS = {
    "status": ("ok", "warn", "fail", "info"),
    "outcome": ("new", "rolled_back", "old"),
}
NODE = {
    "id": "int", "cpus": ["int"], "cores": "int", "package_ids": ["int"],
    "memory_total_bytes": "int", "memory_free_bytes": "int", "memory_only": "bool",
    "distances": ["int"],
}  # fmt: skip
FACTS = {
    "nodes": [NODE],
    "packages": [{"id": "int", "nodes": ["int"], "cores": "int", "cpus": ["int"]}],
    "nodes_per_package": "int", "cores_total": "int", "core_cpus": [["int"]], "threads_per_core": "int",
    "smt_active": "bool",
    "memory_total_bytes": "int", "memory_available_bytes": "int", "root": "str",
    "cpu": {"architecture": "str", "vendor": "str", "model_name": "str", "hypervisor": "bool"},
    "gpus": [{"pci_address": "str", "vendor": "str", "device_id": "str", "model": "str",
              "numa_node": "int", "memory_bytes": "int"}],
    "warnings": ["str"],
}  # fmt: skip
PLAN = {
    "backend": "str", "model": "str", "policy": "str", "numa_build": "bool",
    "cpu_infer": "int", "threadpool_count": "int", "numa_nodes": ["int"], "memory_nodes": ["int"],
    "threads_per_node": ("nodes", "int"), "cpus": ["int"], "numactl": ["str"],
    "systemd": {"NUMAPolicy": "str", "NUMAMask": "str", "CPUAffinity": "str"},
    "server_args": ["str"], "environment": ("names", "str"),
    "memory": {
        "fits": "bool", "required_total_bytes": "int", "required_per_node_bytes": ("nodes", "int"),
        "available_total_bytes": "int", "available_per_node_bytes": ("nodes", "int"),
        "headroom_ratio": "num",
    },
    "reasons": ["str"], "warnings": ["str"],
}  # fmt: skip
ROLLOUT = {"outcome": "outcome"}
TUNE = {
    "table": [{"threads": "int", "samples": ["num"], "median": "num"}],
    "chosen": "int", "knee": "int", "reason": "str", "unit": "str",
}  # fmt: skip
DIAGNOSIS = {
    "window_seconds": "num",
    "verdicts": [{"check": "str", "status": "status", "summary": "str", "remedy": "str",
                  "numbers": ("names", "scalar")}],
}  # fmt: skip
PARTS: dict[str, Spec] = {"facts": FACTS, "plan": PLAN, "rollout": ROLLOUT, "tune": TUNE, "diagnosis": DIAGNOSIS}

_KINDS = {
    "int": ("an int", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "num": ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "scalar": ("a number, a string or a boolean", lambda v: isinstance(v, str | int | float)),
}


def _short(value: Any) -> str:
    text = json.dumps(value, default=repr) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(where: str, path: str, what: str, value: Any) -> RecordError:
    return RecordError(f"{where}: {path}: must be {what}, got {_short(value)}")


def _conform(value: Any, spec: Spec, where: str, path: str) -> Any:
    """Check value against spec; return a copy with the read keys only, missing ones filled."""
    if isinstance(spec, dict):
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise _bad(where, path, "a mapping", value)
        return {key: _conform(value.get(key), sub, where, f"{path}.{key}") for key, sub in spec.items()}
    if isinstance(spec, list):
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            raise _bad(where, path, "a list", value)
        items = []
        for i, item in enumerate(value):
            if item is None:
                raise _bad(where, f"{path}[{i}]", "a value, not null", item)
            items.append(_conform(item, spec[0], where, f"{path}[{i}]"))
        return items
    if isinstance(spec, tuple):
        return _conform_map(value, spec, where, path)
    if value is None:
        return None
    if spec in ENUMS:
        if value not in ENUMS[spec]:
            raise _bad(where, path, "one of " + ", ".join(ENUMS[spec]), value)
        return value
    what, ok = _KINDS[spec]
    if not ok(value):
        raise _bad(where, path, what, value)
    return value


def _conform_map(value: Any, spec: tuple[str, str], where: str, path: str) -> dict:
    keys, kind = spec
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _bad(where, path, "a mapping", value)
    out: dict = {}
    for key, item in value.items():
        if keys == "nodes":
            # JSON turns the planner's int node ids into strings
            if not re.fullmatch(r"\d+", str(key)):
                raise _bad(where, f"{path} key", "a node id", key)
            key = int(key)
        out[key] = _conform(item, kind, where, f"{path}.{key}")
    return out


def _check_head(record: Any, where: str) -> tuple[str, str]:
    if not isinstance(record, Mapping):
        raise RecordError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    host, updated = record.get("host"), record.get("updated")
    if not isinstance(host, str) or not host.strip():
        raise _bad(where, "host", "a non-empty string", host)
    if not isinstance(updated, str):
        raise _bad(where, "updated", "an ISO-8601 date string", updated)
    try:
        datetime.fromisoformat(updated)
    except ValueError:
        raise _bad(where, "updated", "an ISO-8601 date string", updated) from None
    return host, updated


def check_record(record: Any, where: str) -> dict:
    """The record as the renderer reads it (parts that are missing are None).

    Raises RecordError naming ``where`` (a file or a host) and the field.
    """
    host, updated = _check_head(record, where)
    view: dict[str, Any] = {"host": host, "updated": updated}
    for part, spec in PARTS.items():
        value = record.get(part)
        view[part] = None if value is None else _conform(value, spec, where, part)
    ids = [node["id"] for node in (view["facts"] or {}).get("nodes", [])]
    for index, node in enumerate(ids):
        if node is None or node in ids[:index]:
            raise _bad(where, f"facts.nodes[{index}].id", "a node id of its own", node)
    if view["rollout"] is not None and view["rollout"]["outcome"] is None:
        raise _bad(where, "rollout.outcome", "one of " + ", ".join(ENUMS["outcome"]), None)
    if view["rollout"] is not None:
        view["rollout"]["details"] = _rollout_details(record["rollout"], where)
    return view


def _rollout_details(rollout: Mapping, where: str) -> dict[str, Any]:
    details = {}
    for key, value in rollout.items():
        if key == "outcome":
            continue
        if value is not None and not _KINDS["scalar"][1](value):
            raise _bad(where, f"rollout.{key}", _KINDS["scalar"][0], value)
        details[str(key)] = value
    return details


# --- records on disk and merging ----------------------------------------------------


def utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def load_records(directory: str | Path) -> list[dict]:
    """Every ``<host>.json`` in directory, sorted by host; [] when it does not exist yet."""
    root = Path(directory)
    if not root.exists():
        return []
    if not root.is_dir():
        raise RecordError(f"{root}: not a directory")
    records = []
    for path in sorted(root.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise RecordError(f"{path}: cannot read: {exc}") from None
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}: not JSON: {exc.msg} at line {exc.lineno}") from None
        host, _updated = _check_head(record, str(path))
        if host != path.stem:
            raise RecordError(f"{path}: host: the record is for {host!r}, the file is named after {path.stem!r}")
        check_record(record, str(path))
        records.append(record)
    return records


def _content(record: Mapping) -> dict:
    return {k: v for k, v in record.items() if k != "updated"}


def merge_record(old: Mapping | None, new: Mapping) -> dict:
    """new's keys replace old's, keys absent from new keep old's values.

    ``updated`` moves only when the content changed, so a run with the same
    inputs rewrites nothing (new["updated"], else now).
    """
    if old is not None and old.get("host") != new.get("host"):
        raise RecordError(f"host {new.get('host')!r}: cannot merge into the record of {old.get('host')!r}")
    merged = {**(old or {}), **{k: v for k, v in new.items() if k != "updated"}}
    if old is not None and _content(merged) == _content(old) and old.get("updated"):
        merged["updated"] = old["updated"]
    else:
        merged["updated"] = new.get("updated") or utc_now()
    check_record(merged, f"host {merged.get('host')!r}")
    return merged


# hostvars variable -> record part (rollout is the role's outcome string)
HOSTVARS_PARTS = {
    "plan": "__ktfleet_plan",
    "tune": "ktfleet_tune_result",
    "diagnosis": "ktfleet_diagnosis",
}


def plain(value: Any, where: str = "value") -> Any:
    """Ansible's lazy/tagged containers as JSON values (what a record holds)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (str, int, float):
        if isinstance(value, kind):
            return kind(value)
    raise RecordError(f"{where}: {type(value).__name__} cannot be saved as JSON")


def parts_from_hostvars(host: str, hostvars: Mapping) -> dict:
    """What this run knows of host: facts, plan, rollout, tune, diagnosis (the set ones)."""
    parts: dict[str, Any] = {}
    facts = (hostvars.get("ansible_facts") or {}).get("numa")
    if facts is not None:
        parts["facts"] = plain(facts, f"{host}: ansible_facts.numa")
    for part, variable in HOSTVARS_PARTS.items():
        value = hostvars.get(variable)
        if value is not None:
            parts[part] = plain(value, f"{host}: {variable}")
    outcome = hostvars.get("__ktfleet_outcome")
    if outcome is not None:
        parts["rollout"] = {"outcome": str(outcome)}
    return parts


def merge_hostvars(
    saved: Iterable[Mapping], hostvars: Mapping, hosts: Iterable[str], updated: str | None = None
) -> list[dict]:
    """saved records with this run's parts merged in, sorted by host.

    Hosts this run knows nothing about keep their saved record; hosts with neither
    are left out.
    """
    records = {record["host"]: dict(record) for record in saved}
    stamp = updated or utc_now()
    for host in hosts:
        parts = parts_from_hostvars(host, hostvars.get(host) or {})
        if parts:
            records[host] = merge_record(records.get(host), {"host": host, "updated": stamp, **parts})
    return [records[host] for host in sorted(records)]


# --- what every view needs ----------------------------------------------------------

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7")
STATUS_ORDER = ("fail", "warn", "info", "ok")


def id_ranges(ids: Iterable[int]) -> str:
    """[0, 1, 2, 3, 8] -> '0-3,8' (numactl's and systemd's syntax)."""
    ordered = sorted(set(ids))
    parts = []
    start = 0
    for i, value in enumerate(ordered):
        if i + 1 == len(ordered) or ordered[i + 1] != value + 1:
            first = ordered[start]
            parts.append(str(first) if first == value else f"{first}-{value}")
            start = i + 1
    return ",".join(parts)


def parse_ranges(text: str) -> list[int]:
    """'0-3,8' -> [0, 1, 2, 3, 8]; [] for anything else (CPUAffinity=numa)."""
    out: list[int] = []
    for part in text.replace(" ", ",").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not part:
            continue
        if not match:
            return []
        lo, hi = int(match[1]), int(match[2] or match[1])
        out.extend(range(lo, hi + 1))
    return sorted(set(out))


def plan_cpus(plan: Mapping, facts: Mapping | None) -> set[int]:
    """The CPUs the plan lets the server use: plan.cpus, else CPUAffinity=, else its nodes' CPUs."""
    if plan["cpus"]:
        return set(plan["cpus"])
    affinity = plan["systemd"]["CPUAffinity"]
    if affinity and parse_ranges(affinity):
        return set(parse_ranges(affinity))
    nodes = {n["id"]: n for n in (facts or {}).get("nodes", [])}
    return {cpu for node in plan["numa_nodes"] if node in nodes for cpu in nodes[node]["cpus"]}


def is_strict(plan: Mapping) -> bool:
    """Must each node hold its part (replicate, shard, bind to one node), or only the total?"""
    nodes = plan["memory"]["required_per_node_bytes"]
    return plan["policy"] in ("replicate", "shard") or (plan["policy"] == "bind" and len(nodes) == 1)


def pool_label(plan: Mapping, node: int) -> str:
    """What runs on node: 'pool 0: 31 threads' (kt-kernel), 'copy 1: 32 threads' (USE_NUMA=1)."""
    if node not in plan["numa_nodes"]:
        return ""
    index = plan["numa_nodes"].index(node)
    threads = plan["threads_per_node"].get(node)
    count = "?" if threads is None else str(threads)
    if plan["backend"] == "sglang-kt":
        return f"pool {index}: {count} threads"
    if plan["policy"] == "replicate":
        return f"copy {index}: {count} threads"
    return f"~{count} threads (not pinned)"


@dataclass
class NodeView:
    id: int
    cpus: list[int]
    cores: int | None
    memory: int | None
    memory_only: bool
    package_ids: list[int]
    groups: list[list[int]] | None  # CPUs of each core when the facts say; None: unknown pairing
    gpus: list[dict] = field(default_factory=list)
    colour: str | None = None  # the plan uses this node for threads
    label: str = ""  # the plan's pool on it
    weights: int | None = None  # bytes of weights the plan puts on it


@dataclass
class Topology:
    packages: list[tuple[dict, list[NodeView]]]
    memory_only: list[NodeView]
    unplaced: list[NodeView]  # CPU nodes in no single package
    gpus_unknown: list[dict]  # GPUs whose NUMA node is not known (or not in the facts)
    used_cpus: set[int]
    notes: list[str]

    @property
    def nodes(self) -> list[NodeView]:
        placed = [n for _package, nodes in self.packages for n in nodes]
        return sorted(placed + self.memory_only + self.unplaced, key=lambda n: n.id)


def core_groups(node: Mapping, core_cpus: list[list[int]]) -> list[list[int]] | None:
    """The CPUs of each core of the node, when the facts say (core_cpus), or one CPU per core."""
    cpus = set(node["cpus"])
    siblings = [sorted(set(group) & cpus) for group in core_cpus]
    siblings = sorted((g for g in siblings if g), key=lambda g: g[0])
    if siblings and sorted(c for g in siblings for c in g) == sorted(cpus):
        return siblings
    if cpus and node["cores"] == len(cpus):
        return [[cpu] for cpu in sorted(cpus)]
    return None


def topology(facts: Mapping, plan: Mapping | None) -> Topology:
    views = {
        n["id"]: NodeView(
            id=n["id"], cpus=sorted(n["cpus"]), cores=n["cores"], memory=n["memory_total_bytes"],
            memory_only=bool(n["memory_only"]), package_ids=n["package_ids"],
            groups=core_groups(n, facts["core_cpus"]),
        )
        for n in facts["nodes"]
    }  # fmt: skip
    used, notes = _apply_plan(views, plan, facts) if plan is not None else (set(), [])
    gpus_unknown = []
    for gpu in facts["gpus"]:
        if gpu["numa_node"] in views:
            views[gpu["numa_node"]].gpus.append(gpu)
        else:
            gpus_unknown.append(gpu)
    packages = _by_package(views, facts["packages"])
    placed = {v.id for _package, members in packages for v in members}
    memory_only = [v for v in views.values() if v.memory_only]
    unplaced = [v for v in views.values() if not v.memory_only and v.id not in placed]
    return Topology(packages, memory_only, unplaced, gpus_unknown, used, notes)


def _apply_plan(views: dict[int, NodeView], plan: Mapping, facts: Mapping) -> tuple[set[int], list[str]]:
    """Mark the plan's pools and weights on the nodes; the CPUs it uses, and what does not match."""
    weights = plan["memory"]["required_per_node_bytes"]
    for index, node in enumerate(plan["numa_nodes"]):
        if node in views:
            views[node].colour = PALETTE[index % len(PALETTE)]
            views[node].label = pool_label(plan, node)
    for node, size in weights.items():
        if node in views:
            views[node].weights = size
    missing = sorted((set(plan["numa_nodes"]) | set(weights)) - set(views))
    notes = [f"the plan names node(s) {id_ranges(missing)}, which the facts do not have"] if missing else []
    return plan_cpus(plan, facts), notes


def _by_package(views: dict[int, NodeView], packages: list[dict]) -> list[tuple[dict, list[NodeView]]]:
    """CPU nodes inside the one package their CPUs belong to.

    A node spanning several packages (old ia64, POWER without package ids) is left
    out, to be drawn beside them; so are packages left with no node.
    """
    out = []
    for view in views.values():
        # hand-written facts may list nodes under packages[] only
        view.package_ids = view.package_ids or [p["id"] for p in packages if view.id in p["nodes"]]
    for package in packages:
        members = [v for v in views.values() if not v.memory_only and v.package_ids == [package["id"]]]
        if members:
            out.append((package, sorted(members, key=lambda v: v.id)))
    return out


def gpu_text(gpu: Mapping) -> tuple[str, str]:
    """Two short lines: the PCI address, then vendor, model/device and memory."""
    what = " ".join(
        str(part)
        for part in (gpu["vendor"], gpu["model"] or gpu["device_id"], human_bytes(gpu["memory_bytes"]) if gpu["memory_bytes"] else None)
        if part
    )
    return f"GPU {gpu['pci_address'] or '?'}", what or "GPU"


@dataclass
class MemoryRow:
    label: str
    need: int
    total: int | None
    limit: int | None
    status: str  # "ok", "bad", "spread" (only the total is checked), "unknown"

    @property
    def scale(self) -> int:
        return max(self.need, self.total or 0, 1)


def memory_rows(plan: Mapping) -> list[MemoryRow]:
    """One row per node holding weights, then the total; 'bad' rows are what does not fit."""
    memory = plan["memory"]
    headroom = memory["headroom_ratio"] if memory["headroom_ratio"] is not None else 0.0
    strict = is_strict(plan)
    rows = []
    for node, need in sorted(memory["required_per_node_bytes"].items()):
        total = memory["available_per_node_bytes"].get(node)
        limit = None if total is None else int(total * (1 - headroom))
        if limit is None:
            status = "unknown"
        elif not strict:
            status = "spread"
        else:
            status = "ok" if need <= limit else "bad"
        rows.append(MemoryRow(f"node {node}", need, total, limit, status))
    total = memory["available_total_bytes"]
    fits = memory["fits"]
    need_total = memory["required_total_bytes"]
    if need_total is None:
        need_total = sum(memory["required_per_node_bytes"].values())
    rows.append(
        MemoryRow(
            "total", need_total, total, None if total is None else int(total * (1 - headroom)),
            {True: "ok", False: "bad", None: "unknown"}[fits],
        )
    )
    return rows


def tune_points(tune: Mapping) -> list[dict]:
    """The measured rows by thread count; a row without median takes its samples' median."""
    points = []
    for row in tune["table"]:
        median = row["median"] if row["median"] is not None else _median(row["samples"])
        if row["threads"] is not None and median is not None:
            points.append({**row, "median": median})
    return sorted(points, key=lambda row: row["threads"])


def _median(samples: list[float]) -> float | None:
    return statistics.median(samples) if samples else None


def diagnosis_worst(diagnosis: Mapping | None) -> str | None:
    statuses = {v["status"] for v in (diagnosis or {}).get("verdicts", [])}
    return next((s for s in STATUS_ORDER if s in statuses), None)


def diagnosis_counts(diagnosis: Mapping | None) -> str:
    if diagnosis is None:
        return "-"
    counts = {s: 0 for s in STATUS_ORDER}
    for verdict in diagnosis["verdicts"]:
        counts[verdict["status"]] += 1
    text = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return text or "no checks"


SUMMARY_COLUMNS = (
    "host", "nodes", "cores", "SMT", "policy", "cpu_infer", "pools", "needs", "available",
    "rollout", "tuned", "diagnosis", "verdict",
)  # fmt: skip


def summary(view: Mapping) -> tuple[dict[str, str], str]:
    """The host's row of the fleet table and its verdict class (ok, warn, bad, none)."""
    facts, plan = view["facts"], view["plan"]
    row = dict.fromkeys(SUMMARY_COLUMNS, "-")
    row["host"] = view["host"]
    if facts is not None:
        row["nodes"] = nodes_label(facts)
        row["cores"] = "?" if facts["cores_total"] is None else str(facts["cores_total"])
        tpc = facts["threads_per_core"]
        row["SMT"] = ("off" if not facts["smt_active"] else f"{tpc}x" if tpc else "mixed")
    if plan is not None:
        row["policy"] = plan["policy"] or "?"
        row["cpu_infer"] = _text(plan["cpu_infer"])
        row["pools"] = _text(plan["threadpool_count"])
        row["needs"] = human_bytes(plan["memory"]["required_total_bytes"])
        row["available"] = human_bytes(plan["memory"]["available_total_bytes"])
    if view["rollout"] is not None:
        row["rollout"] = view["rollout"]["outcome"]
    if view["tune"] is not None and view["tune"]["chosen"] is not None:
        row["tuned"] = str(view["tune"]["chosen"])
    row["diagnosis"] = diagnosis_counts(view["diagnosis"])
    row["verdict"], verdict_class = _verdict(view)
    return row, verdict_class


def _verdict(view: Mapping) -> tuple[str, str]:
    plan, worst = view["plan"], diagnosis_worst(view["diagnosis"])
    if plan is not None and plan["memory"]["fits"] is False:
        return "DOES NOT FIT", "bad"
    if view["rollout"] is not None and view["rollout"]["outcome"] == "rolled_back":
        return "ROLLED BACK", "bad"
    if worst == "fail":
        return "DIAGNOSIS FAILS", "bad"
    if worst == "warn":
        return "warnings", "warn"
    if plan is None:
        return "no plan", "none"
    if plan["memory"]["fits"] is None:
        return "fit unverified", "warn"
    return "fits" if worst is None else "ok", "ok"


def _text(value: Any) -> str:
    return "?" if value is None else str(value)


def host_view(record: Mapping, where: str | None = None) -> dict:
    """Everything the page and the Markdown show of one record."""
    if where is None:
        where = f"record {record.get('host')!r}" if isinstance(record, Mapping) else "record"
    view = check_record(record, where)
    view["topology"] = topology(view["facts"], view["plan"]) if view["facts"] is not None else None
    view["memory_rows"] = memory_rows(view["plan"]) if view["plan"] is not None else []
    view["row"], view["verdict_class"] = summary(view)
    view["tune_points"] = tune_points(view["tune"]) if view["tune"] is not None else []
    return view


def fleet_views(records: Iterable[Mapping]) -> list[dict]:
    views, seen = [], set()
    for index, record in enumerate(records):
        view = host_view(record, f"record {index}" if not isinstance(record, Mapping) else None)
        if view["host"] in seen:
            raise RecordError(f"record {view['host']!r}: host: appears twice")
        seen.add(view["host"])
        views.append(view)
    return sorted(views, key=lambda v: v["host"])


# --- SVG ----------------------------------------------------------------------------
# Each block is drawn at (0, 0) and returned with its size; parents place blocks
# with translate(). Sizes assume 10px monospace (6 px per character).

CELL_W, CELL_H = 26, 15
PAD, GAP, LINE = 6, 8, 13
CHAR_W = 6.1
MAX_W = 1320
GRID_COLS = 16
GPU_H = 28


@dataclass
class Block:
    svg: Markup
    w: float
    h: float


def el(tag: str, attrs: Mapping[str, Any] | None = None, *children: Any) -> Markup:
    """One SVG element; attribute values and text children are escaped."""
    text = "".join(f' {name}="{escape(_num(value))}"' for name, value in (attrs or {}).items() if value is not None)
    if not children:
        return Markup(f"<{tag}{text}/>")
    inner = Markup("").join(escape(child) for child in children)
    return Markup(f"<{tag}{text}>") + inner + Markup(f"</{tag}>")


def _num(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return value


def _text_w(*lines: str) -> float:
    return max((len(line) for line in lines), default=0) * CHAR_W


def _place(block: Block, x: float, y: float) -> Markup:
    return el("g", {"transform": f"translate({_num(float(x))},{_num(float(y))})"}, block.svg)


def flow(blocks: list[Block], max_w: float, gap: float = GAP) -> Block:
    """Left to right, wrapping at max_w."""
    x = y = row_h = width = 0.0
    parts = []
    for block in blocks:
        if x > 0 and x + block.w > max_w:
            x, y, row_h = 0.0, y + row_h + gap, 0.0
        parts.append(_place(block, x, y))
        width = max(width, x + block.w)
        x += block.w + gap
        row_h = max(row_h, block.h)
    return Block(Markup("").join(parts), width, y + row_h)


def _cell(cpu: int, x: float, y: float, node: NodeView, used: set[int]) -> Markup:
    on = cpu in used
    title = f"CPU {cpu}, node {node.id}" + (f", used by the plan ({node.label or 'affinity'})" if on else "")
    fill = (node.colour or "#888") if on else "#ffffff"
    return el(
        "g", {"class": "cpu used" if on else "cpu", "data-cpu": cpu},
        el("title", None, title),
        el("rect", {"x": x, "y": y, "width": CELL_W - 2, "height": CELL_H - 2, "rx": 2, "fill": fill,
                    "fill-opacity": 0.35 if on else 1, "stroke": "#666", "stroke-width": 0.6}),
        el("text", {"x": x + (CELL_W - 2) / 2, "y": y + CELL_H - 5, "class": "cpuid"}, str(cpu)),
    )  # fmt: skip


def cpu_grid(node: NodeView, used: set[int]) -> Block:
    """Cores as boxes holding their threads when the pairing is known, else one cell per CPU."""
    parts = []
    if node.groups is None:
        cols = min(GRID_COLS, max(len(node.cpus), 1))
        for i, cpu in enumerate(node.cpus):
            parts.append(_cell(cpu, (i % cols) * CELL_W, (i // cols) * CELL_H, node, used))
        rows = math.ceil(len(node.cpus) / cols)
        return Block(Markup("").join(parts), cols * CELL_W, rows * CELL_H)
    width = max(len(g) for g in node.groups) if node.groups else 1
    core_w, core_h = CELL_W + 4, width * CELL_H + 4
    cols = min(GRID_COLS, max(len(node.groups), 1))
    for i, group in enumerate(node.groups):
        x, y = (i % cols) * (core_w + 2), (i // cols) * (core_h + 2)
        cells = [_cell(cpu, x + 3, y + 3 + j * CELL_H, node, used) for j, cpu in enumerate(group)]
        parts.append(
            el("g", {"class": "core", "data-cpus": ",".join(map(str, group))},
               el("rect", {"x": x, "y": y, "width": core_w, "height": core_h - 1, "rx": 3,
                           "class": "corebox"}), *cells)
        )  # fmt: skip
    rows = math.ceil(len(node.groups) / cols)
    return Block(Markup("").join(parts), cols * (core_w + 2), rows * (core_h + 2))


def gpu_block(gpu: Mapping, width: float, node: int | None) -> Block:
    first, second = gpu_text(gpu)
    width = max(width, _text_w(first, second) + 2 * PAD)
    attrs = {"class": "gpu", "data-node": "unknown" if node is None else node, "data-pci": gpu["pci_address"]}
    return Block(
        el("g", attrs,
           el("rect", {"width": width, "height": GPU_H - 4, "rx": 3, "class": "gpubox"}),
           el("text", {"x": PAD, "y": 10}, first),
           el("text", {"x": PAD, "y": 21, "class": "small"}, second)),
        width, GPU_H,
    )  # fmt: skip


def node_block(node: NodeView, used: set[int]) -> Block:
    cores = "" if node.memory_only else f" · {_text(node.cores)} cores"
    head = f"node {node.id}{cores} · {human_bytes(node.memory) if node.memory is not None else '? mem'}"
    plan_line = " · ".join(part for part in (node.label, _weights(node)) if part)
    if node.memory_only:
        plan_line = plan_line or "memory only"
    grid = cpu_grid(node, used) if node.cpus else Block(Markup(""), 0, 0)
    inner_w = max(grid.w, _text_w(head, plan_line), 150)
    gpus = [gpu_block(gpu, inner_w, node.id) for gpu in node.gpus]
    inner_w = max([inner_w, *(g.w for g in gpus)])
    top = PAD + 2 * LINE + 2
    placed = [_place(grid, PAD, top)]
    y = top + grid.h + (4 if grid.h else 0)
    for gpu in gpus:
        placed.append(_place(gpu, PAD, y))
        y += gpu.h
    width, height = inner_w + 2 * PAD, y + PAD - 2
    # threads: the pool's colour; weights only (interleave over memory-only nodes): dark
    stroke = node.colour or ("#333" if node.weights else None)
    box = {"width": width, "height": height, "rx": 4, "class": "nodebox",
           "stroke": stroke, "stroke-width": 2.5 if stroke else None}  # fmt: skip
    kind = "node memory-only" if node.memory_only else "node"
    kind += " used" if node.colour else ""
    kind += " weights" if node.weights else ""
    return Block(
        el("g", {"class": kind, "data-node": node.id},
           el("title", None, _node_title(node)),
           el("rect", box),
           el("text", {"x": PAD, "y": PAD + 9, "class": "bold"}, head),
           el("text", {"x": PAD, "y": PAD + 9 + LINE, "class": "plan", "fill": node.colour}, plan_line),
           *placed),
        width, height,
    )  # fmt: skip


def _weights(node: NodeView) -> str:
    return f"weights {human_bytes(node.weights)}" if node.weights else ""


def _node_title(node: NodeView) -> str:
    text = f"node {node.id}: CPUs {id_ranges(node.cpus) or 'none'}"
    if len(node.package_ids) > 1:
        text += f", packages {id_ranges(node.package_ids)}"
    if node.groups is None and node.cpus:
        text += f" ({_text(node.cores)} cores; which CPUs are siblings is not in the facts)"
    return text


def group_block(label: str, kind: str, blocks: list[Block], data: Mapping[str, Any] | None = None) -> Block:
    inner = flow(blocks, MAX_W - 4 * PAD)
    width = max(inner.w, _text_w(label)) + 2 * PAD
    height = inner.h + 2 * PAD + LINE + 2
    return Block(
        el("g", {"class": kind, **(data or {})},
           el("rect", {"width": width, "height": height, "rx": 6, "class": kind + "box"}),
           el("text", {"x": PAD, "y": PAD + 9, "class": "bold"}, label),
           _place(inner, PAD, PAD + LINE + 2)),
        width, height,
    )  # fmt: skip


def topology_svg(host: str, topo: Topology) -> Markup:
    used = topo.used_cpus
    blocks = []
    for package, nodes in topo.packages:
        label = f"package {package['id']} · {_text(package['cores'])} cores · {len(package['cpus'])} CPUs"
        blocks.append(group_block(label, "package", [node_block(n, used) for n in nodes], {"data-package": package["id"]}))
    if topo.unplaced:
        label = "nodes across packages" if any(n.package_ids for n in topo.unplaced) else "package unknown"
        blocks.append(group_block(label, "package", [node_block(n, used) for n in topo.unplaced]))
    if topo.memory_only:
        blocks.append(group_block("memory-only nodes", "memgroup", [node_block(n, used) for n in topo.memory_only]))
    if topo.gpus_unknown:
        gpus = [gpu_block(gpu, 150, None) for gpu in topo.gpus_unknown]
        blocks.append(group_block("GPUs, NUMA node unknown", "gpugroup", gpus))
    drawing = flow(blocks, MAX_W)
    width, height = max(drawing.w, 10), max(drawing.h, 10)
    return el(
        "svg",
        {"class": "topology", "width": width + 2, "height": height + 2, "viewBox": f"-1 -1 {_num(float(width + 2))} {_num(float(height + 2))}",
         "role": "img", "aria-label": f"NUMA topology of {host}"},
        el("title", None, f"NUMA topology of {host}"),
        drawing.svg,
    )  # fmt: skip


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values from at most low to at least high (steps of 1, 2 or 5 times a power of ten)."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    last = math.ceil(high / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(round((last - first) / step) + 1)]


def tune_svg(host: str, tune: Mapping, points: list[dict]) -> Markup:
    """threads -> tokens/s: samples as dots, the median line, knee and chosen marked."""
    width, height, left, right, top, bottom = 620, 300, 60, 20, 24, 44
    threads = [p["threads"] for p in points]
    values = [v for p in points for v in (p["median"], *p["samples"])]
    x_lo, x_hi = min(threads), max(threads)
    if x_lo == x_hi:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_ticks = nice_ticks(0, max(values + [0]) * 1.08 or 1)
    y_hi = y_ticks[-1] or 1

    def sx(t: float) -> float:
        return left + (t - x_lo) / (x_hi - x_lo) * (width - left - right)

    def sy(v: float) -> float:
        return height - bottom - v / y_hi * (height - top - bottom)

    parts = [el("rect", {"x": left, "y": top, "width": width - left - right, "height": height - top - bottom,
                         "class": "plot"})]  # fmt: skip
    for tick in y_ticks:
        parts.append(el("line", {"x1": left, "x2": width - right, "y1": sy(tick), "y2": sy(tick), "class": "gridline"}))
        parts.append(el("text", {"x": left - 6, "y": sy(tick) + 3, "class": "tick", "text-anchor": "end"}, _fmt(tick)))
    x_ticks = threads if len(threads) <= 16 else nice_ticks(x_lo, x_hi, 8)
    for tick in x_ticks:
        parts.append(el("text", {"x": sx(tick), "y": height - bottom + 14, "class": "tick", "text-anchor": "middle"}, _fmt(tick)))
    unit = tune["unit"] or "tokens/s"
    parts.append(el("text", {"x": (left + width - right) / 2, "y": height - 8, "text-anchor": "middle"}, "threads"))
    parts.append(el("text", {"x": 14, "y": (top + height - bottom) / 2, "text-anchor": "middle",
                             "transform": f"rotate(-90 14 {_num(float((top + height - bottom) / 2))})"}, unit))  # fmt: skip
    for name, value, css in (("knee", tune["knee"], "knee"), ("chosen", tune["chosen"], "chosen")):
        if value is not None:
            x = sx(min(max(value, x_lo), x_hi))
            parts.append(el("line", {"x1": x, "x2": x, "y1": top, "y2": height - bottom, "class": css}))
            label_y = top + 12 if css == "knee" else top + 26
            parts.append(el("text", {"x": x + 4, "y": label_y, "class": css + "label"}, f"{name} {value}"))
    for point in points:
        for sample in point["samples"]:
            parts.append(el("circle", {"cx": sx(point["threads"]), "cy": sy(sample), "r": 2.2, "class": "sample"}))
    line = " ".join(f"{_num(float(sx(p['threads'])))},{_num(float(sy(p['median'])))}" for p in points)
    parts.append(el("polyline", {"points": line, "class": "median"}))
    for point in points:
        chosen = point["threads"] == tune["chosen"]
        parts.append(
            el("circle", {"cx": sx(point["threads"]), "cy": sy(point["median"]), "r": 5 if chosen else 3.5,
                          "class": "medianpt chosenpt" if chosen else "medianpt"},
               el("title", None, f"{point['threads']} threads: median {_fmt(point['median'])} {unit}"))
        )  # fmt: skip
    return el(
        "svg",
        {"class": "tune", "width": width, "height": height, "viewBox": f"0 0 {width} {height}", "role": "img",
         "aria-label": f"tuning curve of {host}"},
        el("title", None, f"tuning curve of {host}: {unit} by threads"), *parts,
    )  # fmt: skip


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


# --- HTML ---------------------------------------------------------------------------

CSS = """
body { font: 14px/1.4 "DejaVu Sans", Arial, sans-serif; margin: 16px 24px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 6px; border-bottom: 2px solid #ccc; }
h3 { font-size: 15px; margin: 16px 0 4px; }
table { border-collapse: collapse; margin: 4px 0; } th, td { border: 1px solid #ccc; padding: 2px 7px; text-align: left; vertical-align: top; }
th { background: #eef1f5; } td.num { text-align: right; }
tr.ok td.verdict, td.ok { background: #d9f2d9; } tr.warn td.verdict, td.warn { background: #fff0c2; }
tr.bad td.verdict, td.fail, td.bad { background: #f8c9c9; } tr.none td.verdict { background: #eee; } td.info { background: #d6e6f7; }
code, pre { font-family: "DejaVu Sans Mono", monospace; font-size: 12px; } pre { background: #f5f5f5; padding: 6px; white-space: pre-wrap; }
ul, p, table.plan td, table.diagnosis td { overflow-wrap: anywhere; }  /* long node lists: 0,1,2,...,63 */
.meta { color: #555; margin: 0; } .note { color: #8a5a00; } .missing { color: #888; font-style: italic; }
.legend span { display: inline-block; margin-right: 14px; } .swatch { display: inline-block; width: 12px; height: 12px; border: 1px solid #666; vertical-align: middle; margin-right: 4px; }
.bar { position: relative; width: 360px; height: 14px; background: #eef; border: 1px solid #99a; }
.bar .need { position: absolute; left: 0; top: 0; bottom: 0; background: #4e79a7; }
.bar .limit { position: absolute; top: -3px; bottom: -3px; border-left: 2px dashed #333; }
tr.mem-bad .need { background: #d62728; } tr.mem-spread .need { background: #8fb3d9; } tr.mem-unknown .need { background: #999; }
svg.topology { max-width: 100%; height: auto; }
svg text { font: 10px "DejaVu Sans Mono", monospace; fill: #222; }
svg text.cpuid { font-size: 9px; text-anchor: middle; } svg text.bold { font-weight: bold; } svg text.small { font-size: 9px; }
svg .nodebox { fill: #fbfbfb; stroke: #888; } svg .node.memory-only .nodebox { fill: #f3ecf8; stroke-dasharray: 4 2; }
svg .packagebox { fill: #f2f4f7; stroke: #445; stroke-width: 1.5; } svg .memgroupbox { fill: #faf6fd; stroke: #a58bc0; }
svg .gpugroupbox { fill: #f4faf1; stroke: #7a9f6a; stroke-dasharray: 5 3; } svg .gpubox { fill: #e3f4dc; stroke: #59a14f; }
svg .corebox { fill: #eceff3; stroke: #9aa; stroke-width: 0.6; }
svg .plot { fill: #fcfcfc; stroke: #999; } svg .gridline { stroke: #e2e2e2; } svg .median { fill: none; stroke: #4e79a7; stroke-width: 2; }
svg .medianpt { fill: #4e79a7; } svg .chosenpt { fill: #2ca02c; stroke: #111; } svg .sample { fill: #aaa; }
svg .knee { stroke: #f28e2b; stroke-width: 1.5; stroke-dasharray: 5 3; } svg .chosen { stroke: #2ca02c; stroke-width: 2; }
svg text.kneelabel { fill: #c0650f; } svg text.chosenlabel { fill: #1d7a1d; font-weight: bold; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ktfleet fleet report</title>
<style>{{ css }}</style>
</head>
<body>
<h1>ktfleet fleet report</h1>
<p class="meta">{{ views | length }} host(s){% if latest %}; records updated up to {{ latest }}{% endif %}.
Drawn from the saved records (facts, plan, rollout, tuning, diagnosis); every part a host has.</p>
<section id="fleet">
<h2>Fleet</h2>
{% if views %}
<table class="summary">
<tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for v in views %}
<tr class="{{ v.verdict_class }}">{% for c in columns %}{% if c == 'host' %}<td><a href="#{{ v.anchor }}">{{ v.row.host }}</a></td>{% else %}<td class="{{ 'verdict' if c == 'verdict' else '' }}">{{ v.row[c] }}</td>{% endif %}{% endfor %}</tr>
{% endfor %}
</table>
{% else %}<p class="missing">No records.</p>{% endif %}
<p class="legend"><span><i class="swatch" style="background:{{ palette[0] }}"></i><i class="swatch" style="background:{{ palette[1] }}"></i>node used by the plan: its pool (colour), CPUs in the plan's affinity filled</span>
<span><i class="swatch" style="background:#fff"></i>CPU the server does not use</span><span><i class="swatch" style="background:#e3f4dc"></i>GPU, on its NUMA node</span>
<span><i class="swatch" style="background:#f3ecf8"></i>memory-only node</span></p>
</section>
{% for v in views %}
<section class="host" id="{{ v.anchor }}" data-host="{{ v.host }}">
<h2>{{ v.host }}</h2>
<p class="meta">updated {{ v.updated }}{% if v.facts %}{% if v.facts.cpu.model_name %} · {{ v.facts.cpu.model_name }}{% endif %}{% if v.facts.cpu.architecture %} · {{ v.facts.cpu.architecture }}{% endif %}{% if v.facts.cpu.hypervisor %} · virtual machine{% endif %}{% if v.facts.memory_total_bytes %} · {{ v.facts.memory_total_bytes | bytes }} RAM{% endif %}{% endif %}</p>
<h3>Topology{% if v.plan %} and plan{% endif %}</h3>
{% if v.topology %}
{{ v.topology_svg }}
{% if v.smt_unpaired %}<p class="note">{{ v.smt_unpaired }}</p>{% endif %}
{% for note in v.topology.notes %}<p class="note">{{ note }}</p>{% endfor %}
{% else %}<p class="missing">No facts recorded for this host.</p>{% endif %}
{% if v.plan %}{% set p = v.plan %}
<h3>Plan</h3>
<table class="plan">
<tr><th>backend</th><td>{{ p.backend or '?' }}{% if p.model %} · model {{ p.model }}{% endif %}</td></tr>
<tr><th>policy</th><td>{{ p.policy or '?' }}{% if p.numa_build is not none %} (USE_NUMA=1 build: {{ 'yes' if p.numa_build else 'no' }}){% endif %}</td></tr>
<tr><th>cpu_infer</th><td>{{ p.cpu_infer if p.cpu_infer is not none else '?' }}{% if p.threads_per_node %} ({% for n, t in p.threads_per_node | dictsort %}node {{ n }}: {{ t }}{% if not loop.last %}, {% endif %}{% endfor %}){% endif %}</td></tr>
<tr><th>pools</th><td>{{ p.threadpool_count if p.threadpool_count is not none else '?' }}{% if p.numa_nodes %} on node(s) {{ p.numa_nodes | join(', ') }}{% endif %}{% if p.memory_nodes %}; weights on node(s) {{ p.memory_nodes | join(', ') }}{% endif %}</td></tr>
<tr><th>CPUs</th><td><code>{{ v.plan_cpus or '-' }}</code></td></tr>
<tr><th>numactl</th><td><code>{{ p.numactl | join(' ') if p.numactl else '(none)' }}</code></td></tr>
<tr><th>systemd</th><td><code>{{ v.systemd or '(nothing to set)' }}</code></td></tr>
{% if p.environment %}<tr><th>environment</th><td><code>{% for k, val in p.environment | dictsort %}{{ k }}={{ val }} {% endfor %}</code></td></tr>{% endif %}
{% if p.server_args %}<tr><th>server argv</th><td><code>{{ p.server_args | join(' ') }}</code></td></tr>{% endif %}
</table>
{% if p.reasons %}<p>Why:</p><ul class="reasons">{% for r in p.reasons %}<li>{{ r }}</li>{% endfor %}</ul>{% endif %}
{% if p.warnings %}<p>Warnings:</p><ul class="warnings">{% for w in p.warnings %}<li>{{ w }}</li>{% endfor %}</ul>{% endif %}
<h3>Memory</h3>
<p class="meta">weights needed against each node's memory; the dashed line is the limit ({{ v.headroom }} kept free){% if v.spread %}; under {{ p.policy }} only the total is checked{% endif %}.</p>
<table class="memory">
<tr><th></th><th>needed / available</th><th>needs</th><th>limit</th><th>memory</th><th></th></tr>
{% for m in v.memory_rows %}
<tr class="mem-{{ m.status }}"><th>{{ m.label }}</th><td><div class="bar"><div class="need" style="width:{{ '%.1f' % (100 * m.need / m.scale) }}%"></div>{% if m.limit is not none %}<div class="limit" style="left:{{ '%.1f' % (100 * m.limit / m.scale) }}%"></div>{% endif %}</div></td>
<td class="num">{{ m.need | bytes }}</td><td class="num">{{ m.limit | bytes }}</td><td class="num">{{ m.total | bytes }}</td><td class="{{ m.status }}">{{ mem_words[m.status] }}</td></tr>
{% endfor %}
</table>
{% endif %}
{% if v.rollout %}
<h3>Rollout</h3>
<p>outcome: <strong>{{ v.rollout.outcome }}</strong>{% for k, val in v.rollout.details | dictsort %} · {{ k }}: {{ val }}{% endfor %}</p>
{% endif %}
{% if v.tune %}{% set t = v.tune %}
<h3>Tuning</h3>
{% if v.tune_points %}{{ v.tune_svg }}{% endif %}
<p>chosen: <strong>{{ t.chosen if t.chosen is not none else '?' }}</strong> threads · knee: {{ t.knee if t.knee is not none else '?' }}{% if t.reason %} · {{ t.reason }}{% endif %}</p>
{% if v.tune_points %}<table class="tunetable"><tr><th>threads</th><th>median {{ t.unit or 'tokens/s' }}</th><th>samples</th></tr>
{% for pt in v.tune_points %}<tr><td class="num">{{ pt.threads }}</td><td class="num">{{ fmt(pt.median) }}</td><td>{{ pt.samples | map('fmt') | join(', ') }}</td></tr>
{% endfor %}</table>{% endif %}
{% endif %}
{% if v.diagnosis %}{% set d = v.diagnosis %}
<h3>Diagnosis</h3>
{% if d.window_seconds is not none %}<p class="meta">over {{ fmt(d.window_seconds) }} s</p>{% endif %}
<table class="diagnosis"><tr><th>check</th><th>status</th><th>summary</th><th>remedy</th><th>numbers</th></tr>
{% for r in d.verdicts %}<tr><td>{{ r.check or '?' }}</td><td class="{{ r.status }}">{{ r.status or '?' }}</td><td>{{ r.summary or '' }}</td><td>{{ r.remedy or '' }}</td><td>{% for k, val in r.numbers | dictsort %}{{ k }}={{ val }}{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>
{% endfor %}</table>
{% endif %}
{% if v.facts and v.facts.warnings %}
<h3>Facts warnings</h3><ul>{% for w in v.facts.warnings %}<li>{{ w }}</li>{% endfor %}</ul>
{% endif %}
</section>
{% endfor %}
</body>
</html>
"""

MEMORY_WORDS = {"ok": "fits", "bad": "DOES NOT FIT", "spread": "spread", "unknown": "unverified"}


@functools.cache
def _page() -> Template:
    """PAGE compiled once; autoescape: every value the template prints is escaped."""
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["bytes"] = human_bytes
    env.filters["fmt"] = _fmt
    return env.from_string(PAGE)


def _anchor(host: str, taken: set[str]) -> str:
    base = "host-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", host).strip("-") or "x")
    anchor, n = base, 2
    while anchor in taken:
        anchor, n = f"{base}-{n}", n + 1
    taken.add(anchor)
    return anchor


def _smt_note(view: Mapping) -> str:
    topo = view["topology"]
    unpaired = [n.id for n in topo.nodes if n.groups is None and n.cpus]
    if not unpaired:
        return ""
    return (
        f"Node(s) {id_ranges(unpaired)}: each CPU is drawn as one cell; the facts count the cores "
        "but do not say which CPUs are SMT siblings of one core."
    )


def _html_view(view: dict, taken: set[str]) -> dict:
    view["anchor"] = _anchor(view["host"], taken)
    if view["topology"] is not None:
        view["topology_svg"] = topology_svg(view["host"], view["topology"])
        view["smt_unpaired"] = _smt_note(view)
    if view["tune_points"]:
        view["tune_svg"] = tune_svg(view["host"], view["tune"], view["tune_points"])
    plan = view["plan"]
    if plan is not None:
        view["plan_cpus"] = id_ranges(plan_cpus(plan, view["facts"]))
        view["systemd"] = " ".join(f"{k}={v}" for k, v in plan["systemd"].items() if v is not None)
        view["headroom"] = f"{plan['memory']['headroom_ratio'] or 0:.0%}"
        view["spread"] = not is_strict(plan)
    return view


def _latest(views: list[dict]) -> str:
    return max((v["updated"] for v in views), default="")


def render_html(records: Iterable[Mapping]) -> str:
    """The whole fleet as one self-contained HTML page."""
    views = fleet_views(records)
    taken: set[str] = set()
    views = [_html_view(view, taken) for view in views]
    return _page().render(
        css=Markup(CSS), views=views, columns=SUMMARY_COLUMNS, palette=PALETTE, latest=_latest(views),
        mem_words=MEMORY_WORDS, fmt=_fmt,
    )  # fmt: skip


# --- Markdown -----------------------------------------------------------------------

# "_" inside a word emphasises nothing (cpu_infer stays readable)
_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|#&]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def _md(value: Any) -> str:
    """Text safe in a Markdown paragraph or table cell (no markup, no HTML, no line breaks)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def _md_table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return lines


def _fence(text: str) -> list[str]:
    fence = "```"
    while fence in text:
        fence += "`"
    return [fence, text, fence]


def ascii_bar(row: MemoryRow, width: int = 40) -> str:
    """[#####.....|....]: needed (#) against memory, | at the limit."""
    scale = row.scale
    need = min(width, round(width * row.need / scale))
    cells = ["#"] * need + ["."] * (width - need)
    if row.limit is not None:
        cells[min(width - 1, round(width * row.limit / scale))] = "|"
    return "[" + "".join(cells) + "]"


def _md_topology(topo: Topology) -> list[str]:
    lines = []
    for package, nodes in topo.packages:
        lines.append(f"- package {package['id']}: {_text(package['cores'])} cores, {len(package['cpus'])} CPUs")
        lines += [f"  - {_md_node(n, topo.used_cpus)}" for n in nodes]
    across = "nodes across packages" if any(n.package_ids for n in topo.unplaced) else "package unknown"
    for title, nodes in ((across, topo.unplaced), ("memory-only nodes", topo.memory_only)):
        if nodes:
            lines.append(f"- {title}")
            lines += [f"  - {_md_node(n, topo.used_cpus)}" for n in nodes]
    if topo.gpus_unknown:
        lines.append("- GPUs, NUMA node unknown: " + "; ".join(_md(" ".join(gpu_text(g))) for g in topo.gpus_unknown))
    lines += [f"- note: {_md(note)}" for note in topo.notes]
    return lines


def _md_node(node: NodeView, used: set[int]) -> str:
    text = f"node {node.id}: "
    if node.memory_only:
        text += "memory only"
    else:
        cores = "; ".join(",".join(map(str, g)) for g in node.groups) if node.groups and len(node.groups[0]) > 1 else ""
        text += f"{_text(node.cores)} cores, CPUs {id_ranges(node.cpus) or 'none'}"
        if len(node.package_ids) > 1:
            text += f", across packages {id_ranges(node.package_ids)}"
        if cores:
            text += f" (cores: {cores})"
        mine = sorted(set(node.cpus) & used)
        if mine:
            text += f", plan uses CPUs {id_ranges(mine)}"
    text += f", {human_bytes(node.memory) if node.memory is not None else '? memory'}"
    extra = [part for part in (node.label, _weights(node)) if part]
    if extra:
        text += " — " + ", ".join(extra)
    if node.gpus:
        text += "; " + "; ".join(" ".join(gpu_text(g)) for g in node.gpus)
    return _md(text)


def _md_host(view: Mapping) -> list[str]:
    facts, plan = view["facts"], view["plan"]
    lines = ["", f"## {_md(view['host'])}", "", f"updated {_md(view['updated'])}"]
    if facts is not None and facts["cpu"]["model_name"]:
        lines[-1] += f" · {_md(facts['cpu']['model_name'])}"
    lines += ["", "### Topology", ""]
    if view["topology"] is None:
        lines.append("No facts recorded for this host.")
    else:
        lines += _md_topology(view["topology"])
        note = _smt_note(view)
        if note:
            lines += ["", _md(note)]
    if plan is not None:
        lines += ["", "### Plan", ""] + _md_plan(plan, facts)
        lines += ["", "### Memory", ""]
        bars = [f"{m.label:<8} {ascii_bar(m)} {human_bytes(m.need)} of {human_bytes(m.total)}, limit {human_bytes(m.limit)}: {MEMORY_WORDS[m.status]}"
                for m in view["memory_rows"]]  # fmt: skip
        lines += _fence("\n".join(bars))
    if view["rollout"] is not None:
        details = "".join(f", {k}: {v}" for k, v in sorted(view["rollout"]["details"].items()))
        lines += ["", "### Rollout", "", _md(f"outcome: {view['rollout']['outcome']}{details}")]
    if view["tune"] is not None:
        lines += ["", "### Tuning", ""] + _md_tune(view["tune"], view["tune_points"])
    if view["diagnosis"] is not None:
        lines += ["", "### Diagnosis", ""] + _md_diagnosis(view["diagnosis"])
    if facts is not None and facts["warnings"]:
        lines += ["", "### Facts warnings", ""] + [f"- {_md(w)}" for w in facts["warnings"]]
    return lines


def _md_plan(plan: Mapping, facts: Mapping | None) -> list[str]:
    threads = ", ".join(f"node {n}: {t}" for n, t in sorted(plan["threads_per_node"].items()))
    systemd = " ".join(f"{k}={v}" for k, v in plan["systemd"].items() if v is not None)
    rows = [
        ("backend", f"{_text(plan['backend'])} · model {_text(plan['model'])}"),
        ("policy", _text(plan["policy"])),
        ("cpu_infer", f"{_text(plan['cpu_infer'])} ({threads})" if threads else _text(plan["cpu_infer"])),
        ("pools", f"{_text(plan['threadpool_count'])} on node(s) {', '.join(map(str, plan['numa_nodes'])) or '-'}"),
        ("CPUs", id_ranges(plan_cpus(plan, facts)) or "-"),
        ("numactl", " ".join(plan["numactl"]) or "(none)"),
        ("systemd", systemd or "(nothing to set)"),
    ]
    lines = _md_table(("", ""), rows)
    if plan["server_args"]:
        lines += ["", "server argv:", ""] + _fence(" ".join(plan["server_args"]))
    if plan["reasons"]:
        lines += ["", "Why:", ""] + [f"- {_md(r)}" for r in plan["reasons"]]
    if plan["warnings"]:
        lines += ["", "Warnings:", ""] + [f"- {_md(w)}" for w in plan["warnings"]]
    return lines


def _md_tune(tune: Mapping, points: list[dict]) -> list[str]:
    lines = [_md(f"chosen: {_text(tune['chosen'])} threads, knee: {_text(tune['knee'])}" + (f" ({tune['reason']})" if tune["reason"] else "")), ""]
    unit = tune["unit"] or "tokens/s"
    rows = [
        (p["threads"], _fmt(p["median"]), ", ".join(map(_fmt, p["samples"])),
         " ".join(m for m, v in (("knee", tune["knee"]), ("chosen", tune["chosen"])) if v == p["threads"]))
        for p in points
    ]  # fmt: skip
    return lines + _md_table(("threads", f"median {unit}", "samples", ""), rows)


def _md_diagnosis(diagnosis: Mapping) -> list[str]:
    lines = []
    if diagnosis["window_seconds"] is not None:
        lines += [f"over {_fmt(diagnosis['window_seconds'])} s", ""]
    rows = [
        (r["check"] or "?", (r["status"] or "?").upper() if r["status"] in ("fail", "warn") else r["status"] or "?",
         r["summary"] or "", r["remedy"] or "", ", ".join(f"{k}={v}" for k, v in sorted(r["numbers"].items())))
        for r in diagnosis["verdicts"]
    ]  # fmt: skip
    return lines + _md_table(("check", "status", "summary", "remedy", "numbers"), rows)


def render_markdown(records: Iterable[Mapping]) -> str:
    """The same report as Markdown: tables and lists, one ASCII bar per node."""
    views = fleet_views(records)
    lines = ["# ktfleet fleet report", ""]
    latest = _latest(views)
    lines.append(f"{len(views)} host(s)" + (f"; records updated up to {_md(latest)}." if latest else "."))
    lines += ["", "## Fleet", ""]
    if views:
        lines += _md_table(SUMMARY_COLUMNS, ([v["row"][c] for c in SUMMARY_COLUMNS] for v in views))
    else:
        lines.append("No records.")
    for view in views:
        lines += _md_host(view)
    return "\n".join(lines) + "\n"
