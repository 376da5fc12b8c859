# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A release's directories and files, compared and written in one pass, all or nothing.

The pure core of ``ktfleet.numa.release_files`` (stdlib only, runs on the target).
``plan()`` compares what is there with what is wanted and reads nothing twice;
``apply()`` creates the directories, writes every changed file to a temporary
file beside it, verifies each unit that changed with ``systemd-analyze verify``
(in check mode too: a unit that would be written is verified, never written),
and only when every one passed replaces the old files (``os.replace``, atomic),
keeping a backup of each; should a replace fail, those already replaced come
back. A second run with the same input changes nothing.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field

SECRET = "(secret: not shown)"


class ReleaseError(Exception):
    """A file or directory that cannot be written or verified; the message names it."""


@dataclass
class Wanted:
    name: str
    path: str
    content: bytes
    mode: int
    owner: str | None = None
    group: str | None = None
    secret: bool = False
    verify: bool = False


@dataclass
class WantedDir:
    path: str
    mode: int
    owner: str | None = None
    group: str | None = None


@dataclass
class Outcome:
    changed: bool = False
    files: dict = field(default_factory=dict)
    directories: dict = field(default_factory=dict)
    diff: list = field(default_factory=list)
    verified: list = field(default_factory=list)


def _ids(owner, group, what, check_mode=False):
    """(uid, gid), -1 for "leave as it is". In check mode an account the run would
    create first (the role's user task) may be missing: reported as a change."""
    ids = []
    for name, lookup, kind in ((owner, pwd.getpwnam, "owner"), (group, grp.getgrnam, "group")):
        try:
            ids.append(-1 if name is None else lookup(name)[2])
        except KeyError as exc:
            if not check_mode:
                raise ReleaseError(f"{what}: {kind} {name!r} does not exist") from exc
            ids.append(-2)  # would be created: differs from whatever is there
    return ids[0], ids[1]


def _state(st, uid, gid, mode):
    """What differs between a file's stat and the wanted mode and ids."""
    diffs = []
    if stat.S_IMODE(st.st_mode) != mode:
        diffs.append(f"mode {stat.S_IMODE(st.st_mode):04o} -> {mode:04o}")
    if uid != -1 and st.st_uid != uid:  # -2: an account still to be created
        diffs.append(f"owner {st.st_uid} -> {uid}")
    if gid != -1 and st.st_gid != gid:
        diffs.append(f"group {st.st_gid} -> {gid}")
    return diffs


def _text(data):
    return data.decode("utf-8", "replace")


def verify_unit(path_name, content, run, stand_ins=None):
    """Findings of ``systemd-analyze verify`` on ``content`` under the unit's real name
    (it needs the suffix): [] when it passes. ``stand_ins`` maps a path the unit names
    that this (check) run has not created yet to an existing one verified in its place."""
    text = _text(content)
    for missing, present in (stand_ins or {}).items():
        if not os.path.exists(missing):
            text = text.replace(missing, present)
    name = os.path.basename(path_name)
    with tempfile.TemporaryDirectory(prefix="ktfleet-verify-") as tmp:
        copy = os.path.join(tmp, name)
        with open(copy, "w", encoding="utf-8") as fh:
            fh.write(text)
        rc, out, err = run(["systemd-analyze", "verify", "--man=no", copy])
    found = (out or "") + (err or "")
    if rc != 0 or name in found:
        return [line for line in found.replace(tmp, "").splitlines() if line.strip()] or [f"exit status {rc}"]
    return []


def verify_units(units, run, batch=64):
    """verify_unit() for many units, ``batch`` files per ``systemd-analyze verify`` call
    (it takes several and names the file of each finding). ``units`` maps distinct
    unit file names (with their suffix) to content. Returns ({name: findings}, calls);
    a call that fails naming none of its units is repeated one unit at a time."""
    findings, calls = {}, 0
    names = list(units)
    for start in range(0, len(names), batch):
        chunk = names[start:start + batch]
        with tempfile.TemporaryDirectory(prefix="ktfleet-verify-") as tmp:
            copies = []
            for name in chunk:
                copies.append(os.path.join(tmp, name))
                with open(copies[-1], "w", encoding="utf-8") as fh:
                    fh.write(_text(units[name]))
            rc, out, err = run(["systemd-analyze", "verify", "--man=no", *copies])
            calls += 1
        lines = [line for line in ((out or "") + (err or "")).replace(tmp + "/", "").splitlines() if line.strip()]
        named = {name: [line for line in lines if name in line] for name in chunk}
        if rc != 0 and not any(named.values()):
            for name in chunk:
                findings[name] = verify_unit(name, units[name], run)
                calls += 1
            continue
        findings.update(named)
    return findings, calls


