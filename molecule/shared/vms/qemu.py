"""One VM's QEMU: its name and state files, the process (pid, host CPU time, RSS), the
accelerator, the command line, starting it, waiting for SSH, stopping it."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

from .common import VmError, log, run, write_json

SSH_OPTS = [
    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
]


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


def read_states(state_dir: Path) -> list[dict]:
    out = []
    for p in sorted(state_dir.glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            st = json.loads(p.read_text())
            if st.get("kind") == "ktfleet-vm":
                out.append(st)
    return out

def get_state(state_dir: Path, name: str) -> dict:
    sf = state_dir.expanduser().resolve() / f"{check_name(name)}.json"
    if not sf.exists():
        raise VmError(f"no VM {name!r} in {state_dir}")
    return json.loads(sf.read_text())


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


WALL_FACTOR = 4  # the clock's cap on a boot, in multiples of its CPU budget


# The TCG boot hang seen in CI: the kernel's watchdog reports one vCPU stuck (in systemd, PID 1)
# every ~28 s and the guest never recovers ("stuck for 351s!" when the budget finally ran out, 584 s
# into the boot). A loaded host can starve a vCPU for seconds, not for a minute.
LOCKUP = re.compile(r"soft lockup - CPU#\d+ stuck for (\d+)s")
LOCKUP_SECONDS = 60


def lockup(console: Path) -> str | None:
    """The console's soft-lockup report once a vCPU has been stuck LOCKUP_SECONDS, else None."""
    try:
        text = console.read_text(errors="replace")
    except OSError:
        return None
    stuck = [int(m.group(1)) for m in LOCKUP.finditer(text)]
    if stuck and max(stuck) >= LOCKUP_SECONDS:
        return f"watchdog: soft lockup, a vCPU stuck for {max(stuck)} s"
    return None


def qemu_argv(name: str, st: dict, lay: dict, *, accel_argv: list[str], image: Path, initrd: Path,
              cmdline: str, port: int) -> list[str]:
    """The QEMU command line of one VM. Everything a snapshot depends on is in it (snapshot_key)."""
    return ["qemu-system-x86_64", "-name", f"ktfleet-{name}", "-machine", "q35", *accel_argv, *lay["args"],
            "-nodefaults", "-display", "none", "-vga", "none", "-no-reboot",
            "-kernel", str(image / "vmlinuz"), "-initrd", str(initrd), "-append", cmdline,
            "-drive", f"file={st['overlay']},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
            "-device", "virtio-net-pci,netdev=n0", "-device", "virtio-rng-pci",
            "-serial", f"file:{st['console_log']}", "-monitor", "none",
            "-qmp", f"unix:{st['qmp']},server=on,wait=off",
            "-pidfile", str(st["pidfile"]), "-daemonize"]


def _start_qemu(name: str, st: dict, make_argv) -> None:
    """Launch QEMU (make_argv(port) -> argv) on a free SSH port; a port taken meanwhile is tried again."""
    pidfile, qemu_log, sf = Path(st["pidfile"]), Path(st["qemu_log"]), Path(st["pidfile"]).with_suffix(".json")
    for _port_try in range(3):
        port = free_port()
        argv = make_argv(port)
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


def _wait_ssh(name: str, st: dict, t0: float, timeout: float, what: str = "boot") -> str | None:
    """Wait until SSH runs a command in the guest; None, or why it never did."""
    pidfile, console, port = Path(st["pidfile"]), Path(st["console_log"]), st["port"]
    # The budget is QEMU's host CPU time, not the clock: on a loaded host (VMs of
    # two scenarios booting side by side) a healthy guest just gets less CPU.
    # A guest hung with its vCPUs spinning burns the budget; one hung idle hits
    # the wall-clock cap.
    wall_cap = t0 + WALL_FACTOR * timeout
    st["banner_seconds"] = None
    while True:
        if pid_of(pidfile) is None:
            return f"{name}: QEMU exited during {what} (guest panic or QEMU error)"
        used = cpu_seconds(st["pid"]) or 0.0
        if used > timeout:
            return f"{name}: no SSH after {used:.0f} s of host CPU ({time.monotonic() - t0:.0f} s)"
        if time.monotonic() > wall_cap:
            return f"{name}: no SSH after {time.monotonic() - t0:.0f} s ({used:.0f} s of host CPU)"
        hung = lockup(console)
        if hung:
            return f"{name}: guest hung at {what} ({hung}, after {time.monotonic() - t0:.0f} s)"
        if st["banner_seconds"] is None:
            if banner(port).startswith(b"SSH-2.0"):
                st["banner_seconds"] = round(time.monotonic() - t0, 1)
            else:
                time.sleep(1 if what == "boot" else 0.2)
                continue
        r = subprocess.run(ssh_argv(st, "true", connect_timeout=5), capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60)
        if r.returncode == 0:
            return None
        time.sleep(1)


def _boot_once(name: str, st: dict, lay: dict, *, accel_argv: list[str], image: Path, initrd: Path,
               cmdline: str, timeout: float) -> str | None:
    """Start QEMU on a fresh overlay and wait for SSH; return None or why not."""
    overlay, console = Path(st["overlay"]), Path(st["console_log"])
    overlay.unlink(missing_ok=True)
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image / "rootfs.raw"), str(overlay)])
    console.unlink(missing_ok=True)
    t0 = time.monotonic()
    _start_qemu(name, st, lambda port: qemu_argv(name, st, lay, accel_argv=accel_argv, image=image,
                                                 initrd=initrd, cmdline=cmdline, port=port))
    log(f"{name}: qemu pid {st['pid']}, ssh port {st['port']}, {lay['cpus']} CPUs, {lay['mem_mib']} MiB, "
        f"console {console}")
    return _wait_ssh(name, st, t0, timeout)


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
