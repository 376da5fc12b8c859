#!/usr/bin/env python3
"""vmctl: Debian 12 QEMU guests with emulated NUMA topologies, for Molecule.

Stdlib only (Python 3.11). Must run as root (debootstrap, chroot, mounts).
Molecule's create.yml / destroy.yml call this; all the logic lives here so it
can be tested without Ansible.

Subcommands
-----------
  image  [--cache DIR] [--prune|--print-hash] build the base image once (cached, locked)
  up     --name N --topology T --state-dir D boot one VM, wait for SSH, write D/N.json
  down   --state-dir D [--name N] [--purge]  stop the VMs D says we started (by pidfile)
  list   --state-dir D                       the VMs in D, alive or not, with RSS
  inventory  --state-dir D [--group G]       Ansible inventory YAML for the VMs in D
  ssh-config --state-dir D                   an ssh_config(5) block per VM
  ssh    --state-dir D --name N -- CMD...    run a command in a VM
  check  --state-dir D --name N              compare the guest's NUMA view with its topology
  topology T                                 print the resolved topology and QEMU args

Image
-----
``debootstrap --variant=minbase`` of bookworm from the mirror the host's apt
uses, ``linux-image-cloud-amd64`` installed in a chroot, a baked ed25519 key
for root, systemd-networkd DHCP on the virtio NIC, timers/gettys/unused boot
units masked (the serial getty stays), CPU-feature modules blacklisted, the
host's extra CA certificates (``/usr/local/share/ca-certificates``) trusted
so HTTPS from the guest works wherever it works from the host, ``mkfs.ext4
-d`` into a sparse raw file. The initrd booted is vmctl's own (static busybox +
the virtio block modules, ~2 MiB, no udev); Debian's ``MODULES=list`` one is
kept as ``initrd-debian.img``. Stored in ``<cache>/<hash>/`` (default cache
``~/.cache/ktfleet/images``, env ``KTFLEET_IMAGE_CACHE``) as ``vmlinuz``,
``initrd.img``, ``initrd-debian.img``, ``rootfs.raw``, ``id_ed25519``
(+ ``.pub``) and ``manifest.json`` (recipe, mirror, kernel, package list,
timings). ``<hash>`` is a hash of the recipe (packages, kernel package, guest
config files, masks, init script, extra CAs, RECIPE_VERSION): change any and
a new image is built beside the old one (``image --prune`` removes the old).
``<cache>/<hash>.lock`` (flock) serialises builders: a second one waits, then
uses the first one's image.

VMs
---
Each VM is a qcow2 overlay on the base image, booted with ``-kernel/-initrd``,
TCG by default (``-accel tcg,thread=multi``); ``KTFLEET_ACCEL=kvm`` switches to
KVM (not detected automatically: /dev/kvm may exist and still not boot us).
SSH goes through slirp: ``127.0.0.1:<free port>`` -> guest port 22. The
state dir holds per VM ``N.json`` (state), ``N.qcow2`` (overlay), ``N.pid``,
``N.console.log`` (serial console; kept by ``down`` unless ``--purge``) and
``N.qemu.log`` (QEMU's own stderr).

Topology JSON
-------------
::

    {
      "sockets": 2,             # -smp sockets
      "cores_per_socket": 2,    # -smp cores
      "threads_per_core": 2,    # -smp threads (SMT siblings)
      "nodes": [                # ids 0..n-1, each once
        {"id": 0, "socket": 0, "mem_mib": 384},
        {"id": 1, "socket": 1, "mem_mib": 384},
        {"id": 2, "cpus": false, "mem_mib": 256}     # CPU-less memory node
      ],
      "distances": [[10,21,30],[21,10,30],[30,30,10]] # optional SLIT, rows in id order
    }

* CPU numbering is QEMU's (and so Linux's): cpu = (socket*cores + core)*threads + thread.
* A CPU node has a ``socket``. When a socket has several CPU nodes (Sub-NUMA
  Clustering / NPS), its cores are split in contiguous equal slices in id
  order, or as given by ``"cores": [core ids within the socket]``. All threads
  of a core stay on one node. Every core of every socket must be on a node.
* ``"cpus": false`` makes a memory-only node (CXL-like): memory, no CPUs.
* ``distances`` defaults to 10 on the diagonal, 20 elsewhere; the diagonal
  must be 10.
* ``mem_mib`` >= 128 per node (Linux's x86 memory section); guest RAM is the sum.

``--topology`` takes inline JSON, a path to a JSON file, or a name from
``topologies.json`` beside this file.

Known guest quirk: a socket split over several nodes (snc4) makes Linux print
one "sched: CPU #1's llc-sibling CPU #0 is not on the same node" WARNING with a
backtrace at boot (real SNC CPUs are on a kernel allow-list). It is harmless.

Environment
-----------
  KTFLEET_IMAGE_CACHE    image cache dir (default ~/.cache/ktfleet/images)
  KTFLEET_ACCEL          tcg (default) or kvm
  KTFLEET_TCG_OPTS       -accel tcg,<opts> (default TCG_OPTS below)
  KTFLEET_VM_TIMEOUT     seconds to wait for SSH (default 180)
  KTFLEET_KERNEL_APPEND  extra kernel cmdline (default "loglevel=4": errors reach the console)
  KTFLEET_VM_BOOT_ATTEMPTS  boots tried before giving up (default 3; each waits the timeout)
  KTFLEET_INITRD         tiny (default) or debian
  KTFLEET_GUEST_HOST_CAS 0 to not copy the host's extra CA certificates
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import fcntl
import glob
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOPOLOGIES_FILE = HERE / "topologies.json"

# ----------------------------------------------------------------------------
# Image recipe. Everything that shapes the image is here and goes into its hash.
# ----------------------------------------------------------------------------
RECIPE_VERSION = "1"
SUITE = "bookworm"
ARCH = "amd64"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
INCLUDE_PACKAGES = [
    "systemd", "systemd-sysv", "udev", "dbus", "kmod",
    "python3", "python3-venv", "python3-apt",
    "numactl", "openssh-server", "iproute2", "procps",
    "curl", "ca-certificates",
]
KERNEL_PACKAGE = "linux-image-cloud-amd64"
# linux-perf: diagnose.yml reads perf stat where perf is installed (software counters such
# as cpu-migrations count under TCG; hardware cache counters are <not supported> there).
CHROOT_PACKAGES = [KERNEL_PACKAGE, "initramfs-tools", "zstd", "busybox-static", "linux-perf"]
# Debian's own initrd (kept as initrd-debian.img, KTFLEET_INITRD=debian) gets these:
INITRAMFS_MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "ext4"]
# The initrd vmctl boots by default is its own: static busybox, the modules that
# reach /dev/vda (plus their modules.dep dependencies; ext4 is built into the cloud
# kernel, else it is added too), and this /init. No udev, no compression: it takes
# the initramfs stage from ~4.5 s to well under 1 s under TCG. Network modules load
# later from the real root (udev), where systemd-networkd runs DHCP.
TINY_INITRD_MODULES = ["virtio_pci", "virtio_blk", "ext4"]
TINY_INIT = """#!/bin/busybox sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
for m in $(cat /modules.order); do insmod /lib/modules/$m || echo "ktfleet-init: insmod $m failed"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
if ! mount -t ext4 -o rw,noatime /dev/vda /root; then
    echo "ktfleet-init: cannot mount /dev/vda as root; devices:"; ls /dev; sleep 2; poweroff -f
