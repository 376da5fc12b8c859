"""Where tune.yml saves its measurements is where diagnose.yml reads them.

The role's tune entry point writes <ktfleet_tune_dir>/<host>.json (vars/main.yml's
__ktfleet_tune_file, from the role's defaults); its diagnose entry point
(tasks/diagnose.yml, playbooks/diagnose.yml's only task) reads the saved file.
When diagnose.yml was a play outside the role with its own defaults, they
disagreed with only ktfleet_report_dir set.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "ktransformers"


def _trusted(values: dict) -> dict:
    return {k: trust_as_template(v) if isinstance(v, str) else v for k, v in values.items()}


def _render(expression: str, variables: dict) -> str:
    templar = Templar(loader=DataLoader(), variables=_trusted(variables))
    return str(templar.template(trust_as_template(expression))).strip()


def role_tune_file(inventory: dict) -> str:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    return _render(role_vars["__ktfleet_tune_file"], {**defaults, **inventory})


def diagnose_tune_file(inventory: dict) -> str:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    tasks = yaml.safe_load((ROLE / "tasks" / "diagnose.yml").read_text())
    tasks = [t for t in tasks if "__ktfleet_tune_file" in (t.get("vars") or {})]
    assert len(tasks) == 1, "diagnose.yml reads the saved tuning in one task"
    return _render(tasks[0]["vars"]["__ktfleet_tune_file"], {**defaults, **inventory})


@pytest.mark.parametrize("inventory", [
    {},
    {"ktfleet_report_dir": "/srv/ktfleet/report"},
    {"ktfleet_tune_dir": "/srv/ktfleet/tune"},
    {"ktfleet_report_dir": "/srv/ktfleet/report", "ktfleet_tune_dir": "/elsewhere"},
])
def test_tune_writes_where_diagnose_reads(inventory):
    inventory = {**inventory, "inventory_hostname": "gpu-a01", "inventory_dir": "/inv"}
    assert role_tune_file(inventory) == diagnose_tune_file(inventory)


def test_report_dir_alone_moves_the_measurements():
    inventory = {"ktfleet_report_dir": "/srv/ktfleet/report", "inventory_hostname": "gpu-a01"}
    assert role_tune_file(inventory) == "/srv/ktfleet/report/tune/gpu-a01.json"


def test_default_is_under_the_working_directory():
    inventory = {"inventory_hostname": "gpu-a01"}
    assert role_tune_file(inventory) == f"{os.environ.get('PWD', '')}/build/report/tune/gpu-a01.json"
