"""The command line: argparse over the package's jobs; output and exit codes are vmctl.py's contract
(the playbooks, ./run and the README call it)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import __doc__ as REFERENCE  # the reference; --help shows its first line, as before
from .common import VmError, log
from .image import build_image, prune_images, recipe_hash
from .inventory import inventory_yaml, ssh_config
from .probe import vm_check
from .qemu import WALL_FACTOR, cpu_seconds, get_state, pid_of, read_states, rss_mib, ssh_argv
from .topology import layout, load_topology
from .vm import snapshot_shapes, vm_down, vm_up


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vmctl", description=REFERENCE.split("\n\n")[0])
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
    p.add_argument("--timeout", type=float, default=float(os.environ.get("KTFLEET_VM_TIMEOUT", 180)),
                   help=f"host CPU seconds QEMU may use before SSH answers (at most {WALL_FACTOR}x on the clock)")
    p.add_argument("--keep-on-failure", action="store_true", help="leave QEMU running if SSH never comes up")

    p = sub.add_parser("snapshot", help="save a snapshot of each shape that has none (one VM at a time)")
    p.add_argument("topology", nargs="+", help="inline JSON, a JSON file, or a name in topologies.json")
    p.add_argument("--cache", type=Path, default=None)
    p.add_argument("--timeout", type=float, default=float(os.environ.get("KTFLEET_VM_TIMEOUT", 180)))

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
        elif a.cmd == "snapshot":
            done = snapshot_shapes(a.topology, a.cache, timeout=a.timeout)
            print(json.dumps(done, indent=1))
            return 0 if all(not v["status"].startswith("failed") for v in done.values()) else 1
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
