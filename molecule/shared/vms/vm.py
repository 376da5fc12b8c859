"""The VM lifecycle: `up` (restore the shape's snapshot, else boot, retried, then save one),
`down` (only what a state dir started), and `snapshot` (save each shape that has none)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

from .common import VmError, log, safe_rmtree, write_json
from .image import build_image
from .qemu import (
    KERNEL_APPEND,
    _boot_once,
    _stop,
    accel_args,
    check_name,
    cpu_seconds,
    pid_of,
    read_states,
    rss_mib,
    tail,
)
from .snapshot import (
    _restore_once,
    _save_snapshot,
    snapshot_dir,
    snapshot_key,
    snapshot_ready,
    snapshots_enabled,
)
from .topology import layout, load_topology


def boot_params(cache: Path | None = None) -> tuple[Path, str, list[str], Path, str]:
    """What every VM boots with: the image, the accelerator and its args, the initrd, and the kernel
    command line without the VM's own parts (hostname, machine id): a snapshot's key has all of it."""
    image = build_image(cache)
    accel, aargs = accel_args()
    initrd_kind = os.environ.get("KTFLEET_INITRD", "tiny")
    initrd = image / {"tiny": "initrd.img", "debian": "initrd-debian.img"}.get(initrd_kind, "?")
    if not initrd.exists():
        raise VmError(f"KTFLEET_INITRD={initrd_kind!r}: use tiny or debian")
    common_cmdline = (f"console=ttyS0,115200 root=/dev/vda rw rootfstype=ext4 net.ifnames=0 panic=-1 "
                      f"mitigations=off systemd.show_status=auto "
                      f"{os.environ.get('KTFLEET_KERNEL_APPEND', KERNEL_APPEND)}").strip()
    return image, accel, aargs, initrd, common_cmdline


def snapshot_shapes(topologies: list[str], cache: Path | None = None, *, timeout: float = 180.0) -> dict:
    """Save a snapshot of each shape that has none, booting one VM at a time in a scratch state
    dir: a guest booting alone takes ~25-45 s, one booting beside a scenario's busy guests took
    200-860 s in a clean-clone run (and once spent its whole CPU budget without SSH)."""
    image, _accel, aargs, initrd, common_cmdline = boot_params(cache)
    out: dict = {}
    for spec in dict.fromkeys(topologies):
        topo_name, topo = load_topology(spec)
        key = snapshot_key(layout(topo), accel_argv=aargs, image=image, initrd=initrd, cmdline=common_cmdline)
        if not snapshots_enabled():
            out[spec] = {"key": key, "status": "disabled (KTFLEET_VM_SNAPSHOTS=0)"}
            continue
        if snapshot_ready(snapshot_dir(image, key)):
            out[spec] = {"key": key, "status": "cached"}
            continue
        scratch = Path(tempfile.mkdtemp(prefix="vmctl-snapshot-"))
        try:
            st = vm_up(check_name(f"snap-{topo_name or 'shape'}"), spec, scratch, cache, timeout=timeout)
            saved = snapshot_ready(snapshot_dir(image, key))
            out[spec] = {"key": key, "status": "saved" if saved else "booted, not saved",
                         "boot_seconds": st["boot_seconds"]}
        except VmError as e:
            out[spec] = {"key": key, "status": f"failed: {str(e).splitlines()[0]}"}
        finally:
            vm_down(scratch, purge=True)
            safe_rmtree(scratch)
    return out


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

    image, accel, aargs, initrd, common_cmdline = boot_params(cache)
    overlay = state_dir / f"{name}.qcow2"
    console = state_dir / f"{name}.console.log"
    qemu_log = state_dir / f"{name}.qemu.log"
    machine_id = secrets.token_hex(16)
    cmdline = f"{common_cmdline} systemd.hostname={name} systemd.machine_id={machine_id}"

    st: dict = {"kind": "ktfleet-vm", "name": name, "host": "127.0.0.1", "user": "root",
                "key": str(image / "id_ed25519"), "image": str(image), "overlay": str(overlay),
                "pidfile": str(pidfile), "console_log": str(console), "qemu_log": str(qemu_log),
                "qmp": str(state_dir / f"{name}.qmp"), "cmdline": cmdline,
                "topology_name": topo_name, "topology": topo, "accel": accel,
                "cpus": lay["cpus"], "mem_mib": lay["mem_mib"], "status": "booting"}
    t0 = time.monotonic()
    snap = snapshot_dir(image, snapshot_key(lay, accel_argv=aargs, image=image, initrd=initrd,
                                            cmdline=common_cmdline)) if snapshots_enabled() else None
    if snap and snapshot_ready(snap):
        err = _restore_once(name, st, lay, snap, accel_argv=aargs, image=image, initrd=initrd, timeout=timeout)
        if err is None:
            return _up(sf, st, t0)
        # a snapshot that does not come back is not tried again: it is booted and saved anew
        _stop(pidfile)
        st.setdefault("failed_boots", []).append(err)
        log(f"{err}; removing snapshot {snap.name}, booting instead")
        safe_rmtree(snap)
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
    if snap:
        try:
            _save_snapshot(name, st, snap)
        except (VmError, OSError, subprocess.SubprocessError) as e:  # the VM itself is fine
            log(f"{name}: not saved as a snapshot: {e}")
    return _up(sf, st, t0)


def _up(sf: Path, st: dict, t0: float) -> dict:
    pid = st["pid"]
    st.update(status="up", boot_seconds=round(time.monotonic() - t0, 1))
    if pid:
        st["rss_after_boot"] = rss_mib(pid)
        st["host_cpu_seconds_to_ssh"] = cpu_seconds(pid)
    write_json(sf, st)
    log(f"{st['name']}: ssh up after {st['boot_seconds']} s (banner at {st.get('banner_seconds')} s, "
        f"{st.get('host_cpu_seconds_to_ssh')} host CPU s, RSS {st.get('rss_after_boot', {}).get('vmrss_mib')} MiB)")
    return st


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
        for suffix in (".qcow2", ".pid", ".json", ".qmp"):
            (state_dir / f"{n}{suffix}").unlink(missing_ok=True)
        if purge:
            for suffix in (".console.log", ".qemu.log"):
                (state_dir / f"{n}{suffix}").unlink(missing_ok=True)
    return stopped