fi
umount /proc
mount --move /dev /root/dev
exec switch_root /root /sbin/init "$@"
"""
ROOTFS_SIZE = "4G"
# Generators with nothing to do on this guest (each is an exec under TCG).
MASKED_GENERATORS = [
    "systemd-cryptsetup-generator", "systemd-gpt-auto-generator", "systemd-hibernate-resume-generator",
    "systemd-integritysetup-generator", "systemd-veritysetup-generator", "systemd-sysv-generator",
    "systemd-rc-local-generator", "systemd-system-update-generator", "systemd-bless-boot-generator",
]
MASKED_UNITS = [
    "apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service", "apt-daily-upgrade.service",
    "dpkg-db-backup.timer", "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer",
    "getty@tty1.service", "systemd-firstboot.service", "systemd-networkd-wait-online.service",
    "systemd-timesyncd.service",
    # Module loads that cost seconds of emulated CPU at boot and serve no test.
    "modprobe@dm_mod.service", "modprobe@drm.service", "modprobe@efi_pstore.service",
    "modprobe@fuse.service", "modprobe@loop.service",
    # Not used by system services; no pam_systemd here, so no sessions either.
    "systemd-logind.service",
    "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount", "proc-sys-fs-binfmt_misc.mount",
    "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
    # Root is mounted rw,noatime by the initrd already.
    "systemd-remount-fs.service",
    # Static /dev nodes for on-demand module loading (fuse, loop, ...) and configfs:
    # seconds on the boot's critical path under TCG, unused here.
    "kmod-static-nodes.service", "modprobe@configfs.service", "sys-kernel-config.mount",
]
# Modules udev would load from CPU/ACPI modaliases: seconds under TCG, useless here.
BLACKLIST_MODULES = [
    "kvm", "kvm_intel", "kvm_amd", "intel_powerclamp", "aesni_intel", "ghash_clmulni_intel",
    "sha1_ssse3", "sha256_ssse3", "sha512_ssse3", "crc32c_intel", "crc32_pclmul", "crct10dif_pclmul",
    "polyval_clmulni", "serio_raw", "pcspkr",
]
GUEST_FILES = {
    "etc/fstab": "/dev/vda / ext4 rw,noatime,errors=remount-ro 0 0\n",
    "etc/hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
    "etc/resolv.conf": "nameserver 10.0.2.3\n",  # slirp's DNS
    "etc/systemd/network/20-wired.network": (
        "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    ),
    "etc/systemd/journald.conf.d/ktfleet.conf": "[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n",
    "etc/ssh/sshd_config.d/ktfleet.conf": (
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n"
    ),
    "etc/default/locale": "LANG=C.UTF-8\n",
    # Debian's unit runs `sshd -t` first: one more sshd start (~1.5 s under TCG).
    "etc/systemd/system/ssh.service.d/ktfleet.conf": "[Service]\nExecStartPre=\n",
    "etc/initramfs-tools/conf.d/ktfleet.conf": "MODULES=list\nRESUME=none\nCOMPRESS=zstd\nCOMPRESSLEVEL=3\n",
    "etc/modprobe.d/ktfleet-blacklist.conf": "".join(f"blacklist {m}\n" for m in BLACKLIST_MODULES),
    "etc/initramfs-tools/modules": "".join(m + "\n" for m in INITRAMFS_MODULES),
    "etc/dpkg/dpkg.cfg.d/ktfleet-nodoc": (
        "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
        "path-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\npath-include /usr/share/locale/locale.alias\n"
    ),
}
IMAGE_FILES = ("vmlinuz", "initrd.img", "initrd-debian.img", "rootfs.raw", "id_ed25519", "id_ed25519.pub",
               "manifest.json")

SSH_OPTS = [
    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
]


class VmError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"vmctl: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, check: bool = True, quiet: bool = False, **kw) -> subprocess.CompletedProcess:
    if not quiet:
        log("+ " + shlex.join(cmd))
    p = subprocess.run(cmd, text=True, **kw)
    if check and p.returncode != 0:
        raise VmError(f"command failed ({p.returncode}): {shlex.join(cmd)}"
                      + (f"\n{p.stderr.strip()}" if isinstance(p.stderr, str) and p.stderr else ""))
    return p


HOST_CA_DIR = Path("/usr/local/share/ca-certificates")


def host_extra_cas() -> dict[str, str]:
    """Local CA certificates the host trusts on top of Debian's bundle (a TLS-inspecting
    egress proxy, a corporate CA). Guest traffic leaves through the host (slirp), so
    the guest must trust the same ones for pip/curl over HTTPS. Empty on most hosts."""
    if os.environ.get("KTFLEET_GUEST_HOST_CAS", "1") == "0" or not HOST_CA_DIR.is_dir():
        return {}
    return {str(p.relative_to(HOST_CA_DIR)): p.read_text() for p in sorted(HOST_CA_DIR.rglob("*.crt"))}


def recipe() -> dict:
    return {
        "extra_ca_sha256": hashlib.sha256(json.dumps(host_extra_cas(), sort_keys=True).encode()).hexdigest(),
        "recipe_version": RECIPE_VERSION, "suite": SUITE, "arch": ARCH, "variant": "minbase",
        "include": sorted(INCLUDE_PACKAGES), "chroot_packages": sorted(CHROOT_PACKAGES),
        "kernel_package": KERNEL_PACKAGE, "initramfs_modules": INITRAMFS_MODULES,
        "rootfs_size": ROOTFS_SIZE, "masked_units": sorted(MASKED_UNITS), "files": GUEST_FILES,
        "masked_generators": sorted(MASKED_GENERATORS), "blacklist": sorted(BLACKLIST_MODULES),
        "tiny_initrd": {"modules": TINY_INITRD_MODULES, "init": TINY_INIT},
    }


def recipe_hash() -> str:
    return hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:16]


def default_cache() -> Path:
    env = os.environ.get("KTFLEET_IMAGE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ktfleet" / "images"


def host_mirror(root: str = "/") -> str:
    """The Debian mirror the host's apt uses for SUITE (deb822 .sources or one-line .list)."""
    apt = os.path.join(root, "etc/apt")
    files = [os.path.join(apt, "sources.list")] + sorted(glob.glob(os.path.join(apt, "sources.list.d/*.list"))) \
        + sorted(glob.glob(os.path.join(apt, "sources.list.d/*.sources")))
    candidates: list[str] = []
    for f in files:
        try:
            text = Path(f).read_text()
        except OSError:
            continue
        if f.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
                if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                    continue
                if SUITE in fields.get("suites", "").split():
                    candidates += fields.get("uris", "").split()
        else:
            for line in text.splitlines():
                parts = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                    candidates.append(parts[1])
    for uri in candidates:
        if "security" not in uri:
            return uri.rstrip("/")
    return DEFAULT_MIRROR


