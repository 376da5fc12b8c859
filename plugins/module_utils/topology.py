# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""NUMA topology of a Linux host, read from ``/sys`` and ``/proc`` under a root.

This is the pure core of ``ktfleet.numa.numa_facts``.  It runs on the target
host, so it uses the Python 3 standard library only, reads nothing outside
``root`` (except running ``nvidia-smi`` when ``root`` is ``/``) and never raises
on missing, unreadable or corrupt files: it records a warning naming the file
(relative to ``root``) and carries on.  The result follows ``docs/facts.md``.

The reading rules follow what hwloc's Linux backend does, so that the answers
agree with ``lstopo`` on the same tree:

* usable CPUs are the ``cpuN`` directories that are online (``cpu/online``, or
  each ``cpuN/online`` when that file is missing) and allowed by the cpuset of
  the reading process (cgroup v2 ``cpuset.cpus.effective``, cgroup v1
  ``cpuset.cpus``, legacy ``/dev/cpuset``; found from ``/proc/self/cpuset`` or
  ``/proc/self/cgroup`` and the standard mount points or ``/proc/mounts``);
* NUMA nodes are the ``nodeN`` directories allowed by the cpuset's memory
  nodes; a node whose CPUs overlap an earlier node's (a BIOS bug the kernel
  sometimes passes on) is ignored;
* cores are the thread-sibling groups, packages the ``core_siblings`` groups
  with their ``physical_package_id``.
"""

import contextlib
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile

from ansible_collections.ktfleet.numa.plugins.module_utils import sysfs
from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import (
    MAX_CPU,
    format_cpulist,
    parse_cpulist,
)
from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import cpulist_set as _cpuset
from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import cpumask_set as _maskset
from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import parse_uint as _int

SCHEMA_VERSION = 1

_CPU_FLAGS = (
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512_bf16",
    "avx512_vnni",
    "avx512_vbmi",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
_GPU_VENDORS = {"0x10de": "nvidia", "0x1002": "amd"}
_ARM_IMPLEMENTERS = {
    "0x41": "ARM",
    "0x42": "Broadcom",
    "0x43": "Cavium",
    "0x46": "Fujitsu",
    "0x48": "HiSilicon",
    "0x4e": "NVIDIA",
    "0x50": "APM",
    "0x51": "Qualcomm",
    "0x61": "Apple",
    "0x69": "Intel",
    "0x6d": "Microsoft",
    "0xc0": "Ampere",
}
_DIGITS = re.compile(r"[0-9]+\Z")
_THP_MODE = re.compile(r"\[([^\]]+)\]")


# ----------------------------------------------------------------------------
# Pure parsers (raise ValueError on garbage)


def _signed(text):
    """A decimal int that may be negative (physical_package_id, numa_node)."""
    text = text.strip()
    if not _DIGITS.match(text.lstrip("-")) or text.count("-") > 1:
        raise ValueError(f"not a number: {text[:40]!r}")
    return int(text)


def _ints(text):
    """Whitespace-separated non-negative ints (a node's distance row)."""
    parts = text.split()
    joined = "".join(parts)
    if not (joined.isdigit() and joined.isascii()):
        raise ValueError(f"not a list of numbers: {text[:40]!r}")
    return list(map(int, parts))


def _cmdline_cpus(cmdline, key):
    """CPUs of ``key=`` on a kernel command line (isolcpus flags are skipped)."""
    found = None
    for tok in cmdline.split():
        if tok.startswith(key + "="):
            found = tok[len(key) + 1 :]
    if found is None:
        return []
    parts = found.split(",")
    while parts and parts[0] and not parts[0][0].isdigit():
        parts.pop(0)  # isolcpus=nohz,domain,managed_irq,2-5
    return parse_cpulist(",".join(parts))


# ----------------------------------------------------------------------------
# Reading under a root (sysfs.Root), with warnings instead of exceptions


_KIND_DIGITS = re.compile(r"[0-9]+")
_KIND_DETAIL = re.compile(r"\([^()]*\)")


class _Reader(sysfs.Root):
    def __init__(self, root, record=None):
        sysfs.Root.__init__(self, root)
        self._kinds = {}  # kind -> [first message, count, important]
        self._no_list = set()  # *_list file names this kernel does not have
        self.was_missing = False  # the last read() found no file
        # capture(): every file read and directory listed, relative to root
        self.record = record

    def note(self, rel, listing=None):
        if self.record is not None:
            if listing is None:
                self.record["files"].add(rel)
            else:
                self.record["dirs"][rel] = listing

    @staticmethod
    def _kind(msg):
        """What a warning says without its file and numbers: one warning per
        kind of problem, however many files have it."""
        path, sep, rest = msg.partition(": ")
        if not sep or " " in path or "/" not in path:
            return msg
        return _KIND_DIGITS.sub("#", _KIND_DETAIL.sub("", rest))

    def warn(self, msg, important=True):
        entry = self._kinds.get(self._kind(msg))
        if entry is None:
            self._kinds[self._kind(msg)] = [msg, 1, important, {msg}]
        elif msg not in entry[3]:
            entry[1] += 1
            entry[3].add(msg)

    def _render(self, important_only):
        out = []
        for first, count, important, _seen in self._kinds.values():
            if important_only and not important:
                continue
            out.append(first if count == 1 else f"{first}; and {count - 1} more file(s) with the same problem")
        return out

    @property
    def warnings(self):
        return self._render(False)

    @property
    def important(self):
        return self._render(True)

    def read(self, rel, missing=None, important=True):
        """Text of root/rel, or None.  A missing file warns only when ``missing``
        is given (the message); any other problem always warns, naming the file.
        Trailing NULs and whitespace are padding, not part of the value."""
        text, problem = self.read_text(rel)
        self.was_missing = problem is not None and problem.code == sysfs.MISSING
        if problem is None or problem.code == sysfs.ONLY_NUL:
            self.note(rel)
        if problem is None:
            return text
        if problem.code == sysfs.MISSING:
            if missing:
                self.warn(f"{rel}: {missing}", important)
        elif problem.code in (sysfs.DIRECTORY, sysfs.NOT_A_FILE):
            self.warn(f"{rel}: {problem.detail}, not read", important)
        elif problem.code == sysfs.BAD_PATH:
            shown = rel.replace("\x00", "\\0")
            self.warn(f"{shown}: bad path ({problem.detail})", important)
        elif problem.code == sysfs.ONLY_NUL:
            self.warn(f"{rel}: only NUL bytes, no value (corrupt)", important)
        else:
            self.warn(f"{rel}: cannot read ({problem.detail})", important)
        return None

    def probe(self, rel):
        """Whether root/rel is a readable file (capture() keeps it, so that the
        dump answers the same probe)."""
        try:
            found = os.access(self.path(rel, follow=True), os.R_OK)
        except (OSError, ValueError):
            return False
        if found:
            self.note(rel)
        return found

    def parse(self, rel, parser, missing=None, important=True, what="corrupt"):
        """parser(read(rel)) or None; garbage warns naming the file."""
        text = self.read(rel, missing, important)
        if text is None:
            return None
        try:
            return parser(text)
        except (ValueError, IndexError) as e:
            self.warn(f"{rel}: {what}, ignored ({e})", important)
            return None

    def listdir(self, rel):
        try:
            names = sysfs.Root.listdir(self, rel)
            self.note(rel, names)
            return names
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError) as e:
            self.warn(f"{rel}: cannot list ({getattr(e, 'strerror', None) or e})")
            return None

    def cpus(self, rel_list, rel_mask, missing=None):
        """A CPU set from a *_list file, else from its hex-mask twin.  Once a
        *_list name is found missing (old kernel) only masks are tried."""
        name = rel_list[rel_list.rfind("/") + 1 :]
        if name not in self._no_list:
            text = self.read(rel_list)
            if text is not None:
                try:
                    return _cpuset(text)
                except ValueError as e:
                    self.warn(f"{rel_list}: corrupt, ignored ({e})")
                    return None
            if not self.was_missing:
                return None  # unreadable or refused (warned): no sign of an old kernel
            if rel_mask is not None:
                self._no_list.add(name)
        if rel_mask is None:
            if missing:
                self.warn(f"{rel_list}: {missing}")
            return None
        return self.parse(rel_mask, _maskset, missing=missing)


