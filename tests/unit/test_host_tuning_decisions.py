"""roles/host_tuning's decisions (plugin_utils/tuning/host_tuning.py), tested without a playbook."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ktfleet.numa.plugins.filter.host_tuning import FilterModule
from ansible_collections.ktfleet.numa.plugins.plugin_utils.tuning.host_tuning import (
    irqbalance_settings,
    irqbalance_unit,
    report_lines,
)


def show(*lines, rc=0):
    return {"rc": rc, "stdout_lines": list(lines)}


def test_loaded_unit_reads_its_last_environment_file():
    state = irqbalance_unit(show(
        "LoadState=loaded", "ActiveState=active",
        "EnvironmentFiles=/etc/default/irqbalance (ignore_errors=yes)",
        "EnvironmentFiles=/etc/sysconfig/irqbalance (ignore_errors=no)",
    ))
    assert state["file"] == "/etc/sysconfig/irqbalance" and state["why"] == ""
    assert state["unit"]["ActiveState"] == "active"


@pytest.mark.parametrize(("result", "why"), [
    (show("LoadState=not-found", "ActiveState=inactive"), "not installed"),
    (show("ActiveState=inactive"), "not installed"),
    (show("LoadState=masked"), "irqbalance.service is masked: left as is"),
    (show(rc=1), "systemd did not answer (not running?): left as is"),
])
def test_why_it_is_left_alone(result, why):
    assert irqbalance_unit(result)["why"] == why


def test_staged_root_asks_nobody():
    assert irqbalance_unit({"skipped": True}, staged=True) == {
        "unit": {}, "file": "/etc/default/irqbalance", "why": ""}


def test_settings_with_and_without_our_block():
    text = (
        "IRQBALANCE_BANNED_CPUS=3\n"
        "# BEGIN ktfleet.numa.host_tuning: irqbalance off the inference CPUs\n"
        "IRQBALANCE_BANNED_CPULIST=0-7  \n"
        "# END ktfleet.numa.host_tuning: irqbalance off the inference CPUs\n"
    )
    assert irqbalance_settings(text) == {"before": "IRQBALANCE_BANNED_CPULIST=0-7", "host": "IRQBALANCE_BANNED_CPUS=3"}
    assert irqbalance_settings("") == {"before": "none", "host": "none"}


def test_report_lines_are_columns():
    rows = [
        {"setting": "numad", "before": "active", "after": "stopped", "changed": True, "note": "stopped"},
        {"setting": "irqbalance", "before": "none", "after": "-", "changed": False, "note": "not installed"},
    ]
    assert report_lines(rows) == [
        "setting     before  after    changed  note",
        "numad       active  stopped  yes      stopped",
        "irqbalance  none    -        no       not installed",
    ]


def test_filters_are_registered_and_check_their_input():
    filters = FilterModule().filters()
    assert set(filters) == {"irqbalance_unit", "irqbalance_settings", "tuning_report_lines"}
    with pytest.raises(AnsibleFilterError):
        filters["irqbalance_settings"](None)
    with pytest.raises(AnsibleFilterError):
        filters["tuning_report_lines"]([{"setting": "x"}])