# ----------------------------------------------------------------------------
# Mount handling: never leave a mount behind, never rm -rf through one.
# ----------------------------------------------------------------------------
def mounts_under(path: Path) -> list[str]:
    root = str(path.resolve())
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == root or mp.startswith(root + "/"):
                out.append(mp)
    return sorted(out, key=len, reverse=True)


def umount_all(path: Path) -> None:
    for _ in range(3):
        mps = mounts_under(path)
        if not mps:
            return
        for mp in mps:
            if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mp], capture_output=True)
    if mounts_under(path):
        raise VmError(f"could not unmount everything under {path}: {mounts_under(path)}")


def safe_rmtree(path: Path) -> None:
    if not path.exists():
        return
    umount_all(path)
    if mounts_under(path):  # paranoia: never recurse into a bind-mounted /dev
        raise VmError(f"refusing to remove {path}: still has mounts")
    shutil.rmtree(path)


@contextlib.contextmanager
def chroot_mounts(root: Path):
    try:
        for src, dst, args in (
            ("proc", "proc", ["-t", "proc"]),
            ("sysfs", "sys", ["-t", "sysfs"]),
            ("/dev", "dev", ["--bind"]),
            ("/dev/pts", "dev/pts", ["--bind"]),
        ):
            (root / dst).mkdir(parents=True, exist_ok=True)
            run(["mount", *args, src, str(root / dst)], quiet=True)
        yield
    finally:
        umount_all(root)


# ----------------------------------------------------------------------------
# Image build
# ----------------------------------------------------------------------------
def image_ready(d: Path) -> bool:
    return all((d / f).exists() for f in IMAGE_FILES)


def build_image(cache: Path | None = None, *, mirror: str | None = None) -> Path:
    cache = (cache or default_cache()).expanduser().resolve()
    h = recipe_hash()
    final = cache / h
    if image_ready(final):
        return final
    if os.geteuid() != 0:
        raise VmError("building the image needs root (debootstrap, chroot, mounts)")
    missing = [t for t in ("debootstrap", "mkfs.ext4", "ssh-keygen", "chroot", "mount") if not shutil.which(t)]
    if missing:
        raise VmError(f"missing tools {missing}: apt-get install debootstrap e2fsprogs openssh-client")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{h}.lock", "w") as lockf:
        t_lock = time.monotonic()
        try:
            fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another build of image {h} is running; waiting for its lock")
            fcntl.flock(lockf, fcntl.LOCK_EX)
            log(f"lock acquired after {time.monotonic() - t_lock:.1f} s")
        if image_ready(final):
            return final
        work = cache / f"{h}.building"
        safe_rmtree(work)  # a crashed earlier build
        work.mkdir()
        try:
            _build_into(work, mirror or host_mirror())
            safe_rmtree(final)  # incomplete leftovers, if any
            os.rename(work / "out", final)
        finally:
            safe_rmtree(work)
    return final


