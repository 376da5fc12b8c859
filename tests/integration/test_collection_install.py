"""ktfleet installed the ways its users install things, outside this repository:

- ``ansible-galaxy collection build`` + ``install`` into an empty collections path, then
  ``ansible-doc ktfleet.numa.numa_facts`` and ``ansible-playbook ktfleet.numa.deploy`` by name;
- ``pip install .`` gives a ``ktfleet`` CLI that works from any directory;
- ``ansible-builder create`` accepts execution-environment.yml with the built tarball.

Nothing here reads the repository's ansible.cfg, .collections link or the venv's .pth:
the commands run in a temporary directory with the collection search limited to the install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VERSION = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
TARBALL = f"ktfleet-numa-{VERSION}.tar.gz"
pytestmark = [pytest.mark.ansible]


def outside_env(collections: Path) -> dict[str, str]:
    return {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False",  # not the repository through the venv's .pth
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_LOCAL_TEMP": str(collections.parent / "tmp"),
        "PWD": str(collections.parent),  # report.yml writes under $PWD/build/report
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("galaxy")
    run = subprocess.run([BIN / "ansible-galaxy", "collection", "build", "--output-path", str(out), str(REPO)],
                         cwd=out, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return out / TARBALL


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory):
    base = tmp_path_factory.mktemp("outside")
    collections = base / "collections"
    run = subprocess.run(
        [BIN / "ansible-galaxy", "collection", "install", "--offline", str(built), "-p", str(collections)],
        cwd=base, capture_output=True, text=True, env=outside_env(collections),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return base, collections


def test_the_tarball_ships_the_collection_and_nothing_of_the_workshop(built):
    with tarfile.open(built) as tar:
        names = tar.getnames()
    for wanted in ("MANIFEST.json", "playbooks/deploy.yml", "deploy.yml", "execution-environment.yml",
                   "plugins/modules/numa_facts.py", "roles/ktransformers/tasks/main.yml"):
        assert wanted in names, wanted
    tops = {n.split("/", 1)[0] for n in names}
    assert not tops & {".venv", ".ansible", ".collections", ".config", "build", "tests", "molecule", "benchmarks", ".git"}, tops
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".egg-info"))]


def test_ansible_doc_reads_the_installed_module(installed):
    base, collections = installed
    run = subprocess.run([BIN / "ansible-doc", "ktfleet.numa.numa_facts"], cwd=base, capture_output=True,
                         text=True, env=outside_env(collections))
    assert run.returncode == 0, run.stderr
    assert str(collections / "ansible_collections/ktfleet/numa/plugins/modules/numa_facts.py") in run.stdout
    assert "[WARNING]" not in run.stderr


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_deploy_runs_by_name_from_the_installed_collection(installed):
    base, collections = installed
    (base / "model").mkdir()
    inventory = base / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"gpu_nodes": {
        "hosts": {"xeon-2s-smt": {
            "ktfleet_facts_root": str(REPO / "inventory/topologies/32intel64-2p8co2t+8ve.tar.bz2")}},
        "vars": {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "ktfleet_system_root": str(base / "stage/{{ inventory_hostname }}"),
            "ktfleet_manage_service": False,
            "ktfleet_install": False,
            "ktfleet_check_server": False,  # staged: no server installed here to check
            "ktfleet_python": sys.executable,
            "ktfleet_serial": ["100%"],
            "ktfleet_model": {"name": "Qwen3-30B-A3B", "model_path": str(base / "model"),
                              "weights_path": str(base / "model"), "weights_bytes": "18.6GB",
                              "moe_intermediate_size": 768},
        },
    }}))
    run = subprocess.run([BIN / "ansible-playbook", "ktfleet.numa.deploy", "-i", str(inventory)], cwd=base,
                         capture_output=True, text=True, env=outside_env(collections))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "[WARNING]" not in run.stdout + run.stderr
    unit = base / "stage/xeon-2s-smt/etc/systemd/system/ktransformers.service"
    assert "--kt-cpuinfer 14" in unit.read_text()
    assert (base / "build/report/index.html").is_file()  # report.yml, imported from the installed playbook


def test_pip_install_gives_a_cli_that_works_from_any_directory(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([venv / "bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the dependencies from this venv (a plain path: its .pth files, the repository's link, are not read)
    (site / "deps.pth").write_text(sysconfig_purelib() + "\n")
    run = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "-q",
                          "--no-deps", str(REPO)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    cli = venv / "bin/ktfleet"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    help_ = subprocess.run([cli, "--help"], cwd="/", capture_output=True, text=True, env=env)
    assert help_.returncode == 0 and "plan" in help_.stdout, help_.stderr
    plan = subprocess.run([cli, "plan", "--root", str(REPO / "inventory/topologies/32intel64-2p8co2t+8ve.tar.bz2"),
                           "--weights-bytes", "18.6GB", "--json"], cwd="/", capture_output=True, text=True, env=env)
    assert plan.returncode == 0, plan.stderr
    assert '"cpu_infer": 14' in plan.stdout
    where = subprocess.run([venv / "bin/python", "-c",
                            "import ansible_collections.ktfleet.numa.plugins.plugin_utils.cli.cli as c; print(c.__file__)"],
                           cwd="/", capture_output=True, text=True, env=env)
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr  # the installed copy, not the tree


def sysconfig_purelib() -> str:
    import sysconfig

    return sysconfig.get_paths()["purelib"]


def test_ansible_builder_accepts_the_execution_environment(built, tmp_path):
    shutil.copy(REPO / "execution-environment.yml", tmp_path)
    shutil.copy(built, tmp_path)
    run = subprocess.run([BIN / "ansible-builder", "create", "-f", "execution-environment.yml", "-c", "context"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    requirements = yaml.safe_load((tmp_path / "context/_build/requirements.yml").read_text())
    name = requirements["collections"][0]["name"]
    # the build copies _build/ to /build and installs the requirements from there
    assert (tmp_path / "context/_build" / name).is_file(), name
    assert name.endswith(TARBALL)
    containerfile = next(p for p in (tmp_path / "context").iterdir() if p.name in ("Containerfile", "Dockerfile"))
    assert "COPY _build /build" in containerfile.read_text()
