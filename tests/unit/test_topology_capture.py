"""capture(): a dump of exactly what gather() reads gives the same facts."""

from __future__ import annotations

import pytest
from conftest import DUMP_NAMES

from ansible_collections.ktfleet.numa.plugins.module_utils.topology import (
    capture,
    capture_archive,
    gather,
    open_root,
)


@pytest.mark.parametrize("name", DUMP_NAMES)
def test_capture_of_a_dump_reads_back_identically(name, dump_root, tmp_path):
    root = str(dump_root(name))
    facts = capture(root, str(tmp_path / "cap"))
    again = gather(str(tmp_path / "cap"))
    facts.pop("root"), again.pop("root")
    assert again == facts


def test_capture_archive_round_trip_through_open_root(dump_root, tmp_path):
    root = str(dump_root("32intel64-2p8co2t+8ve"))
    archive = tmp_path / "host.tar.gz"
    facts = capture_archive(root, str(archive))
    with open_root(str(archive)) as tree:
        again = gather(tree)
    facts.pop("root"), again.pop("root")
    assert again == facts


def test_open_root_passes_directories_through(tmp_path):
    with open_root(str(tmp_path)) as tree:
        assert tree == str(tmp_path)