def _topology_group(rd, topo_dir, old_name, new_name):
    """A CPU's sibling set from topology/<old_name>[_list], else the name newer
    kernels use (core_cpus, package_cpus), else None."""
    group = rd.cpus(topo_dir + old_name + "_list", topo_dir + old_name)
    if group is None:
        group = rd.cpus(topo_dir + new_name + "_list", topo_dir + new_name)
    return group


def _numbered(names, prefix):
    """{N for each "<prefix>N" in names}"""
    out = set()
    n = len(prefix)
    for name in names:
        if name.startswith(prefix):
            tail = name[n:]
            if tail.isdigit() and tail.isascii():
                v = int(tail)
                if v < MAX_CPU:
                    out.add(v)
    return out


# ----------------------------------------------------------------------------
# cgroup cpuset of the reading process (what hwloc's Linux backend does)


def _cgroup_mount(rd):
    """(kind, mount point) of the cpuset hierarchy: kind in v2, v1, cpuset."""
    if rd.probe("sys/fs/cgroup/cpuset.cpus.effective"):
        return "v2", "/sys/fs/cgroup"
    if rd.probe("sys/fs/cgroup/cpuset/cpuset.cpus"):
        return "v1", "/sys/fs/cgroup/cpuset"
    if rd.probe("dev/cpuset/cpus"):
        return "cpuset", "/dev/cpuset"
    mounts = rd.read("proc/mounts")
    if not mounts:
        return None, None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mnt, fstype, opts = fields[1].replace("\\040", " "), fields[2], fields[3].split(",")
        if fstype == "cgroup2":
            ctrls = rd.read(mnt.lstrip("/") + "/cgroup.controllers")
            if ctrls and "cpuset" in ctrls.split():
                return "v2", mnt
        elif fstype == "cpuset":
            return "cpuset", mnt
        elif fstype == "cgroup" and "cpuset" in opts:
            return ("cpuset" if "noprefix" in opts else "v1"), mnt
    return None, None


def _cgroup_name(rd):
    text = rd.read("proc/self/cpuset")
    if text and text.strip():
        return text.strip()
    text = rd.read("proc/self/cgroup")
    if not text:
        return None
    for line in text.splitlines():
        colon, rest = line.partition(":")[1:]
        if not colon:
            continue
        if rest.startswith("cpuset:"):
            return rest[7:].strip()
        if rest.startswith(":"):
            return rest[1:].strip()
    return None


# the cgroup systemd starts a system service in (a unit without Slice=)
SERVICE_CGROUP = "/system.slice"


def _cgroup_cpuset(rd, name=None, walk_up=False):
    """(cpus, mems, where) the cpuset of cgroup ``name`` (default: the reading
    process's) allows; None = unrestricted.  A cgroup v2 without the cpuset
    controller, or with ``walk_up`` one that does not exist (yet: the service's
    own cgroup before it starts), has its nearest ancestor's sets."""
    kind, mnt = _cgroup_mount(rd)
    if kind is None:
        return None, None, None
    if name is None:
        name = _cgroup_name(rd)
    if name is None or ".." in name.split("/") or "\x00" in name or "\x00" in mnt:
        return None, None, None
    top = mnt.strip("/")
    base = (mnt.rstrip("/") + "/" + name.strip("/")).strip("/")
    if kind == "v2":
        files = (("cpuset.cpus.effective",), ("cpuset.mems.effective",))
    elif kind == "v1":
        files = (("cpuset.effective_cpus", "cpuset.cpus"), ("cpuset.effective_mems", "cpuset.mems"))
    else:
        files = (("cpus",), ("mems",))
    result = []
    for names in files:
        value = None
        d = base
        while value is None:
            for fname in names:
                rel = d + "/" + fname
                text = rd.read(rel)
                if text is None:
                    continue
                try:
                    value = _cpuset(text)
                except ValueError as e:
                    rd.warn(f"{rel}: corrupt cgroup cpuset, ignored ({e})")
                    value = False
                break
            if value is not None or not (kind == "v2" or walk_up) or d == top or "/" not in d:
                break
            d = d.rsplit("/", 1)[0]
        result.append(value or None)
    return result[0], result[1], base