def images_in_use(cache: Path) -> set[str]:
    """Hashes of images some running process (a QEMU) names on its command line."""
    used = set()
    prefix = str(cache) + "/"
    for cl in glob.glob("/proc/[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            for arg in Path(cl).read_bytes().decode(errors="replace").split("\0"):
                for part in arg.split(","):
                    part = part.removeprefix("file=")
                    if part.startswith(prefix):
                        used.add(part[len(prefix):].split("/", 1)[0])
    return used


def prune_images(cache: Path | None = None) -> list[str]:
    """Remove cached images of other recipes, skipping any being built (lock held)
    or used by a running VM (its overlays need the base)."""
    cache = (cache or default_cache()).expanduser().resolve()
    keep, removed = recipe_hash(), []
    in_use = images_in_use(cache)
    for lock in sorted(cache.glob("*.lock")) if cache.is_dir() else []:
        h = lock.name.removesuffix(".lock")
        if h == keep or h in in_use or not re.fullmatch(r"[0-9a-f]{16}", h):
            continue
        with open(lock, "w") as lf:
            try:
                fcntl.flock(lf, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            safe_rmtree(cache / f"{h}.building")
            safe_rmtree(cache / h)
            lock.unlink()
            removed.append(h)
    return removed


def _write_guest_files(root: Path) -> None:
    for rel, content in GUEST_FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_symlink():
            p.unlink()
        p.write_text(content)


def _build_into(work: Path, mirror: str) -> None:
    t0 = time.monotonic()
    root, out = work / "root", work / "out"
    out.mkdir()
    timings: dict[str, float] = {}
    log(f"building image {recipe_hash()} from {mirror}")

    # Files that must be in place before packages unpack (dpkg excludes).
    nodoc = root / "etc/dpkg/dpkg.cfg.d/ktfleet-nodoc"
    nodoc.parent.mkdir(parents=True)
    nodoc.write_text(GUEST_FILES["etc/dpkg/dpkg.cfg.d/ktfleet-nodoc"])
    run(["debootstrap", "--variant=minbase", f"--arch={ARCH}", "--include=" + ",".join(INCLUDE_PACKAGES),
         SUITE, str(root), mirror], stdout=subprocess.DEVNULL)
    timings["debootstrap_s"] = round(time.monotonic() - t0, 1)

    t1 = time.monotonic()
    _write_guest_files(root)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")  # the host's, for apt in the chroot
    (root / "etc/apt/sources.list").write_text(
        f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\n")
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
           "LC_ALL": "C.UTF-8", "HOME": "/root"}
    with chroot_mounts(root):
        run(["chroot", str(root), "apt-get", "-q", "update"], env=env, stdout=subprocess.DEVNULL)
        run(["chroot", str(root), "apt-get", "-q", "-y", "--no-install-recommends", "install", *CHROOT_PACKAGES],
            env=env, stdout=subprocess.DEVNULL)
        run(["chroot", str(root), "systemctl", "enable", "systemd-networkd.service", "ssh.service"],
            env=env, capture_output=True)
        run(["chroot", str(root), "systemctl", "mask", *MASKED_UNITS], env=env, capture_output=True)
        cas = host_extra_cas()
        for rel, pem in cas.items():
            dest = root / "usr/local/share/ca-certificates" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(pem)
        if cas:
            run(["chroot", str(root), "update-ca-certificates"], env=env, stdout=subprocess.DEVNULL)
        run(["chroot", str(root), "apt-get", "clean"], env=env)
    timings["kernel_s"] = round(time.monotonic() - t1, 1)

    t2 = time.monotonic()
    policy.unlink()
    _write_guest_files(root)  # resolv.conf back to slirp's
    for p in ("etc/hostname", "etc/machine-id", "var/lib/dbus/machine-id"):
        (root / p).unlink(missing_ok=True)
    # A fixed, valid id: an empty or "uninitialized" one means "first boot" (presets,
    # firstboot) and costs seconds. Each VM gets its own via systemd.machine_id=.
    (root / "etc/machine-id").write_text(hashlib.sha256(recipe_hash().encode()).hexdigest()[:32] + "\n")
    # Baked key for root.
    key = out / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ktfleet-molecule", "-f", str(key)])
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(key.with_suffix(".pub"), ssh_dir / "authorized_keys")
    (ssh_dir / "authorized_keys").chmod(0o600)
    # Kernel and initrd out of /boot.
    vmlinuz = sorted((root / "boot").glob("vmlinuz-*"))
    initrd = sorted((root / "boot").glob("initrd.img-*"))
    if len(vmlinuz) != 1 or len(initrd) != 1:
        raise VmError(f"expected one kernel and one initrd in {root / 'boot'}, found {vmlinuz} {initrd}")
    shutil.copy(vmlinuz[0], out / "vmlinuz")
    shutil.copy(initrd[0], out / "initrd-debian.img")
    kernel_version = vmlinuz[0].name.removeprefix("vmlinuz-")
    make_tiny_initrd(root, kernel_version, out / "initrd.img")
    gen_dir = root / "etc/systemd/system-generators"
    gen_dir.mkdir(parents=True, exist_ok=True)
    for g in MASKED_GENERATORS:
        (gen_dir / g).unlink(missing_ok=True)
        (gen_dir / g).symlink_to("/dev/null")
    for p in (root / "var/cache/apt/archives").glob("*.deb"):
        p.unlink()
    # Mark /etc and /var up to date with /usr, as systemd-update-done would: otherwise
    # every fresh overlay runs ldconfig, sysusers, hwdb and catalog updates at boot.
    usr_ns = (root / "usr").stat().st_mtime_ns
    for d in ("etc", "var"):
        f = root / d / ".updated"
        f.write_text("# written by ktfleet vmctl, as systemd-update-done does\n"
                     f"TIMESTAMP_NSEC={usr_ns}\n")
        os.utime(f, ns=(usr_ns, usr_ns))
    rootfs = out / "rootfs.raw"
    run(["mkfs.ext4", "-q", "-F", "-L", "ktroot", "-m", "0", "-E", "lazy_itable_init=0,lazy_journal_init=0",
         "-d", str(root), str(rootfs), ROOTFS_SIZE])
    timings["mkfs_s"] = round(time.monotonic() - t2, 1)
    for f in ("vmlinuz", "initrd.img", "initrd-debian.img", "rootfs.raw", "id_ed25519.pub"):
        (out / f).chmod(0o444)
    key.chmod(0o600)
    pkgs = run(["chroot", str(root), "dpkg-query", "-W", "-f", "${Package} ${Version}\n"],
               capture_output=True, quiet=True).stdout.splitlines()
    manifest = {
        "hash": recipe_hash(), "recipe": recipe(), "mirror": mirror, "kernel_version": kernel_version,
        "built_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "build_seconds": round(time.monotonic() - t0, 1), "timings": timings,
        "rootfs_used_mib": round(sum(p.stat().st_blocks for p in [rootfs]) * 512 / 2**20),
        "packages": pkgs,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log(f"image built in {manifest['build_seconds']} s {timings}")


def _cpio_newc(entries: list[tuple[str, int, bytes, int, int]]) -> bytes:
    """A newc cpio archive of (name, mode, data, rdev_major, rdev_minor)."""
    out = bytearray()

    def add(name: str, mode: int, data: bytes, rmaj: int = 0, rmin: int = 0, ino: int = 0) -> None:
        nb = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmaj, rmin, len(nb), 0]
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields) + nb)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for i, (name, mode, data, rmaj, rmin) in enumerate(entries, start=1):
        add(name, mode, data, rmaj, rmin, ino=i)
    add("TRAILER!!!", 0, b"")
    out.extend(b"\0" * (-len(out) % 512))
    return bytes(out)


def make_tiny_initrd(root: Path, kver: str, dest: Path) -> None:
    moddir = root / "lib/modules" / kver
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
        by_name[Path(mod).name.split(".ko")[0].replace("-", "_")] = mod
    builtin = {Path(m).name.split(".ko")[0].replace("-", "_")
               for m in (moddir / "modules.builtin").read_text().split()}
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod in order:
            return
        for d in reversed(deps[mod]):  # modules.dep lists the deepest dependency last
            visit(d)
        order.append(mod)

    for name in TINY_INITRD_MODULES:
        if name in builtin:
            continue
        if name not in by_name:
            raise VmError(f"tiny initrd: module {name} neither built in nor in modules.dep of {kver}")
        visit(by_name[name])
    for mod in order:
        if not mod.endswith(".ko"):
            raise VmError(f"tiny initrd: {mod} is compressed; busybox insmod needs plain .ko")
    busybox = (root / "bin/busybox").read_bytes()
    entries = [("bin", 0o40755, b"", 0, 0), ("dev", 0o40755, b"", 0, 0), ("proc", 0o40755, b"", 0, 0),
               ("sys", 0o40755, b"", 0, 0), ("root", 0o40755, b"", 0, 0), ("lib", 0o40755, b"", 0, 0),
               ("lib/modules", 0o40755, b"", 0, 0), ("dev/console", 0o20600, b"", 5, 1),
               ("bin/busybox", 0o100755, busybox, 0, 0), ("init", 0o100755, TINY_INIT.encode(), 0, 0),
               ("modules.order", 0o100644, "".join(Path(m).name + "\n" for m in order).encode(), 0, 0)]
    entries += [(f"lib/modules/{Path(m).name}", 0o100644, (moddir / m).read_bytes(), 0, 0) for m in order]
    dest.write_bytes(_cpio_newc(entries))
    log(f"tiny initrd: {dest.stat().st_size // 1024} KiB, modules {[Path(m).name for m in order]}")


