# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One ``numa_facts`` call: the topology facts, and what preflight reads of the host.

The pure core of ``ktfleet.numa.numa_facts`` (the module runs it on the target)
and of its action plugin (which runs it on the controller for a host whose facts
come from a recorded dump there, reading each dump archive once per run). Stdlib
only. ``probe()`` answers preflight's questions in the same call, so a deploy
that changes nothing needs no further round trip to read the host: the model
directory, the systemd version, executables such as numactl, who holds the
server's port, and the service account.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import tarfile
import time

from ansible_collections.ktfleet.numa.plugins.module_utils.topology import (
    capture_archive,
    gather_with_report,
    open_root,
    tree_problem,
)

_SYSTEMD = re.compile(r"^systemd ([0-9]+)", re.M)


# the module's options; the action plugin validates the same ones on the controller
ARGUMENT_SPEC = dict(
    root=dict(type="path", default="/"),
    gather_gpu_memory=dict(type="bool", default=True),
    capture=dict(type="path"),
    preflight=dict(
        type="dict",
        options=dict(
            paths=dict(type="list", elements="path", default=[]),
            executables=dict(type="list", elements="path", default=[]),
            systemd=dict(type="bool", default=False),
            port=dict(type="int"),
            service=dict(type="str", default=""),
            user=dict(type="str"),
        ),
    ),
)


class FactsError(Exception):
    """A bad ``root`` or ``capture``: the message names the option."""


def read(root, gpu_memory=True, capture=None, check_mode=False):
    """(facts, important warnings, changed) for ``root`` (a directory or a dump archive)."""
    if not os.path.exists(root):
        raise FactsError(
            f"root={root} does not exist: give / on a live host, or an extracted topology dump or its tar archive"
        )
    changed = bool(capture) and not check_mode
    try:
        with open_root(root) as tree:
            problem = tree_problem(tree, f"root={root}")
            if problem:
                raise FactsError(problem)
            facts, important = gather_with_report(tree, gpu_memory=gpu_memory)
            if changed:
                try:
                    capture_archive(tree, capture, gpu_memory=False)
                except OSError as exc:
                    raise FactsError(f"capture={capture}: cannot write the archive: {exc}") from exc
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise FactsError(f"root={root} is neither a directory nor a readable tar archive of a dump: {exc}") from exc
    facts["root"] = root
    return facts, important, changed


def archive_key(root, gpu_memory=True):
    """A name for what ``read(root)`` returns while ``root`` (a dump archive) is unchanged."""
    import hashlib

    real = os.path.realpath(root)
    st = os.stat(real)
    text = json.dumps([real, st.st_size, st.st_mtime_ns, st.st_ino, bool(gpu_memory)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def read_cached(root, cache_dir, gpu_memory=True):
    """read() of a dump archive, done once per ``cache_dir`` (one per run): the first
    caller extracts and reads it, under a lock; every later one (another host on the
    same dump, another worker process) loads the facts it saved.

    Returns (facts, important, cached); ``facts["root"]`` is ``root`` as given."""
    import fcntl

    if not os.path.isfile(root):
        facts, important = read(root, gpu_memory=gpu_memory)[:2]
        return facts, important, False
    os.makedirs(cache_dir, mode=0o700, exist_ok=True)
    path = os.path.join(cache_dir, archive_key(root, gpu_memory) + ".json")
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path, encoding="utf-8") as fh:
                saved = json.load(fh)
            cached = True
        except (OSError, ValueError):
            facts, important = read(root, gpu_memory=gpu_memory)[:2]
            saved = {"facts": facts, "important": important}
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(saved, fh)
            os.replace(tmp, path)
            cached = False
    facts = saved["facts"]
    facts["root"] = root
    return facts, saved["important"], cached


def _port_owner(port, service, run):
    """None when ``port`` is free or held by ``service``'s main process, else the ss line."""
    rc, out, err = run(["ss", "-Hltnp", f"sport = :{port}"])
    if rc != 0:
        return f"ss failed ({rc}): {err.strip()[:200]}"
    owner = next((line for line in out.splitlines() if line.strip()), "")
    if not owner:
        return None
    rc, main = run(["systemctl", "show", "-p", "MainPID", "--value", service])[:2]
    main = main.strip() if rc == 0 else "0"
    if main not in ("", "0") and f"pid={main}," in owner:
        return None
    return owner.strip()


def _systemd_version(run, attempts=3, delay=2.0):
    """The systemd version from ``systemctl --version`` (an overloaded host has been
    seen to print nothing once: asked again), or None with the last output."""
    out = ""
    for attempt in range(attempts):
        rc, out, err = run(["systemctl", "--version"])
        match = _SYSTEMD.search(out or "") if rc == 0 else None
        if match:
            return int(match.group(1)), out
        out = out or err
        if attempt + 1 < attempts:
            time.sleep(delay)
    return None, out


def run_local(argv):
    """run() for probe() in this process: (rc, stdout, stderr); 127 when not installed."""
    import subprocess

    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        return 127, "", f"{argv[0]}: {exc}"
    return done.returncode, done.stdout, done.stderr


def _safe(test, path):
    """test(path), False for a path the OS cannot even look up (a NUL byte, too long)."""
    try:
        return bool(test(path))
    except (ValueError, OSError):
        return False


def probe(spec, run):
    """What preflight reads of the host, in one pass. ``spec`` may name:

    ``paths`` (directories to stat, following links), ``executables`` (files that must
    be executable), ``systemd`` (bool: read the version), ``port`` and ``service``
    (who holds the port), ``user`` (the service account, as getent passwd answers).
    ``run(argv) -> (rc, stdout, stderr)`` runs a command on the host.
    """
    out = {}
    if spec.get("paths"):
        out["paths"] = {path: {"exists": _safe(os.path.exists, path), "isdir": _safe(os.path.isdir, path)}
                        for path in spec["paths"]}
    if spec.get("executables"):
        out["executables"] = {
            path: _safe(os.path.isfile, path) and _safe(lambda p: os.access(p, os.X_OK), path)
            for path in spec["executables"]
        }
    if spec.get("systemd"):
        version, text = _systemd_version(run)
        out["systemd_version"] = version
        if version is None:
            out["systemd_output"] = (text or "")[:500]
    if spec.get("port"):
        out["port_owner"] = _port_owner(int(spec["port"]), spec.get("service") or "", run)
    if spec.get("user"):
        try:
            entry = pwd.getpwnam(spec["user"])
            out["getent_passwd"] = {
                spec["user"]: ["x", str(entry.pw_uid), str(entry.pw_gid), entry.pw_gecos, entry.pw_dir, entry.pw_shell]
            }
        except (KeyError, ValueError):  # no such account (or a name no account can have)
            out["getent_passwd"] = {spec["user"]: None}
    return out