def _cpuset_views(rd, online):
    """{"service": view, "gatherer": view}: what the server's unit (in
    system.slice, or the root cgroup when that has no cpuset) and what this
    reading process may use.  A view is {"cgroup", "cpus": set, "mems": set or
    None (every node)}; a cpuset that allows none of the online CPUs is ignored."""
    views = {}
    for who, name, sources in (
        ("service", SERVICE_CGROUP, ("cgroup",)),
        # the gatherer's affinity (proc/self/status) is its own, not the unit's
        ("gatherer", None, ("cgroup", "status")),
    ):
        cg_cpus, cg_mems, where = _cgroup_cpuset(rd, name, walk_up=name is not None)
        restrictions = [(where, cg_cpus, cg_mems)]
        if "status" in sources:
            st_cpus, st_mems = _status_allowed(rd)
            restrictions.append(("proc/self/status", st_cpus, st_mems))
        allowed = set(online)
        mems = None
        for source, cpus, nodes in restrictions:
            if cpus is not None:
                if allowed & cpus:
                    allowed &= cpus
                else:
                    rd.warn(f"{source}: allows none of the online CPUs {_fmt(online)}, ignored")
            if nodes is not None:
                mems = nodes if mems is None else mems & nodes
        views[who] = {"cgroup": where, "cpus": allowed, "mems": mems}
    return views


def _status_allowed(rd):
    """Cpus_allowed_list / Mems_allowed_list of proc/self/status (live hosts)."""
    text = rd.read("proc/self/status")
    if not text:
        return None, None
    out = []
    for key in ("Cpus_allowed_list:", "Mems_allowed_list:"):
        i = text.find(key)
        if i < 0:
            out.append(None)
            continue
        try:
            out.append(_cpuset(text[i + len(key) :].split("\n", 1)[0]))
        except ValueError as e:
            rd.warn(f"proc/self/status: corrupt {key[:-1]}, ignored ({e})")
            out.append(None)
    return out[0], out[1]


# ----------------------------------------------------------------------------
# /proc/cpuinfo


def _cpuinfo_fields(text):
    """First value of each key in a cpuinfo text."""
    fields = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if not colon:
            continue
        key = key.strip()
        if key and key not in fields:
            fields[key] = value.strip()
    return fields


def _read_cpuinfo(rd, count=False):
    """(fields, processor count or None) from proc/cpuinfo.  On x86 only the
    first block is read unless ``count``: a live kernel computes every CPU's
    block on demand, slowly on big hosts, and the first one has all we need.
    Elsewhere the first block and the two trailing (global) blocks are parsed."""
    try:
        fd = os.open(rd.path("proc/cpuinfo", follow=True), sysfs.OPEN_FLAGS)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise sysfs.NotAFile("not a regular file")
            rd.note("proc/cpuinfo")
            first = os.read(fd, 32768)
            text = first.decode("utf-8", "replace")
            end = text.find("\n\n")
            if not count and end >= 0 and "\nflags" in text[:end]:
                return _cpuinfo_fields(text[:end]), None
            text = sysfs.read_rest(fd, first).decode("utf-8", "replace")
        finally:
            os.close(fd)
    except (FileNotFoundError, NotADirectoryError):
        rd.warn("proc/cpuinfo: missing, CPU model and flags unknown")
        return None, None
    except sysfs.NotAFile as e:
        rd.warn(f"proc/cpuinfo: {e}, not read")
        return None, None
    except OSError as e:
        rd.warn("proc/cpuinfo: cannot read (%s)" % (e.strerror or e))
        return None, None
    n = text.count("\nprocessor") + text.startswith("processor")
    blocks = text.strip().split("\n\n")
    if len(blocks) > 3:
        # the first CPU's block, and the global ones at the end (ARM, POWER)
        blocks = blocks[:1] + blocks[-2:]
    return _cpuinfo_fields("\n".join(blocks)), n


def _arch_from_cpuinfo(f):
    if "vendor_id" in f and "flags" in f:
        return "i386" if "fdiv_bug" in f else "x86_64"
    if f.get("vendor_id", "").startswith("IBM/S390"):
        return "s390x"
    if f.get("arch") == "IA-64" or "Itanium" in f.get("family", ""):
        return "ia64"
    if "CPU architecture" in f:
        arch = f["CPU architecture"].strip().lower()
        if arch in ("8", "aarch64") or "asimd" in f.get("Features", "").split():
            return "aarch64"
        return "arm"
    if "cpu" in f and ("POWER" in f["cpu"] or "altivec" in f["cpu"] or "PPC" in f["cpu"] or "platform" in f):
        return "ppc64"
    if "PA-RISC" in f.get("cpu family", ""):
        return "parisc"
    return None


def _cpu_facts(rd):
    f, _count = _read_cpuinfo(rd)
    arch = os.uname().machine if rd.root == "/" else _arch_from_cpuinfo(f) if f else None
    f = f or {}
    vendor = f.get("vendor_id") or f.get("vendor")
    if not vendor and f.get("CPU implementer"):
        impl = f["CPU implementer"].lower()
        vendor = _ARM_IMPLEMENTERS.get(impl, impl)
    family = f.get("family", "")
    model = f.get("model name") or f.get("Processor") or f.get("cpu") or None
    if not model and family and not family.isdigit():
        model = family  # ia64: "Itanium 2"
    flags = set((f.get("flags") or f.get("Features") or f.get("features") or "").split())
    hypervisor = "hypervisor" in flags
    if not hypervisor:
        hv = rd.read("sys/hypervisor/type")
        hypervisor = bool(hv and hv.strip())
    return {
        "architecture": arch,
        "vendor": vendor or None,
        "model_name": model,
        "hypervisor": hypervisor,
        "flags": {name: name in flags for name in _CPU_FLAGS},
    }


# ----------------------------------------------------------------------------
# GPUs


