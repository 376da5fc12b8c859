"""tests/freshroot.py's judgement and registry discovery (the chroot run itself is ./run freshroot)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("freshroot", REPO / "tests/freshroot.py")
freshroot = importlib.util.module_from_spec(spec)
sys.modules["freshroot"] = freshroot
spec.loader.exec_module(freshroot)


def staged(clone: Path, hosts: list[str]) -> None:
    for host in hosts:
        unit = clone / "build/demo" / host / freshroot.UNIT
        unit.parent.mkdir(parents=True)
        unit.write_text("[Service]\n")


def test_a_clean_run_passes(tmp_path):
    staged(tmp_path, freshroot.EXPECTED_UNITS)
    assert freshroot.check("==> refused as it should, nothing staged\n", 0, tmp_path) == []


def test_exit_status_missing_units_and_warnings_each_fail(tmp_path):
    staged(tmp_path, freshroot.EXPECTED_UNITS[:2])
    problems = freshroot.check("[WARNING]: Skipping 'architectures'\n", 2, tmp_path)
    assert [p.split(" ", 1)[0] for p in problems] == ["./run", "staged", "the", "Ansible"]


def test_the_recipe_hash_follows_the_mirror():
    assert freshroot.recipe_hash("http://a/debian") != freshroot.recipe_hash("http://b/debian")
    assert freshroot.recipe_hash("http://a/debian") == freshroot.recipe_hash("http://a/debian")


def test_a_file_index_is_bound_whole_and_remote_ones_are_not(tmp_path, monkeypatch):
    (tmp_path / "pypi/simple").mkdir(parents=True)
    (tmp_path / "wheels").mkdir()
    monkeypatch.setenv("PIP_FIND_LINKS", f"{tmp_path}/wheels https://example.invalid/wheels")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", f"file://{tmp_path}/pypi/simple")
    monkeypatch.setattr(freshroot, "registry_config", lambda: [])
    assert freshroot.find_links_dirs() == [f"{tmp_path}/wheels", f"{tmp_path}/pypi"]


def test_home_config_lands_in_roots_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".config/pip").mkdir(parents=True)
    (home / ".config/pip/pip.conf").write_text("[global]\n")
    monkeypatch.setenv("HOME", str(home))
    root = tmp_path / "root"
    freshroot.copy_in(root, home / ".config/pip")
    assert (root / "root/.config/pip/pip.conf").read_text() == "[global]\n"
