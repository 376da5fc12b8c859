"""The facts of a recorded dump read once on the controller equal the per-host module's.

``numa_facts``' action plugin reads a dump archive once per run (facts_call.read_cached)
instead of once per host in a module process (facts_call.read, what the module runs):
on every visible dump both must give the same fact, as JSON (what the module returns).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import TOPOLOGIES

from ansible_collections.ktfleet.numa.plugins.module_utils import facts_call

REPO = Path(__file__).resolve().parents[2]
DEMO_ARCHIVES = sorted((REPO / "inventory/topologies").glob("*.tar.bz2"))
CORPUS = sorted((TOPOLOGIES / "machines").glob("*.tar.bz2"))


def as_json(value):
    return json.loads(json.dumps(value))


def test_there_are_dumps_to_compare():
    assert len(DEMO_ARCHIVES) >= 2 and len(CORPUS) >= 30


@pytest.mark.parametrize("archive", DEMO_ARCHIVES, ids=lambda p: p.name.removesuffix(".tar.bz2"))
def test_read_once_on_the_controller_equals_the_per_host_read(archive, tmp_path):
    root = str(archive)
    facts, important, changed = facts_call.read(root, gpu_memory=False)
    assert not changed and facts["root"] == root
    first = facts_call.read_cached(root, str(tmp_path), gpu_memory=False)
    again = facts_call.read_cached(root, str(tmp_path), gpu_memory=False)
    assert (first[2], again[2]) == (False, True)  # read once, then loaded
    for got in (first, again):
        assert got[0] == as_json(facts) and got[1] == list(important)


@pytest.mark.parametrize("archive", CORPUS, ids=lambda p: p.name.removesuffix(".tar.bz2"))
def test_every_corpus_dump_read_once_equals_its_extracted_tree(archive, tmp_path, dump_root):
    """The corpus's dumps (extracted once per session by conftest): the archive read once on
    the controller gives the fact the module gives for the same tree, bar the root it names."""
    name = archive.name.removesuffix(".tar.bz2")
    facts, important, _ = facts_call.read(str(dump_root(name)), gpu_memory=False)
    got, got_important, cached = facts_call.read_cached(str(archive), str(tmp_path), gpu_memory=False)
    assert not cached and got.pop("root") == str(archive)
    facts.pop("root")
    assert got == as_json(facts) and got_important == list(important)


def test_a_changed_archive_is_read_again(tmp_path):
    src = REPO / "inventory/topologies/32intel64-2p8co2t+8ve.tar.bz2"
    copy = tmp_path / "dump.tar.bz2"
    copy.write_bytes(src.read_bytes())
    assert facts_call.read_cached(str(copy), str(tmp_path / "c"), False)[2] is False
    assert facts_call.read_cached(str(copy), str(tmp_path / "c"), False)[2] is True
    os.utime(copy, ns=(1, 1))
    assert facts_call.read_cached(str(copy), str(tmp_path / "c"), False)[2] is False


def test_a_missing_root_names_the_option(tmp_path):
    with pytest.raises(facts_call.FactsError, match=r"^root=.* does not exist"):
        facts_call.read_cached(str(tmp_path / "nope.tar.bz2"), str(tmp_path), False)


def test_probe_reads_paths_executables_account_and_commands(tmp_path):
    calls = []

    def run(argv):
        calls.append(argv)
        if argv[0] == "systemctl" and argv[1] == "--version":
            return 0, "systemd 252 (252.36-1~deb12u1)\n+PAM +AUDIT\n", ""
        if argv[0] == "ss":
            return 0, 'LISTEN 0 128 127.0.0.1:30000 0.0.0.0:* users:(("python",pid=42,fd=3))\n', ""
        return 0, "42\n", ""

    exe = tmp_path / "numactl"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    got = facts_call.probe(
        {"paths": [str(tmp_path), str(tmp_path / "x")], "executables": [str(exe), str(tmp_path / "y")],
         "systemd": True, "port": 30000, "service": "ktransformers", "user": "root"},
        run,
    )
    assert got["paths"] == {str(tmp_path): {"exists": True, "isdir": True},
                            str(tmp_path / "x"): {"exists": False, "isdir": False}}
    assert got["executables"] == {str(exe): True, str(tmp_path / "y"): False}
    assert got["systemd_version"] == 252
    assert got["port_owner"] is None  # held by the service's own main process
    assert got["getent_passwd"]["root"][1] == "0"
    assert ["systemctl", "show", "-p", "MainPID", "--value", "ktransformers"] in calls


def test_probe_names_a_foreign_port_owner_and_a_silent_systemctl(monkeypatch):
    monkeypatch.setattr(facts_call.time, "sleep", lambda _: None)

    def run(argv):
        if argv[0] == "ss":
            return 0, 'LISTEN 0 128 *:30000 *:* users:(("nginx",pid=7,fd=3))\n', ""
        if argv[1] == "--version":
            return 0, "", ""
        return 0, "0\n", ""

    got = facts_call.probe({"systemd": True, "port": 30000, "service": "ktransformers",
                            "user": "no-such-user-ktfleet"}, run)
    assert "nginx" in got["port_owner"] and got["systemd_version"] is None
    assert got["getent_passwd"] == {"no-such-user-ktfleet": None}


def test_run_local_reports_a_missing_command():
    rc, _, err = facts_call.run_local(["/nonexistent/ktfleet-cmd"])
    assert rc == 127 and "ktfleet-cmd" in err
    assert facts_call.run_local(["true"])[0] == 0


def test_probe_answers_false_for_a_path_the_os_cannot_look_up():
    got = facts_call.probe({"paths": ["/tmp/a\x00b"], "executables": ["/usr/bin/x\x00"]}, facts_call.run_local)
    assert got == {"paths": {"/tmp/a\x00b": {"exists": False, "isdir": False}}, "executables": {"/usr/bin/x\x00": False}}