def _nvidia_smi_memory(rd):
    """{pci address: bytes} from nvidia-smi; {} (and a warning) when impossible."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        rd.warn("nvidia-smi not found: NVIDIA GPU memory unknown", important=False)
        return {}
    try:
        out = subprocess.run(
            [exe, "--query-gpu=pci.bus_id,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as e:
        rd.warn(f"nvidia-smi failed ({e}): NVIDIA GPU memory unknown", important=False)
        return {}
    if out.returncode != 0:
        msg = out.stderr.decode("utf-8", "replace").strip() or out.stdout.decode("utf-8", "replace").strip()
        rd.warn(
            f"nvidia-smi exited {out.returncode} ({msg[:200]}): NVIDIA GPU memory unknown",
            important=False,
        )
        return {}
    result = {}
    for line in out.stdout.decode("utf-8", "replace").splitlines():
        bus, mem = line.partition(",")[::2]
        dom, rest = bus.strip().partition(":")[::2]
        try:
            addr = f"{int(dom, 16):04x}:{rest.lower()}"
            result[addr] = _int(mem) * 1024 * 1024
        except ValueError:
            continue  # "[N/A]" on unified-memory parts
    return result


def _gpus(rd, gpu_memory):
    base = "sys/bus/pci/devices"
    names = rd.listdir(base)
    gpus = []
    for addr in sorted(names or ()):
        d = base + "/" + addr + "/"
        cls = rd.read(d + "class")
        if not cls or not cls.strip().startswith("0x03"):
            continue
        vendor = rd.read(d + "vendor")
        vendor = _GPU_VENDORS.get((vendor or "").strip().lower())
        if vendor is None:
            continue
        dev = rd.read(d + "device")
        numa = rd.parse(d + "numa_node", _signed)
        local = rd.cpus(d + "local_cpulist", d + "local_cpus")
        mem = None
        if vendor == "amd":
            mem = rd.parse(d + "mem_info_vram_total", _int)
        gpus.append(
            {
                "pci_address": addr,
                "vendor": vendor,
                "device_id": (dev or "").strip().lower() or None,
                "numa_node": numa if numa is not None and numa >= 0 else None,
                "local_cpus": sorted(local or ()),
                "memory_bytes": mem,
            }
        )
    if gpu_memory and rd.root == "/" and any(g["vendor"] == "nvidia" for g in gpus):
        mems = _nvidia_smi_memory(rd)
        for g in gpus:
            if g["vendor"] == "nvidia":
                g["memory_bytes"] = mems.get(g["pci_address"])
    return gpus


# ----------------------------------------------------------------------------
# Kernel knobs


def _kernel_facts(rd):
    balancing = rd.parse("proc/sys/kernel/numa_balancing", _int, important=False)
    thp = rd.read("sys/kernel/mm/transparent_hugepage/enabled", important=False)
    mode = None
    if thp is not None:
        m = _THP_MODE.search(thp)
        if m:
            mode = m.group(1)
        else:
            rd.warn(f"sys/kernel/mm/transparent_hugepage/enabled: no [mode] in {thp[:60]!r}", important=False)
    cmdline = rd.read("proc/cmdline", important=False)
    result = {"numa_balancing": balancing, "transparent_hugepage": mode}
    for key, sysfile in (("isolcpus", "isolated"), ("nohz_full", "nohz_full")):
        rel = "sys/devices/system/cpu/" + sysfile
        text = rd.read(rel, important=False)
        value = None
        if text is not None and text.strip(" \t\n\x00") not in ("", "(null)"):
            try:
                value = parse_cpulist(text)
            except ValueError as e:
                rd.warn(f"{rel}: corrupt, ignored ({e})", important=False)
        if value is None and cmdline:
            try:
                value = _cmdline_cpus(cmdline, key)
            except ValueError as e:
                rd.warn(f"proc/cmdline: corrupt {key}=, ignored ({e})", important=False)
        result[key] = value or []
    return result


# ----------------------------------------------------------------------------
# The facts


def _fmt(cpus):
    """Compact cpulist text for messages."""
    return format_cpulist(cpus) or "none"


def _node_memory(rd, rel):
    text = rd.read(rel, missing="missing, node memory unknown")
    if text is None:
        return None, None
    try:
        total, free = sysfs.meminfo_bytes(text, ("MemTotal", "MemFree"))
    except ValueError as e:
        rd.warn(f"{rel}: corrupt, ignored ({e})")
        return None, None
    if total is None:
        rd.warn(f"{rel}: no MemTotal, node memory unknown")
    return total, free


def _hugepages(rd, rel):
    names = rd.listdir(rel)
    out = {}
    for name in sorted(names or ()):
        if not (name.startswith("hugepages-") and name.endswith("kB")):
            continue
        size = name[10:-2]
        if not _DIGITS.match(size):
            continue
        d = rel + "/" + name + "/"
        total = rd.parse(d + "nr_hugepages", _int, important=False)
        free = rd.parse(d + "free_hugepages", _int, important=False)
        out[size] = {"total": total, "free": free}
    return out


def tree_problem(tree, name="root"):
    """Why ``tree`` is no root to read facts from (a message naming ``name``
    and the remedy), or None.  One home for the module and ``ktfleet plan``."""
    if not (os.path.isdir(os.path.join(tree, "sys")) or os.path.isdir(os.path.join(tree, "proc"))):
        return (
            f"{name} has neither sys/ nor proc/: give / on a live host, or the top directory of "
            "an extracted topology dump (the one that contains sys/ and proc/), or its tar archive"
        )
    return None


def _packages(rd, allowed, reps, online):
    """(CPU -> package key, key -> {"pid", "members"}, keys in order, key ->
    package id) from the core_siblings (package_cpus) groups of ``allowed``
    and ``reps``.  Where the kernel's ids and its sibling lists disagree (a
    physical_package_id differing inside one sibling group, groups that
    overlap) the sibling lists win, with a warning."""
    cpu_base = "sys/devices/system/cpu/"
    pkg_of = {}
    packages = {}  # key -> {"pid": int or None, "members": set}
    pkg_missing = []
    liars = []  # CPUs whose physical_package_id is not their sibling group's
    overlaps = set()
    for cpu in allowed + reps:
        t = f"{cpu_base}cpu{cpu}/topology/"
        if cpu in pkg_of:
            known = packages[pkg_of[cpu]]["pid"]
            if known is not None and known >= 0:
                pid = rd.parse(t + "physical_package_id", _signed)
                if pid is not None and pid != known:
                    liars.append(cpu)
            continue
        mask = _topology_group(rd, t, "core_siblings", "package_cpus")
        pid = rd.parse(t + "physical_package_id", _signed)
        if mask is not None:
            members = mask & online
            if cpu not in members:
                rd.warn(f"{t}core_siblings_list: does not contain CPU {cpu} itself, ignored")
                members = {cpu}
            taken = {c for c in members if c in pkg_of}
            if taken:
                overlaps |= taken
                members -= taken
            key = ("cpu", min(members))
        elif pid is not None and pid >= 0:
            key, members = ("id", pid), {cpu}
        else:
            pkg_missing.append(cpu)
            continue
        pkg = packages.setdefault(key, {"pid": pid, "members": set()})
        pkg["members"] |= members
        for c in members:
            pkg_of.setdefault(c, key)
    if pkg_missing and packages:
        rd.warn(f"{cpu_base}cpuN/topology: no package for CPUs {_fmt(pkg_missing)}")
    elif pkg_missing:
        rd.warn(f"{cpu_base}cpuN/topology: no physical_package_id nor core_siblings; packages unknown")
    if liars:
        rd.warn(
            f"{cpu_base}cpuN/topology/physical_package_id of CPUs {_fmt(liars)} disagrees with their core_siblings: "
            "packages follow the sibling lists"
        )
    if overlaps:
        rd.warn(
            f"{cpu_base}cpuN/topology/core_siblings_list: CPUs {_fmt(overlaps)} are in the sibling lists of two "
            "packages: each kept in the first"
        )

    keys = sorted(packages, key=lambda k: (min(packages[k]["members"]), k))
    pids = [packages[k]["pid"] for k in keys]
    if all(p is not None and p >= 0 for p in pids) and len(set(pids)) == len(pids):
        pkg_id = {k: packages[k]["pid"] for k in keys}
    else:
        pkg_id = {k: i for i, k in enumerate(keys)}
        if any(p is None or p < 0 for p in pids):
            why = "is -1 or missing"
        else:
            why = "is shared by CPUs with disjoint core_siblings"
        rd.warn(
            f"{cpu_base}cpuN/topology/physical_package_id {why}; packages numbered 0-{len(keys) - 1} by first CPU",
            important=False,
        )
    return pkg_of, packages, keys, pkg_id


def _sorted_or_none(values):
    return None if values is None else sorted(values)


def _read_nodes(rd, existing):
    """(ids of the node directories, [(id, CPU set of its cpulist or None)]).
    Only the nodes ``node/online`` lists when it is readable (as hwloc: a node
    taken offline may keep its directory); a node whose CPUs overlap an earlier
    node's (a BIOS bug) is dropped."""
    node_base = "sys/devices/system/node/"
    node_ids = sorted(_numbered(rd.listdir("sys/devices/system/node") or (), "node"))
    if node_ids:
        online = rd.parse(node_base + "online", _cpuset)
        if online is not None and online & set(node_ids):
            gone = [n for n in node_ids if n not in online]
            if gone:
                rd.warn(f"{node_base}online: nodes {_fmt(gone)} are not online: left out")
                node_ids = [n for n in node_ids if n in online]
    raw_nodes = []
    seen = set()
    for nid in node_ids:
        d = f"{node_base}node{nid}/"
        ncpus = rd.cpus(d + "cpulist", d + "cpumap", missing="missing, CPUs of node unknown")
        if ncpus is not None:
            ncpus &= existing
            if ncpus & seen:
                rd.warn(
                    f"{d}cpulist: CPUs {_fmt(ncpus & seen)} already belong to an earlier node (BIOS bug); "
                    f"node {nid} ignored"
                )
                continue
            seen |= ncpus
        raw_nodes.append((nid, ncpus))
    return node_ids, raw_nodes


