"""What every vmctl module uses: the error, logging, commands, state files, and mount-safe removal."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

# molecule/shared: vmctl.py, topologies.json and standin/ live beside this package
SHARED_DIR = Path(__file__).resolve().parents[1]


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


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


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