# ----------------------------------------------------------------------------
# Topology
# ----------------------------------------------------------------------------
def load_topology(spec: str) -> tuple[str | None, dict]:
    """Returns (name or None, topology dict) from inline JSON, a file, or a named shape."""
    s = spec.strip()
    if s.startswith("{"):
        return None, json.loads(s)
    if os.path.isfile(s):
        return Path(s).stem, json.loads(Path(s).read_text())
    shapes = json.loads(TOPOLOGIES_FILE.read_text())
    shapes = shapes.get("topologies", shapes)
    if s not in shapes:
        raise VmError(f"unknown topology {s!r}: not JSON, not a file, not one of {sorted(shapes)}")
    return s, shapes[s]


def layout(topo: dict) -> dict:
    """Validate a topology and derive CPU placement and QEMU arguments.

    Returns {cpus, mem_mib, node_cpus: {id: [cpu]}, cpu_siblings: {cpu: [cpu]},
    cpu_socket: {cpu: socket}, distances, memory_only: [id], args: [qemu args]}.
    """
    def posint(key: str, default: int | None = None) -> int:
        v = topo.get(key, default)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise VmError(f"topology: {key} must be a positive integer, got {v!r}")
        return v

    sockets, cores, threads = posint("sockets"), posint("cores_per_socket"), posint("threads_per_core", 1)
    nodes = topo.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise VmError("topology: nodes must be a non-empty list")
    nodes = sorted(nodes, key=lambda n: n.get("id", -1))
    ids = [n.get("id") for n in nodes]
    if ids != list(range(len(nodes))):
        raise VmError(f"topology: node ids must be 0..{len(nodes) - 1}, each once; got {ids}")
    n_nodes = len(nodes)

    for n in nodes:
        mem = n.get("mem_mib")
        if not isinstance(mem, int) or isinstance(mem, bool) or mem < 128:
            raise VmError(f"topology: node {n['id']}: mem_mib must be an integer >= 128, got {mem!r}")
    memory_only = [n["id"] for n in nodes if n.get("cpus", True) is False]
    cpu_nodes = [n for n in nodes if n.get("cpus", True) is not False]
    if not cpu_nodes:
        raise VmError("topology: at least one node needs CPUs")

    # Cores of each socket -> node.
    core_node: dict[tuple[int, int], int] = {}
    for s in range(sockets):
        on_s = [n for n in cpu_nodes if n.get("socket") == s]
        if not on_s:
            raise VmError(f"topology: socket {s} has no CPU node")
        explicit = [n for n in on_s if "cores" in n]
        if explicit and len(explicit) != len(on_s):
            raise VmError(f"topology: socket {s}: give 'cores' for all of its nodes or none")
        if explicit:
            for n in on_s:
                for c in n["cores"]:
                    if not isinstance(c, int) or not 0 <= c < cores or (s, c) in core_node:
                        raise VmError(f"topology: node {n['id']}: bad or repeated core {c!r} on socket {s}")
                    core_node[(s, c)] = n["id"]
        else:
            if cores % len(on_s):
                raise VmError(f"topology: socket {s}: {cores} cores do not split evenly over {len(on_s)} nodes")
            per = cores // len(on_s)
            for i, n in enumerate(on_s):
                for c in range(i * per, (i + 1) * per):
                    core_node[(s, c)] = n["id"]
        missing = [c for c in range(cores) if (s, c) not in core_node]
        if missing:
            raise VmError(f"topology: socket {s}: cores {missing} are on no node")
    for n in cpu_nodes:
        if not isinstance(n.get("socket"), int) or not 0 <= n["socket"] < sockets:
            raise VmError(f"topology: node {n['id']}: socket must be 0..{sockets - 1}, got {n.get('socket')!r}")
        if "cores" in n and not n["cores"]:
            raise VmError(f"topology: node {n['id']}: empty core list (use \"cpus\": false for a memory node)")

    node_cpus: dict[int, list[int]] = {n["id"]: [] for n in nodes}
    siblings: dict[int, list[int]] = {}
    cpu_socket: dict[int, int] = {}
    for s in range(sockets):
        for c in range(cores):
            first = (s * cores + c) * threads
            sib = list(range(first, first + threads))
            for cpu in sib:
                node_cpus[core_node[(s, c)]].append(cpu)
                siblings[cpu] = sib
                cpu_socket[cpu] = s

    dist = topo.get("distances")
    if dist is None:
        dist = [[10 if i == j else 20 for j in range(n_nodes)] for i in range(n_nodes)]
    if (not isinstance(dist, list) or len(dist) != n_nodes
            or any(not isinstance(r, list) or len(r) != n_nodes for r in dist)):
        raise VmError(f"topology: distances must be a {n_nodes}x{n_nodes} matrix")
    for i in range(n_nodes):
        for j in range(n_nodes):
            v = dist[i][j]
            if not isinstance(v, int) or (i == j and v != 10) or (i != j and not 10 < v <= 255):
                raise VmError(f"topology: distances[{i}][{j}]={v!r}: 10 on the diagonal, 11..255 elsewhere")

    total_cpus = sockets * cores * threads
    total_mem = sum(n["mem_mib"] for n in nodes)
    args = ["-m", f"{total_mem}M",
            "-smp", f"cpus={total_cpus},sockets={sockets},cores={cores},threads={threads}"]
    for n in nodes:
        args += ["-object", f"memory-backend-ram,id=m{n['id']},size={n['mem_mib']}M",
                 "-numa", f"node,nodeid={n['id']},memdev=m{n['id']}"]
    for s in range(sockets):
        for c in range(cores):
            args += ["-numa", f"cpu,node-id={core_node[(s, c)]},socket-id={s},core-id={c}"]
    if n_nodes > 1:
        for i in range(n_nodes):
            for j in range(n_nodes):
                if i != j:
                    args += ["-numa", f"dist,src={i},dst={j},val={dist[i][j]}"]
    return {"cpus": total_cpus, "mem_mib": total_mem, "node_cpus": node_cpus, "cpu_siblings": siblings,
            "cpu_socket": cpu_socket, "distances": dist, "memory_only": memory_only,
            "node_mem_mib": {n["id"]: n["mem_mib"] for n in nodes}, "args": args}


# ----------------------------------------------------------------------------
# VMs
# ----------------------------------------------------------------------------
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise VmError(f"bad VM name {name!r}: letters, digits, '_', '.', '-' (hostname-like)")
    return name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_of(pidfile: Path) -> int | None:
    """The live QEMU process that owns this pidfile, or None. Checks the command line,
    so a recycled pid never counts."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    want = str(pidfile).encode()
    for i, a in enumerate(cmdline[:-1]):
        if a == b"-pidfile" and cmdline[i + 1] == want:
            return pid
    return None


def cpu_seconds(pid: int) -> float | None:
    """Host CPU time (user+system) a process has used so far."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return round((int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"), 1)
    except (OSError, ValueError, IndexError):
        return None