def _allowed_nodes(rd, raw_nodes, view):
    """raw_nodes less those the view's memory nodes exclude (a cpuset that
    allows none of them is ignored, with a warning)."""
    mems = view["mems"]
    if mems is None or not raw_nodes:
        return raw_nodes
    source = view["cgroup"] or "proc/self/status"
    if not {n for n, _c in raw_nodes} & mems:
        rd.warn(f"{source}: allows none of the NUMA nodes, ignored")
        return raw_nodes
    hidden = [n for n, _c in raw_nodes if n not in mems]
    if hidden:
        rd.warn(f"cpuset of {source} does not allow memory nodes {_fmt(hidden)}: left out", important=False)
    return [(n, c) for n, c in raw_nodes if n in mems]


def _compare_views(rd, views, node_ids):
    """Warn when the gathering process may use other CPUs or nodes than the
    service will (a cpuset on the login session, a batch job's cgroup)."""
    service, gatherer = views["service"], views["gatherer"]
    ids = set(node_ids)

    def nodes_of(v):
        return ids if v["mems"] is None else ids & v["mems"]

    if service["cpus"] != gatherer["cpus"] or nodes_of(service) != nodes_of(gatherer):
        rd.warn(
            f"the gathering process's cpuset ({gatherer['cgroup'] or 'proc/self/status'}: CPUs "
            f"{_fmt(gatherer['cpus'])}, nodes {_fmt(nodes_of(gatherer))}) differs from the service's "
            f"({service['cgroup'] or 'no cpuset, the whole machine'}: CPUs {_fmt(service['cpus'])}, nodes "
            f"{_fmt(nodes_of(service))}); see cpuset in the facts"
        )


def _nvidia_numa_nodes(rd):
    """{node id: PCI address} of the NUMA nodes the NVIDIA driver says hold a
    GPU's memory (proc/driver/nvidia/gpus/<pci>/numa_status "Node: N", what
    hwloc's Linux backend reads: POWER9 NVLink, GH200/GB200 NVLink-C2C)."""
    base = "proc/driver/nvidia/gpus"
    out = {}
    for addr in sorted(rd.listdir(base) or ()):
        text = rd.read(f"{base}/{addr}/numa_status")
        if not text:
            continue
        i = text.find("Node:")
        if i < 0:
            continue
        value = text[i + 5 :].split("\n", 1)[0].strip()
        if _DIGITS.match(value) and int(value) < MAX_CPU:
            out[int(value)] = addr.lower()
    return out


# NVIDIA's firmware gives coherent GPU memory (NVLink-C2C, POWER9 NVLink) a
# SLIT distance of 80 or more from every CPU node; CXL and HBM sit closer
GPU_MEMORY_DISTANCE = 80


