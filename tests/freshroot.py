#!/usr/bin/env python3
"""The README's first command on a fresh Debian 12 root: ``./run freshroot``.

1. A minimal root: ``debootstrap --variant=minbase bookworm`` + python3, nothing else,
   from the mirror this machine's apt uses (vmctl's helpers, molecule/shared/vms/). Cached
   in ``~/.cache/ktfleet/freshroot/<hash>/`` (env ``KTFLEET_FRESHROOT_CACHE``), the hash
   over the recipe and the mirror, built once under a lock; each run works on a copy.
2. ``git clone`` of this repository's HEAD into the copy (what is committed, nothing else).
3. Only this machine's registry configuration is copied in: apt sources, the CA bundle
   and extra CAs, pip's config files (/etc/pip.conf, /etc/xdg/pip, ~/.config/pip) and
   the PIP_* environment, plus /etc/resolv.conf to reach them; a local find-links
   directory named there is bind-mounted read-only.
4. ``./run demo`` in a chroot (proc, sys, dev mounted; always unmounted after), then
   rc 0, the staged units and no Ansible warning are asserted.

Prints the wall time of each step; KTFLEET_FRESHROOT_KEEP=1 keeps the work copy.
Stdlib only; root only (debootstrap, chroot, mounts).
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "molecule/shared"))
from vms import common, image  # noqa: E402  (vmctl's helpers: mirror, mounts, safe removal)

RECIPE_VERSION = "1"
PACKAGES = ["python3"]  # "nothing but Python 3": ./run installs the rest it needs
EXPECTED_UNITS = ["cxl-xeon6430", "opteron-4s-nps2", "seed-xeon6430", "snc4-xeon8480", "xeon-2s-smt"]
PIP_CONFIG_FILES = ["/etc/pip.conf", "/etc/xdg/pip", "~/.config/pip", "~/.pip"]
CA_FILES = ["/etc/ssl/certs/ca-certificates.crt", "/usr/local/share/ca-certificates"]
APT_FILES = ["/etc/apt/sources.list", "/etc/apt/sources.list.d", "/etc/apt/apt.conf.d", "/etc/apt/trusted.gpg.d"]
UNIT = "etc/systemd/system/ktransformers.service"


def say(msg: str) -> None:
    print(f"freshroot: {msg}", file=sys.stderr, flush=True)


def recipe(mirror: str) -> dict:
    return {"version": RECIPE_VERSION, "suite": image.SUITE, "arch": image.ARCH, "variant": "minbase",
            "include": PACKAGES, "mirror": mirror}


def recipe_hash(mirror: str) -> str:
    return hashlib.sha256(json.dumps(recipe(mirror), sort_keys=True).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    env = os.environ.get("KTFLEET_FRESHROOT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ktfleet" / "freshroot"


def base_root(mirror: str) -> tuple[Path, bool]:
    """(the cached pristine root, whether it was built now)."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    h = recipe_hash(mirror)
    final = cache / h / "root"
    with open(cache / f"{h}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (cache / h / "recipe.json").is_file():
            return final, False
        work = cache / f"{h}.building"
        common.safe_rmtree(work)
        work.mkdir()
        say(f"debootstrap --variant=minbase {image.SUITE} + {' '.join(PACKAGES)} from {mirror}")
        common.run(["debootstrap", "--variant=minbase", f"--arch={image.ARCH}", "--include=" + ",".join(PACKAGES),
                    image.SUITE, str(work / "root"), mirror], stdout=subprocess.DEVNULL)
        for stale in (work / "root/var/cache/apt/archives").glob("*.deb"):
            stale.unlink()
        (work / "recipe.json").write_text(json.dumps(recipe(mirror), indent=1) + "\n")
        common.safe_rmtree(cache / h)
        work.rename(cache / h)
        return final, True


def registry_config() -> list[Path]:
    """This machine's registry configuration: the files copied into the root, as they exist here."""
    out = []
    for name in APT_FILES + CA_FILES + PIP_CONFIG_FILES + ["/etc/resolv.conf"]:
        path = Path(os.path.expanduser(name))
        if path.is_file() or path.is_dir():
            out.append(path)
    return out


def find_links_dirs() -> list[str]:
    """Local directories pip is told to read (find-links, file:// indexes): the registry itself."""
    values = [os.environ.get("PIP_FIND_LINKS", ""), os.environ.get("PIP_EXTRA_INDEX_URL", ""),
              os.environ.get("PIP_INDEX_URL", "")]
    for conf in registry_config():
        for f in ([conf] if conf.is_file() else sorted(conf.glob("*.conf"))):
            if "pip" not in str(f):
                continue
            parser = configparser.ConfigParser(interpolation=None)
            with contextlib.suppress(configparser.Error, OSError):
                parser.read(f)
                for section in parser.sections():
                    values += [parser[section].get(k, "") for k in ("find-links", "extra-index-url", "index-url")]
    dirs = []
    for value in values:
        for item in value.split():
            path = re.sub(r"^file://", "", item).rstrip("/")
            if os.path.basename(path) == "simple":  # a PEP 503 index links to files beside it
                path = os.path.dirname(path)
            if path.startswith("/") and os.path.isdir(path) and path not in dirs:
                dirs.append(path)
    return dirs


def copy_in(root: Path, path: Path) -> None:
    dest = root / str(path).lstrip("/")
    if str(path).startswith(str(Path.home())):  # ~/.config/pip -> /root/.config/pip in the root
        dest = root / "root" / path.relative_to(Path.home())
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink():  # never write through a link of the root's (it may point at the host's /run)
        dest.unlink()
    if path.is_dir():
        shutil.copytree(path, dest, dirs_exist_ok=True, symlinks=False)
    else:
        shutil.copy2(path, dest)


@contextlib.contextmanager
def readonly_binds(root: Path, dirs: list[str]):
    try:
        for d in dirs:
            target = root / d.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            common.run(["mount", "--bind", d, str(target)], quiet=True)
            common.run(["mount", "-o", "remount,bind,ro", str(target)], quiet=True)
        yield
    finally:
        common.umount_all(root)


def check(output: str, rc: int, clone: Path) -> list[str]:
    """What is wrong with the run, [] when it passed."""
    problems = []
    if rc != 0:
        problems.append(f"./run demo exited {rc}")
    units = sorted(p.parts[-5] for p in (clone / "build/demo").glob(f"*/{UNIT}"))
    if units != EXPECTED_UNITS:
        problems.append(f"staged units for {units}, expected {EXPECTED_UNITS}")
    if "refused as it should" not in output:
        problems.append("the refusal of the misfit host was not seen")
    warnings = [line for line in output.splitlines() if "[WARNING]" in line or "[DEPRECATION WARNING]" in line]
    if warnings:
        problems.append("Ansible warnings: " + " | ".join(warnings[:5]))
    return problems


def main() -> int:
    if os.geteuid() != 0:
        say("needs root (debootstrap, chroot, mounts)")
        return 2
    missing = [t for t in ("debootstrap", "chroot", "mount", "git") if not shutil.which(t)]
    if missing:
        say(f"missing tools {missing}: apt-get install debootstrap git")
        return 2
    times: dict[str, float] = {}
    t0 = time.monotonic()
    mirror = image.host_mirror()
    base, built = base_root(mirror)
    times["base root (" + ("built" if built else "cached") + ")"] = time.monotonic() - t0

    work = cache_dir() / f"run-{os.getpid()}"
    root = work / "root"
    rc, output = 1, ""
    try:
        t = time.monotonic()
        work.mkdir(parents=True)
        common.run(["cp", "-a", "--reflink=auto", str(base), str(root)], quiet=True)
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        clone = root / "root/ktfleet"
        common.run(["git", "clone", "-q", "--no-checkout", str(REPO), str(clone)], quiet=True)
        common.run(["git", "-C", str(clone), "checkout", "-q", "--detach", head], quiet=True)
        for path in registry_config():
            copy_in(root, path)
        times["copy + clone"] = time.monotonic() - t
        say(f"clone of {head[:12]} in {root}; registry configuration: "
            + ", ".join(str(p) for p in registry_config()))
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
               "LANG": "C.UTF-8", "TERM": "dumb", **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}
        t = time.monotonic()
        with common.chroot_mounts(root), readonly_binds(root, find_links_dirs()):
            proc = subprocess.run(["chroot", str(root), "/bin/sh", "-c", "cd /root/ktfleet && ./run demo"],
                                  env=env, capture_output=True, text=True)
        rc, output = proc.returncode, proc.stdout + proc.stderr
        times["./run demo in the root"] = time.monotonic() - t
        problems = check(output, rc, clone)
    finally:
        common.umount_all(root) if root.exists() else None
        if os.environ.get("KTFLEET_FRESHROOT_KEEP") != "1":
            common.safe_rmtree(work)
    times["total"] = time.monotonic() - t0
    for step, secs in times.items():
        say(f"{step}: {secs:.0f} s")
    if problems:
        # the end of the run, without pip's notes about this machine's own index layout
        print("\n".join(line for line in output.splitlines() if "is ignored: it is neither" not in line)[-8000:])
        for p in problems:
            say(f"FAIL: {p}")
        return 1
    say("./run demo passed from a clean clone on a fresh Debian 12 root")
    return 0


if __name__ == "__main__":
    sys.exit(main())
