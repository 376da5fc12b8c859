"""Placement reading (/proc/<pid>/numa_maps) and its comparison with a plan."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from ansible_collections.ktfleet.numa.plugins.module_utils.placement import (
    read_placement,
    summarize_numa_maps,
)
from ansible_collections.ktfleet.numa.plugins.plugin_utils.diagnosis.placement_check import placement_problems

NUMA_MAPS = """\
55f6fc914000 bind:0-1 file=/usr/bin/python3 mapped=2 N0=2 kernelpagesize_kB=4
7f0000000000 bind:0 anon=262144 dirty=262144 N0=262144 kernelpagesize_kB=4
7f1000000000 interleave:0-1 anon=512 N0=256 N1=256 kernelpagesize_kB=2048
7ffcb657e000 bind:0-1 stack anon=3 dirty=3 active=1 N1=3 kernelpagesize_kB=4
"""


def test_summarize_numa_maps_counts_bytes_and_task_policy():
    summary = summarize_numa_maps(NUMA_MAPS)
    assert summary["task_policy"] == "bind:0-1"
    assert summary["memory_policies"] == ["bind:0", "bind:0-1", "interleave:0-1"]
    assert summary["bytes_per_node"] == {
        "0": (2 + 262144) * 4096 + 256 * 2 * 1024 * 1024,
        "1": 256 * 2 * 1024 * 1024 + 3 * 4096,
    }


def test_read_placement_from_a_copied_proc(tmp_path):
    proc = tmp_path / "proc" / "42"
    proc.mkdir(parents=True)
    (proc / "status").write_text("Name:\tpython\nCpus_allowed_list:\t0-3,8\nMems_allowed_list:\t0-1\n")
    (proc / "numa_maps").write_text(NUMA_MAPS)
    placement = read_placement(42, str(tmp_path))
    assert placement["cpus_allowed"] == [0, 1, 2, 3, 8]
    assert placement["mems_allowed"] == [0, 1]
    assert placement["task_policy"] == "bind:0-1"


def test_read_placement_of_a_vanished_process_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        read_placement(999999, str(tmp_path))


PLAN_BIND = {"cpus": [0, 1, 2, 3], "systemd": {"NUMAPolicy": "bind", "NUMAMask": "0", "CPUAffinity": "0-3"}}


def test_matching_placement_has_no_problems():
    placement = {"cpus_allowed": [0, 1, 2, 3], "cpus_allowed_list": "0-3", "task_policy": "bind:0"}
    assert placement_problems(placement, PLAN_BIND) == []


def test_wrong_cpus_and_policy_are_both_named():
    placement = {"cpus_allowed": [0, 1], "cpus_allowed_list": "0-1", "task_policy": "default"}
    problems = placement_problems(placement, PLAN_BIND)
    assert len(problems) == 2
    assert "Cpus_allowed_list is 0-1" in problems[0]
    assert "memory policy is default but the plan's is bind:0" in problems[1]


def test_interleave_and_default_policies():
    plan = {"cpus": [0, 1], "systemd": {"NUMAPolicy": "interleave", "NUMAMask": "0 1"}}
    assert placement_problems({"cpus_allowed": [0, 1], "task_policy": "interleave:0-1"}, plan) == []
    shard = {"cpus": [0, 1], "systemd": {"NUMAPolicy": None, "NUMAMask": None}}
    assert placement_problems({"cpus_allowed": [0, 1], "task_policy": "default"}, shard) == []
    assert placement_problems({"cpus_allowed": [0, 1], "task_policy": "bind:1"}, shard)


@pytest.mark.skipif(not shutil.which("numactl"), reason="numactl not installed")
def test_real_process_under_numactl_reads_as_bound():
    """A real process started by numactl --membind shows bind:0 on its stack."""
    proc = subprocess.Popen(["numactl", "--membind=0", "--physcpubind=0", "sleep", "30"])
    try:
        for _attempt in range(200):
            placement = read_placement(proc.pid)
            if placement["task_policy"] == "bind:0" and placement["cpus_allowed"] == [0]:
                break
            time.sleep(0.05)
        assert placement["task_policy"] == "bind:0"
        assert placement["cpus_allowed"] == [0]
        plan = {"cpus": [0], "systemd": {"NUMAPolicy": "bind", "NUMAMask": "0"}}
        assert placement_problems(placement, plan) == []
    finally:
        proc.kill()
        proc.wait()