def _write_temp(want, uid, gid):
    directory = os.path.dirname(want.path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(want.path)}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(want.content)
            fh.flush()
            os.fchmod(fh.fileno(), want.mode)
            if uid != -1 or gid != -1:
                os.fchown(fh.fileno(), uid, gid)
            os.fsync(fh.fileno())
    except OSError:
        os.unlink(tmp)
        raise
    return tmp


def apply(dirs, files, run, check_mode=False, backup=True, stand_ins=None):
    """Make ``dirs`` and ``files`` (lists of WantedDir, Wanted) so; returns an Outcome."""
    out = Outcome()
    for d in dirs:
        uid, gid = _ids(d.owner, d.group, d.path, check_mode)
        try:
            st = os.stat(d.path)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise ReleaseError(f"{d.path}: exists and is not a directory")
        diffs = ["absent -> directory"] if st is None else _state(st, uid, gid, d.mode)
        out.directories[d.path] = {"changed": bool(diffs), "what": diffs}
        if diffs:
            out.changed = True
            out.diff.append({"before_header": d.path, "after_header": d.path,
                             "before": "absent\n" if st is None else f"directory {stat.S_IMODE(st.st_mode):04o}\n",
                             "after": f"directory {d.mode:04o}\n"})
        if diffs and not check_mode:
            try:
                os.makedirs(d.path, exist_ok=True)
                os.chmod(d.path, d.mode)
                if uid != -1 or gid != -1:
                    os.chown(d.path, uid, gid)
            except OSError as exc:
                raise ReleaseError(f"{d.path}: cannot create the directory: {exc}") from exc

    pending = []  # (want, uid, gid, old bytes or None, whether the content differs)
    for want in files:
        uid, gid = _ids(want.owner, want.group, want.path, check_mode)
        try:
            with open(want.path, "rb") as fh:
                old = fh.read()
            st = os.stat(want.path)
        except FileNotFoundError:
            old, st = None, None
        except OSError as exc:
            raise ReleaseError(f"{want.path}: cannot read the current file: {exc}") from exc
        differs = old != want.content
        diffs = (["absent"] if old is None else (["content"] if differs else [])) + (
            _state(st, uid, gid, want.mode) if st is not None else []
        )
        out.files[want.name] = {"path": want.path, "changed": bool(diffs), "created": old is None, "what": diffs}
        if not diffs:
            continue
        out.changed = True
        if differs:
            before = "" if old is None else (SECRET + "\n" if want.secret else _text(old))
            after = SECRET + "\n" if want.secret else _text(want.content)
            out.diff.append({"before_header": want.path if old is not None else "/dev/null",
                             "after_header": want.path, "before": before, "after": after})
        if differs and want.verify:
            findings = verify_unit(want.path, want.content, run, stand_ins)
            if findings:
                raise ReleaseError(
                    f"{want.path}: systemd-analyze verify refused the new unit (nothing was replaced): "
                    + " | ".join(findings)
                )
            out.verified.append(want.path)
        pending.append((want, uid, gid, old, differs))

    if check_mode or not pending:
        return out

    temps = []
    try:
        for want, uid, gid, _old, differs in pending:
            temps.append(_write_temp(want, uid, gid) if differs else None)
    except OSError as exc:
        for tmp in temps:
            if tmp:
                os.unlink(tmp)
        raise ReleaseError(f"{want.path}: cannot write beside it: {exc}") from exc

    done = []  # (want, old, backup path) of what was replaced, to put back on failure
    try:
        for index, (want, uid, gid, old, differs) in enumerate(pending):
            tmp = temps[index]
            backup_file = None
            if backup and old is not None and differs:
                stamp = time.strftime("%Y-%m-%d@%H:%M:%S")
                backup_file = f"{want.path}.{os.getpid()}.{stamp}~"
                shutil.copy2(want.path, backup_file)
                out.files[want.name]["backup_file"] = backup_file
            if tmp:
                os.replace(tmp, want.path)
            else:  # only the mode or owner differ
                os.chmod(want.path, want.mode)
                if uid != -1 or gid != -1:
                    os.chown(want.path, uid, gid)
            done.append((want, old))
    except OSError as exc:
        for want, old in reversed(done):
            try:
                if old is None:
                    os.unlink(want.path)
                else:
                    with open(want.path, "wb") as fh:
                        fh.write(old)
            except OSError:
                pass
        for tmp in temps[len(done):]:
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)
        raise ReleaseError(f"{want.path}: cannot replace it, every file put back as it was: {exc}") from exc
    return out
