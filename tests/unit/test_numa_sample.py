"""numa_sample's core: parsers, a fake /proc + /sys tree, perf, and real processes here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ansible_collections.ktfleet.numa.plugins.module_utils import numa_sample as ns
from ansible_collections.ktfleet.numa.plugins.module_utils.numa_sample import (
    PERF_EVENTS,
    cpu_busy,
    parse_cpu_times,
    parse_perf_csv,
    parse_pid_stat,
    perf_commands,
    sample,
)

TICKS = 100


def stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int, cpu: int) -> str:
    """A /proc/<pid>/stat line: utime is field 14, stime 15, processor 39."""
    after = ["R", str(ppid)] + ["0"] * 9 + [str(utime), str(stime)] + ["0"] * 23 + [str(cpu)] + ["0"] * 13
    return f"{pid} ({comm}) " + " ".join(after) + "\n"


def proc_stat(rows: dict[int, tuple[int, ...]]) -> str:
    """/proc/stat with 10 fields per CPU (user nice system idle iowait irq softirq steal guest guest_nice)."""
    total = [sum(r[i] for r in rows.values()) for i in range(10)]
    lines = ["cpu  " + " ".join(map(str, total))]
    lines += [f"cpu{cpu} " + " ".join(map(str, r)) for cpu, r in sorted(rows.items())]
    return "\n".join(lines + ["intr 1 2 3", "ctxt 42", "btime 1", "processes 9"]) + "\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


NUMA_MAPS = """\
7f0000000000 bind:0 anon=262144 dirty=262144 N0=262144 kernelpagesize_kB=4
7f1000000000 bind:1 anon=512 N1=512 kernelpagesize_kB=2048
7ffcb657e000 default stack anon=3 dirty=3 N0=3 kernelpagesize_kB=4
"""


class FakeHost:
    """Two nodes (CPUs 0-3 and 4-7); server 100 with threads 100, 101 and a child 200 (thread 200)."""

    def __init__(self, root: Path):
        self.root = root
        self.cpu_times = {c: [1000, 0, 500, 8000, 10, 0, 5, 0, 0, 0] for c in range(8)}
        self.threads = {100: {100: [50, 10, 0], 101: [400, 20, 1]}, 200: {200: [300, 0, 5]}}
        self.comm = {100: "python3", 101: "kt worker", 200: "sched (tp0)"}
        self.numastat = {0: [1000, 0, 0, 1000, 0, 5], 1: [2000, 10, 0, 1990, 20, 5]}
        self.throttle = {c: {"core_throttle_count": 2, "package_throttle_count": 7} for c in range(8)}
        self.freq = {c: 2_000_000 for c in range(8)}
        sysdir = root / "sys/devices/system"
        for node, cpus in ((0, "0-3"), (1, "4-7")):
            write(sysdir / f"node/node{node}/cpulist", cpus + "\n")
            write(sysdir / f"node/node{node}/meminfo",
                  f"Node {node} MemTotal:       16777216 kB\nNode {node} MemFree:         4194304 kB\n"
                  f"Node {node} FilePages:       1048576 kB\n")
        for cpu in range(8):
            freq = sysdir / f"cpu/cpu{cpu}/cpufreq"
            write(freq / "scaling_max_freq", "3400000\n")
            write(freq / "cpuinfo_max_freq", "3400000\n")
            write(freq / "base_frequency", "2100000\n")
        write(root / "proc/meminfo", "MemTotal:       33554432 kB\nMemFree:  1 kB\nMemAvailable:    8388608 kB\n")
        write(root / "proc/100/status", "Name:\tpython3\nCpus_allowed_list:\t0-7\nMems_allowed_list:\t0-1\n")
        write(root / "proc/100/numa_maps", NUMA_MAPS)
        write(root / "proc/200/status", "Name:\tsched\nCpus_allowed_list:\t0-3\nMems_allowed_list:\t0-1\n")
        write(root / "proc/200/numa_maps", "7f00 bind:0 anon=10 N0=10 kernelpagesize_kB=4\n")
        write(root / "proc/1/stat", stat_line(1, "init", 0, 1, 1, 0))
        write(root / "proc/300/stat", stat_line(300, "other", 1, 999, 0, 6))
        self.flush()

    def flush(self) -> None:
        write(self.root / "proc/stat", proc_stat({c: tuple(v) for c, v in self.cpu_times.items()}))
        for pid, tasks in self.threads.items():
            ppid = 100 if pid == 200 else 1
            write(self.root / f"proc/{pid}/stat",
                  stat_line(pid, self.comm[pid], ppid, sum(t[0] for t in tasks.values()) + 7,
                            sum(t[1] for t in tasks.values()), next(iter(tasks.values()))[2]))
            for tid, (utime, stime, cpu) in tasks.items():
                write(self.root / f"proc/{pid}/task/{tid}/stat", stat_line(tid, self.comm[tid], ppid, utime, stime, cpu))
        names = ("numa_hit", "numa_miss", "numa_foreign", "local_node", "other_node", "interleave_hit")
        for node, values in self.numastat.items():
            write(self.root / f"sys/devices/system/node/node{node}/numastat",
                  "".join(f"{n} {v}\n" for n, v in zip(names, values, strict=True)))
        for cpu, counters in self.throttle.items():
            for name, value in counters.items():
                write(self.root / f"sys/devices/system/cpu/cpu{cpu}/thermal_throttle/{name}", f"{value}\n")
        for cpu, khz in self.freq.items():
            write(self.root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq", f"{khz}\n")

    def advance(self) -> None:
        """One 10 s window: node 0 busy, node 1 idle; the kt worker on CPU 1 and the child on CPU 5."""
        for cpu in range(8):
            busy = 900 if cpu < 4 else 50
            t = self.cpu_times[cpu]
            t[0] += busy
            t[3] += 1000 - busy
        self.threads[100][101] = [400 + 850, 20 + 50, 1]
        self.threads[200][200] = [300 + 200, 0, 5]
        self.threads[100][102] = [30, 0, 2]  # a thread born during the window
        self.comm[102] = "new"
        self.numastat[1] = [2000 + 900, 10 + 100, 0, 1990 + 800, 20 + 200, 5]
        self.throttle[3]["core_throttle_count"] = 5
        self.freq = {c: 1_800_000 for c in range(8)}
        self.flush()


@pytest.fixture
def host(tmp_path):
    return FakeHost(tmp_path)


def fake_clock():
    now = [1000.0]

    def clock():
        return now[0]

    def sleep(seconds):
        now[0] += seconds

    return clock, sleep, now


def run_sample(host: FakeHost, **kwargs):
    clock, advance_clock, _ = fake_clock()

    def sleep(seconds):
        advance_clock(seconds)
        host.advance()

    return sample(100, root=str(host.root), window=10, clock=clock, sleep=sleep, clock_ticks=TICKS, **kwargs)


# --- parsers ------------------------------------------------------------------------------


def test_cpu_times_read_exactly_as_psutil_reads_them(tmp_path, monkeypatch):
    """psutil.cpu_times(percpu=True) on the same fake /proc/stat gives the same numbers, and
    psutil's own busy arithmetic over two readings gives cpu_busy()'s fraction."""
    rows = {0: (100, 5, 50, 800, 20, 3, 2, 1, 4, 1), 1: (10, 0, 5, 900, 0, 0, 0, 0, 0, 0)}
    write(tmp_path / "proc/stat", proc_stat(rows))
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(tmp_path / "proc"))
    theirs = psutil.cpu_times(percpu=True)
    ours = parse_cpu_times((tmp_path / "proc/stat").read_text(), psutil._pslinux.CLOCK_TICKS)
    assert sorted(ours) == [0, 1]
    for cpu, times in ours.items():
        assert times == pytest.approx(theirs[cpu]._asdict())

    later = {0: (400, 5, 150, 1200, 120, 3, 2, 1, 54, 1), 1: (10, 0, 5, 1900, 0, 0, 0, 0, 0, 0)}
    write(tmp_path / "proc/stat", proc_stat(later))
    theirs2 = psutil.cpu_times(percpu=True)
    ours2 = parse_cpu_times((tmp_path / "proc/stat").read_text(), psutil._pslinux.CLOCK_TICKS)
    for cpu in (0, 1):
        delta = psutil._cpu_times_deltas(theirs[cpu], theirs2[cpu])
        expected = psutil._cpu_busy_time(delta) / psutil._cpu_tot_time(delta)
        busy, total = cpu_busy(ours[cpu], ours2[cpu])
        assert busy / total == pytest.approx(expected)
    # cpu0: busy 300 user + 100 system (guest 50 is inside user) of 300+100+400+100 = 900 ticks
    busy, total = cpu_busy(ours[0], ours2[0])
    assert (busy, total) == pytest.approx((4.0, 9.0))


def test_cpu_times_keep_the_cpu_numbers_when_a_cpu_is_offline():
    text = "cpu  2 0 0 2 0 0 0\ncpu0 1 0 0 1 0 0 0\ncpu2 1 0 0 1 0 0 0\n"
    assert sorted(parse_cpu_times(text, 1)) == [0, 2]  # psutil would call cpu2 "1"
    assert set(parse_cpu_times(text, 1)[2]) == {"user", "nice", "system", "idle", "iowait", "irq", "softirq"}
    with pytest.raises(ValueError):
        parse_cpu_times("garbage\n", 100)


def test_cpu_busy_clamps_counters_that_go_backwards():
    before = {"user": 10.0, "idle": 10.0, "iowait": 5.0}
    after = {"user": 9.0, "idle": 12.0, "iowait": 4.0}
    assert cpu_busy(before, after) == (0.0, 2.0)


def test_pid_stat_with_a_hostile_comm():
    text = stat_line(42, "a) (b c", 7, 120, 30, 13)
    stat = parse_pid_stat(text)
    assert stat == {"comm": "a) (b c", "state": "R", "ppid": 7, "ticks": 150, "processor": 13}
    assert parse_pid_stat(Path("/proc/self/stat").read_text())["ppid"] == os.getppid()
    with pytest.raises(ValueError):
        parse_pid_stat("42 (short) R 1 2\n")


PERF_OUT = """\
# started on Mon
<not supported>,,cache-misses,0,100.00,,
1200,,cache-references:u,20000000,100.00,,
<not counted>,,cpu-migrations,0,100.00,,
594,,context-switches,421187514,100.00,,
Some warning line perf printed
"""


def test_perf_csv_counted_unsupported_and_not_counted():
    events = parse_perf_csv(PERF_OUT)
    assert list(events) == list(PERF_EVENTS)
    assert events["cache-misses"] == {"value": None, "status": "not supported", "unit": None, "running_pct": None}
    assert events["cache-references"]["value"] == 1200 and events["cache-references"]["status"] == "counted"
    assert events["cpu-migrations"]["status"] == "not counted"
    assert events["context-switches"] == {"value": 594, "status": "counted", "unit": None, "running_pct": 100.0}


def test_perf_csv_sums_hybrid_core_types_and_marks_missing_events():
    text = ("10,,cpu_core/cpu-migrations/,1,100.00,,\n5,,cpu_atom/cpu-migrations/,1,50.00,,\n"
            "<not supported>,,cpu_atom/cache-misses/,0,100.00,,\n7,,cpu_core/cache-misses/,1,100.00,,\n")
    events = parse_perf_csv(text)
    assert events["cpu-migrations"]["value"] == 15
    assert events["cache-misses"]["value"] == 7 and events["cache-misses"]["status"] == "counted"
    assert events["context-switches"]["status"] == "missing"
    assert all(e["status"] == "missing" for e in parse_perf_csv("perf: command not found\n").values())


def test_perf_commands_one_per_counter():
    assert perf_commands("/usr/bin/perf", [7, 9], 2.5) == [
        ["/usr/bin/perf", "stat", "-x,", "-e", event, "-p", "7,9", "--", "sleep", "2.5"] for event in PERF_EVENTS]


class FakePopen:
    """perf processes; each prints what the run gives it for its counter (stderr text, exit status)."""

    def __init__(self, by_event: dict[str, tuple[str, int]], fail_at: int | None = None):
        self.by_event, self.fail_at, self.commands, self.killed = by_event, fail_at, [], 0

    def __call__(self, command, **kwargs):
        if len(self.commands) == self.fail_at:
            raise OSError("Too many open files")
        self.commands.append(command)
        return FakeProcess(self, *self.by_event[command[command.index("-e") + 1]])


class FakeProcess:
    def __init__(self, popen, stderr: str, rc: int):
        self.popen, self.stderr_text, self.returncode = popen, stderr, rc

    def communicate(self, timeout=None):
        return None, self.stderr_text.encode()

    def kill(self):
        self.popen.killed += 1


def perf_lines(text: str) -> dict[str, tuple[str, int]]:
    """perf -x, output split into what each one-counter perf prints."""
    out = {event: ("", 0) for event in PERF_EVENTS}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and ns._perf_event_name(fields[2]) in out:
            out[ns._perf_event_name(fields[2])] = (line + "\n", 0)
    return out


VANISHED = ("Error:\nThe sys_perf_event_open() syscall returned with 3 (No such process) for event "
            "(context-switches).\n/bin/dmesg | grep -i perf may provide additional information.\n")


def perf_run(popen, mode="auto"):
    procs, started = ns._start_perf(mode, "/", [5], 1.0, lambda name: "/usr/bin/perf", popen)
    return started if procs is None else ns._finish_perf(procs, started, 1.0)


def test_perf_runs_beside_the_window_and_reports_its_failures():
    popen = FakePopen(perf_lines(PERF_OUT))
    result = perf_run(popen)
    assert [c[4] for c in popen.commands] == list(PERF_EVENTS) and result["commands"] == popen.commands
    assert result["available"] and result["rc"] == 0
    assert result["events"]["context-switches"]["value"] == 594

    usage = "Problems finding threads of monitor\n\n Usage: perf stat [<options>]\n"
    result = perf_run(FakePopen({event: (usage, 234) for event in PERF_EVENTS}), mode="true")
    assert not result["available"] and "perf exited 234" in result["reason"] and "Problems finding" in result["reason"]

    # one counter's perf failing costs that counter only; its exit status is kept
    one_failed = dict(perf_lines(PERF_OUT), **{"context-switches": (VANISHED, 255)})
    result = perf_run(FakePopen(one_failed))
    assert result["available"] and result["rc"] == 255
    assert result["events"]["context-switches"]["status"] == "missing"
    assert result["events"]["cache-references"]["value"] == 1200

    result = perf_run(FakePopen({event: (VANISHED, 255) for event in PERF_EVENTS}))
    # the reason is the line after perf's bare "Error:"
    assert result["reason"].startswith("perf exited 255 without counters: The sys_perf_event_open() syscall")

    vm = FakePopen(perf_lines("<not supported>,,cache-misses,0,100.00,,\n<not counted>,,cpu-migrations,0,100.00,,\n"))
    result = perf_run(vm)
    assert not result["available"] and "cache-misses not supported" in result["reason"]

    # a perf that cannot start stops those already started
    third_fails = FakePopen(perf_lines(PERF_OUT), fail_at=2)
    result = perf_run(third_fails)
    assert not result["available"] and result["reason"] == "cannot run perf: Too many open files"
    assert third_fails.killed == 2

    popen = FakePopen(perf_lines(PERF_OUT))
    assert ns._start_perf("auto", "/", [5], 1.0, lambda name: None, popen)[1]["reason"].startswith(
        "perf is not installed")
    assert ns._start_perf("false", "/", [5], 1.0, lambda name: "/x", popen)[1]["reason"].startswith("perf=false")
    assert "is not /" in ns._start_perf("auto", "/tmp/x", [5], 1.0, lambda name: "/x", popen)[1]["reason"]


# --- a whole sample on the fake tree -----------------------------------------------------------


def test_sample_of_the_fake_host(host):
    result = run_sample(host)
    assert result["window_seconds"] == 10.0 and result["pid"] == 100
    assert result["sample_warnings"] == []
    # per CPU: busy 900 of 1000 ticks on node 0, 50 on node 1
    assert [c["busy"] for c in result["cpus"]] == [0.9] * 4 + [0.05] * 4
    assert [(n["id"], n["cpus"], n["cpu_utilization"]) for n in result["nodes"]] == [
        (0, [0, 1, 2, 3], 0.9), (1, [4, 5, 6, 7], 0.05)]
    assert result["nodes"][0]["memory_total_bytes"] == 16 << 30
    assert result["cpu_utilization"] == pytest.approx(0.475)

    process = result["process"]
    assert process["pids"] == [100, 200]  # the child is sampled too; 300 is not ours
    # 900 ticks in 100's threads (+30 of the new thread), 200 in the child: 11.3 s
    assert process["cpu_seconds"] == pytest.approx(11.3)
    assert process["cpu_cores"] == pytest.approx(1.13)
    assert process["cpu_seconds_by_node"] == {"0": 9.3, "1": 2.0}
    assert process["cpu_seconds_by_cpu"] == {"1": 9.0, "2": 0.3, "5": 2.0}
    assert process["threads"] == 4 and process["busy_threads"] == 3
    assert process["threads_by_node"] == {"0": 3, "1": 1}
    assert process["busy_threads_by_node"] == {"0": 2, "1": 1}
    assert process["last_cpus"] == {"0": 1, "1": 1, "2": 1, "5": 1}
    assert process["top_threads"][0] == {"pid": 100, "tid": 101, "comm": "kt worker", "cpu": 1, "node": 0,
                                         "cpu_seconds": 9.0}
    assert [p["pid"] for p in process["processes"]] == [100, 200]
    assert process["processes"][1]["cpus_allowed_list"] == "0-3"
    # numa_maps of both processes, summed (module_utils/placement.py)
    assert process["bytes_per_node"] == {"0": (262144 + 3 + 10) * 4096, "1": 512 * 2 << 20}
    assert process["task_policy"] == "default" and process["cpus_allowed"] == list(range(8))
    assert process["memory_policies"] == ["bind:0", "bind:1", "default"]

    assert result["numastat"]["nodes"]["1"] == {"numa_hit": 900, "numa_miss": 100, "numa_foreign": 0,
                                                "local_node": 800, "other_node": 200, "interleave_hit": 0}
    assert result["numastat"]["total"]["numa_hit"] == 900
    assert result["memory"] == {"total_bytes": 32 << 30, "available_bytes": 8 << 30, "available_ratio": 0.25}
    assert result["frequency"]["available"]
    assert result["frequency"]["cpus"]["0"] == {"cur_khz": 1_900_000, "scaling_max_khz": 3_400_000,
                                                "cpuinfo_max_khz": 3_400_000, "base_khz": 2_100_000}
    assert result["thermal"]["counters"]["core_throttle_count"] == {"delta_total": 3, "cpus_rising": [3],
                                                                    "max_count": 5}
    assert result["thermal"]["counters"]["package_throttle_count"]["delta_total"] == 0
    assert not result["perf"]["available"] and "is not /" in result["perf"]["reason"]


def test_without_children_only_the_main_process(host):
    result = run_sample(host, children=False)
    assert result["process"]["pids"] == [100]
    assert result["process"]["cpu_seconds"] == pytest.approx(9.3)


def test_missing_and_corrupt_files_become_warnings_naming_them(host):
    root = host.root
    (root / "sys/devices/system/node/node1/numastat").unlink()
    write(root / "sys/devices/system/node/node0/meminfo", "garbage\n")
    for cpu in range(8):
        shutil.rmtree(root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq")
        shutil.rmtree(root / f"sys/devices/system/cpu/cpu{cpu}/thermal_throttle")
    (root / "proc/100/numa_maps").unlink()
    write(root / "proc/meminfo", "MemTotal: 100 kB\n")
    original = host.flush

    def flush_without_the_deleted():
        original()
        for path in ("sys/devices/system/node/node1/numastat",):
            (root / path).unlink(missing_ok=True)
        for cpu in range(8):
            shutil.rmtree(root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq", ignore_errors=True)
            shutil.rmtree(root / f"sys/devices/system/cpu/cpu{cpu}/thermal_throttle", ignore_errors=True)

    host.flush = flush_without_the_deleted
    result = run_sample(host)
    warnings = result["sample_warnings"]
    assert any(w.startswith("sys/devices/system/node/node1/numastat: ") for w in warnings), warnings
    assert any(w.startswith("proc/100/numa_maps: cannot read") for w in warnings), warnings
    assert "proc/meminfo: no MemAvailable (kernel before 3.14)" in warnings
    assert result["memory"]["available_ratio"] is None
    assert result["numastat"]["available"] and list(result["numastat"]["nodes"]) == ["0"]
    assert not result["frequency"]["available"] and "cpufreq" in result["frequency"]["reason"]
    assert not result["thermal"]["available"] and "thermal_throttle" in result["thermal"]["reason"]
    assert result["nodes"][0]["memory_total_bytes"] is None
    assert result["process"]["bytes_per_node"] == {"0": 10 * 4096}  # the child's numa_maps still counts


def test_no_numa_in_the_kernel_counts_every_cpu_on_node_0(host):
    shutil.rmtree(host.root / "sys/devices/system/node")
    host.numastat = {}
    result = run_sample(host)
    assert [n["cpus"] for n in result["nodes"]] == [list(range(8))]
    assert any(w.startswith("sys/devices/system/node: absent") for w in result["sample_warnings"])
    assert not result["numastat"]["available"]


def test_a_missing_process_raises_and_an_exiting_one_is_a_warning(host):
    with pytest.raises(ProcessLookupError, match="proc/4242/stat"):
        sample(4242, root=str(host.root), window=1, sleep=lambda s: None)
    clock, advance, _ = fake_clock()

    def sleep(seconds):
        advance(seconds)
        shutil.rmtree(host.root / "proc/100")

    result = sample(100, root=str(host.root), window=1, clock=clock, sleep=sleep, clock_ticks=TICKS)
    assert "proc/100/stat: the process exited during the window" in result["sample_warnings"]


def test_garbage_everywhere_never_raises(host):
    """Every file but the main process's stat corrupt: warnings, no exception."""
    main_stat = host.root / "proc/100/stat"
    for path in host.root.rglob("*"):
        if path.is_file() and path != main_stat:
            path.write_text("\x00garbage ) ( 1 2\n")
    result = sample(100, root=str(host.root), window=1, sleep=lambda s: None, clock_ticks=TICKS)
    warnings = result["sample_warnings"]
    for name in ("proc/stat", "proc/meminfo", "sys/devices/system/node/node0/cpulist",
                 "sys/devices/system/node/node1/meminfo", "sys/devices/system/node/node0/numastat",
                 "sys/devices/system/cpu/cpu3/cpufreq/scaling_cur_freq",
                 "sys/devices/system/cpu/cpu3/thermal_throttle/core_throttle_count", "proc/100/task/101/stat"):
        assert any(w.startswith(name + ": ") for w in warnings), (name, warnings)
    assert result["cpus"] == [] and result["cpu_utilization"] is None
    main_stat.write_text("garbage\n")
    with pytest.raises(ProcessLookupError):
        sample(100, root=str(host.root), window=1, sleep=lambda s: None, clock_ticks=TICKS)


