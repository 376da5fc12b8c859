"""ktfleet plan: the operator's look before deploying; ktfleet report: the fleet report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from planner_hosts import seed_host, snc3_host, tutorial_host_1tb

from ansible_collections.ktfleet.numa.plugins.plugin_utils.cli.cli import main


@pytest.fixture
def facts_file(tmp_path):
    def _write(facts: dict, wrap: bool = False) -> str:
        path = tmp_path / "facts.json"
        path.write_text(json.dumps({"ansible_facts": {"numa": facts}} if wrap else facts))
        return str(path)

    return _write


def run(argv, capsys):
    """(exit code, stdout, stderr); argparse's own errors exit through SystemExit."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_summary_for_the_tutorial_host(facts_file, capsys):
    argv = [
        "plan",
        "--facts",
        facts_file(tutorial_host_1tb()),
        "--model-name",
        "DeepSeek-V3",
        "--weights-bytes",
        "382GB",
        "--backend",
        "legacy",
    ]
    code, out, err = run(argv, capsys)
    assert code == 0 and err == ""
    assert "ktfleet plan: DeepSeek-V3 on legacy" in out
    assert "policy            replicate  (USE_NUMA=1 build: yes)" in out
    assert "cpu_infer         65  (node 0: 32, node 1: 32)" in out
    assert "memory fits       yes" in out
    assert "numactl           (none)" in out
    assert "python -m ktransformers.server.main" in out and "--cpu_infer 65" in out
    assert "reasons:" in out


def test_json_output_is_the_plan(facts_file, capsys):
    argv = [
        "plan",
        "--facts",
        facts_file(seed_host(), wrap=True),
        "--weights-bytes",
        "60GiB",
        "--json",
        "--model-path",
        "/m",
        "--weights-path",
        "/w-AMXINT4",
    ]
    code, out, _ = run(argv, capsys)
    plan = json.loads(out)
    assert code == 0 and plan["policy"] == "shard" and plan["cpu_infer"] == 62
    assert plan["server_args"][plan["server_args"].index("--kt-weight-path") + 1] == "/w-AMXINT4"


def test_options_reach_the_planner(facts_file, capsys):
    argv = [
        "plan", "--facts", facts_file(snc3_host(gpus=(0, 3))), "--weights-bytes", "378GiB", "--moe-intermediate-size", "2048",
        "--nodes", "0,3", "--gpus", "2", "--reserve-cores", "0", "--json", "--kt-method", "amxint8",
    ]  # fmt: skip
    code, out, _ = run(argv, capsys)
    plan = json.loads(out)
    assert code == 0 and plan["numa_nodes"] == [0, 3] and plan["cpu_infer"] == 86
    assert "AMXINT8" in plan["server_args"]


def test_root_reads_a_captured_dump(dump_root, capsys):
    pytest.importorskip("ansible_collections.ktfleet.numa.plugins.module_utils.topology")
    argv = [
        "plan",
        "--root",
        str(dump_root("40intel64-2g2n4c+pcilocality")),
        "--weights-bytes",
        "10G",
        "--backend",
        "legacy",
        "--json",
    ]
    code, out, _ = run(argv, capsys)
    plan = json.loads(out)
    assert code == 0 and plan["policy"] == "replicate" and plan["cpu_infer"] == 41


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--weights-bytes", "-5"], "ktfleet: error: ktfleet_model.weights_bytes: must be > 0, got -5"),
        (["--weights-bytes", "12XB"], "ktfleet plan: error: argument --weights-bytes: expected bytes"),
        (["--weights-bytes", "1G", "--nodes", "9"], "ktfleet: error: ktfleet_nodes: node(s) 9 do not exist"),
        (
            ["--weights-bytes", "1G", "--policy", "fast"],
            "ktfleet plan: error: argument --policy: invalid choice",
        ),
        (["--weights-bytes", "1G", "--cpu-infer", "500"], "ktfleet: error: ktfleet_cpu_infer:"),
        (
            ["--weights-bytes", "1G", "--legacy-numa-build", "maybe"],
            "ktfleet plan: error: argument --legacy-numa-build",
        ),
        ([], "ktfleet plan: error: the following arguments are required: --weights-bytes"),
    ],
)
def test_bad_input_exits_2_with_one_line(extra, message, facts_file, capsys):
    code, out, err = run(["plan", "--facts", facts_file(seed_host()), *extra], capsys)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "ktfleet: error: --facts: cannot read"),
        ("{not json", "ktfleet: error: --facts: "),
        ('{"hostname": "x"}', "ktfleet: error: ansible_facts.numa.nodes: missing"),
    ],
)
def test_bad_facts_file(content, message, tmp_path, capsys):
    path = tmp_path / "facts.json"
    if content is not None:
        path.write_text(content)
    code, out, err = run(["plan", "--facts", str(path), "--weights-bytes", "1G"], capsys)
    assert code == 2 and out == "" and err.startswith(message) and err.count("\n") == 1


