"""Hostile and careless input through the real role and deploy.yml (a handful; the many are unit tests).

One deploy.yml run plans several demo hosts, each carrying one bad variable:
each fails naming its variable and nothing is staged for it. One run checks the
rollout batches; one deploys awkward-but-valid values and reads the unit and the
environment file back with systemd's own parser.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "unit"))
from systemd_oracle import libsystemd, parse_env_file, parse_unit, systemd_env_file, systemd_split  # noqa: E402

PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
DUMP = "{{ ktfleet_topologies }}/32intel64-2p8co2t+8ve.tar.bz2"
pytestmark = [pytest.mark.ansible, pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd")]

# host -> (its one bad variable, what the error must say)
BAD = {
    "newline-user": ({"ktfleet_user": "ktfleet\nExecStartPre=/bin/touch /tmp/pwned"}, "ktfleet_user: must be one line"),
    "newline-model": (
        {"ktfleet_model": {"name": "x\n[Service]\nExecStartPre=/bin/id", "weights_bytes": "2G",
                           "model_path": "{{ inventory_dir }}/model", "weights_path": "{{ inventory_dir }}/model"}},
        "ktfleet_model.name: must be one line",
    ),
    "escape-name": ({"ktfleet_service_name": "../../../escaped"}, "ktfleet_service_name: must be a unit name"),
    "root-user": ({"ktfleet_user": "root"}, "ktfleet_user: must not be root"),
    "key-newline": ({"ktfleet_api_key": "secret\nLD_PRELOAD=/tmp/evil.so"}, "ktfleet_api_key: must be one line"),
    "env-override": ({"ktfleet_environment": {"SGLANG_SET_CPU_AFFINITY": "1"}}, "ktfleet_environment: sets SGLANG_SET_CPU_AFFINITY"),
    "open-listen": ({"ktfleet_listen_host": "0.0.0.0"}, "ktfleet_listen_host: 0.0.0.0 is reachable from other machines"),
    "bogus-mechanism": ({"ktfleet_numa_mechanism": "bogus"}, "ktfleet_numa_mechanism must be one of: auto, systemd, numactl"),
    "model-string": ({"ktfleet_model": "DeepSeek"}, "'ktfleet_model' is of type"),
}


def inventory(tmp_path: Path, hosts: dict[str, dict]) -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    shutil.copy(REPO / "inventory/demo/group_vars/all.yml", inv / "group_vars/all.yml")
    shutil.copytree(REPO / "inventory/demo_models/Qwen3-30B-A3B", inv / "model")
    (inv / "group_vars/all.yml").write_text(
        (inv / "group_vars/all.yml").read_text()
        + f'ktfleet_topologies: "{REPO}/inventory/topologies"\nktfleet_system_root: "{tmp_path}/stage/{{{{ inventory_hostname }}}}"\n'
        + f'ktfleet_demo_model_dir: "{REPO}/inventory/demo_models"\n'
        + 'ktfleet_model: "{{ ktfleet_demo_models.qwen3_30b_a3b_q4_k_m }}"\n'
    )
    (inv / "hosts.yml").write_text(
        yaml.safe_dump({"gpu_nodes": {"hosts": {h: {"ktfleet_facts_root": DUMP, **v} for h, v in hosts.items()}}})
    )
    return inv


def deploy(inv: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PLAYBOOK, "deploy.yml", "-i", str(inv), *args], cwd=REPO, capture_output=True, text=True,
        env={"ANSIBLE_FORCE_COLOR": "0", "PATH": "/usr/bin:/bin", "ANSIBLE_STDOUT_CALLBACK": "default"},
    )


def test_each_bad_variable_fails_naming_it_and_nothing_is_staged(tmp_path):
    run = deploy(inventory(tmp_path, {h: v for h, (v, _) in BAD.items()}))
    out = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 2, out[-3000:]
    assert "Traceback" not in out
    for host, (_, message) in BAD.items():
        assert f"fatal: [{host}]" in out, host
        assert message in out, (host, message)
    assert not (tmp_path / "stage").exists() or not any((tmp_path / "stage").rglob("*.service"))
    assert not list(tmp_path.rglob("escaped*"))
    # the spec named like tasks_from validates the plan entry point itself, before any task runs
    assert "Validating arguments against arg spec 'plan'" in run.stdout


@pytest.mark.parametrize(("serial", "message"), [("garbage", "ktfleet_serial[0]: must be a host count"), ("0", "ktfleet_serial[0]: must be at least 1 host")])
def test_bad_serial_stops_before_planning_with_a_clear_error(tmp_path, serial, message):
    run = deploy(inventory(tmp_path, {"h1": {}}), "-e", f"ktfleet_serial={serial}")
    out = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 2 and message in out, out[-3000:]
    assert "Traceback" not in out and "Gather the NUMA topology" not in out


KEY = '  s3cr"et \\ $HOME `id` \'q\' %n #x  '


def test_awkward_values_render_exactly_and_warnings_are_printed(tmp_path):
    hosts = {"h1": {"ktfleet_api_key": KEY, "ktfleet_listen_host": "0.0.0.0",
                    "ktfleet_model": {"name": 'M "50%" $x', "weights_bytes": "2G", "model_path": "{{ inventory_dir }}/model",
                                      "weights_path": "{{ inventory_dir }}/model"}}}
    run = deploy(inventory(tmp_path, hosts))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "h1: plan warnings:" in run.stdout  # deploy.yml prints them for each host
    stage = tmp_path / "stage" / "h1"
    unit = (stage / "etc/systemd/system/ktransformers.service").read_text()
    entries = parse_unit(unit)
    assert {s for s, _, _ in entries} == {"Unit", "Service", "Install"}
    found = {k: v for _, k, v in entries}
    assert found["Description"] == 'KTransformers sglang-kt server (M "50%%" $x)'
    env = stage / "etc/ktfleet/ktransformers.env"
    assert parse_env_file(env.read_text()) == {"KTFLEET_API_KEY": KEY}
    if libsystemd():
        assert systemd_env_file(env) == {"KTFLEET_API_KEY": KEY}
        argv = systemd_split(found["ExecStart"])
        assert argv[argv.index("--served-model-name") + 1] == 'M "50%%" $$x'  # systemd then makes it M "50%" $x
        assert argv[-2:] == ["--config", "${RUNTIME_DIRECTORY}/sglang.yaml"]  # the key never in argv


def test_a_symlink_loop_under_weights_path_counts_each_file_once(tmp_path):
    """plan.yml measures weights with find(follow=true): the loop repeats the file at every level."""
    import json

    from ansible_collections.ktfleet.numa.plugins.filter.numa_plan import weights_bytes

    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "a.gguf").write_bytes(b"xy")
    (weights / "loop").symlink_to(weights)
    (weights / "again.gguf").symlink_to(weights / "a.gguf")
    (weights / "b.gguf").write_bytes(b"xyz")
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "ansible.builtin.find", "-a",
         f"paths={weights} recurse=true follow=true file_type=file", "-o"],
        cwd=REPO, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "0"},
    )
    files = json.loads(run.stdout.split("=>", 1)[1])["files"]
    assert sum(f["size"] for f in files) > 5  # what plan.yml summed before: the loop counted again and again
    assert weights_bytes(files) == 5
