"""The synthetic machine generator: its trees read back through the real fact module
(plugins/module_utils/topology.py) as exactly the machine the spec asks for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.ktfleet.numa.plugins.module_utils import topology
from ansible_collections.ktfleet.numa.plugins.plugin_utils import synthetic
from ansible_collections.ktfleet.numa.plugins.plugin_utils.sizes import parse_size

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted((REPO / "inventory/demo_machines").glob("*.json"))

SHAPES = [
    {"sockets": 1, "cores_per_socket": 4, "memory_per_node": "8G"},
    {"sockets": 2, "cores_per_socket": 32, "threads_per_core": 2, "memory_per_node": "768G"},
    {"sockets": 2, "cores_per_socket": 12, "threads_per_core": 2, "nodes_per_socket": 3, "memory_per_node": "64G"},
    {"sockets": 4, "cores_per_socket": 6, "nodes_per_socket": 2, "memory_per_node": "16G",
     "gpus": [{"socket": 3}, {"socket": 0, "device": "0x2330"}]},
    {"sockets": 2, "cores_per_socket": 8, "threads_per_core": 4, "memory_per_node": "32G",
     "memory_only_nodes": [{"socket": 1, "memory": "256G"}, {"socket": 0, "memory": "16G"}],
     "flags": ["avx512f", "amx_tile"]},
]


def read_back(spec, tmp_path):
    root = synthetic.write_tree(spec, tmp_path / "machine")
    facts = topology.gather(str(root))
    return facts


@pytest.mark.parametrize("spec", SHAPES + [json.loads(p.read_text()) for p in SPECS])
def test_the_fact_module_reads_back_the_requested_machine(spec, tmp_path):
    facts = read_back(spec, tmp_path)
    sockets, cores = spec["sockets"], spec["cores_per_socket"]
    tpc, per_socket = spec.get("threads_per_core", 1), spec.get("nodes_per_socket", 1)
    far = spec.get("memory_only_nodes", [])
    assert facts["warnings"] == []
    assert facts["cores_total"] == sockets * cores
    assert len(facts["cpus_online"]) == sockets * cores * tpc
    assert facts["threads_per_core"] == tpc and facts["smt_active"] == (tpc > 1)
    assert facts["nodes_per_package"] == per_socket
    assert [p["id"] for p in facts["packages"]] == list(range(sockets))
    assert all(p["cores"] == cores for p in facts["packages"])
    cpu_nodes = [n for n in facts["nodes"] if not n["memory_only"]]
    assert [n["id"] for n in cpu_nodes] == list(range(sockets * per_socket))
    for node in cpu_nodes:
        assert node["cores"] == cores // per_socket
        assert len(node["cpus"]) == cores // per_socket * tpc
        assert node["package_ids"] == [node["id"] // per_socket]
        assert node["memory_total_bytes"] == parse_size(spec["memory_per_node"])
    memory_only = [n for n in facts["nodes"] if n["memory_only"]]
    assert [n["memory_total_bytes"] for n in memory_only] == [parse_size(f["memory"]) for f in far]
    assert all(n["cpus"] == [] and n["cores"] == 0 for n in memory_only)
    assert facts["memory_total_bytes"] == sum(n["memory_total_bytes"] for n in facts["nodes"])
    # SMT siblings: Linux's x86 numbering, core c's threads are c, c + cores, ...
    total = sockets * cores
    assert sorted(facts["core_cpus"][0]) == [total * t for t in range(tpc)]
    # every node is nearest to itself, and a socket's own nodes are nearer than the other socket's
    for node in facts["nodes"]:
        assert node["distances"][node["id"]] == min(node["distances"])
    gpus = facts["gpus"]
    assert [g["numa_node"] for g in gpus] == [g["socket"] * per_socket for g in spec.get("gpus", [])]
    for gpu, want in zip(gpus, spec.get("gpus", []), strict=True):
        package = facts["packages"][want["socket"]]
        assert gpu["local_cpus"] == package["cpus"] and gpu["vendor"] == "nvidia"
    for flag in spec.get("flags", []):
        if flag in facts["cpu"]["flags"]:
            assert facts["cpu"]["flags"][flag] is True


def test_the_seeds_machine_is_what_the_seed_describes(tmp_path):
    spec = json.loads((REPO / "inventory/demo_machines/seed-xeon6430.json").read_text())
    facts = read_back(spec, tmp_path)
    assert facts["cpu"]["model_name"] == "Intel(R) Xeon(R) Gold 6430"
    assert [(p["cores"], len(p["cpus"]), p["nodes"]) for p in facts["packages"]] == [(32, 64, [0]), (32, 64, [1])]
    assert facts["cpu"]["flags"]["amx_tile"] and len(facts["gpus"]) == 2


def test_a_rewrite_replaces_the_old_tree(tmp_path):
    synthetic.write_tree({"sockets": 2, "cores_per_socket": 4, "memory_per_node": "8G"}, tmp_path / "m")
    facts = read_back({"sockets": 1, "cores_per_socket": 2, "memory_per_node": "8G"}, tmp_path)
    assert facts["cpus_online"] == [0, 1] and len(facts["nodes"]) == 1


def test_it_never_writes_into_a_directory_it_did_not_make(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "precious").write_text("x")
    with pytest.raises(synthetic.SpecError, match="not a synthetic machine"):
        synthetic.write_tree({"sockets": 1, "cores_per_socket": 2, "memory_per_node": "8G"}, tmp_path / "m")
    assert (tmp_path / "m" / "precious").read_text() == "x"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"cores_per_socket": 2, "memory_per_node": "8G"}, "sockets: expected a positive integer"),
        ({"sockets": 2, "cores_per_socket": 6, "nodes_per_socket": 4, "memory_per_node": "8G"}, "does not divide"),
        ({"sockets": 1, "cores_per_socket": 2, "memory_per_node": "lots"}, "memory_per_node:"),
        ({"sockets": 1, "cores_per_socket": 2, "memory_per_node": "8G", "gpus": [{"socket": 1}]}, r"gpus\[0\].socket"),
        ({"sockets": 1, "cores_per_socket": 2, "memory_per_node": "8G", "sokets": 2}, "unknown key"),
    ],
)
def test_a_bad_spec_is_named(spec, message):
    with pytest.raises(synthetic.SpecError, match=message):
        synthetic.files(spec)


def test_the_command_writes_one_tree_per_spec_and_names_a_bad_one(tmp_path, capsys):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.json").write_text(json.dumps(SHAPES[0]))
    assert synthetic.main([str(specs), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out/a" / synthetic.MARKER).is_file()
    (specs / "b.json").write_text(json.dumps({"sockets": 0}))
    assert synthetic.main([str(specs), str(tmp_path / "out")]) == 2
    assert "b.json: sockets" in capsys.readouterr().err
