# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a running server and its host did over a sampling window.

The pure core of ``ktfleet.numa.numa_sample``.  It runs on the target host, so
it uses the Python standard library only (no psutil there), reads nothing
outside ``root`` (except running ``perf`` when ``root`` is ``/``) and never
raises on missing, unreadable or corrupt files: each becomes a warning naming
the file relative to ``root``, and the part it fed is reported unavailable
with the reason.  It returns measurements only; verdicts are
``plugins/plugin_utils/diagnosis/diagnosis.py``'s job on the controller.

Two snapshots ``window`` seconds apart, each of:

* ``/proc/stat`` per-CPU times, read exactly as ``psutil.cpu_times(percpu=True)``
  reads them (the fields after ``cpuN``, as many as the aggregate ``cpu`` line
  has, divided by ``SC_CLK_TCK``) and turned into a busy fraction exactly as
  ``psutil.cpu_percent(percpu=True)`` does (negative deltas clamped to 0; total
  = all fields - guest - guest_nice; busy = total - idle - iowait).  One
  difference: psutil numbers CPUs by their position in the file, which is
  wrong once a CPU is offline; here the number comes from ``cpuN`` itself;
* ``/proc/<pid>/stat`` (utime + stime: every thread of the process, dead ones
  included) and ``/proc/<pid>/task/<tid>/stat`` (each thread's utime + stime
  and field 39, the CPU it last ran on) for the process and, by default, its
  descendants (SGLang and the legacy balance_serve server run the inference
  in child processes of the unit's main process);
* ``/sys/devices/system/node/node*/numastat`` counters;
* ``cpufreq/scaling_cur_freq`` and ``thermal_throttle/*_throttle_count`` of
  every CPU, where the host exposes them;

then, once, ``numa_maps`` of every process (``module_utils/placement.py``),
``/proc/meminfo`` and each node's ``meminfo``.  ``perf stat -x,``, one per
counter, runs on the same processes in parallel with the window when it is
installed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import subprocess
import time

from ansible_collections.ktfleet.numa.plugins.module_utils import sysfs
from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import parse_cpulist
from ansible_collections.ktfleet.numa.plugins.module_utils.placement import read_placement

PERF_EVENTS = ("cache-misses", "cache-references", "cpu-migrations", "context-switches")
NUMASTAT_FIELDS = ("numa_hit", "numa_miss", "numa_foreign", "local_node", "other_node", "interleave_hit")
# psutil's scputimes fields on Linux, in /proc/stat order.
CPU_TIME_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
TOP_THREADS = 20
_CPU_DIR = re.compile(r"cpu(\d+)\Z")
_NODE_DIR = re.compile(r"node(\d+)\Z")


# ----------------------------------------------------------------------------
# Pure parsers (raise ValueError on garbage)


def parse_cpu_times(text: str, clock_ticks: int) -> dict[int, dict[str, float]]:
    """Per-CPU times in seconds from /proc/stat, keyed by CPU number.

    The same fields and scaling as psutil's ``per_cpu_times()``: as many
    fields as the aggregate ``cpu`` line carries (7 to 10 by kernel version).
    """
    lines = text.splitlines()
    if not lines or not lines[0].startswith("cpu "):
        raise ValueError("no aggregate 'cpu' line")
    width = min(len(lines[0].split()) - 1, len(CPU_TIME_FIELDS))
    if width < 4:
        raise ValueError("aggregate 'cpu' line has fewer than 4 fields")
    names = CPU_TIME_FIELDS[:width]
    out: dict[int, dict[str, float]] = {}
    for line in lines[1:]:
        if not line.startswith("cpu"):
            continue
        values = line.split()
        match = _CPU_DIR.match(values[0])
        if not match or len(values) < width + 1:
            raise ValueError(f"bad per-CPU line {line[:60]!r}")
        out[int(match.group(1))] = {names[i]: float(values[i + 1]) / clock_ticks for i in range(width)}
    return out


def cpu_busy(before: dict[str, float], after: dict[str, float]) -> tuple[float, float]:
    """(busy seconds, total seconds) between two readings, as psutil.cpu_percent computes them."""
    delta = {k: max(0.0, after.get(k, 0.0) - before.get(k, 0.0)) for k in after}
    total = sum(delta.values()) - delta.get("guest", 0.0) - delta.get("guest_nice", 0.0)
    busy = total - delta.get("idle", 0.0) - delta.get("iowait", 0.0)
    return max(0.0, busy), max(0.0, total)


def parse_pid_stat(text: str) -> dict:
    """/proc/<pid>/stat or /proc/<pid>/task/<tid>/stat: comm, state, ppid, ticks, last CPU.

    Field numbers are proc(5)'s: utime 14, stime 15, processor 39.  The comm
    may hold spaces and parentheses, so fields are counted after the last ')'.
    """
    lpar, rpar = text.find("("), text.rfind(")")
    if lpar < 0 or rpar < lpar:
        raise ValueError("no '(comm)' field")
    fields = text[rpar + 2 :].split()
    if len(fields) < 37:
        raise ValueError(f"{len(fields) + 2} fields, processor (39) missing")
    return {
        "comm": text[lpar + 1 : rpar],
        "state": fields[0],
        "ppid": int(fields[1]),
        "ticks": int(fields[11]) + int(fields[12]),
        "processor": int(fields[36]),
    }


def parse_counters(text: str) -> dict[str, int]:
    """``name value`` lines (numastat, vmstat) as a dict."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = int(parts[1])
    if not out:
        raise ValueError("no 'name value' counters")
    return out


def _perf_event_name(text: str) -> str:
    """``cpu-migrations:u`` -> ``cpu-migrations``; ``cpu_core/cache-misses/`` -> ``cache-misses``."""
    name = text.strip()
    if "/" in name:
        inner = [part for part in name.split("/") if part]
        name = inner[1] if len(inner) > 1 else inner[0]
    return name.split(":")[0]


def parse_perf_csv(text: str, events=PERF_EVENTS) -> dict[str, dict]:
    """Counters from ``perf stat -x,`` output (perf writes it to stderr).

    Each line is ``value,unit,event,run time,percent running,...``; the value
    may be ``<not supported>`` or ``<not counted>``.  Hybrid CPUs print one
    line per core type (``cpu_core/...``, ``cpu_atom/...``): they are summed.
    Every requested event is in the answer; one perf did not print is
    ``missing``.
    """
    out: dict[str, dict] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(",")
        if len(fields) < 3:
            continue
        name = _perf_event_name(fields[2])
        if name not in events:
            continue
        raw = fields[0].strip()
        entry = out.setdefault(name, {"value": None, "status": "not counted", "unit": fields[1].strip() or None,
                                      "running_pct": None})
        if raw.startswith("<"):
            word = raw.strip("<>").strip()
            if entry["value"] is None and word in ("not supported", "not counted"):
                entry["status"] = word
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        entry["value"] = int(round(value + (entry["value"] or 0)))
        entry["status"] = "counted"
        if len(fields) > 4:
            with contextlib.suppress(ValueError):
                entry["running_pct"] = float(fields[4])
    for name in events:
        out.setdefault(name, {"value": None, "status": "missing", "unit": None, "running_pct": None})
    return {name: out[name] for name in events}


def perf_commands(perf: str, pids, window: float, events=PERF_EVENTS) -> list[list[str]]:
    """One ``perf stat`` per counter, all run side by side.

    perf 6.1 (Debian 12) forgives a thread that exits while it attaches (ESRCH)
    only while opening its first counter; a threaded server under load always
    has such threads (measurements in docs/diagnose.md).
    """
    targets = ",".join(str(p) for p in pids)
    return [[perf, "stat", "-x,", "-e", event, "-p", targets, "--", "sleep", f"{window:g}"] for event in events]


# ----------------------------------------------------------------------------
# Reading under a root, with warnings instead of exceptions


class _Reader:
    """Files under ``root`` read by ``sysfs.Root``, each problem a warning ``<rel>: <what>``."""

    def __init__(self, root: str):
        self.root = root
        self.files = sysfs.Root(root)
        self.warnings: list[str] = []

    def names(self, rel: str) -> list[str]:
        """The names in root/rel; none when it cannot be listed (a thread gone, a CPU without it)."""
        try:
            return self.files.listdir(rel)
        except OSError:
            return []

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.root)

    def read(self, rel: str, optional: bool = False) -> str | None:
        """Text of root/rel, or None.  ``optional``: a file that cannot be read is no
        warning (corrupt content still is)."""
        text, problem = self.files.read_text(rel, encoding="ascii")
        if problem is None:
            return text
        if problem.code == sysfs.ONLY_NUL:
            self.warn(rel, "only NUL bytes, no value (corrupt)")
        elif not optional:
            # what open() said of a directory; the OS's own words for the rest
            self.warn(rel, os.strerror(errno.EISDIR) if problem.code == sysfs.DIRECTORY else problem.detail)
        return None

    def warn(self, rel: str, what: str) -> None:
        message = f"{rel}: {what}"
        if message not in self.warnings:
            self.warnings.append(message)

    def parsed(self, rel: str, parser, optional: bool = False):
        text = self.read(rel, optional)
        if text is None:
            return None
        try:
            return parser(text)
        except (ValueError, IndexError) as exc:
            self.warn(rel, f"cannot parse: {exc}")
            return None

    def number(self, rel: str) -> int | None:
        """An optional sysfs number: None (no warning) when absent."""
        text = self.read(rel, optional=True)
        if text is None:
            return None
        try:
            return int(text.strip())
        except ValueError:
            self.warn(rel, f"not a number: {text.strip()[:40]!r}")
            return None


def _lenient_cpulist(text: str) -> list[int]:
    return parse_cpulist(text, lenient=True)


def _numbered(reader: _Reader, rel: str, pattern) -> list[int]:
    return sorted(int(m.group(1)) for m in map(pattern.match, reader.names(rel)) if m)


def _node_cpus(reader: _Reader, cpus: list[int]) -> dict[int, list[int]]:
    nodes = _numbered(reader, "sys/devices/system/node", _NODE_DIR)
    if not nodes:
        reader.warn("sys/devices/system/node", "absent (kernel without NUMA): every CPU counted on node 0")
        return {0: sorted(cpus)}
    out = {}
    for node in nodes:
        cpulist = reader.parsed(f"sys/devices/system/node/node{node}/cpulist", _lenient_cpulist)
        out[node] = cpulist or []
    return out


def _tree(reader: _Reader, pid: int) -> list[int]:
    """``pid`` and its descendants (by each /proc/N/stat's ppid)."""
    children: dict[int, list[int]] = {}
    for other in _numbered(reader, "proc", re.compile(r"(\d+)\Z")):
        text = reader.read(f"proc/{other}/stat", optional=True)
        if text is None:
            continue
        try:
            children.setdefault(parse_pid_stat(text)["ppid"], []).append(other)
        except ValueError:
            continue
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in out:
            continue
        out.append(current)
        todo.extend(children.get(current, []))
    return sorted(out)


def _process(reader: _Reader, pid: int, quiet: bool) -> dict | None:
    stat = reader.parsed(f"proc/{pid}/stat", parse_pid_stat, optional=quiet)
    if stat is None:
        return None
    tasks = {}
    for tid in _numbered(reader, f"proc/{pid}/task", re.compile(r"(\d+)\Z")):
        # a thread may exit between listdir and open: not worth a warning
        task = reader.parsed(f"proc/{pid}/task/{tid}/stat", parse_pid_stat, optional=True)
        if task is not None:
            tasks[tid] = task
    return {"stat": stat, "tasks": tasks}


def _cpu_files(reader: _Reader, cpus: list[int]) -> tuple[dict, dict]:
    """Current frequency (kHz) and throttle counters of every CPU that has them."""
    freq, throttle = {}, {}
    for cpu in cpus:
        base = f"sys/devices/system/cpu/cpu{cpu}"
        cur = reader.number(f"{base}/cpufreq/scaling_cur_freq")
        if cur is None:
            cur = reader.number(f"{base}/cpufreq/cpuinfo_cur_freq")
        if cur is not None:
            freq[cpu] = cur
        counters = {}
        for name in sorted(n for n in reader.names(f"{base}/thermal_throttle") if n.endswith("_throttle_count")):
            value = reader.number(f"{base}/thermal_throttle/{name}")
            if value is not None:
                counters[name] = value
        if counters:
            throttle[cpu] = counters
    return freq, throttle


def _snapshot(reader: _Reader, main: int, pids: list[int], nodes: list[int], cpus: list[int], clock,
              ticks: int) -> dict:
    at = clock()
    times = reader.parsed("proc/stat", lambda text: parse_cpu_times(text, ticks)) or {}
    procs = {}
    for pid in pids:
        # the main process's stat is the sample itself; a child may exit any time
        proc = _process(reader, pid, quiet=pid != main)
        if proc is not None:
            procs[pid] = proc
    numastat = {}
    for node in nodes:
        counters = reader.parsed(f"sys/devices/system/node/node{node}/numastat", parse_counters)
        if counters is not None:
            numastat[node] = counters
    freq, throttle = _cpu_files(reader, cpus or sorted(times))
    return {"at": at, "times": times, "procs": procs, "numastat": numastat, "freq": freq, "throttle": throttle}


# ----------------------------------------------------------------------------
# perf, in parallel with the window


def _perf_unavailable(reason: str, commands=None) -> dict:
    return {"available": False, "reason": reason, "commands": commands, "rc": None,
            "events": {name: {"value": None, "status": "missing", "unit": None, "running_pct": None}
                       for name in PERF_EVENTS}}


def _start_perf(mode: str, root: str, pids: list[int], window: float, which, popen):
    """(perf processes, or None, and the result so far)."""
    if mode == "false":
        return None, _perf_unavailable("perf=false: not requested")
    if os.path.realpath(root) != "/":
        return None, _perf_unavailable(f"root={root} is not /: perf only measures the live host")
    perf = which("perf")
    if not perf:
        return None, _perf_unavailable("perf is not installed (linux-perf / linux-tools)")
    commands = perf_commands(perf, pids, window)
    procs = []
    try:
        for command in commands:
            procs.append(popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=dict(os.environ, LC_ALL="C")))
    except OSError as exc:
        _stop(procs)
        return None, _perf_unavailable(f"cannot run perf: {exc}", commands)
    return procs, {"available": True, "reason": None, "commands": commands, "rc": None, "events": {}}


def _stop(procs) -> None:
    for proc in procs:
        proc.kill()
        proc.communicate()


def _finish_perf(procs, result: dict, window: float) -> dict:
    deadline = time.monotonic() + window + 30
    texts, rcs = [], []
    for proc in procs:
        try:
            _out, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _stop(procs)
            return _perf_unavailable(f"perf did not finish within {window + 30:g} s", result["commands"])
        texts.append(err.decode("utf-8", "replace") if isinstance(err, bytes) else (err or ""))
        rcs.append(proc.returncode)
    text = "".join(texts)
    events = parse_perf_csv(text)
    # the first failure's exit status stands for all: 0 only when every perf succeeded
    result = dict(result, rc=next((rc for rc in rcs if rc), 0), events=events)
    if all(e["status"] == "missing" for e in events.values()):
        # perf's errors start with a bare "Error:" line: the next one says what went wrong
        noise = [line.strip() for line in text.splitlines() if line.strip() not in ("", "Error:")]
        result["available"] = False
        result["reason"] = f"perf exited {result['rc']} without counters: " + (
            noise[0][:200] if noise else "no output")
    elif all(e["value"] is None for e in events.values()):
        result["available"] = False
        result["reason"] = "no counter could be read: " + ", ".join(
            f"{name} {e['status']}" for name, e in events.items())
    return result


# ----------------------------------------------------------------------------
# The sample


def _cpu_section(before: dict, after: dict, node_of: dict[int, int | None]) -> tuple[list, dict]:
    rows, per_node = [], {}
    for cpu in sorted(set(before) & set(after)):
        busy, total = cpu_busy(before[cpu], after[cpu])
        node = node_of.get(cpu)
        rows.append({"cpu": cpu, "node": node, "busy": round(busy / total, 4) if total else 0.0,
                     "busy_seconds": round(busy, 3)})
        acc = per_node.setdefault(node, [0.0, 0.0])
        acc[0] += busy
        acc[1] += total
    return rows, per_node


def _process_section(first: dict, second: dict, node_of: dict, ticks: int) -> dict:
    cpu_ticks = 0
    by_node: dict[str, float] = {}
    threads_by_node: dict[str, int] = {}
    busy_by_node: dict[str, int] = {}
    last_cpus: dict[str, int] = {}
    by_cpu: dict[str, float] = {}
    threads = []
    processes = []
    for pid, proc in sorted(second["procs"].items()):
        old = first["procs"].get(pid)
        delta = proc["stat"]["ticks"] - (old["stat"]["ticks"] if old else 0)
        cpu_ticks += max(0, delta)
        processes.append({"pid": pid, "comm": proc["stat"]["comm"], "cpu_seconds": round(max(0, delta) / ticks, 3),
                          "threads": len(proc["tasks"])})
        for tid, task in proc["tasks"].items():
            before = old["tasks"].get(tid) if old else None
            spent = max(0, task["ticks"] - (before["ticks"] if before else 0)) / ticks
            cpu = task["processor"]
            node = node_of.get(cpu)
            key = str(node) if node is not None else "unknown"
            threads_by_node[key] = threads_by_node.get(key, 0) + 1
            last_cpus[str(cpu)] = last_cpus.get(str(cpu), 0) + 1
            if spent > 0:
                busy_by_node[key] = busy_by_node.get(key, 0) + 1
                by_node[key] = by_node.get(key, 0.0) + spent
                by_cpu[str(cpu)] = by_cpu.get(str(cpu), 0.0) + spent
            threads.append({"pid": pid, "tid": tid, "comm": task["comm"], "cpu": cpu, "node": node,
                            "cpu_seconds": round(spent, 3)})
    threads.sort(key=lambda t: (-t["cpu_seconds"], t["tid"]))

    def ordered(mapping):
        return dict(sorted(mapping.items(), key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0)))

    return {
        "cpu_seconds": round(cpu_ticks / ticks, 3),
        "threads": len(threads),
        "busy_threads": sum(1 for t in threads if t["cpu_seconds"] > 0),
        "cpu_seconds_by_node": {k: round(v, 3) for k, v in ordered(by_node).items()},
        "cpu_seconds_by_cpu": {k: round(v, 3) for k, v in ordered(by_cpu).items()},
        "threads_by_node": ordered(threads_by_node),
        "busy_threads_by_node": ordered(busy_by_node),
        "last_cpus": ordered(last_cpus),
        "top_threads": threads[:TOP_THREADS],
        "processes": processes,
    }


def _placement(reader: _Reader, pids: list[int], processes: list[dict], main: int) -> dict:
    total: dict[str, int] = {}
    out = {"cpus_allowed": None, "cpus_allowed_list": None, "mems_allowed_list": None,
           "task_policy": None, "memory_policies": []}
    policies = set()
    by_pid = {p["pid"]: p for p in processes}
    for pid in pids:
        try:
            placement = read_placement(pid, reader.root)
        except OSError as exc:
            where = reader.rel(exc.filename) if exc.filename else f"proc/{pid}/numa_maps"
            reader.warn(where, f"cannot read: {exc.strerror or exc}")
            continue
        except ValueError as exc:
            reader.warn(f"proc/{pid}/status", f"cannot parse: {exc}")
            continue
        for node, size in placement["bytes_per_node"].items():
            total[node] = total.get(node, 0) + size
        policies.update(placement["memory_policies"])
        if pid in by_pid:
            by_pid[pid].update({k: placement[k] for k in (
                "cpus_allowed_list", "mems_allowed_list", "task_policy", "bytes_per_node")})
        if pid == main:
            out.update({k: placement[k] for k in (
                "cpus_allowed", "cpus_allowed_list", "mems_allowed_list", "task_policy")})
    out["memory_policies"] = sorted(policies)
    out["bytes_per_node"] = dict(sorted(total.items(), key=lambda kv: int(kv[0])))
    return out


def _frequency(first: dict, second: dict, reader: _Reader, cpus: list[int]) -> dict:
    if not first["freq"] and not second["freq"]:
        return {"available": False, "cpus": {},
                "reason": "sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq: absent (no cpufreq driver "
                          "exposed; usual in virtual machines)"}
    rows = {}
    for cpu in cpus:
        readings = [s["freq"][cpu] for s in (first, second) if cpu in s["freq"]]
        if not readings:
            continue
        base = f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        rows[str(cpu)] = {
            "cur_khz": int(sum(readings) / len(readings)),
            "scaling_max_khz": reader.number(f"{base}/scaling_max_freq"),
            "cpuinfo_max_khz": reader.number(f"{base}/cpuinfo_max_freq"),
            "base_khz": reader.number(f"{base}/base_frequency"),
        }
    return {"available": True, "reason": None, "cpus": rows}


def _thermal(first: dict, second: dict) -> dict:
    if not second["throttle"]:
        return {"available": False, "counters": {},
                "reason": "sys/devices/system/cpu/cpu*/thermal_throttle/*_throttle_count: absent (Intel "
                          "thermal-throttle counters; not exposed on this CPU or virtual machine)"}
    counters: dict[str, dict] = {}
    for cpu, now in sorted(second["throttle"].items()):
        then = first["throttle"].get(cpu, {})
        for name, value in now.items():
            entry = counters.setdefault(name, {"delta_total": 0, "cpus_rising": [], "max_count": 0})
            delta = max(0, value - then.get(name, value))
            entry["delta_total"] += delta
            entry["max_count"] = max(entry["max_count"], value)
            if delta:
                entry["cpus_rising"].append(cpu)
    return {"available": True, "reason": None, "counters": dict(sorted(counters.items()))}


def _numastat(first: dict, second: dict, nodes: list[int]) -> dict:
    if not second["numastat"]:
        return {"available": False, "nodes": {}, "total": {},
                "reason": "sys/devices/system/node/node*/numastat: unreadable or absent"}
    per_node = {}
    total = {name: 0 for name in NUMASTAT_FIELDS}
    for node in nodes:
        if node not in first["numastat"] or node not in second["numastat"]:
            continue
        delta = {}
        for name in NUMASTAT_FIELDS:
            if name in second["numastat"][node]:
                delta[name] = max(0, second["numastat"][node][name] - first["numastat"][node].get(name, 0))
                total[name] += delta[name]
        per_node[str(node)] = delta
    return {"available": True, "reason": None, "nodes": per_node, "total": total}


def _tree_ticks(reader: _Reader, pid: int, children: bool) -> int:
    """CPU ticks the process (and its descendants) have used so far."""
    total = 0
    for member in _tree(reader, pid) if children else [pid]:
        stat = reader.parsed(f"proc/{member}/stat", parse_pid_stat, optional=True)
        total += stat["ticks"] if stat else 0
    return total


def wait_for_load(reader: _Reader, pid: int, children: bool, budget: float, cores: float, ticks: int,
                  sleep=time.sleep, clock=time.monotonic, step: float = 0.5) -> dict:
    """Wait up to ``budget`` s until the process uses ``cores`` CPUs or more over ``step`` s.

    A load started just before the sample (an async benchmark, a first request's
    prefill) can begin seconds late on a busy host; a window sampled before it
    begins measures an idle server.  Returns at the first busy step.
    """
    start = clock()
    before = _tree_ticks(reader, pid, children)
    while clock() - start < budget:
        sleep(step)
        now = _tree_ticks(reader, pid, children)
        if (now - before) / ticks >= cores * step:
            return {"seen": True, "waited_seconds": round(clock() - start, 3)}
        before = now
    return {"seen": False, "waited_seconds": round(clock() - start, 3)}


def sample(pid: int, root: str = "/", window: float = 10.0, perf: str = "auto", children: bool = True,
           service: str | None = None, wait_busy: float = 0.0, busy_cores: float = 0.5, sleep=time.sleep,
           clock=time.monotonic, which=shutil.which, popen=subprocess.Popen, clock_ticks: int | None = None) -> dict:
    """Measure ``pid`` (and its descendants) and the host over ``window`` seconds.

    With ``wait_busy`` > 0 the window starts once the process uses ``busy_cores``
    (or after ``wait_busy`` s without it: the sample then shows an idle server).
    Raises only ``ProcessLookupError`` when ``proc/<pid>/stat`` cannot be read
    at the start (no such process): everything else becomes a warning.
    """
    reader = _Reader(root)
    ticks = clock_ticks or os.sysconf("SC_CLK_TCK")
    if reader.parsed(f"proc/{pid}/stat", parse_pid_stat, optional=True) is None:
        raise ProcessLookupError(f"proc/{pid}/stat: no such process (or unreadable)")
    load = None
    if wait_busy > 0:
        load = wait_for_load(reader, pid, children, wait_busy, busy_cores, ticks, sleep=sleep, clock=clock)
        if not load["seen"]:
            reader.warn(f"proc/{pid}/stat", f"no load of {busy_cores:g} cores or more within {wait_busy:g} s: "
                        "the window samples an idle server")
    pids = _tree(reader, pid) if children else [pid]
    start_times = reader.parsed("proc/stat", lambda text: parse_cpu_times(text, ticks)) or {}
    # the online CPUs; without a readable /proc/stat, the cpuN directories
    cpus = sorted(start_times) or _numbered(reader, "sys/devices/system/cpu", _CPU_DIR)
    node_cpus = _node_cpus(reader, cpus)
    node_of = {cpu: node for node, members in node_cpus.items() for cpu in members}
    nodes = sorted(node_cpus)

    perf_procs, perf_result = _start_perf(str(perf).lower(), root, pids, window, which, popen)
    first = _snapshot(reader, pid, pids, nodes, cpus, clock, ticks)
    sleep(max(0.0, first["at"] + window - clock()))
    later = _tree(reader, pid) if children else [pid]
    second = _snapshot(reader, pid, sorted(set(pids) | set(later)), nodes, cpus, clock, ticks)
    if perf_procs is not None:
        perf_result = _finish_perf(perf_procs, perf_result, window)
    if pid not in second["procs"]:
        reader.warn(f"proc/{pid}/stat", "the process exited during the window")
    elapsed = max(second["at"] - first["at"], 1e-9)

    cpu_rows, per_node = _cpu_section(first["times"], second["times"], node_of)
    all_busy = sum(v[0] for v in per_node.values())
    all_total = sum(v[1] for v in per_node.values())
    process = _process_section(first, second, node_of, ticks)
    process["pids"] = sorted(second["procs"])
    process["cpu_cores"] = round(process["cpu_seconds"] / elapsed, 3)
    process.update(_placement(reader, sorted(second["procs"]) or [pid], process["processes"], pid))

    meminfo = reader.parsed("proc/meminfo", sysfs.parse_meminfo)
    total_mem, avail_mem = (meminfo or {}).get("MemTotal"), (meminfo or {}).get("MemAvailable")
    if meminfo is not None and not total_mem:
        reader.warn("proc/meminfo", "no MemTotal")
    elif meminfo is not None and avail_mem is None:
        reader.warn("proc/meminfo", "no MemAvailable (kernel before 3.14)")
    node_rows = []
    for node in nodes:
        rel = f"sys/devices/system/node/node{node}/meminfo"
        mem = reader.parsed(rel, sysfs.parse_meminfo)
        if mem is not None and "MemTotal" not in mem:
            reader.warn(rel, "no MemTotal")
        mem = mem or {}
        busy, total = per_node.get(node, (0.0, 0.0))
        node_rows.append({
            "id": node,
            "cpus": node_cpus[node],
            "cpu_utilization": round(busy / total, 4) if total else None,
            "busy_cpu_seconds": round(busy, 3),
            "memory_total_bytes": mem.get("MemTotal"),
            "memory_free_bytes": mem.get("MemFree"),
            "file_pages_bytes": mem.get("FilePages"),
        })

    return {
        "pid": pid,
        "service": service,
        "root": root,
        "children": children,
        "window_seconds": round(elapsed, 3),
        "load_wait": load,
        "clock_ticks": ticks,
        "cpu_utilization": round(all_busy / all_total, 4) if all_total else None,
        "cpus": cpu_rows,
        "nodes": node_rows,
        "process": process,
        "numastat": _numastat(first, second, nodes),
        "memory": {
            "total_bytes": total_mem,
            "available_bytes": avail_mem,
            "available_ratio": round(avail_mem / total_mem, 4) if total_mem and avail_mem is not None else None,
        },
        "frequency": _frequency(first, second, reader, cpus),
        "thermal": _thermal(first, second),
        "perf": perf_result,
        "sample_warnings": reader.warnings,
    }