def test_the_window_waits_for_a_late_load_and_starts_the_moment_it_runs(host):
    """An async load that starts 3 s late: the window starts then, not while the server idles."""
    clock, advance, now = fake_clock()
    steps = []

    def sleep(seconds):
        advance(seconds)
        steps.append(now[0])
        if len(steps) == 6:  # 3 s in: the child (a spinning worker) starts using one CPU
            host.threads[200][200][0] += 100
            host.flush()
        elif len(steps) > 6:
            host.advance()

    result = sample(100, root=str(host.root), window=10, wait_busy=60, clock=clock, sleep=sleep, clock_ticks=TICKS)
    assert result["load_wait"] == {"seen": True, "waited_seconds": 3.0}
    assert result["window_seconds"] == 10.0
    assert not any("no load" in w for w in result["sample_warnings"])


def test_a_load_that_never_comes_ends_the_wait_with_a_warning(host):
    clock, advance, _ = fake_clock()
    result = sample(100, root=str(host.root), window=1, wait_busy=4, busy_cores=0.5, clock=clock, sleep=advance,
                    clock_ticks=TICKS)
    assert result["load_wait"] == {"seen": False, "waited_seconds": 4.0}
    assert "proc/100/stat: no load of 0.5 cores or more within 4 s: the window samples an idle server" in (
        result["sample_warnings"])
    assert sample(100, root=str(host.root), window=1, sleep=advance, clock=clock,
                  clock_ticks=TICKS)["load_wait"] is None


