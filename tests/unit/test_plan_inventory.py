"""ktfleet plan --inventory: every recorded host of an inventory planned, rendered and verified in one pass.

The pure core (plugins/plugin_utils/planner/fleet_plan.py) is called directly on a small
inventory that has each case once: group_vars and host_vars precedence, a shared
dump archive, a templated value, a plan that does not fit, a bad option, a missing
dump, a value that cannot be templated offline, live hosts. The written unit is
compared with the role's template rendered independently (test_hostile_input's
Jinja environment, the template module's settings) for the same plan, and checked
by systemd-analyze verify. The 1000-host timing runs only with KTFLEET_TIMING=1
(benchmarks/bench_offline.py is the measurement).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from test_cli import run as run_cli
from test_hostile_input import JINJA, role_inputs

from ansible_collections.ktfleet.numa.plugins.module_utils import facts_call
from ansible_collections.ktfleet.numa.plugins.module_utils.release_files import verify_unit, verify_units
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner import fleet_plan
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.fleet_table import fleet_table
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.planner import make_plan
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.systemd_syntax import unit_fields

REPO = Path(__file__).resolve().parents[2]
ARCHIVE = str(REPO / "inventory" / "topologies" / "32intel64-2p8co2t+8ve.tar.bz2")  # 2 x 8 cores, 93 GiB
MODELS = REPO / "inventory" / "demo_models"
SMALL = {"name": "Qwen3-30B-A3B", "model_path": f"{MODELS}/Qwen3-30B-A3B", "weights_path": f"{MODELS}/Qwen3-30B-A3B",
         "weights_bytes": "18.6GB", "moe_intermediate_size": 768, "kt_method": "LLAMAFILE"}
needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))  # JSON is YAML: Ansible reads it as its inventory files


@pytest.fixture(scope="module")
def inventory(tmp_path_factory) -> Path:
    inv = tmp_path_factory.mktemp("inventory")
    write(inv / "hosts.yml", {"gpu_nodes": {"children": {
        "rack_a": {"hosts": {"a1": {}, "a2": {}, "a3": {"ktfleet_port": 33000}}},
        "odd": {"hosts": {
            "big": {"ktfleet_model": {"name": "Huge", "weights_bytes": "900G", "model_path": "/srv/m",
                                      "weights_path": "/srv/w"}},
            "missing": {"ktfleet_facts_root": "/nonexistent/dump.tar.bz2"},
            "badopt": {"ktfleet_cpu_infer": 500},
            "facty": {"ktfleet_gpus": "{{ ansible_facts.gpu_count }}"},
        }},
        "live": {"hosts": {"live1": {"ansible_host": "10.0.0.1"}, "live2": {"ktfleet_facts_root": "/"}}},
    }}})
    write(inv / "group_vars" / "all.yml", {
        "ansible_connection": "local", "ktfleet_install": False, "ktfleet_manage_service": False,
        "ktfleet_python": sys.executable, "ktfleet_port": 30001,
        "dumps": str(REPO / "inventory" / "topologies"), "models": {"small": SMALL},
        "ktfleet_model": "{{ models.small }}",
    })
    recorded = {"ktfleet_facts_root": "{{ dumps }}/32intel64-2p8co2t+8ve.tar.bz2"}
    write(inv / "group_vars" / "rack_a.yml", {**recorded, "ktfleet_port": 31000,
                                               "ktfleet_facts_label": "rack {{ inventory_hostname[0] }}"})
    write(inv / "group_vars" / "odd.yml", recorded)
    write(inv / "host_vars" / "a2.yml", {"ktfleet_port": 32000})
    write(inv / "host_vars" / "a3.yml", {"ktfleet_port": 34000})  # host_vars/ outranks the inventory file's
    return inv


@pytest.fixture(scope="module")
def planned(inventory, tmp_path_factory):
    calls = []

    def counting_read(root, **kwargs):
        calls.append(root)
        return facts_call.read(root, **kwargs)

    out = tmp_path_factory.mktemp("out")
    fleet = fleet_plan.plan_inventory([str(inventory)], out, dumps=fleet_plan.DumpReader(read=counting_read))
    return fleet, {h.host: h for h in fleet.hosts}, out, calls


def port(outcome) -> int:
    args = outcome.plan["server_args"]
    assert int(args[args.index("--port") + 1]) == outcome.plan["port"]
    return outcome.plan["port"]


def test_variables_follow_ansibles_precedence(planned):
    _fleet, hosts, _out, _calls = planned
    assert port(hosts["a1"]) == 31000  # group_vars/rack_a over group_vars/all
    assert port(hosts["a2"]) == 32000  # host_vars/a2 over the group
    assert port(hosts["a3"]) == 34000  # host_vars/a3 over the inventory file's host variable
    assert port(hosts["big"]) == 30001  # group_vars/all over the role's default 30000
    args = hosts["a1"].plan["server_args"]
    assert args[args.index("--host") + 1] == "127.0.0.1"  # the role's default, nobody set it


def test_templated_values_are_rendered_by_ansible(planned):
    _fleet, hosts, _out, _calls = planned
    assert hosts["a1"].label == "rack a" and hosts["a2"].label == "rack a"  # {{ inventory_hostname[0] }}
    assert hosts["a1"].plan["model"] == "Qwen3-30B-A3B"  # {{ models.small }}
    assert hosts["a1"].facts["root"] == ARCHIVE  # {{ dumps }}/...


def test_a_shared_archive_is_read_once(planned):
    fleet, hosts, _out, calls = planned
    assert calls == [ARCHIVE]  # six hosts on it, one read
    assert fleet.facts_reads == 1
    facts = facts_call.read(ARCHIVE)[0]
    assert hosts["a1"].facts == facts and hosts["a3"].facts == facts


def test_refused_hosts_say_why_naming_the_variable(planned):
    fleet, hosts, out, _calls = planned
    assert {h.host for h in fleet.by_status("refused")} == {"big", "missing", "badopt", "facty"}
    assert hosts["big"].reason.startswith("the plan does NOT fit")
    assert hosts["missing"].reason.startswith("ktfleet_facts_root: /nonexistent/dump.tar.bz2 does not exist")
    assert hosts["badopt"].reason.startswith("ktfleet_cpu_infer:")
    assert hosts["facty"].reason.startswith("ktfleet_gpus: cannot be templated for facty offline")
    assert "ansible_facts" in hosts["facty"].reason
    for host in ("big", "missing", "badopt", "facty"):
        assert not (out / host).exists()  # nothing written for a refused host


def test_live_hosts_are_skipped_not_refused(planned):
    fleet, hosts, out, _calls = planned
    assert {h.host for h in fleet.by_status("skipped")} == {"live1", "live2"}
    assert "live host" in hosts["live1"].reason and "live host" in hosts["live2"].reason
    assert "live1" not in fleet.table and not (out / "live1").exists()


def test_the_table_is_deploys_fleet_table(planned):
    fleet, hosts, _out, _calls = planned
    shown = [h for h in fleet.hosts if h.status != "skipped"]
    expected = fleet_table(
        {h.host: {"ansible_facts": {"numa": h.facts}, "ktfleet_facts_label": h.label, "ktfleet_plan": h.plan}
         for h in shown}, [h.host for h in shown],
    )
    assert fleet.table == expected
    lines = {line.split()[0]: line for line in fleet.table.splitlines()[2:]}
    assert lines["a1"].endswith("fits") and lines["big"].endswith("DOES NOT FIT")
    assert lines["missing"].endswith("NO PLAN (preflight failed)")


def test_the_plan_is_the_planners_with_the_roles_arguments(planned):
    _fleet, hosts, _out, _calls = planned
    expected = make_plan(
        facts_call.read(ARCHIVE)[0], SMALL, "sglang-kt", policy="auto", nodes=[], cpu_infer=None, reserve_cores=None,
        gpus=1, headroom=0.20, smt=False, numa_build=None, host="127.0.0.1", port=32000, extra_args=[],
        legacy_release="0.2.1.post1", kt_num_gpu_experts=None, chunked_prefill_size=4096,
    ).model_dump(mode="json")
    assert hosts["a2"].plan == expected


@needs_analyze
def test_written_units_are_the_roles_render_and_pass_systemd_analyze(planned):
    fleet, hosts, out, _calls = planned
    for host in ("a1", "a2", "a3"):
        outcome = hosts[host]
        unit = (out / host / "etc/systemd/system/ktransformers.service").read_text()
        env = out / host / "etc/ktfleet/ktransformers.env"
        fields = unit_fields(**role_inputs(
            model_name=SMALL["name"], python=sys.executable, interpreter=sys.executable,
            model_path=SMALL["model_path"], weights_path=SMALL["weights_path"],
            plan_environment=outcome.plan["environment"],
        ))
        context = {
            "ansible_managed": "Ansible managed", "inventory_hostname": host, "ktfleet_plan": outcome.plan,
            "__ktfleet_mechanism": "systemd", "__ktfleet_unit": fields,
            "__ktfleet_env_host_path": "/etc/ktfleet/ktransformers.env", "__ktfleet_python": sys.executable,
            "__ktfleet_systemd_version": 252, "ktfleet_service_name": "ktransformers", "ktfleet_api_key": "",
        }
        assert unit == JINJA.get_template("ktransformers.service.j2").render(context)
        assert env.read_text() == JINJA.get_template("ktransformers.env.j2").render(context)
        assert oct(env.stat().st_mode & 0o777) == "0o600"
        assert verify_unit("ktransformers.service", unit.encode(), facts_call.run_local) == []
    assert fleet.distinct_units == 3 and fleet.verify_calls == 1  # three ports: three units, one call


@needs_analyze
def test_verify_units_batches_and_names_the_bad_one():
    good = b"[Service]\nExecStart=/bin/true\n"
    bad = b"[Service]\nExecStart=/bin/true\nNoSuchKey=1\n"
    findings, calls = verify_units({"one.service": good, "two.service": bad, "three.service": good},
                                   facts_call.run_local)
    assert calls == 1
    assert findings["one.service"] == [] and findings["three.service"] == []
    assert any("NoSuchKey" in line for line in findings["two.service"])


def test_cli_exit_status(inventory, tmp_path, capsys):
    code, out, err = run_cli(["plan", "--inventory", str(inventory), "--hosts", "rack_a:live", "--out",
                              str(tmp_path)], capsys)
    assert code == 0, err
    assert "3 planned, 0 refused, 2 skipped" in out and "skipped (not recorded):" in out
    assert (tmp_path / "a1" / "etc/systemd/system/ktransformers.service").is_file()
    code, out, err = run_cli(["plan", "--inventory", str(inventory), "--hosts", "badopt"], capsys)
    assert code == 1 and "badopt: ktfleet_cpu_infer:" in out
    code, out, err = run_cli(["plan", "--inventory", str(inventory), "--hosts", "live"], capsys)
    assert code == 2 and "nothing to plan" in err
    code, out, err = run_cli(["plan", "--inventory", str(tmp_path / "nope")], capsys)
    assert code == 2 and "does not exist" in err
    code, out, err = run_cli(["plan", "--inventory", str(inventory), "--hosts", "nomatch"], capsys)
    assert code == 2 and "matches no host" in err
    code, out, err = run_cli(["plan", "--inventory", str(inventory), "--weights-bytes", "1G"], capsys)
    assert code == 2 and "--weights-bytes is for one host" in err
    code, out, err = run_cli(["plan", "--facts", "x.json"], capsys)
    assert code == 2 and "--weights-bytes" in err


def test_extra_vars_outrank_the_inventory(inventory, capsys):
    huge = json.dumps({"ktfleet_model": {**SMALL, "weights_bytes": "900G"}})
    code, out, _err = run_cli(["plan", "--inventory", str(inventory), "--hosts", "a2", "-e", huge, "--json"], capsys)
    assert code == 1
    report = json.loads(out)
    assert report["hosts"]["a2"]["status"] == "refused"
    assert report["hosts"]["a2"]["plan"]["memory"]["fits"] is False


@pytest.mark.skipif(not os.environ.get("KTFLEET_TIMING"), reason="set KTFLEET_TIMING=1 (benchmarks/bench_offline.py)")
def test_1000_recorded_hosts_in_under_30_s(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_offline

    inventory, _recorded = bench_offline.write_inventory(tmp_path, 1000)
    start = time.perf_counter()
    fleet = fleet_plan.plan_inventory([str(inventory)], tmp_path / "out")
    elapsed = time.perf_counter() - start
    assert len(fleet.by_status("planned")) == 1000
    assert elapsed < 30, f"{elapsed:.1f} s"


@needs_analyze
def test_units_that_differ_only_in_comments_are_verified_once():
    unit = "[Service]\nExecStart=/bin/true\n"
    hosts = [fleet_plan.HostOutcome(f"h{i}", "planned", unit=f"# ktfleet plan for h{i}\n{unit}") for i in range(5)]
    hosts.append(fleet_plan.HostOutcome("odd", "planned", unit=f"# ktfleet plan for odd\n{unit}NoSuchKey=1\n"))
    distinct, calls = fleet_plan._verify(hosts, facts_call.run_local)
    assert (distinct, calls) == (2, 1)
    assert [h.status for h in hosts] == ["planned"] * 5 + ["refused"]
    assert "NoSuchKey" in hosts[-1].reason


def test_a_corrupt_dump_refuses_its_host_once(tmp_path):
    corrupt = tmp_path / "broken.tar.bz2"
    corrupt.write_bytes(b"not a tar archive at all")
    write(tmp_path / "inv" / "hosts.yml", {"gpu_nodes": {"hosts": {"c1": {}, "c2": {}}, "vars": {
        "ansible_connection": "local", "ktfleet_facts_root": str(corrupt), "ktfleet_model": SMALL}}})
    calls = []

    def counting_read(root, **kwargs):
        calls.append(root)
        return facts_call.read(root, **kwargs)

    fleet = fleet_plan.plan_inventory([str(tmp_path / "inv")], dumps=fleet_plan.DumpReader(read=counting_read))
    assert [h.status for h in fleet.hosts] == ["refused", "refused"]
    assert fleet.hosts[0].reason.startswith(f"ktfleet_facts_root: root={corrupt} is neither a directory nor")
    assert calls == [str(corrupt)]  # the failure is remembered too