def rss_mib(pid: int) -> dict:
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0].lower() + "_mib"] = round(int(line.split()[1]) / 1024)
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss_mib"] = round(int(line.split()[1]) / 1024)
    return out


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def read_states(state_dir: Path) -> list[dict]:
    out = []
    for p in sorted(state_dir.glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            st = json.loads(p.read_text())
            if st.get("kind") == "ktfleet-vm":
                out.append(st)
    return out


# tb-size caps QEMU's translated-code cache (MiB). The default (1 GiB) fills up
# (huge pages) and nearly doubles a small VM's RSS. Measured on seed2s: 32 thrashes
# (boot 2x slower); 64 boots as fast as 256 but runs Ansible's setup ~20% slower
# than 128; 128 settles at ~450 MiB RSS after an Ansible run.
TCG_OPTS = "thread=multi,tb-size=128"
TCG_CPU = "max,-la57,-svm,-vmx,vendor=GenuineIntel"
KERNEL_APPEND = "loglevel=4"


def accel_args() -> tuple[str, list[str]]:
    accel = os.environ.get("KTFLEET_ACCEL", "tcg").strip().lower()
    if accel == "kvm":
        return accel, ["-accel", "kvm", "-cpu", "host"]
    if accel != "tcg":
        raise VmError(f"KTFLEET_ACCEL={accel!r}: use tcg or kvm")
    # vendor=GenuineIntel: Linux reads SMT siblings from Intel CPUID leaves under TCG.
    tcg = os.environ.get("KTFLEET_TCG_OPTS", TCG_OPTS)
    return accel, ["-accel", f"tcg,{tcg}", "-cpu", os.environ.get("KTFLEET_TCG_CPU", TCG_CPU)]


def ssh_argv(st: dict, *cmd: str, connect_timeout: int = 10) -> list[str]:
    return ["ssh", *SSH_OPTS, "-o", f"ConnectTimeout={connect_timeout}", "-i", st["key"],
            "-p", str(st["port"]), f"{st['user']}@{st['host']}", *cmd]


def banner(port: int, timeout: float = 3.0) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64)
    except OSError:
        return b""


def tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no console output)"



def _boot_once(name: str, st: dict, lay: dict, *, accel_argv: list[str], image: Path, initrd: Path,
               cmdline: str, timeout: float) -> str | None:
    """Start QEMU on a fresh overlay and wait for SSH; return None or why not."""
    overlay, console = Path(st["overlay"]), Path(st["console_log"])
    pidfile, qemu_log, sf = Path(st["pidfile"]), Path(st["qemu_log"]), Path(st["pidfile"]).with_suffix(".json")
    overlay.unlink(missing_ok=True)
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image / "rootfs.raw"), str(overlay)])
    console.unlink(missing_ok=True)
    t0 = time.monotonic()
    for _port_try in range(3):
        port = free_port()
        argv = ["qemu-system-x86_64", "-name", f"ktfleet-{name}", "-machine", "q35", *accel_argv, *lay["args"],
                "-nodefaults", "-display", "none", "-vga", "none", "-no-reboot",
                "-kernel", str(image / "vmlinuz"), "-initrd", str(initrd), "-append", cmdline,
                "-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
                "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
                "-device", "virtio-net-pci,netdev=n0", "-device", "virtio-rng-pci",
                "-serial", f"file:{console}", "-monitor", "none",
                "-pidfile", str(pidfile), "-daemonize"]
        st.update(port=port, qemu_argv=argv, started_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
        write_json(sf, st)  # before launch: `down` can always clean up
        with open(qemu_log, "w") as ql:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=ql, stderr=subprocess.STDOUT)
        if p.returncode == 0:
            break
        err = qemu_log.read_text(errors="replace")
        if "hostfwd" in err or "forwarding rule" in err:
            log(f"{name}: port {port} taken, retrying")
            continue
        raise VmError(f"{name}: qemu failed to start ({p.returncode}):\n{err.strip()}\nargv: {shlex.join(argv)}")
    else:
        raise VmError(f"{name}: could not get a free port for ssh; see {qemu_log}")
    st["pid"] = pid_of(pidfile)
    write_json(sf, st)
    log(f"{name}: qemu pid {st['pid']}, ssh port {port}, {lay['cpus']} CPUs, {lay['mem_mib']} MiB, "
        f"console {console}")
    deadline = t0 + timeout
    st["banner_seconds"] = None
    while True:
        if pid_of(pidfile) is None:
            return f"{name}: QEMU exited during boot (guest panic or QEMU error)"
        if time.monotonic() > deadline:
            return f"{name}: no SSH after {timeout:.0f} s"
        if st["banner_seconds"] is None:
            if banner(port).startswith(b"SSH-2.0"):
                st["banner_seconds"] = round(time.monotonic() - t0, 1)
            else:
                time.sleep(1)
                continue
        r = subprocess.run(ssh_argv(st, "true", connect_timeout=5), capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60)
        if r.returncode == 0:
            return None
        time.sleep(1)

