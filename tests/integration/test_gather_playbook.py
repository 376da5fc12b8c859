"""playbooks/gather.yml for real: the captured dump gives the live host's facts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.ktfleet.numa.plugins.module_utils.topology import gather, open_root

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
# Change by the second on a live host: not part of "the same facts".
VOLATILE = {"root", "memory_available_bytes"}


def stable(facts: dict) -> dict:
    out = {k: v for k, v in facts.items() if k not in VOLATILE}
    out["nodes"] = [{k: v for k, v in n.items() if k not in ("memory_free_bytes", "hugepages")} for n in facts["nodes"]]
    return out


@pytest.mark.ansible
def test_gather_captures_a_dump_equal_to_the_live_host(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n    live:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n"
    )
    run = subprocess.run(
        [PLAYBOOK, "playbooks/gather.yml", "-i", str(inventory), "-e", f"ktfleet_capture_dir={tmp_path}/captures"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    saved = json.loads((tmp_path / "captures/live/facts.json").read_text())
    archive = tmp_path / "captures/live/dump.tar.gz"
    with open_root(str(archive)) as tree:
        from_dump = gather(tree)
    assert stable(from_dump) == stable(saved)
    assert stable(saved) == stable(gather("/"))
