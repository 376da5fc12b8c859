"""The filters' one pydantic shim (plugin_utils/needs_pydantic.py)."""

from __future__ import annotations

import sys

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ktfleet.numa.plugins.plugin_utils import needs_pydantic


def test_core_imports_the_module():
    assert needs_pydantic.core("sizes", "x").parse_size("1K") == 1024


def test_missing_pydantic_is_one_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydantic", None)  # import pydantic -> ImportError
    for name in [m for m in sys.modules if m.endswith("plugin_utils.planner.models") or m.endswith("plugin_utils.planner.planner")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(AnsibleFilterError, match=r"^ktfleet\.numa\.plan needs pydantic>=2\.7 on the controller \("):
        needs_pydantic.core("planner.planner", "plan")
