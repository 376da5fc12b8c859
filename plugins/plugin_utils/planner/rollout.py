"""deploy.yml's batches: ``ktfleet_serial`` and ``ktfleet_max_fail_percentage`` checked.

Ansible reads ``serial: 0`` (or a list starting with it) as one batch of every host,
``"150%"`` as every host and garbage as a traceback; here each is a one-line
PlanError naming the variable. A batch is a host count >= 1 or a share 1%-100%;
a whole-fleet first batch is what ``"100%"`` says on purpose.
"""

from __future__ import annotations

import re

from ..errors import PlanError

_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")


def _batch(index: int, item: object) -> int | str:
    where = f"ktfleet_serial[{index}]"
    if isinstance(item, bool):
        raise PlanError(where, f"must be a host count or a percentage, got {item!r}")
    if isinstance(item, str):
        match = _PERCENT.fullmatch(item)
        if match:
            share = float(match.group(1))
            if not 0 < share <= 100:
                raise PlanError(where, f"a share of the hosts must be between 1% and 100%, got {item!r}")
            return f"{match.group(1)}%"
        if item.strip().isdigit():
            item = int(item)
        else:
            raise PlanError(where, f"must be a host count (1, 2, ...) or a percentage ('25%'), got {item!r}")
    if isinstance(item, float) and item.is_integer():
        item = int(item)
    if not isinstance(item, int):
        raise PlanError(where, f"must be a host count (1, 2, ...) or a percentage ('25%'), got {item!r}")
    if item < 1:
        raise PlanError(
            where,
            f"must be at least 1 host, got {item} (Ansible reads 0 or less as every host at once, no canary); "
            "write '100%' to roll out everywhere at once on purpose",
        )
    return item


def rollout_batches(serial: object) -> list[int | str]:
    """``ktfleet_serial`` as the list Ansible's ``serial:`` takes, every batch at least one host."""
    items = serial if isinstance(serial, (list, tuple)) else [serial]
    if not items:
        raise PlanError("ktfleet_serial", "must name at least one batch, e.g. [1, '25%', '100%']")
    return [_batch(i, item) for i, item in enumerate(items)]


def max_fail_percentage(value: object) -> int | float:
    """``ktfleet_max_fail_percentage``: 0-100 (0: any failed host stops the rollout)."""
    number: object = value
    if isinstance(value, str):
        try:
            number = float(value.strip().rstrip("%"))
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 <= number <= 100:
        raise PlanError("ktfleet_max_fail_percentage", f"must be a number from 0 to 100, got {value!r}")
    return int(number) if float(number).is_integer() else number


# A play's ``serial`` is templated without any host, so it never sees inventory
# variables (group_vars, host_vars): deploy.yml's first play carries the fleet's
# ktfleet_serial to the rollout play as the name of a group (group_by), which
# ``serial`` can read through ``groups``.
GROUP_PREFIX = "ktfleet_serial__"


def serial_group(values: dict[str, object]) -> str:
    """The group name that carries the fleet's batches, from each host's ``ktfleet_serial``
    (``values``: host -> value); every host must say the same."""
    batches: dict[str, list[str]] = {}
    for host, value in values.items():
        key = repr(rollout_batches(value))
        batches.setdefault(key, []).append(host)
    if not batches:
        raise PlanError("ktfleet_serial", "no host to roll out")
    if len(batches) > 1:
        seen = "; ".join(f"{key} on {', '.join(hosts[:3])}" for key, hosts in batches.items())
        raise PlanError("ktfleet_serial", f"the hosts of one rollout must share one value, got {seen}")
    items = rollout_batches(next(iter(values.values())))
    return GROUP_PREFIX + "_".join(str(i).replace(".", "d").replace("%", "pct") for i in items)


def serial_from_groups(groups: object, default: object) -> list[int | str]:
    """The batches serial_group() encoded in a group name, else ``default`` checked."""
    names = {str(name) for name in (groups or {}) if str(name).startswith(GROUP_PREFIX)}
    if len(names) > 1:
        raise PlanError("ktfleet_serial", f"two values in one run: {', '.join(sorted(names))}")
    if not names:
        return rollout_batches(default)
    items: list[object] = []
    for part in names.pop()[len(GROUP_PREFIX):].split("_"):
        items.append(part.replace("d", ".").replace("pct", "%") if part.endswith("pct") else int(part))
    return rollout_batches(items)