def _node_records(rd, raw_nodes, node_ids, allowed, gpus, core_count):
    """(nodes, gpu_memory_nodes) of docs/facts.md from the allowed raw nodes.

    A CPU-less node is GPU memory when the NVIDIA driver says so, or, without
    the driver's word, when NVIDIA GPUs are present and its memory lies at
    GPU_MEMORY_DISTANCE or more from every CPU node; it goes to
    gpu_memory_nodes, never to nodes (no weights, pools or interleave there).
    A memory-only node's local_nodes come from access0/initiators when the
    kernel has them (HMAT), else from the nearest distances (as hwloc)."""
    node_base = "sys/devices/system/node/"
    read = {}
    for nid, ncpus in raw_nodes:
        d = f"{node_base}node{nid}/"
        total, free = _node_memory(rd, d + "meminfo")
        dist_rel = d + "distance"
        row = rd.parse(dist_rel, _ints, missing="missing, distances unknown", important=len(node_ids) > 1)
        if row is not None and len(row) != len(node_ids):
            rd.warn(f"{dist_rel}: {len(row)} values for {len(node_ids)} nodes, ignored")
            row = None
        # zip without strict=: hosts may run Python < 3.10; the lengths are checked above
        col = dict(zip(node_ids, row)) if row is not None else {}  # noqa: B905
        read[nid] = (ncpus, total, free, col)

    cpu_nodes = [n for n, (c, *_rest) in read.items() if c]
    by_driver = _nvidia_numa_nodes(rd)
    nvidia = [g for g in gpus if g["vendor"] == "nvidia"]
    gpu_ids = {}
    for nid, (ncpus, total, _free, col) in read.items():
        if ncpus or ncpus is None:
            continue
        if nid in by_driver:
            gpu_ids[nid] = (by_driver[nid], "nvidia-driver")
        elif nvidia and total and cpu_nodes and all(col.get(c, 0) >= GPU_MEMORY_DISTANCE for c in cpu_nodes):
            gpu_ids[nid] = (None, "distances")
    # without the driver's word, the n-th far node is the n-th GPU when counts agree
    guessed = [n for n, (addr, _s) in gpu_ids.items() if addr is None]
    if guessed and len(guessed) == len(nvidia) and not by_driver:
        for nid, gpu in zip(sorted(guessed), nvidia):  # noqa: B905
            gpu_ids[nid] = (gpu["pci_address"], "distances")
    for gpu in gpus:
        gpu["memory_node"] = next((n for n, (a, _s) in gpu_ids.items() if a == gpu["pci_address"]), None)

    kept = [n for n in read if n not in gpu_ids]
    nodes, gpu_nodes = [], []
    for nid, (ncpus, total, free, col) in read.items():
        distances = [col[n] for n in kept] if col else []
        local = _local_nodes(rd, nid, ncpus, col, cpu_nodes)
        if nid in gpu_ids:
            addr, source = gpu_ids[nid]
            gpu_nodes.append(
                {"id": nid, "pci_address": addr, "memory_total_bytes": total, "memory_free_bytes": free,
                 "local_nodes": [n for n in local if n in kept], "source": source}
            )  # fmt: skip
            continue
        cpus = sorted((ncpus or set()) & allowed)
        nodes.append(
            {
                "id": nid,
                "cpus": cpus,
                "cores": core_count(cpus),
                "package_ids": [],
                "memory_total_bytes": total,
                "memory_free_bytes": free,
                "hugepages": _hugepages(rd, f"{node_base}node{nid}/hugepages"),
                "distances": distances,
                "memory_only": ncpus is not None and not ncpus and total != 0,
                "local_nodes": [n for n in local if n in kept],
                "_map": ncpus or set(),
            }
        )
    if gpu_nodes:
        rd.warn(
            f"nodes {_fmt(n['id'] for n in gpu_nodes)} hold GPU memory (gpu_memory_nodes): not places for "
            "weights, pools or interleave",
            important=False,
        )
    return nodes, gpu_nodes


def _local_nodes(rd, nid, ncpus, col, cpu_nodes):
    """The CPU-bearing nodes nearest to node ``nid``'s memory: itself when it
    has CPUs; else the nodes its access0/initiators lists (HMAT); else those at
    the smallest distance, unless every other node is as far (hwloc's rule);
    [] when unknown."""
    if ncpus:
        return [nid]
    rel = f"sys/devices/system/node/node{nid}/access0/initiators"
    names = rd.listdir(rel)
    if names:
        found = sorted(n for n in _numbered(names, "node") if n != nid and n in cpu_nodes)
        if found:
            return found
    others = {n: d for n, d in col.items() if n != nid}
    if not others:
        return []
    nearest = min(others.values())
    if nearest <= col.get(nid, 0) or (len(others) > 1 and all(d == nearest for d in others.values())):
        return []
    return sorted(n for n, d in others.items() if d == nearest and n in cpu_nodes)


def gather(root="/", gpu_memory=True, view="service"):
    """The ``ansible_facts.numa`` dict (docs/facts.md) for the tree at ``root``."""
    return gather_with_report(root, gpu_memory=gpu_memory, view=view)[0]


# A dump archive holds at most a few MB (the 39 reference dumps: 0.6 MB and
# 16k entries at most); anything far beyond is refused before it is written.
ARCHIVE_MAX_BYTES = 256 << 20
ARCHIVE_MAX_MEMBERS = 500000


def _extract_capped(tar, dest):
    """Extract the regular files and directories of ``tar`` into ``dest``,
    member by member, refusing (tarfile.TarError) an archive whose members add
    up to more than ARCHIVE_MAX_BYTES or ARCHIVE_MAX_MEMBERS: a 1 MB archive
    that expands to 1 GB stops at the header of the member that overflows."""
    total = count = 0
    data_filter = getattr(tarfile, "data_filter", None)
    for member in tar:
        count += 1
        total += max(member.size, 0)
        if total > ARCHIVE_MAX_BYTES or count > ARCHIVE_MAX_MEMBERS:
            raise tarfile.TarError(
                f"the archive expands beyond {ARCHIVE_MAX_BYTES >> 20} MiB or {ARCHIVE_MAX_MEMBERS} entries, "
                "far more than a topology dump; extract what you trust yourself and give the directory"
            )
        if not (member.isfile() or member.isdir()):
            continue
        if data_filter is not None:
            tar.extract(member, dest, filter="data")
        elif not (member.name.startswith("/") or ".." in member.name.split("/")):
            tar.extract(member, dest)  # Python < 3.11.4: only regular files and dirs, no absolute or .. paths


@contextlib.contextmanager
def open_root(root):
    """Yield a directory to read: ``root`` itself, or a tar archive of a dump
    (as capture_archive() or hwloc-gather-topology write) extracted to a
    temporary directory, removed afterwards."""
    if not os.path.isfile(root):
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="ktfleet-dump-") as tmp:
        with tarfile.open(root) as tar:
            _extract_capped(tar, tmp)
        top = tmp
        entries = os.listdir(tmp)
        # hwloc's archives hold one top directory named after the machine
        if len(entries) == 1 and not {"sys", "proc"} & set(entries):
            top = os.path.join(tmp, entries[0])
        yield top