def test_root_must_be_a_directory(tmp_path, capsys):
    code, _, err = run(["plan", "--root", str(tmp_path / "nope"), "--weights-bytes", "1G"], capsys)
    assert code == 2 and "--root:" in err


def test_report_prints_the_saved_records(tmp_path, capsys):
    facts = seed_host()
    record = {"host": "gpu-a01", "updated": "2025-06-01T00:00:00Z", "facts": facts}
    (tmp_path / "gpu-a01.json").write_text(json.dumps(record))
    code, out, err = run(["report", str(tmp_path)], capsys)
    assert code == 0 and err == "" and out.startswith("<!DOCTYPE html>") and 'data-host="gpu-a01"' in out
    code, out, _ = run(["report", str(tmp_path), "--markdown"], capsys)
    assert code == 0 and out.startswith("# ktfleet fleet report") and "\n## gpu-a01\n" in out


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (None, "ktfleet: error: {dir}: not a directory"),
        ({}, "ktfleet: error: {dir}: no <host>.json records"),
        ({"a.json": '{"host": "a", "updated": "2025-01-01", "plan": {"cpu_infer": "x"}}'},
         "ktfleet: error: {dir}/a.json: plan.cpu_infer: must be an int, got 'x'"),
    ],
)  # fmt: skip
def test_report_bad_directory_exits_2_with_one_line(files, message, tmp_path, capsys):
    directory = tmp_path / "report"
    if files is not None:
        directory.mkdir()
        for name, text in files.items():
            (directory / name).write_text(text)
    code, out, err = run(["report", str(directory)], capsys)
    assert code == 2 and out == ""
    assert err.startswith(message.format(dir=directory)) and err.count("\n") == 1


def test_console_script_is_installed(facts_file):
    script = Path(sys.executable).parent / "ktfleet"
    assert script.exists(), "pyproject declares ktfleet = ...plugin_utils.cli.cli:main"
    done = subprocess.run(
        [script, "plan", "--facts", facts_file(seed_host()), "--weights-bytes", "1G", "--backend", "legacy"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "cpu_infer         65" in done.stdout


def test_facts_file_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "facts.json"
    path.write_bytes(b'{"nodes": "\xff\xfe"}')
    code, out, err = run(["plan", "--facts", str(path), "--weights-bytes", "1G"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("ktfleet: error: --facts:") and "not UTF-8" in err and len(err.splitlines()) == 1


def test_root_that_is_an_empty_directory(tmp_path, capsys):
    code, out, err = run(["plan", "--root", str(tmp_path), "--weights-bytes", "1G"], capsys)
    assert code == 2 and out == ""
    assert "neither sys/ nor proc/" in err and "top directory of an extracted topology dump" in err


def test_root_prints_the_facts_warnings(single_dump, tmp_path, capsys):
    """A corrupt cpulist in a dump: the plan is printed and so is the warning numa_facts would show."""
    import shutil

    root = tmp_path / "dump"
    shutil.copytree(single_dump("48amd64-4pa2n6c-sparse"), root, symlinks=True)
    (root / "sys/devices/system/node/node0/cpulist").write_text("0-5,zz\n")
    code, out, err = run(["plan", "--root", str(root), "--weights-bytes", "1G"], capsys)
    assert code == 0 and out.startswith("ktfleet plan:")
    assert "ktfleet: facts: sys/devices/system/node/node0/cpulist: corrupt" in err


def test_absurd_memory_in_a_facts_file(facts_file, capsys):
    facts = tutorial_host_1tb()
    facts["nodes"][0]["memory_total_bytes"] = 10**29 * 1024
    code, out, err = run(["plan", "--facts", facts_file(facts), "--weights-bytes", "1G"], capsys)
    assert code == 2 and out == "" and "memory_total_bytes" in err


def test_plan_reads_the_shard_count_from_the_weights_tensor_names(facts_file, tmp_path, capsys):
    from test_kt_weights import amx_keys, write_safetensors

    weights = tmp_path / "DeepSeek-V3-AMXINT4"
    weights.mkdir()
    write_safetensors(weights / "w.safetensors", amx_keys(shards=2))
    argv = ["plan", "--facts", facts_file(snc3_host()), "--weights-bytes", "378GiB", "--json",
            "--moe-intermediate-size", "2048", "--weights-path", str(weights)]  # fmt: skip
    code, out, _ = run(argv, capsys)
    assert code == 0 and json.loads(out)["threadpool_count"] == 2  # not the 4 the host could take
    code, _, err = run([*argv, "--numa-shards", "4"], capsys)
    assert code == 2 and "ktfleet_model.numa_shards: 4 given, but the tensors under" in err