def vm_up(name: str, topology: str, state_dir: Path, cache: Path | None = None, *,
          timeout: float = 180.0, keep_on_failure: bool = False) -> dict:
    check_name(name)
    state_dir = state_dir.expanduser().resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    topo_name, topo = load_topology(topology)
    lay = layout(topo)
    sf = state_dir / f"{name}.json"
    pidfile = state_dir / f"{name}.pid"
    if sf.exists():
        old = json.loads(sf.read_text())
        if pid_of(pidfile) and old.get("status") == "up" and old.get("topology") == topo:
            log(f"{name}: already up on port {old['port']}")
            return old
        vm_down(state_dir, name)

    image = build_image(cache)
    accel, aargs = accel_args()
    initrd_kind = os.environ.get("KTFLEET_INITRD", "tiny")
    initrd = image / {"tiny": "initrd.img", "debian": "initrd-debian.img"}.get(initrd_kind, "?")
    if not initrd.exists():
        raise VmError(f"KTFLEET_INITRD={initrd_kind!r}: use tiny or debian")
    overlay = state_dir / f"{name}.qcow2"
    console = state_dir / f"{name}.console.log"
    qemu_log = state_dir / f"{name}.qemu.log"
    machine_id = secrets.token_hex(16)
    cmdline = (f"console=ttyS0,115200 root=/dev/vda rw rootfstype=ext4 net.ifnames=0 panic=-1 "
               f"mitigations=off systemd.hostname={name} systemd.machine_id={machine_id} "
               f"systemd.show_status=auto {os.environ.get('KTFLEET_KERNEL_APPEND', KERNEL_APPEND)}").strip()

    st: dict = {"kind": "ktfleet-vm", "name": name, "host": "127.0.0.1", "user": "root",
                "key": str(image / "id_ed25519"), "image": str(image), "overlay": str(overlay),
                "pidfile": str(pidfile), "console_log": str(console), "qemu_log": str(qemu_log),
                "topology_name": topo_name, "topology": topo, "accel": accel,
                "cpus": lay["cpus"], "mem_mib": lay["mem_mib"], "status": "booting"}
    t0 = time.monotonic()
    # A TCG guest now and then hangs before its console says anything (seen on
    # the 8-CPU shape, never twice in a row): boot again on a fresh overlay.
    attempts = max(1, int(os.environ.get("KTFLEET_VM_BOOT_ATTEMPTS", "3")))
    for attempt in range(1, attempts + 1):
        err = _boot_once(name, st, lay, accel_argv=aargs, image=image, initrd=initrd, cmdline=cmdline,
                         timeout=timeout)
        if err is None:
            break
        st.setdefault("failed_boots", []).append(err)
        if attempt < attempts or not keep_on_failure:
            _stop(pidfile)
        failed_console = console.with_suffix(f".{attempt}.log")
        if console.exists():
            console.replace(failed_console)
        log(f"{err}; console kept as {failed_console.name}" + ("; booting again" if attempt < attempts else ""))
    else:
        msg = (f"{err} ({attempts} attempts); console log: {failed_console}\n"
               f"--- last lines of {failed_console.name} ---\n{tail(failed_console)}\n"
               f"--- {qemu_log.name} ---\n{tail(qemu_log, 10)}")
        st["status"] = "failed"
        st["error"] = err
        write_json(sf, st)
        raise VmError(msg)
    pid = st["pid"]
    st.update(status="up", boot_seconds=round(time.monotonic() - t0, 1))
    if pid:
        st["rss_after_boot"] = rss_mib(pid)
        st["host_cpu_seconds_to_ssh"] = cpu_seconds(pid)
    write_json(sf, st)
    log(f"{name}: ssh up after {st['boot_seconds']} s (banner at {st['banner_seconds']} s, "
        f"{st.get('host_cpu_seconds_to_ssh')} host CPU s, RSS {st.get('rss_after_boot', {}).get('vmrss_mib')} MiB)")
    return st


def _stop(pidfile: Path, grace: float = 15.0) -> bool:
    pid = pid_of(pidfile)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if pid_of(pidfile) != pid:
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if pid_of(pidfile) != pid:
            break
        time.sleep(0.1)
    return True


def vm_down(state_dir: Path, name: str | None = None, *, purge: bool = False) -> list[str]:
    state_dir = state_dir.expanduser().resolve()
    stopped = []
    for st in read_states(state_dir) if state_dir.is_dir() else []:
        if name and st["name"] != name:
            continue
        n = check_name(st["name"])
        # Paths are rebuilt from the state dir, never taken from the JSON, so a
        # tampered or stale state file cannot make us kill or delete anything else.
        pidfile = state_dir / f"{n}.pid"
        if _stop(pidfile):
            log(f"{n}: stopped")
        stopped.append(n)
        for suffix in (".qcow2", ".pid", ".json"):
            (state_dir / f"{n}{suffix}").unlink(missing_ok=True)
        if purge:
            for suffix in (".console.log", ".qemu.log"):
                (state_dir / f"{n}{suffix}").unlink(missing_ok=True)
    return stopped


# ----------------------------------------------------------------------------
# Output helpers
# ----------------------------------------------------------------------------
def _q(v) -> str:
    return json.dumps(v)  # a JSON string is a valid YAML double-quoted scalar


def inventory_yaml(state_dir: Path, group: str = "all") -> str:
    states = [s for s in read_states(state_dir.expanduser().resolve()) if s.get("status") == "up"]
    lines = []
    if group == "all":
        lines += ["all:", "  hosts:"]
        ind = "    "
    else:
        lines += ["all:", "  children:", f"    {group}:", "      hosts:"]
        ind = "        "
    if not states:
        lines[-1] += " {}"
    for st in states:
        lines += [f"{ind}{st['name']}:",
                  f"{ind}  ansible_host: {_q(st['host'])}",
                  f"{ind}  ansible_port: {st['port']}",
                  f"{ind}  ansible_user: {_q(st['user'])}",
                  f"{ind}  ansible_ssh_private_key_file: {_q(st['key'])}",
                  f"{ind}  ansible_ssh_common_args: "
                  f"{_q('-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null')}",
                  f"{ind}  ansible_python_interpreter: \"/usr/bin/python3\"",
                  f"{ind}  ktfleet_vm_topology_name: {_q(st.get('topology_name'))}",
                  f"{ind}  ktfleet_vm_topology: {json.dumps(st['topology'])}"]
    return "\n".join(lines) + "\n"


def ssh_config(state_dir: Path) -> str:
    out = []
    for st in read_states(state_dir.expanduser().resolve()):
        out.append(f"Host {st['name']}\n  HostName {st['host']}\n  Port {st['port']}\n  User {st['user']}\n"
                   f"  IdentityFile {st['key']}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
                   f"  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n")
    return "\n".join(out)


def get_state(state_dir: Path, name: str) -> dict:
    sf = state_dir.expanduser().resolve() / f"{check_name(name)}.json"
    if not sf.exists():
        raise VmError(f"no VM {name!r} in {state_dir}")
    return json.loads(sf.read_text())


# Runs on the guest (python3 there): the NUMA/CPU view from sysfs, as JSON.
GUEST_PROBE = r"""
import glob, json, os, re
def rd(p):
    try:
        return open(p).read().strip()
    except OSError:
        return None
def cpulist(s):
    out = []
    for part in (s or "").split(","):
        if part:
            a, _, b = part.partition("-")
            out += range(int(a), int(b or a) + 1)
    return out
nodes = {}
for d in sorted(glob.glob("/sys/devices/system/node/node[0-9]*")):
    nid = int(d.rsplit("node", 1)[1])
    mem = re.search(r"MemTotal:\s+(\d+) kB", rd(d + "/meminfo") or "")
    nodes[nid] = {"cpus": cpulist(rd(d + "/cpulist")), "distance": [int(x) for x in (rd(d + "/distance") or "").split()],
                  "mem_kib": int(mem.group(1)) if mem else None}
cpus = {}
for d in glob.glob("/sys/devices/system/cpu/cpu[0-9]*"):
    c = int(d.rsplit("cpu", 1)[1])
    cpus[c] = {"package": int(rd(d + "/topology/physical_package_id") or -1),
               "siblings": cpulist(rd(d + "/topology/thread_siblings_list"))}
print(json.dumps({"nodes": nodes, "cpus": cpus, "online": rd("/sys/devices/system/node/online")}))
"""


