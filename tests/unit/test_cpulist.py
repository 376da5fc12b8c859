"""The kernel's CPU list vocabulary (module_utils/cpulist.py): the one parser and
formatter every caller uses (facts, placement, sampling, planner, report, diagnosis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import (
    MAX_CPU,
    format_cpulist,
    format_cpumask,
    join_ids,
    parse_cpulist,
    parse_cpumask,
)


# moved from tests/unit/test_placement.py (placement.parse_list is the lenient parser now)
def test_parse_list():
    assert parse_cpulist("0-3,8,10-11\n", lenient=True) == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpulist("", lenient=True) == []


def test_strict_is_the_kernels_syntax():
    assert parse_cpulist("0-15:2/4") == [0, 1, 4, 5, 8, 9, 12, 13]
    assert parse_cpulist(" 0 - 1 , 4\n") == [0, 1, 4]
    for bad in ("0 2", "0,,2", "3-1", "a", "-1", f"0-{MAX_CPU}", "0-7:0/4", "\u0663"):
        with pytest.raises(ValueError):
            parse_cpulist(bad)


def test_lenient_takes_white_space_and_empty_items():
    assert parse_cpulist("0-3,8 10-11", lenient=True) == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpulist(",0,,2,", lenient=True) == [0, 2]
    for bad in ("numa", "3-1", "0-x"):
        with pytest.raises(ValueError):
            parse_cpulist(bad, lenient=True)


def test_masks():
    assert parse_cpumask("00000000,00000103") == [0, 1, 8]
    assert parse_cpumask("") == []
    for bad in ("0x3", "1,,0", ",1", "g"):
        with pytest.raises(ValueError):
            parse_cpumask(bad)


def test_format():
    assert format_cpulist([8, 0, 1, 2, 3, 10, 11]) == "0-3,8,10-11"
    assert format_cpulist([]) == ""
    assert format_cpulist({5}) == "5"
    assert join_ids([1, 0, 3]) == "1,0,3" and join_ids([]) == ""


@given(st.sets(st.integers(0, 300)))
def test_round_trips(cpus):
    text = format_cpulist(cpus)
    assert parse_cpulist(text) == sorted(cpus) == parse_cpulist(text, lenient=True)
    assert parse_cpumask(format_cpumask(cpus)) == sorted(cpus)


# moved from tests/unit/test_host_tuning_cpulist.py (the filter's format_mask lives here now)
@pytest.mark.parametrize(
    ("ids", "mask"),
    [
        ([], "0"),
        ([0, 1], "3"),
        ([0, 1, 2, 3, 8], "10f"),
        ([31], "80000000"),
        ([32], "1,00000000"),
        ([0, 1, 32], "1,00000003"),
        (list(range(64)), "ffffffff,ffffffff"),
        ([100], "10,00000000,00000000,00000000"),
    ],
)
def test_mask_in_32_bit_groups(ids, mask):
    assert format_cpumask(ids) == mask


def test_mask_round_trips_through_int():
    ids = [0, 5, 31, 32, 63, 64, 127]
    value = int(format_cpumask(ids).replace(",", ""), 16)
    assert [bit for bit in range(128) if value >> bit & 1] == ids
