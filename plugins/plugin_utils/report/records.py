"""The report's records: one JSON object per host, checked, loaded, merged with a run's hostvars.

See docs/report.md for the record; ``check_record`` keeps what the views can read.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..plain import plain as _plain


class RecordError(ValueError):
    """A record that cannot be used; the message names the record and the field."""


# --- record schema ----------------------------------------------------------------
# Every key is optional and null means missing (the fact module writes null for
# what it could not see); a present value of the wrong type is an error. Specs: a
# scalar kind, a OneOf (one of these values), a dict (keys checked, others
# kept but not read), [spec] (a list of it, no nulls inside), or ("nodes" |
# "names", kind) for maps keyed by node id or by any name. Each part's spec is
# derived from the type its producer declares (``parts``), never listed here.

Spec = Any


class OneOf(tuple):
    """A Literal's values, in their declared order (the error lists them so)."""


_SCALARS = {bool: "bool", int: "int", float: "num", str: "str"}


def spec_of(annotation: Any) -> Spec:
    """The record spec of a pydantic model, a TypedDict or a field's type.

    Enums are strings, Literals the set of their values; ``X | None`` is X (null
    means missing anyway), ``int | float`` a number and any other union of
    scalars a scalar; dicts keyed by int are node maps (JSON keys are strings),
    by str name maps.
    """
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return {name: spec_of(field.annotation) for name, field in annotation.model_fields.items()}
    if typing.is_typeddict(annotation):
        return {name: spec_of(hint) for name, hint in typing.get_type_hints(annotation).items()}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return OneOf(args)
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in args if arg is not type(None)]
        if len(inner) == 1:
            return spec_of(inner[0])
        if set(inner) == {int, float}:
            return "num"
        if set(inner) <= set(_SCALARS):
            return "scalar"
        raise TypeError(f"no record spec for {annotation!r}")
    if origin in (list, tuple):
        return [spec_of(args[0])]
    if origin is dict:
        return ("nodes" if args[0] is int else "names", spec_of(args[1]))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum | str):
        return "str"
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    raise TypeError(f"no record spec for {annotation!r}")


@functools.cache
def parts() -> dict[str, Spec]:
    """Each part's spec, from its producer's type: the planner's ``Facts`` and ``Plan``
    models, the rollout's ``Outcome``, tuning's ``TuneResult`` and diagnosis's
    ``Diagnosis`` (imported on first use: the models need pydantic)."""
    try:
        from ..diagnosis.diagnosis import Diagnosis
        from ..planner.fleet_table import Outcome
        from ..planner.models import Facts, Plan
        from ..tuning.tuning import TuneResult
    except ImportError as exc:  # a ValueError: the filters say it in one line
        raise RecordError(f"reading records needs pydantic>=2.7 on the controller, as planning does ({exc})") from None
    return {
        "facts": spec_of(Facts),
        "plan": spec_of(Plan),
        "rollout": {"outcome": spec_of(Outcome)},
        "tune": spec_of(TuneResult),
        "diagnosis": spec_of(Diagnosis),
    }


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
    if isinstance(spec, OneOf):
        if value is not None and value not in spec:
            raise _bad(where, path, _one_of(spec), value)
        return value
    if isinstance(spec, tuple):
        return _conform_map(value, spec, where, path)
    if value is None:
        return None
    what, ok = _KINDS[spec]
    if not ok(value):
        raise _bad(where, path, what, value)
    return value


def _one_of(values: OneOf) -> str:
    return "one of " + ", ".join(map(str, values))


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
    # how the facts were had, where the inventory says (the demo: "synthetic" / "recorded")
    label = record.get("label")
    view["label"] = label if isinstance(label, str) and label.strip() else None
    for part, spec in parts().items():
        value = record.get(part)
        view[part] = None if value is None else _conform(value, spec, where, part)
    ids = [node["id"] for node in (view["facts"] or {}).get("nodes", [])]
    for index, node in enumerate(ids):
        if node is None or node in ids[:index]:
            raise _bad(where, f"facts.nodes[{index}].id", "a node id of its own", node)
    if view["rollout"] is not None and view["rollout"]["outcome"] is None:
        raise _bad(where, "rollout.outcome", _one_of(parts()["rollout"]["outcome"]), None)
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
    "plan": "ktfleet_plan",
    "tune": "ktfleet_tune_result",
    "diagnosis": "ktfleet_diagnosis",
}


def plain(value: Any, where: str = "value") -> Any:
    """Ansible's lazy/tagged containers as JSON values (what a record holds); RecordError otherwise."""
    return _plain(value, where, RecordError)


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
    outcome = hostvars.get("ktfleet_rollout_outcome")
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
        hv = hostvars.get(host) or {}
        parts = parts_from_hostvars(host, hv)
        if parts:
            head = {"host": host, "updated": stamp}
            if hv.get("ktfleet_facts_label"):
                head["label"] = str(hv["ktfleet_facts_label"])
            records[host] = merge_record(records.get(host), {**head, **parts})
    return [records[host] for host in sorted(records)]
