"""The base image: its recipe and hash, the host's Debian mirror, the build (debootstrap, chroot,
vmctl's own initrd, mkfs) into the cache under a lock, and pruning the cache."""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from .common import SHARED_DIR, VmError, chroot_mounts, log, run, safe_rmtree

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
        "standin_sha256": standin_hash(),
    }


STANDIN_DIR = SHARED_DIR / "standin"
GUEST_STANDIN = "usr/local/lib/ktfleet-standin"  # in the image: prepare.yml points each venv at it


def standin_files() -> list[Path]:
    return sorted(p for p in STANDIN_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def standin_hash() -> str:
    """The stand-in's files, so that an edit to the test equipment rebuilds the image."""
    h = hashlib.sha256()
    for p in standin_files():
        h.update(str(p.relative_to(STANDIN_DIR)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


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
        # The stand-in server (test equipment), compiled now: a guest compiles at TCG speed.
        for p in standin_files():
            dest = root / GUEST_STANDIN / p.relative_to(STANDIN_DIR)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest)
        run(["chroot", str(root), "python3", "-m", "compileall", "-q", "/" + GUEST_STANDIN], env=env)
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
