#!/usr/bin/python
# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: what a running server and its host did over a sampling window."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: numa_sample
short_description: Sample a running server's CPU, memory and NUMA behaviour per node over a window
version_added: 0.1.0
author: ktfleet contributors (@ktfleet)
description:
  - Takes two snapshots O(window) seconds apart of the host's per-CPU times (C(/proc/stat), read as
    C(psutil.cpu_times(percpu=True)) reads them), the process's and its threads' CPU time and last CPU
    (C(/proc/<pid>/stat), C(/proc/<pid>/task/*/stat)), the nodes' C(numastat) counters, CPU frequency
    and thermal throttle counters, and returns the busy fraction per CPU and per NUMA node, where the
    process spent its CPU time, and the counters' growth.
  - Also reads, once, the process's per-node memory from C(numa_maps) (what C(numastat -p) shows),
    C(/proc/meminfo) and each node's C(meminfo).
  - Runs C(perf stat -x, -e <counter>) for each of cache-misses, cache-references, cpu-migrations and
    context-switches on the processes, in parallel with the window, when C(perf) is installed; one perf
    per counter because perf 6.1 fails a whole multi-counter run when a thread exits while it attaches.
    Unsupported counters (usual in virtual machines) are reported as such.
  - Returns measurements only; P(ktfleet.numa.diagnose#filter) turns them into verdicts.
  - Only reads (perf attaches read-only counters); it never changes the host. Missing or unreadable
    files are listed in RV(sample_warnings), naming the file, and never fail the task.
  - Fails when the process does not exist or the service has no running main process.
options:
  pid:
    description: Process to sample.
    type: int
  service:
    description: systemd service whose main process (C(MainPID)) to sample.
    type: str
  window:
    description: Seconds between the two snapshots (and what C(perf stat) measures).
    type: float
    default: 10
  wait_busy:
    description:
      - Seconds to wait, before the window starts, until the process (with its descendants) uses
        O(busy_cores) CPUs or more over half a second; the window then starts at once. V(0) starts it at once.
      - For a load started just before the sample (an async benchmark, a first request's prefill), which
        can begin seconds late on a busy host. Without load within the time the window still runs,
        with a warning.
    type: float
    default: 0
  busy_cores:
    description: CPUs' worth of use that O(wait_busy) counts as load.
    type: float
    default: 0.5
  perf:
    description:
      - V(auto) runs C(perf stat) when C(perf) is on C(PATH) and O(root) is C(/); V(true) also warns when it
        cannot run; V(false) never runs it.
    type: str
    choices: [auto, "true", "false"]
    default: auto
  children:
    description:
      - Also sample the process's descendants. SGLang and the legacy C(balance_serve) server run the CPU
        inference in child processes of the unit's main process.
    type: bool
    default: true
  root:
    description: Read C(proc/) and C(sys/) under this directory instead of C(/) (for tests).
    type: path
    default: /
requirements:
  - Linux C(/proc) and C(/sys). C(perf) (linux-perf) for the cache and migration counters.
notes:
  - The module runs for O(window) seconds plus the time to read C(numa_maps), which grows with the
    process's mapped memory.
extends_documentation_fragment:
  - ktfleet.numa.read_only
"""

EXAMPLES = r"""
- name: Sample the KTransformers server for 10 s
  ktfleet.numa.numa_sample:
    service: ktransformers
  register: sample

- name: Show the utilisation per NUMA node
  ansible.builtin.debug:
    msg: "{{ sample.nodes | map(attribute='cpu_utilization') }}"

- name: Sample a process for 2 s without perf
  ktfleet.numa.numa_sample:
    pid: 4242
    window: 2
    perf: "false"
"""

RETURN = r"""
pid:
  description: The main process sampled.
  returned: success
  type: int
  sample: 4242
service:
  description: The service it is the main process of (null with O(pid)).
  returned: success
  type: str
window_seconds:
  description: Seconds measured between the two snapshots.
  returned: success
  type: float
  sample: 10.002
load_wait:
  description:
    - With O(wait_busy), whether the load was C(seen) and the C(waited_seconds) before the window; null without.
  returned: success
  type: dict
  sample: {seen: true, waited_seconds: 3.5}
clock_ticks:
  description: C(SC_CLK_TCK), the unit of C(/proc) CPU times.
  returned: success
  type: int
  sample: 100
cpu_utilization:
  description: Busy fraction (0-1) of all CPUs over the window.
  returned: success
  type: float
cpus:
  description: Per CPU C({cpu, node, busy, busy_seconds}); C(busy) is psutil's C(cpu_percent(percpu=True)) / 100.
  returned: success
  type: list
  elements: dict
nodes:
  description:
    - Per NUMA node C({id, cpus, cpu_utilization, busy_cpu_seconds, memory_total_bytes, memory_free_bytes,
      file_pages_bytes}); CPUs from C(node*/cpulist), memory from C(node*/meminfo) at the end of the window.
  returned: success
  type: list
  elements: dict
process:
  description:
    - The process and its descendants. C(cpu_seconds) is utime + stime of all their threads over the window,
      C(cpu_cores) the same per second of the window. C(cpu_seconds_by_node) and C(cpu_seconds_by_cpu) give each
      thread's CPU time to the node and CPU it last ran on (field 39 of its C(stat)). Also C(threads),
      C(busy_threads) (threads that ran in the window), C(threads_by_node), C(busy_threads_by_node), C(last_cpus)
      (threads per last CPU), C(top_threads) (the 20 busiest), C(processes) and C(pids).
    - From C(numa_maps) and C(status) (see M(ktfleet.numa.numa_placement)) C(bytes_per_node) (summed over
      the processes), C(memory_policies), and the main process's C(cpus_allowed), C(cpus_allowed_list),
      C(mems_allowed_list) and C(task_policy).
  returned: success
  type: dict
numastat:
  description:
    - C({available, reason, nodes, total}); C(nodes) maps a node id to the growth of its C(numa_hit), C(numa_miss),
      C(numa_foreign), C(local_node), C(other_node) and C(interleave_hit) over the window (pages), C(total)
      sums them.
  returned: success
  type: dict
memory:
  description: C({total_bytes, available_bytes, available_ratio}) from C(/proc/meminfo) (MemTotal, MemAvailable).
  returned: success
  type: dict
frequency:
  description:
    - C({available, reason, cpus}); C(cpus) maps a CPU to C({cur_khz, scaling_max_khz, cpuinfo_max_khz, base_khz})
      (C(cur_khz) averages both snapshots). Unavailable, with the reason, without C(cpufreq).
  returned: success
  type: dict
thermal:
  description:
    - C({available, reason, counters}); C(counters) maps each C(*_throttle_count) name to C({delta_total,
      cpus_rising, max_count}). Unavailable, with the reason, without C(thermal_throttle).
  returned: success
  type: dict
perf:
  description:
    - C({available, reason, commands, rc, events}); C(commands) is the perf command line of each counter,
      C(rc) the first non-zero exit status among them (0 when every perf succeeded); C(events) maps each
      counter to C({value, status, unit, running_pct}), C(status) being C(counted), C(not supported),
      C(not counted) or C(missing).
  returned: success
  type: dict
sample_warnings:
  description: What could not be read, each starting with the file's path relative to O(root).
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ktfleet.numa.plugins.module_utils.numa_sample import sample
from ansible_collections.ktfleet.numa.plugins.module_utils.service import main_pid


def main():
    module = AnsibleModule(
        argument_spec={
            "pid": {"type": "int"},
            "service": {"type": "str"},
            "window": {"type": "float", "default": 10.0},
            "wait_busy": {"type": "float", "default": 0.0},
            "busy_cores": {"type": "float", "default": 0.5},
            "perf": {"type": "str", "choices": ["auto", "true", "false"], "default": "auto"},
            "children": {"type": "bool", "default": True},
            "root": {"type": "path", "default": "/"},
        },
        required_one_of=[("pid", "service")],
        mutually_exclusive=[("pid", "service")],
        supports_check_mode=True,
    )
    params = module.params
    window = params["window"]
    if not 0 < window <= 3600:
        module.fail_json(msg=f"window: must be more than 0 and at most 3600 seconds, got {window:g}")
    if not 0 <= params["wait_busy"] <= 3600:
        module.fail_json(msg=f"wait_busy: must be 0 to 3600 seconds, got {params['wait_busy']:g}")
    if not 0 < params["busy_cores"] <= 4096:
        module.fail_json(msg=f"busy_cores: must be more than 0 CPUs, got {params['busy_cores']:g}")
    pid = params["pid"]
    service = params["service"]
    if service:
        systemctl = module.get_bin_path("systemctl")
        if not systemctl:
            module.fail_json(msg=f"service: cannot find the main process of {service}: systemctl is not installed")
        try:
            pid = main_pid(module.run_command, service, systemctl)
        except ValueError as exc:
            module.fail_json(msg=str(exc))
        if pid == 0:
            module.fail_json(msg=f"service: {service} is not running (no main process); start it before sampling")
    try:
        result = sample(
            pid, root=params["root"], window=window, perf=params["perf"], children=params["children"],
            service=service, wait_busy=params["wait_busy"], busy_cores=params["busy_cores"],
        )
    except ProcessLookupError as exc:
        what = f"the main process {pid} of {service}" if service else f"process {pid}"
        module.fail_json(msg=f"{'service' if service else 'pid'}: {what} does not exist: {exc}")
    for warning in result["sample_warnings"]:
        module.warn(warning)
    if params["perf"] == "true" and not result["perf"]["available"]:
        module.warn(f"perf=true but no counters: {result['perf']['reason']}")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
