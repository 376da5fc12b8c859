# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of ktfleet.numa.numa_facts: recorded dumps read on the controller, once per run.

A host whose facts come from a recorded dump (``root`` not ``/``) on a local
connection is read here, in the controller's process, instead of in a module
process per host; a dump archive is extracted and read once per run (the first
host on it, under a lock; the others load what it saved under the run's local
temporary directory, removed when the run ends). The facts are those the module
returns (the same function, ``facts_call.read``). Everything else (a live host,
``capture``, become) runs the module on the target as before.
"""

from __future__ import annotations

import os

from ansible import constants as C
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.ktfleet.numa.plugins.module_utils.facts_call import (
    ARGUMENT_SPEC,
    FactsError,
    probe,
    read_cached,
    run_local,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def _on_controller(self, params):
        return (
            self._connection.transport in ("local", "ansible.builtin.local")
            and not self._play_context.become
            and params["root"] not in ("/", "")
            and not params["capture"]
        )

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        try:
            params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        except AnsibleActionFail as exc:
            return {**result, "failed": True, "msg": str(exc)}
        if not self._on_controller(params):
            result.update(self._execute_module(module_name="ktfleet.numa.numa_facts", task_vars=task_vars))
            return result
        root = params["root"]
        cache = os.path.join(C.DEFAULT_LOCAL_TMP, "ktfleet-facts")
        try:
            facts, important, cached = read_cached(root, cache, gpu_memory=params["gather_gpu_memory"])
        except FactsError as exc:
            return {**result, "failed": True, "msg": str(exc), "root": root}
        result.update(changed=False, ansible_facts={"numa": facts}, read_on_controller=True, cached=cached)
        if important:
            result["warnings"] = list(important)
        if params["preflight"]:
            result["preflight"] = probe(params["preflight"], run_local)
        return result