def capture_archive(root, archive, gpu_memory=True):
    """capture() into a gzipped tar at ``archive`` (one top directory named
    after the archive); returns the facts read while capturing."""
    name = os.path.basename(archive).split(".")[0] or "dump"
    with tempfile.TemporaryDirectory(prefix="ktfleet-capture-") as tmp:
        facts = capture(root, os.path.join(tmp, name), gpu_memory=gpu_memory)
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(os.path.join(tmp, name), arcname=name)
    return facts


def capture(root, dest, gpu_memory=True):
    """Copy every file gather() reads under ``root`` (and the directory
    entries it lists) into ``dest``, like hwloc-gather-topology: gather(dest)
    then gives the same facts, bar what changes by the second (free memory).
    Returns the facts read while capturing."""
    record = {"files": set(), "dirs": {}}
    facts = gather_with_report(root, gpu_memory=gpu_memory, _record=record)[0]
    src = os.path.abspath(root)
    for rel, names in record["dirs"].items():
        os.makedirs(os.path.join(dest, rel), exist_ok=True)
        for name in names:
            if os.path.isdir(os.path.join(src, rel, name)):
                os.makedirs(os.path.join(dest, rel, name), exist_ok=True)
    for rel in record["files"]:
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            data = sysfs.slurp(os.path.join(src, rel))
        except OSError:
            continue  # vanished since gather read it (a PCI device, a process)
        with open(target, "wb") as fh:
            fh.write(data)
    return facts


_CPU_BASE = "sys/devices/system/cpu/"


# ----------------------------------------------------------------------------
# gather_with_report's sections, in the order it runs them (the order of the
# warnings follows it).  Sets of CPU numbers are set[int]; ``rd`` is the _Reader.


def _read_cpus(rd: "_Reader") -> "tuple[set[int], set[int], list[int]]":
    """CPUs: (existing, online, offline), as hwloc reads them."""
    cpu_base = _CPU_BASE
    names = rd.listdir("sys/devices/system/cpu")
    existing = _numbered(names or (), "cpu")
    if not existing:
        count = _read_cpuinfo(rd, count=True)[1]
        if count:
            existing = set(range(count))
        elif rd.root == "/" and os.cpu_count():
            existing = set(range(os.cpu_count()))
        source = "proc/cpuinfo" if count else "the CPU count"
        rd.warn(f"sys/devices/system/cpu: no cpuN directories; assuming CPUs {_fmt(existing)} from {source}")

    online = rd.parse(cpu_base + "online", _cpuset)
    if online is not None:
        online &= existing
        if not online and existing:
            rd.warn(f"{cpu_base}online: lists none of the CPUs, ignored")
            online = None
    if online is None:
        online = set()
        for cpu in sorted(existing):
            flag = rd.read(f"{cpu_base}cpu{cpu}/online")
            flag = flag.strip() if flag is not None else ""
            if flag != "0":  # missing or empty: online (as hwloc reads it)
                if flag not in ("", "1"):
                    rd.warn(f"{cpu_base}cpu{cpu}/online: corrupt ({flag[:20]!r}), CPU assumed online")
                online.add(cpu)

    present = rd.parse(cpu_base + "present", _cpuset)
    present = (present & existing) if present else set(existing)
    offline = sorted((present | existing) - online)
    return existing, online, offline


def _read_numa_nodes(
    rd: "_Reader", existing: "set[int]", allowed: "set[int]", view: dict, views: dict
) -> "tuple[list[int], list[tuple[int, set[int] | None]], bool, set[int]]":
    """NUMA nodes: (node ids, allowed (id, cpus) pairs, whether sys/.../node exists,
    usable CPUs that no allowed node lists)."""
    node_ids, raw_nodes = _read_nodes(rd, existing)
    has_node_dir = bool(node_ids)
    raw_nodes = _allowed_nodes(rd, raw_nodes, view)
    # online CPUs no (allowed) node lists (their node offline or its memory
    # disallowed, a firmware gap): usable (the scheduler runs threads there,
    # hwloc keeps them) but with no node to put their memory near; reported,
    # never dropped silently
    seen = set().union(*(c for _n, c in raw_nodes if c))
    orphans = allowed - seen if has_node_dir else set()
    if orphans:
        rd.warn(
            f"CPUs {_fmt(orphans)} are in no allowed NUMA node's cpulist: usable, but with no node to bind their memory "
            "to (cpus_without_node); the planner runs no inference threads on them"
        )
    _compare_views(rd, views, [n for n, _c in raw_nodes])
    return node_ids, raw_nodes, has_node_dir, orphans


def _read_cores(rd: "_Reader", allowed: "set[int]") -> "tuple[dict[int, int], dict[int, list[int]]]":
    """Cores, the thread-sibling groups among usable CPUs: (CPU -> its core's
    first CPU, first CPU -> the core's CPUs)."""
    cpu_base = _CPU_BASE
    core_of = {}
    no_topo = []
    for cpu in sorted(allowed):
        if cpu in core_of:
            continue
        t = f"{cpu_base}cpu{cpu}/topology/"
        sib = _topology_group(rd, t, "thread_siblings", "core_cpus")
        if sib is None:
            no_topo.append(cpu)
            core_of[cpu] = cpu
            continue
        if cpu not in sib:
            rd.warn(f"{t}thread_siblings_list: does not contain CPU {cpu} itself, ignored")
            sib = {cpu}
        for c in sib & allowed:
            core_of.setdefault(c, cpu)
    if no_topo:
        if len(no_topo) == len(allowed):
            rd.warn(f"{cpu_base}cpuN/topology/thread_siblings: missing; each CPU counted as its own core")
        else:
            rd.warn(
                f"{cpu_base}cpuN/topology: missing for CPUs {_fmt(no_topo)}; each counted as its own core"
            )
    cores = {}
    for cpu, key in core_of.items():
        cores.setdefault(key, []).append(cpu)
    return core_of, cores


def _read_packages(
    rd: "_Reader", raw_nodes: "list[tuple[int, set[int] | None]]", allowed: "set[int]", online: "set[int]"
) -> tuple:
    """Packages: _packages' (pkg_of, packages, keys, pkg_id), the core_siblings
    groups with their physical_package_id, read for usable CPUs plus one online
    CPU of each allowed node that has none usable (its memory is usable, so its
    package still matters)."""
    reps = []
    for _dummy, ncpus in raw_nodes:
        if ncpus and not ncpus & allowed and ncpus & online:
            reps.append(min(ncpus & online))
    return _packages(rd, sorted(allowed), reps, online)