def vm_check(state_dir: Path, name: str) -> tuple[bool, list[str], dict]:
    """Compare the guest's sysfs view with its topology. Returns (ok, report lines, probe)."""
    st = get_state(state_dir, name)
    lay = layout(st["topology"])
    r = subprocess.run(ssh_argv(st, "python3", "-"), input=GUEST_PROBE, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise VmError(f"{name}: probe failed: {r.stderr.strip()}")
    probe = json.loads(r.stdout)
    nodes = {int(k): v for k, v in probe["nodes"].items()}
    cpus = {int(k): v for k, v in probe["cpus"].items()}
    problems, report = [], []
    if sorted(nodes) != sorted(lay["node_cpus"]):
        problems.append(f"nodes: want {sorted(lay['node_cpus'])}, guest has {sorted(nodes)}")
    for nid, want in sorted(lay["node_cpus"].items()):
        got = nodes.get(nid)
        if got is None:
            continue
        mem_mib = (got["mem_kib"] or 0) / 1024
        report.append(f"node {nid}: cpus {got['cpus']} mem {mem_mib:.0f} MiB dist {got['distance']}")
        if got["cpus"] != want:
            problems.append(f"node {nid}: want cpus {want}, guest has {got['cpus']}")
        if got["distance"] != lay["distances"][nid]:
            problems.append(f"node {nid}: want distances {lay['distances'][nid]}, guest has {got['distance']}")
        want_mem = lay["node_mem_mib"][nid]
        if not 0.5 * want_mem <= mem_mib <= want_mem:
            problems.append(f"node {nid}: MemTotal {mem_mib:.0f} MiB, want about {want_mem} MiB")
    if sorted(cpus) != list(range(lay["cpus"])):
        problems.append(f"cpus: want 0..{lay['cpus'] - 1}, guest has {sorted(cpus)}")
    sockets_seen: dict[int, set] = {}
    for c, info in sorted(cpus.items()):
        if info["siblings"] != lay["cpu_siblings"].get(c):
            problems.append(f"cpu{c}: want thread siblings {lay['cpu_siblings'].get(c)}, guest has {info['siblings']}")
        sockets_seen.setdefault(lay["cpu_socket"].get(c), set()).add(info["package"])
    if any(len(v) != 1 for v in sockets_seen.values()) or \
            len({next(iter(v)) for v in sockets_seen.values()}) != len(sockets_seen):
        problems.append(f"packages do not match sockets: {sockets_seen}")
    return not problems, report + [f"PROBLEM: {p}" for p in problems], probe


# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vmctl", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("image", help="build (or find) the cached base image; prints its directory")
    p.add_argument("--cache", type=Path, default=None)
    p.add_argument("--mirror", default=None, help="Debian mirror (default: the host's apt source)")
    p.add_argument("--print-hash", action="store_true", help="print the recipe hash only, build nothing")
    p.add_argument("--prune", action="store_true", help="remove cached images of other recipes, build nothing")

    p = sub.add_parser("up", help="boot a VM and wait for SSH; prints its state JSON")
    p.add_argument("--name", required=True)
    p.add_argument("--topology", required=True, help="inline JSON, a JSON file, or a name in topologies.json")
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--cache", type=Path, default=None)
    p.add_argument("--timeout", type=float, default=float(os.environ.get("KTFLEET_VM_TIMEOUT", 180)))
    p.add_argument("--keep-on-failure", action="store_true", help="leave QEMU running if SSH never comes up")

    p = sub.add_parser("down", help="stop VMs started in a state dir (all, or --name)")
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--name")
    p.add_argument("--purge", action="store_true", help="also remove console and QEMU logs")

    p = sub.add_parser("list", help="VMs in a state dir, as JSON")
    p.add_argument("--state-dir", type=Path, required=True)

    p = sub.add_parser("inventory", help="Ansible inventory YAML for the VMs that are up")
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--group", default="all")

    p = sub.add_parser("ssh-config", help="ssh_config blocks for the VMs")
    p.add_argument("--state-dir", type=Path, required=True)

    p = sub.add_parser("ssh", help="run a command in a VM")
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("command", nargs=argparse.REMAINDER)

    p = sub.add_parser("check", help="compare the guest's NUMA view with its topology")
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--name", required=True)

    p = sub.add_parser("topology", help="print a topology's derived layout and QEMU args")
    p.add_argument("topology")

    a = ap.parse_args(argv)
    # SIGTERM (Molecule/Ansible timeouts) unwinds like SystemExit, so `finally`
    # blocks unmount the build chroot and release the lock.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if a.cmd == "image":
            if a.print_hash:
                print(recipe_hash())
                return 0
            if a.prune:
                print(json.dumps({"removed": prune_images(a.cache)}))
                return 0
            t0 = time.monotonic()
            d = build_image(a.cache, mirror=a.mirror)
            log(f"image ready in {time.monotonic() - t0:.1f} s")
            print(d)
        elif a.cmd == "up":
            print(json.dumps(vm_up(a.name, a.topology, a.state_dir, a.cache, timeout=a.timeout,
                                   keep_on_failure=a.keep_on_failure), indent=1))
        elif a.cmd == "down":
            print(json.dumps({"stopped": vm_down(a.state_dir, a.name, purge=a.purge)}))
        elif a.cmd == "list":
            out = []
            for st in read_states(a.state_dir.expanduser().resolve()):
                pid = pid_of(a.state_dir.expanduser().resolve() / f"{st['name']}.pid")
                out.append({k: st.get(k) for k in ("name", "status", "port", "topology_name", "cpus", "mem_mib",
                                                   "boot_seconds", "console_log")}
                           | {"alive": pid is not None, "pid": pid, **(rss_mib(pid) if pid else {}),
                              "host_cpu_seconds": cpu_seconds(pid) if pid else None})
            print(json.dumps(out, indent=1))
        elif a.cmd == "inventory":
            sys.stdout.write(inventory_yaml(a.state_dir, a.group))
        elif a.cmd == "ssh-config":
            sys.stdout.write(ssh_config(a.state_dir))
        elif a.cmd == "ssh":
            cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
            st = get_state(a.state_dir, a.name)
            return subprocess.run(ssh_argv(st, *cmd)).returncode
        elif a.cmd == "check":
            ok, report, _ = vm_check(a.state_dir, a.name)
            print("\n".join(report))
            print("OK" if ok else "MISMATCH")
            return 0 if ok else 1
        elif a.cmd == "topology":
            name, topo = load_topology(a.topology)
            lay = layout(topo)
            print(json.dumps({"name": name, "topology": topo, **lay}, indent=1))
    except VmError as e:
        log(f"error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