# --- real processes on this machine -----------------------------------------------------------------


BUSY = "import os\nos.sched_setaffinity(0, {0})\nwhile True:\n    pass\n"


def wait_running(pid: int, cpu: int | None = None) -> None:
    for _ in range(200):
        stat = parse_pid_stat(Path(f"/proc/{pid}/stat").read_text())
        if stat["ticks"] > 0 and (cpu is None or stat["processor"] == cpu):
            return
        time.sleep(0.02)


def test_a_busy_process_pinned_to_cpu_0_is_seen_on_cpu_0s_node():
    proc = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        wait_running(proc.pid, cpu=0)
        result = sample(proc.pid, window=1.0)
        node0 = next(n["id"] for n in result["nodes"] if 0 in n["cpus"])
        process = result["process"]
        assert process["cpu_seconds"] > 0.1, process
        assert set(process["cpu_seconds_by_cpu"]) == {"0"}
        assert set(process["cpu_seconds_by_node"]) == {str(node0)}
        assert process["top_threads"][0]["cpu"] == 0
        assert process["cpus_allowed"] == [0]
        busy0 = next(c["busy"] for c in result["cpus"] if c["cpu"] == 0)
        assert busy0 > 0.1
        assert result["window_seconds"] == pytest.approx(1.0, abs=0.3)
        assert process["bytes_per_node"] and result["memory"]["available_ratio"]
        assert set(result["perf"]["events"]) == set(PERF_EVENTS)
        if shutil.which("perf"):  # installed by ./run test (linux-perf)
            assert all(command[-3:] == ["--", "sleep", "1"] for command in result["perf"]["commands"])
            # software counters count on any kernel, VMs included; hardware ones may be <not supported>
            assert result["perf"]["events"]["context-switches"]["status"] == "counted", result["perf"]
    finally:
        proc.kill()
        proc.wait()


