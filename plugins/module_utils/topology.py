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
import subprocess
import tarfile
import tempfile

SCHEMA_VERSION = 1

# CPU and node numbers above this are treated as corrupt data (Linux's NR_CPUS
# tops out at 8192 on x86 and 16384 elsewhere today).
MAX_CPU = 1 << 16
_READ_LIMIT = 1 << 20
_CHUNK = 65536

_CPU_FLAGS = (
    "avx2",
    "avx512f",
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


def _int(text):
    """A non-negative decimal int, strictly ASCII digits."""
    text = text.strip()
    if not _DIGITS.match(text):
        raise ValueError(f"not a number: {text[:40]!r}")
    return int(text)


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


def _cpuset(text):
    """Parse a kernel cpulist ("0-3,8,10-11", "0-15:2/4") into a set of ints."""
    text = text.strip()
    out = set()
    if not text:
        return out
    for part in text.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        used = group = None
        if dash:
            hi, colon, stride = hi.partition(":")
            if colon:
                u, slash, g = stride.partition("/")
                used, group = _int(u), (_int(g) if slash else _int(u))
                if not used or not group:
                    raise ValueError(f"bad cpulist stride in {part[:40]!r}")
        else:
            hi = lo
        lo, hi = _int(lo), _int(hi)
        if lo > hi or hi >= MAX_CPU:
            raise ValueError(f"bad cpulist range {part[:40]!r}")
        if group:
            out.update(i for i in range(lo, hi + 1) if (i - lo) % group < used)
        else:
            out.update(range(lo, hi + 1))
    return out


def parse_cpulist(text):
    """Kernel cpulist text -> sorted list of CPU numbers; ValueError on garbage.

    >>> parse_cpulist("0-3,8,10-11")
    [0, 1, 2, 3, 8, 10, 11]
    >>> parse_cpulist("")
    []
    """
    return sorted(_cpuset(text))


def _maskset(text):
    """Parse a kernel cpumask ("00000000,0000ffff") into a set of ints."""
    text = text.strip()
    if not text:
        return set()
    digits = text.replace(",", "")  # kernel words are 8 hex digits wide
    # (cheaper than a regex on 1000-digit masks: int() rejects g-z itself)
    if (
        not (digits.isascii() and digits.isalnum())
        or "x" in digits
        or "X" in digits
        or ",," in text
        or (text[0] == "," or text[-1] == ",")
    ):
        raise ValueError(f"not a cpumask: {text[:40]!r}")
    try:
        value = int(digits, 16)
    except ValueError:
        raise ValueError(f"not a cpumask: {text[:40]!r}") from None
    if value.bit_length() > MAX_CPU:
        raise ValueError("cpumask too wide")
    if not value & (value - 1):  # zero or one CPU: the common case for cores and small nodes
        return {value.bit_length() - 1} if value else set()
    bits = bin(value)[:1:-1]  # least significant first
    out = set()
    i = bits.find("1")
    while i >= 0:
        out.add(i)
        i = bits.find("1", i + 1)
    return out


def parse_cpumask(text):
    """Kernel hex cpumask text -> sorted list of CPU numbers; ValueError on garbage.

    >>> parse_cpumask("00000000,00000103")
    [0, 1, 8]
    """
    return sorted(_maskset(text))


def _meminfo_kb(text, key):
    """Value in kB of ``key:`` in a (node) meminfo text, or None when absent."""
    i = text.find(key + ":")
    if i < 0:
        return None
    if i > 0 and text[i - 1] not in " \n\t":
        # "MemTotal" must not match inside e.g. "HugePages_MemTotal"
        i = text.find("\n" + key + ":")
        if i < 0:
            i = text.find(" " + key + ":")
        if i < 0:
            return None
        i += 1
    line = text[i + len(key) + 1 :].split("\n", 1)[0].split()
    if not line:
        raise ValueError(f"no value for {key}")
    return _int(line[0])


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
# Reading under a root


def _slurp(path):
    """Bytes of a file, up to _READ_LIMIT.  os.open/os.read: a sysfs or procfs
    file comes back in one read, without the cost of a buffered file object."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        data = os.read(fd, _CHUNK)
        return _read_rest(fd, data) if len(data) == _CHUNK else data
    finally:
        os.close(fd)


def _read_rest(fd, first):
    """``first`` and the rest of ``fd`` up to EOF or _READ_LIMIT bytes."""
    parts = [first]
    size = len(first)
    while size < _READ_LIMIT:
        more = os.read(fd, _CHUNK)
        if not more:
            break
        parts.append(more)
        size += len(more)
    return b"".join(parts)


class _Reader:
    def __init__(self, root, record=None):
        self.root = os.path.abspath(root or "/")
        self.prefix = self.root if self.root.endswith("/") else self.root + "/"
        self.warnings = []
        self.important = []
        self._no_list = set()  # *_list file names this kernel does not have
        # capture(): every file read and directory listed, relative to root
        self.record = record

    def note(self, rel, listing=None):
        if self.record is not None:
            if listing is None:
                self.record["files"].add(rel)
            else:
                self.record["dirs"][rel] = listing

    def warn(self, msg, important=True):
        if msg not in self.warnings:
            self.warnings.append(msg)
            if important:
                self.important.append(msg)

    def read(self, rel, missing=None, important=True):
        """Text of root/rel, or None.  A missing file warns only when ``missing``
        is given (the message); any other error always warns, naming the file."""
        try:
            data = _slurp(self.prefix + rel)
        except (FileNotFoundError, NotADirectoryError):
            if missing:
                self.warn(f"{rel}: {missing}", important)
            return None
        except OSError as e:
            self.warn(f"{rel}: cannot read ({e.strerror or e})", important)
            return None
        except ValueError as e:  # NUL in a path built from a corrupt file
            shown = rel.replace("\x00", "\\0")
            self.warn(f"{shown}: bad path ({e})", important)
            return None
        self.note(rel)
        return data.decode("utf-8", "replace")

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
            names = os.listdir(self.prefix + rel)
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
    p = rd.prefix
    if os.access(p + "sys/fs/cgroup/cpuset.cpus.effective", os.R_OK):
        return "v2", "/sys/fs/cgroup"
    if os.access(p + "sys/fs/cgroup/cpuset/cpuset.cpus", os.R_OK):
        return "v1", "/sys/fs/cgroup/cpuset"
    if os.access(p + "dev/cpuset/cpus", os.R_OK):
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


def _cgroup_cpuset(rd):
    """(cpus, mems, where) allowed by the process's cpuset; None = unrestricted."""
    kind, mnt = _cgroup_mount(rd)
    if kind is None:
        return None, None, None
    name = _cgroup_name(rd)
    if name is None or ".." in name.split("/") or "\x00" in name or "\x00" in mnt:
        return None, None, None
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
            # cgroup v2: a cgroup without the cpuset controller inherits its
            # nearest ancestor's effective set
            if value is not None or kind != "v2" or d == mnt.strip("/") or "/" not in d:
                break
            d = d.rsplit("/", 1)[0]
        result.append(value or None)
    return result[0], result[1], base


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
        fd = os.open(rd.prefix + "proc/cpuinfo", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        rd.note("proc/cpuinfo")
        try:
            first = os.read(fd, 32768)
            text = first.decode("utf-8", "replace")
            end = text.find("\n\n")
            if not count and end >= 0 and "\nflags" in text[:end]:
                return _cpuinfo_fields(text[:end]), None
            text = _read_rest(fd, first).decode("utf-8", "replace")
        finally:
            os.close(fd)
    except (FileNotFoundError, NotADirectoryError):
        rd.warn("proc/cpuinfo: missing, CPU model and flags unknown")
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
    cpus = sorted(cpus)
    out = []
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out) or "none"


def _node_memory(rd, rel):
    text = rd.read(rel, missing="missing, node memory unknown")
    if text is None:
        return None, None
    try:
        total = _meminfo_kb(text, "MemTotal")
        free = _meminfo_kb(text, "MemFree")
    except ValueError as e:
        rd.warn(f"{rel}: corrupt, ignored ({e})")
        return None, None
    if total is None:
        rd.warn(f"{rel}: no MemTotal, node memory unknown")
    return (total * 1024 if total is not None else None), (free * 1024 if free is not None else None)


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


def gather(root="/", gpu_memory=True):
    """The ``ansible_facts.numa`` dict (docs/facts.md) for the tree at ``root``."""
    return gather_with_report(root, gpu_memory=gpu_memory)[0]


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
            members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:  # Python < 3.11.4: only regular files and dirs, no absolute or .. paths
                safe = [m for m in members if not (m.name.startswith("/") or ".." in m.name.split("/"))]
                tar.extractall(tmp, members=safe)
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
            data = _slurp(os.path.join(src, rel))
        except OSError:
            continue  # vanished since gather read it (a PCI device, a process)
        with open(target, "wb") as fh:
            fh.write(data)
    return facts


def gather_with_report(root="/", gpu_memory=True, _record=None):
    """(facts, important warnings): the latter is the subset of
    ``facts["warnings"]`` that changes what a planner should do."""
    rd = _Reader(root, _record)
    cpu_base = "sys/devices/system/cpu/"

    # -- CPUs: existing, online, allowed ------------------------------------
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

    cg_cpus, cg_mems, cg_where = _cgroup_cpuset(rd)
    st_cpus, st_mems = _status_allowed(rd)
    allowed = set(online)
    for source, restrict in ((cg_where, cg_cpus), ("proc/self/status", st_cpus)):
        if restrict is None:
            continue
        if allowed & restrict:
            allowed &= restrict
        else:
            rd.warn(f"{source}: allows none of the online CPUs {_fmt(online)}, ignored")

    # -- NUMA nodes ----------------------------------------------------------
    node_base = "sys/devices/system/node/"
    node_names = rd.listdir("sys/devices/system/node")
    node_ids = sorted(_numbered(node_names or (), "node"))
    has_node_dir = bool(node_ids)
    raw_nodes = []  # (id, cpus in the node's map or None)
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

    mems_allowed = None
    for source, restrict in ((cg_where, cg_mems), ("proc/self/status", st_mems)):
        if restrict is None or not has_node_dir:
            continue
        ids = {n for n, dummy in raw_nodes}
        if ids & restrict:
            mems_allowed = restrict if mems_allowed is None else mems_allowed & restrict
        else:
            rd.warn(f"{source}: allows none of the NUMA nodes, ignored")
    if mems_allowed is not None:
        hidden = [n for n, dummy in raw_nodes if n not in mems_allowed]
        if hidden:
            rd.warn(
                f"cpuset of {cg_where or 'proc/self/status'} does not allow memory nodes {_fmt(hidden)}: left out",
                important=False,
            )
        raw_nodes = [(n, c) for n, c in raw_nodes if n in mems_allowed]

    orphans = allowed - seen if has_node_dir else set()
    if orphans:
        rd.warn(f"CPUs {_fmt(orphans)} are in no NUMA node's cpulist")

    # -- cores: thread-sibling groups among usable CPUs ----------------------
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

    # -- packages: core_siblings groups with their physical_package_id ------
    # read for usable CPUs, plus one online CPU of each allowed node that has
    # none usable (its memory is usable, so its package still matters)
    pkg_of = {}
    packages = {}  # key -> {"pid": int or None, "members": set}
    reps = []
    for _dummy, ncpus in raw_nodes:
        if ncpus and not ncpus & allowed and ncpus & online:
            reps.append(min(ncpus & online))
    pkg_missing = []
    for cpu in sorted(allowed) + reps:
        if cpu in pkg_of:
            continue
        t = f"{cpu_base}cpu{cpu}/topology/"
        mask = _topology_group(rd, t, "core_siblings", "package_cpus")
        pid = rd.parse(t + "physical_package_id", _signed)
        if mask is not None:
            members = mask & online
            if cpu not in members:
                rd.warn(f"{t}core_siblings_list: does not contain CPU {cpu} itself, ignored")
                members = {cpu}
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

    def core_count(cpus):
        return len({core_of[c] for c in cpus if c in core_of})

    # -- memory --------------------------------------------------------------
    meminfo = rd.read("proc/meminfo", missing="missing, memory totals unknown")
    mem_total = mem_avail = mem_free = None
    if meminfo is not None:
        try:
            mem_total = _meminfo_kb(meminfo, "MemTotal")
            mem_avail = _meminfo_kb(meminfo, "MemAvailable")
            mem_free = _meminfo_kb(meminfo, "MemFree")
        except ValueError as e:
            rd.warn(f"proc/meminfo: corrupt, ignored ({e})")
            mem_total = mem_avail = mem_free = None
        else:
            if mem_total is None:
                rd.warn("proc/meminfo: no MemTotal, memory total unknown")
            elif mem_avail is None:
                rd.warn(
                    "proc/meminfo: no MemAvailable (kernel < 3.14), memory available unknown", important=False
                )
        mem_total = mem_total * 1024 if mem_total is not None else None
        mem_avail = mem_avail * 1024 if mem_avail is not None else None
        mem_free = mem_free * 1024 if mem_free is not None else None

    # -- node records --------------------------------------------------------
    nodes = []
    if has_node_dir:
        kept_ids = [n for n, dummy in raw_nodes]
        for nid, ncpus in raw_nodes:
            d = f"{node_base}node{nid}/"
            total, free = _node_memory(rd, d + "meminfo")
            dist_rel = d + "distance"
            row = rd.parse(dist_rel, _ints, missing="missing, distances unknown", important=len(node_ids) > 1)
            distances = []
            if row is not None:
                if len(row) == len(node_ids):
                    if len(kept_ids) == len(node_ids):
                        distances = row
                    else:
                        col = {node_ids[j]: row[j] for j in range(len(row))}
                        distances = [col[n] for n in kept_ids]
                else:
                    rd.warn(f"{dist_rel}: {len(row)} values for {len(node_ids)} nodes, ignored")
            cpus = sorted((ncpus or set()) & allowed)
            nodes.append(
                {
                    "id": nid,
                    "cpus": cpus,
                    "cores": core_count(cpus),
                    "package_ids": [],
                    "memory_total_bytes": total,
                    "memory_free_bytes": free,
                    "hugepages": _hugepages(rd, d + "hugepages"),
                    "distances": distances,
                    "memory_only": ncpus is not None and not ncpus and total != 0,
                    "_map": ncpus or set(),
                }
            )
    else:
        rd.warn(
            "sys/devices/system/node: missing (kernel without NUMA); one node 0 assumed "
            "with all CPUs and the memory of proc/meminfo"
        )
        cpus = sorted(allowed)
        nodes.append(
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
                "_map": set(allowed),
            }
        )

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

    histogram = {}
    for members in cores.values():
        width = str(len(members))
        histogram[width] = histogram.get(width, 0) + 1
    widths = sorted(histogram, key=int)

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
        "gpus": _gpus(rd, gpu_memory),
        "kernel": _kernel_facts(rd),
        "warnings": rd.warnings,
    }
    return facts, rd.important
