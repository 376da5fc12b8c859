"""Snapshots: a booted, settled guest saved once per image x topology x QEMU command line,
restored instead of booted (a boot costs 33-46 s of host CPU alone and 100-250 s of the clock
beside another scenario's guests). The key, a minimal QMP client, save and restore."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .common import VmError, log, run, safe_rmtree, write_json
from .qemu import _start_qemu, _wait_ssh, qemu_argv, ssh_argv

SNAPSHOT_FILES = ("disk.qcow2", "state", "meta.json")


def snapshots_enabled() -> bool:
    return os.environ.get("KTFLEET_VM_SNAPSHOTS", "1") != "0"


def snapshot_key(lay: dict, *, accel_argv: list[str], image: Path, initrd: Path, cmdline: str) -> str:
    """What the saved guest depends on: QEMU's version and the whole command line with the
    per-VM parts (name, paths, port, hostname, machine id) left out, on this image and initrd."""
    st = {k: f"<{k}>" for k in ("overlay", "console_log", "qmp", "pidfile")}
    argv = qemu_argv("<name>", st, lay, accel_argv=accel_argv, image=image, initrd=initrd,
                     cmdline="<cmdline>", port=0)
    version = run(["qemu-system-x86_64", "--version"], quiet=True, capture_output=True).stdout.splitlines()[0]
    blob = json.dumps({"argv": argv, "qemu": version, "cmdline": cmdline}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def snapshot_dir(image: Path, key: str) -> Path:
    return image / "snapshots" / key


def snapshot_ready(d: Path) -> bool:
    return all((d / f).is_file() for f in SNAPSHOT_FILES)


class Qmp:
    """A minimal QMP client: one command at a time, events skipped."""

    def __init__(self, path: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.settimeout(timeout)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise VmError(f"no QMP socket at {path}") from None
                time.sleep(0.1)
        self.f = self.sock.makefile("rw")
        self.f.readline()  # greeting
        self("qmp_capabilities")

    def __call__(self, command: str, **arguments) -> dict:
        self.f.write(json.dumps({"execute": command, **({"arguments": arguments} if arguments else {})}) + "\n")
        self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise VmError(f"QMP closed during {command}")
            r = json.loads(line)
            if "error" in r:
                raise VmError(f"QMP {command}: {r['error'].get('desc', r['error'])}")
            if "return" in r:
                return r["return"]

    def wait(self, command: str, until, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            r = self(command)
            if until(r):
                return r
            if time.monotonic() > deadline:
                raise VmError(f"QMP: {what} not done after {timeout:.0f} s ({r})")
            time.sleep(0.1)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.f.close()
            self.sock.close()


def _save_snapshot(name: str, st: dict, snap: Path) -> None:
    """Save this freshly booted guest as the snapshot `snap` (once: other savers skip), then let
    it run on. The guest settles first (boot jobs done, disk synced): a guest saved while it
    still finished booting spent 42-44 s of each restore on that."""
    snap.parent.mkdir(parents=True, exist_ok=True)
    with open(snap.parent / f"{snap.name}.lock", "w") as lk:
        try:
            fcntl.flock(lk, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another VM is saving this one
        if snapshot_ready(snap):
            return
        t0 = time.monotonic()
        settle = subprocess.run(ssh_argv(st, "systemctl is-system-running --wait; sync"), capture_output=True,
                                text=True, stdin=subprocess.DEVNULL, timeout=180)
        tmp = snap.with_name(f"{snap.name}.tmp{os.getpid()}")
        safe_rmtree(tmp)
        tmp.mkdir()
        q = Qmp(st["qmp"])
        try:
            q("stop")
            q("migrate", uri=f"exec:cat > {shlex.quote(str(tmp / 'state'))}")
            r = q.wait("query-migrate", lambda r: r.get("status") in ("completed", "failed", "cancelled"),
                       300, "saving the guest")
            if r["status"] != "completed":
                raise VmError(f"{name}: saving the guest: migration {r['status']}: {r.get('error-desc', '')}")
            # stopped and its block devices flushed by the migration: the overlay matches the state
            shutil.copyfile(st["overlay"], tmp / "disk.qcow2")
        finally:
            with contextlib.suppress(VmError, OSError):
                q("cont")
            q.close()
        write_json(tmp / "meta.json", {"saved_from": name, "cmdline": st["cmdline"],
                                       "settled": settle.stdout.strip(), "saved_at": time.time(),
                                       "save_seconds": round(time.monotonic() - t0, 1)})
        safe_rmtree(snap)
        tmp.rename(snap)
        log(f"{name}: saved as snapshot {snap.name} in {time.monotonic() - t0:.1f} s "
            f"(guest {settle.stdout.strip() or '?'})")


def _restore_once(name: str, st: dict, lay: dict, snap: Path, *, accel_argv: list[str], image: Path,
                  initrd: Path, timeout: float) -> str | None:
    """Start QEMU from the snapshot on a fresh overlay over its disk; None, or why not."""
    overlay, console = Path(st["overlay"]), Path(st["console_log"])
    meta = json.loads((snap / "meta.json").read_text())
    overlay.unlink(missing_ok=True)
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(snap / "disk.qcow2"), str(overlay)])
    console.unlink(missing_ok=True)
    t0 = time.monotonic()
    # the guest's RAM holds the saved kernel command line: the same one goes to QEMU
    incoming = ["-incoming", f"exec:cat {shlex.quote(str(snap / 'state'))}"]
    _start_qemu(name, st, lambda port: [*qemu_argv(name, st, lay, accel_argv=accel_argv, image=image,
                                                   initrd=initrd, cmdline=meta["cmdline"], port=port), *incoming])
    try:
        q = Qmp(st["qmp"])
    except VmError as e:
        return f"{name}: restoring snapshot {snap.name}: {e}"
    try:
        q.wait("query-status", lambda r: r.get("status") != "inmigrate", timeout, "loading the snapshot")
        q("cont")  # saved stopped
    except VmError as e:
        return f"{name}: restoring snapshot {snap.name}: {e}"
    finally:
        q.close()
    err = _wait_ssh(name, st, t0, timeout, what="restore")
    if err:
        return err
    # the saved guest's clock stopped at the save, and its hostname is the saver's
    try:
        fix = subprocess.run(ssh_argv(st, f"date -s @{time.time():.3f} >/dev/null && hostname {shlex.quote(name)}"),
                             capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    except subprocess.TimeoutExpired:
        return f"{name}: restored guest did not set its clock and hostname within 120 s"
    if fix.returncode != 0:
        return f"{name}: restored guest refused its clock/hostname: {fix.stderr.strip()}"
    st.update(restored_from=snap.name, cmdline=meta["cmdline"])
    log(f"{name}: restored from snapshot {snap.name} (saved by {meta['saved_from']}), "
        f"qemu pid {st['pid']}, ssh port {st['port']}")
    return None
