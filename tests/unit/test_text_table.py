"""Console tables (plugin_utils/text_table.py): the fleet table, the tuning table and the diagnosis table."""

from __future__ import annotations

import pytest

from ansible_collections.ktfleet.numa.plugins.plugin_utils.text_table import line, rule, table


def test_table_sizes_columns_to_their_cells():
    assert table([("host", "cores"), ("a", "64"), ("long-name", "8")]) == [
        "host       cores",
        "---------  -----",
        "a          64",
        "long-name  8",
    ]


def test_line_aligns_and_keeps_a_free_last_column():
    assert line((7, "12.50", ""), (7, 8, 0), ">>") == "      7     12.50  "
    assert line(("check", "status", "summary"), (5, 6, 0)) == "check  status  summary"
    assert rule((7, 8)) == "-------  --------"


def test_cells_and_widths_must_pair():
    with pytest.raises(ValueError):
        line(("a", "b"), (1,))
