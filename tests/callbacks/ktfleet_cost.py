# Test equipment, not shipped: an aggregate callback that records what a
# playbook run costs per host, so CI's time can be measured per phase.
"""Write one JSON file per ansible-playbook run into ``$KTFLEET_COST_DIR``.

Per host: task results that ran on the target (each at least one module process;
loop items counted one by one), results the controller answered alone
(set_fact, assert, debug, include_*: no module process), skipped results, and
until/retries attempts. Per task: its name, action and wall time. Each phase of a
Molecule scenario is one ansible-playbook run, so the files line up with phases.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import defaultdict

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: ktfleet_cost
type: aggregate
short_description: per-host module runs and task wall times, as JSON (test equipment)
description:
  - Enabled with C(ANSIBLE_CALLBACKS_ENABLED=ktfleet_cost); writes to C($KTFLEET_COST_DIR) (no-op when unset).
"""

# actions that an action plugin answers on the controller, with no module process on the target
CONTROLLER_ONLY = {
    "set_fact", "assert", "debug", "fail", "meta", "include_tasks", "import_tasks", "include_role",
    "import_role", "include_vars", "add_host", "group_by", "set_stats", "pause", "validate_argument_spec",
    "ansible.builtin.set_fact", "ansible.builtin.assert", "ansible.builtin.debug", "ansible.builtin.fail",
    "ansible.builtin.meta", "ansible.builtin.include_tasks", "ansible.builtin.import_tasks",
    "ansible.builtin.include_role", "ansible.builtin.import_role", "ansible.builtin.include_vars",
    "ansible.builtin.add_host", "ansible.builtin.group_by", "ansible.builtin.set_stats",
    "ansible.builtin.pause", "ansible.builtin.validate_argument_spec",
}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "ktfleet_cost"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._dir = os.environ.get("KTFLEET_COST_DIR")
        self._t0 = time.monotonic()
        self._playbook = "playbook"
        self._hosts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._tasks: list[dict] = []
        self._task_t0 = None

    def v2_playbook_on_start(self, playbook):
        self._playbook = os.path.basename(playbook._file_name)

    def _close_task(self):
        if self._tasks and self._task_t0 is not None:
            self._tasks[-1]["seconds"] = round(time.monotonic() - self._task_t0, 3)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close_task()
        self._task_t0 = time.monotonic()
        self._tasks.append({"name": task.get_name(), "action": task.action, "hosts": 0})

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def _count(self, result, kind):
        host = result._host.get_name()
        action = result._task.action
        if kind == "skipped":
            self._hosts[host]["skipped"] += 1
            return
        items = result._result.get("results")
        n = len(items) if isinstance(items, list) and result._task.loop is not None else 1
        if isinstance(items, list):
            n -= sum(1 for item in items if isinstance(item, dict) and item.get("skipped"))
        if result._result.get("read_on_controller"):  # numa_facts read a recorded dump in process
            self._hosts[host]["facts_on_controller"] += 1
            self._hosts[host]["facts_cached"] += bool(result._result.get("cached"))
        where = "controller" if action in CONTROLLER_ONLY else "target"
        self._hosts[host][where] += max(n, 0)
        if self._tasks:
            self._tasks[-1]["hosts"] += 1

    def v2_runner_on_ok(self, result):
        self._count(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._count(result, "unreachable")

    def v2_runner_on_skipped(self, result):
        self._count(result, "skipped")

    def v2_runner_retry(self, result):
        self._hosts[result._host.get_name()]["retries"] += 1

    def v2_playbook_on_stats(self, stats):
        self._close_task()
        if not self._dir:
            return
        os.makedirs(self._dir, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", self._playbook)
        path = os.path.join(self._dir, f"{time.time():.3f}-{os.getpid()}-{stem}.json")
        with open(path, "w", encoding="utf-8") as out:
            json.dump(
                {
                    "playbook": self._playbook,
                    "argv_phase": os.environ.get("MOLECULE_SCENARIO_NAME", ""),
                    "seconds": round(time.monotonic() - self._t0, 3),
                    "hosts": {h: dict(c) for h, c in self._hosts.items()},
                    "tasks": self._tasks,
                },
                out,
                indent=1,
            )
