"""The one shim for filters whose core needs pydantic on the controller.

A filter file imports this (stdlib and ansible only), not its core: the filter
loads everywhere (ansible-doc, sanity's import test, a controller without
pydantic), and the first call imports the core or fails with one message that
says what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ansible.errors import AnsibleFilterError

PACKAGE = "ansible_collections.ktfleet.numa.plugins.plugin_utils"
REQUIREMENT = "pydantic>=2.7"


def core(module: str, filter_name: str) -> ModuleType:
    """plugin_utils.<module> (dotted, e.g. ``planner.planner``) imported, or AnsibleFilterError naming ``ktfleet.numa.<filter_name>``."""
    try:
        return importlib.import_module(f"{PACKAGE}.{module}")
    except ImportError as exc:
        raise AnsibleFilterError(
            f"ktfleet.numa.{filter_name} needs {REQUIREMENT} on the controller ({exc})"
        ) from None
