"""A service's main process (module_utils/service.py): what numa_placement and numa_sample ask systemd."""

from __future__ import annotations

import pytest

from ansible_collections.ktfleet.numa.plugins.module_utils.service import main_pid, parse_main_pid


def test_main_pid_asks_systemctl_for_the_value_only():
    calls = []

    def run(argv):
        calls.append(argv)
        return 0, "4242\n", ""

    assert main_pid(run, "ktransformers.service", "/usr/bin/systemctl") == 4242
    assert calls == [["/usr/bin/systemctl", "show", "-p", "MainPID", "--value", "ktransformers.service"]]


def test_not_running_is_zero():
    assert parse_main_pid("kt", 0, "0\n", "") == 0


@pytest.mark.parametrize(("rc", "out", "err", "said"), [
    (1, "", "Failed to connect to bus\n", "Failed to connect to bus"),
    (0, "[not set]\n", "", "[not set]"),
])
def test_errors_name_the_service_and_what_systemctl_said(rc, out, err, said):
    with pytest.raises(ValueError) as info:
        parse_main_pid("kt.service", rc, out, err)
    assert str(info.value) == f"service: cannot read MainPID of kt.service: {said}"
