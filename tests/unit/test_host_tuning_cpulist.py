"""Filters ktfleet.numa.cpulist and cpumask (used by roles/host_tuning for irqbalance)."""

from __future__ import annotations

import re

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ktfleet.numa.plugins.filter.cpulist import (
    FilterModule,
    cpulist,
    cpumask,
    parse_cpulist,
)


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("0-3,8", [0, 1, 2, 3, 8]),
        ("8,0-3", [0, 1, 2, 3, 8]),
        ("0-31,64-95", list(range(32)) + list(range(64, 96))),
        (" 0 - 1 , 4\n", [0, 1, 4]),
        ("3,3,2-3", [2, 3]),
        ("5-5", [5]),
        ("", []),
        ([3, "1", 1], [1, 3]),
    ],
)
def test_parse(text, ids):
    assert parse_cpulist(text) == ids


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("3-1", "bad cpulist range '3-1'"),
        ("0-x", "not a number: 'x'"),
        ("1,,2", "not a number: ''"),
        ("-1", "not a number: ''"),
        ("all", "not a number: 'all'"),
        ("0-99999999", "bad cpulist range"),  # capped: no list of a hundred million ids
        ([True], "integers >= 0"),
        ([-1], "integers >= 0"),
        ([1 << 20], "below 65536"),
        (7, "got int"),
    ],
)
def test_parse_refuses(text, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        parse_cpulist(text)


def test_filters_wrap_errors_and_are_registered():
    assert cpulist("0-2") == [0, 1, 2]
    assert cpumask("0-3,8") == "10f"
    with pytest.raises(AnsibleFilterError, match="^cpulist: "):
        cpulist("2-1")
    with pytest.raises(AnsibleFilterError, match="^cpumask: "):
        cpumask("x")
    assert set(FilterModule().filters()) == {"cpulist", "cpumask"}