def _read_memory(rd: "_Reader") -> "tuple[int | None, int | None, int | None]":
    """proc/meminfo: (MemTotal, MemAvailable, MemFree) in bytes, None where unknown."""
    meminfo = rd.read("proc/meminfo", missing="missing, memory totals unknown")
    mem_total = mem_avail = mem_free = None
    if meminfo is not None:
        try:
            mem_total, mem_avail, mem_free = sysfs.meminfo_bytes(meminfo, ("MemTotal", "MemAvailable", "MemFree"))
        except ValueError as e:
            rd.warn(f"proc/meminfo: corrupt, ignored ({e})")
        else:
            if mem_total is None:
                rd.warn("proc/meminfo: no MemTotal, memory total unknown")
            elif mem_avail is None:
                rd.warn(
                    "proc/meminfo: no MemAvailable (kernel < 3.14), memory available unknown", important=False
                )
    return mem_total, mem_avail, mem_free


def _single_node(
    rd: "_Reader", allowed: "set[int]", core_count, mem_total: "int | None", mem_free: "int | None"
) -> "list[dict]":
    """Node records of a kernel without NUMA: one node 0 with every CPU and proc/meminfo's memory."""
    rd.warn(
        "sys/devices/system/node: missing (kernel without NUMA); one node 0 assumed "
        "with all CPUs and the memory of proc/meminfo"
    )
    cpus = sorted(allowed)
    return [
        {
            "id": 0,
            "cpus": cpus,
            "cores": core_count(cpus),
            "package_ids": [],
            "memory_total_bytes": mem_total,
            "memory_free_bytes": mem_free,
            "hugepages": _hugepages(rd, "sys/kernel/mm/hugepages"),
            "distances": [],
            "memory_only": False,
            "local_nodes": [0] if cpus else [],
            "_map": set(allowed),
        }
    ]


def _link_packages(
    nodes: "list[dict]", packages_read: tuple, online: "set[int]", allowed: "set[int]", core_count
) -> "list[dict]":
    """Each node's package_ids filled in (its internal _map dropped), and the
    package records with their nodes, sorted by id."""
    pkg_of, packages, keys, pkg_id = packages_read
    pkg_nodes = {k: [] for k in keys}
    for node in nodes:
        nmap = node.pop("_map")
        cpus = node["cpus"] or sorted(c for c in nmap & online if c in pkg_of)[:1]
        nkeys = {pkg_of[c] for c in cpus if c in pkg_of}
        node["package_ids"] = sorted(pkg_id[k] for k in nkeys)
        for k in nkeys:
            pkg_nodes[k].append(node["id"])

    pkg_list = []
    for k in keys:
        cpus = sorted(packages[k]["members"] & allowed)
        pkg_list.append(
            {"id": pkg_id[k], "nodes": sorted(pkg_nodes[k]), "cores": core_count(cpus), "cpus": cpus}
        )
    pkg_list.sort(key=lambda p: p["id"])
    return pkg_list


def _core_widths(cores: "dict[int, list[int]]") -> "tuple[dict[str, int], list[str]]":
    """How many cores have each number of threads ({"2": 32}), and those numbers sorted."""
    histogram = {}
    for members in cores.values():
        width = str(len(members))
        histogram[width] = histogram.get(width, 0) + 1
    return histogram, sorted(histogram, key=int)


def gather_with_report(root="/", gpu_memory=True, _record=None, view="service"):
    """(facts, important warnings): the latter is the subset of
    ``facts["warnings"]`` that changes what a planner should do.

    ``view`` is whose cpuset the CPUs and nodes are read for: "service" (the
    default: the cgroup the server's unit will run in, what a plan is for) or
    "gatherer" (this process's, as lstopo run here shows it)."""
    if view not in ("service", "gatherer"):
        raise ValueError(f"view must be service or gatherer, not {view!r}")
    planning = view
    rd = _Reader(root, _record)

    existing, online, offline = _read_cpus(rd)
    views = _cpuset_views(rd, online)
    view = views[view]
    allowed = view["cpus"]
    node_ids, raw_nodes, has_node_dir, orphans = _read_numa_nodes(rd, existing, allowed, view, views)
    core_of, cores = _read_cores(rd, allowed)
    packages_read = _read_packages(rd, raw_nodes, allowed, online)

    def core_count(cpus):
        return len({core_of[c] for c in cpus if c in core_of})

    mem_total, mem_avail, mem_free = _read_memory(rd)
    gpus = _gpus(rd, gpu_memory)
    if has_node_dir:
        nodes, gpu_memory_nodes = _node_records(rd, raw_nodes, node_ids, allowed, gpus, core_count)
    else:
        nodes, gpu_memory_nodes = _single_node(rd, allowed, core_count, mem_total, mem_free), []
    pkg_list = _link_packages(nodes, packages_read, online, allowed, core_count)
    histogram, widths = _core_widths(cores)

    facts = {
        "schema_version": SCHEMA_VERSION,
        "root": rd.root,
        "nodes": nodes,
        "packages": pkg_list,
        "nodes_per_package": max((len(p["nodes"]) for p in pkg_list), default=1) or 1,
        "cpus_online": sorted(online),
        "cpus_offline": offline,
        "cpus_allowed": sorted(allowed),
        "cores_total": len(cores),
        # which CPUs share a core: drawings and pinning need the pairs, not just counts
        "core_cpus": sorted(sorted(members) for members in cores.values()),
        "threads_per_core": int(widths[0]) if len(widths) == 1 else None,
        "threads_per_core_histogram": histogram,
        "smt_active": any(int(w) > 1 for w in widths),
        "memory_total_bytes": mem_total,
        "memory_available_bytes": mem_avail,
        "cpu": _cpu_facts(rd),
        "gpus": gpus,
        "gpu_memory_nodes": gpu_memory_nodes,
        "cpus_without_node": sorted(orphans),
        "cpuset": {
            "planning": planning,
            **{
                who: {"cgroup": v["cgroup"], "cpus": sorted(v["cpus"]), "mems": _sorted_or_none(v["mems"])}
                for who, v in views.items()
            },
        },  # fmt: skip
        "kernel": _kernel_facts(rd),
        "warnings": rd.warnings,
    }
    return facts, rd.important