CHURN = ("import random, threading, time\n"
         "def work():\n    time.sleep(random.random() * 0.004)\n"
         "while True:\n"
         "    threads = [threading.Thread(target=work) for _ in range(64)]\n"
         "    [t.start() for t in threads]\n    [t.join() for t in threads]\n")


@pytest.mark.skipif(not shutil.which("perf"), reason="perf not installed (./run test installs linux-perf)")
def test_perf_counts_a_process_whose_threads_come_and_go():
    # a threaded HTTP server under load: perf 6.1 with all counters in one run failed on most
    # samples here ("No such process"), and CI's operate scenario once died of it
    proc = subprocess.Popen([sys.executable, "-c", CHURN])
    try:
        time.sleep(0.3)
        for _ in range(8):
            perf = sample(proc.pid, window=0.3)["perf"]
            assert perf["rc"] == 0, perf
            assert perf["events"]["context-switches"]["status"] == "counted", perf
            assert perf["events"]["cpu-migrations"]["status"] == "counted", perf
    finally:
        proc.kill()
        proc.wait()


def test_the_wait_returns_as_soon_as_a_real_process_is_busy():
    proc = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        wait_running(proc.pid)
        started = time.monotonic()
        result = sample(proc.pid, window=0.3, perf="false", wait_busy=30)
        assert result["load_wait"]["seen"] and result["load_wait"]["waited_seconds"] < 5, result["load_wait"]
        assert time.monotonic() - started < 10
    finally:
        proc.kill()
        proc.wait()


def test_the_child_of_a_launcher_is_sampled():
    launcher = ("import subprocess, sys\n"
                f"subprocess.run([sys.executable, '-c', {BUSY!r}])\n")
    proc = subprocess.Popen([sys.executable, "-c", launcher])
    try:
        for _ in range(200):
            children = psutil.Process(proc.pid).children()
            if children:
                break
            time.sleep(0.02)
        wait_running(children[0].pid, cpu=0)
        result = sample(proc.pid, window=0.5, perf="false")
        assert result["process"]["pids"] == [proc.pid, children[0].pid]
        assert result["process"]["cpu_seconds_by_cpu"].get("0", 0) > 0.05
        alone = sample(proc.pid, window=0.5, perf="false", children=False)
        assert alone["process"]["pids"] == [proc.pid]
        assert alone["process"]["cpu_seconds"] < result["process"]["cpu_seconds"]
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()
