"""release_files' core: one pass, verified before any replace, all or nothing, idempotent."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ansible_collections.ktfleet.numa.plugins.module_utils import release_files as rf

UNIT = b"[Service]\nExecStart=/bin/true\n"


def passing(argv):
    passing.calls.append(argv)
    return 0, "", ""


def refusing(argv):
    return 1, "", f"{os.path.basename(argv[-1])}: Command /nope is not executable: No such file or directory\n"


def wanted(tmp, unit=UNIT, env=b"A=1\n"):
    dirs = [rf.WantedDir(str(tmp / "etc/ktfleet"), 0o700), rf.WantedDir(str(tmp / "etc/systemd/system"), 0o755)]
    files = [
        rf.Wanted("env", str(tmp / "etc/ktfleet/k.env"), env, 0o600, secret=True),
        rf.Wanted("unit", str(tmp / "etc/systemd/system/k.service"), unit, 0o644, verify=True),
    ]
    return dirs, files


@pytest.fixture(autouse=True)
def _calls():
    passing.calls = []


def test_first_run_creates_and_verifies_the_second_changes_nothing(tmp_path):
    out = rf.apply(*wanted(tmp_path), passing)
    assert out.changed and out.files["unit"]["created"] and out.verified == [str(tmp_path / "etc/systemd/system/k.service")]
    assert (tmp_path / "etc/systemd/system/k.service").read_bytes() == UNIT
    assert stat.S_IMODE((tmp_path / "etc/ktfleet/k.env").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "etc/ktfleet").stat().st_mode) == 0o700
    assert passing.calls[0][:3] == ["systemd-analyze", "verify", "--man=no"]
    assert passing.calls[0][-1].endswith("/k.service")  # verified under its real name
    again = rf.apply(*wanted(tmp_path), passing)
    assert not again.changed and not again.diff and len(passing.calls) == 1  # an unchanged unit is not verified again
    assert not list((tmp_path / "etc/systemd/system").glob(".k.service.*"))  # no temporary file left


def test_check_mode_verifies_what_it_would_write_and_writes_nothing(tmp_path):
    out = rf.apply(*wanted(tmp_path), passing, check_mode=True)
    assert out.changed and out.verified and not (tmp_path / "etc").exists()
    with pytest.raises(rf.ReleaseError, match="systemd-analyze verify refused.*is not executable"):
        rf.apply(*wanted(tmp_path), refusing, check_mode=True)


def test_a_refused_unit_replaces_nothing_not_even_the_environment(tmp_path):
    rf.apply(*wanted(tmp_path), passing)
    with pytest.raises(rf.ReleaseError, match="nothing was replaced"):
        rf.apply(*wanted(tmp_path, unit=b"[Service]\nExecStart=/nope\n", env=b"A=2\n"), refusing)
    assert (tmp_path / "etc/ktfleet/k.env").read_bytes() == b"A=1\n"
    assert (tmp_path / "etc/systemd/system/k.service").read_bytes() == UNIT


def test_a_change_keeps_a_backup_and_shows_a_diff_without_the_secret(tmp_path):
    rf.apply(*wanted(tmp_path), passing)
    new = b"[Service]\nExecStart=/bin/false\n"
    out = rf.apply(*wanted(tmp_path, unit=new, env=b"KEY=s3cret\n"), passing)
    backup = out.files["unit"]["backup_file"]
    assert Path(backup).read_bytes() == UNIT and not out.files["unit"]["created"]
    assert Path(out.files["env"]["backup_file"]).read_bytes() == b"A=1\n"
    text = repr(out.diff)
    assert "s3cret" not in text and "A=1" not in text and rf.SECRET in text
    assert "ExecStart=/bin/false" in text


def test_a_mode_change_alone_is_a_change_without_verification(tmp_path):
    rf.apply(*wanted(tmp_path), passing)
    os.chmod(tmp_path / "etc/systemd/system/k.service", 0o600)
    out = rf.apply(*wanted(tmp_path), passing)
    assert out.files["unit"]["what"] == ["mode 0600 -> 0644"] and len(passing.calls) == 1
    assert stat.S_IMODE((tmp_path / "etc/systemd/system/k.service").stat().st_mode) == 0o644


def test_a_failed_replace_puts_back_what_was_replaced(tmp_path, monkeypatch):
    rf.apply(*wanted(tmp_path), passing)
    real = os.replace
    seen = []

    def flaky(src, dst):
        seen.append(dst)
        if dst.endswith("k.service"):
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(rf.os, "replace", flaky)
    with pytest.raises(rf.ReleaseError, match="every file put back"):
        rf.apply(*wanted(tmp_path, unit=b"[Service]\nExecStart=/bin/false\n", env=b"A=2\n"), passing)
    assert seen[0].endswith("k.env")  # the env file had been replaced: it came back
    assert (tmp_path / "etc/ktfleet/k.env").read_bytes() == b"A=1\n"
    assert (tmp_path / "etc/systemd/system/k.service").read_bytes() == UNIT
    assert not [p for p in (tmp_path / "etc").rglob(".k.*")]


def test_a_path_that_is_not_a_directory_and_an_unknown_owner_are_named(tmp_path):
    (tmp_path / "etc").write_text("")
    with pytest.raises(rf.ReleaseError, match="is not a directory"):
        rf.apply([rf.WantedDir(str(tmp_path / "etc"), 0o755)], [], passing)
    with pytest.raises(rf.ReleaseError, match="owner 'no-such-ktfleet-user' does not exist"):
        rf.apply([rf.WantedDir(str(tmp_path / "d"), 0o755, owner="no-such-ktfleet-user")], [], passing)
    # in check mode the account may be one the run creates first
    assert rf.apply([rf.WantedDir(str(tmp_path / "d"), 0o755, owner="no-such-ktfleet-user")], [], passing,
                    check_mode=True).changed


def test_stand_ins_replace_only_a_missing_path_for_verification(tmp_path):
    seen = []

    def run(argv):
        seen.append(Path(argv[-1]).read_text())
        return 0, "", ""

    unit = b"[Service]\nExecStart=/opt/ktfleet/venv-not-yet/bin/python -m x\n"
    rf.verify_unit("k.service", unit, run, {"/opt/ktfleet/venv-not-yet/bin/python": "/bin/sh"})
    assert "ExecStart=/bin/sh -m x" in seen[0]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd")
def test_real_systemd_analyze_passes_a_good_unit_and_names_a_bad_one(tmp_path):
    def run(argv):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr

    good = b"[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
    assert rf.verify_unit(str(tmp_path / "k.service"), good, run) == []
    bad = good.replace(b"/bin/true", b"/nonexistent/bin/python")
    assert any("is not executable" in line for line in rf.verify_unit(str(tmp_path / "k.service"), bad, run))
