"""Byte sizes (plugin_utils/sizes.py): the one parser and the three printed styles."""

from __future__ import annotations

import pytest

from ansible_collections.ktfleet.numa.plugins.plugin_utils.sizes import (
    GIB,
    format_size,
    format_size_coarse,
    format_size_short,
    parse_size,
)


# moved from tests/unit/test_fleet_table.py (fleet_table.human_bytes is sizes.format_size_short now)
def test_format_size_short():
    assert format_size_short(382 * 1024**3) == "382.0G"
    assert format_size_short(512) == "512B"
    assert format_size_short(None) == "?"


def test_format_size():
    assert format_size(None) == "unknown"
    assert format_size(512) == "512 B"
    assert format_size(int(355.8 * GIB)) == "355.8 GiB"
    assert format_size(20 * 1024 * GIB) == "20.00 TiB"


def test_format_size_coarse():
    assert format_size_coarse(1.5 * GIB) == "1.5 GiB"
    assert format_size_coarse(512 << 20) == "512 MiB"


@pytest.mark.parametrize(("text", "value"), [("382G", 382 * GIB), ("400GB", 400 * 1000**3), (7, 7), ("-1", -1)])
def test_parse_size(text, value):
    assert parse_size(text) == value


def test_parse_size_refuses_garbage():
    with pytest.raises(ValueError):
        parse_size("lots")
