"""The one reader of /sys and /proc under a root, and the meminfo parser (module_utils/sysfs.py)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.ktfleet.numa.plugins.module_utils import sysfs
from ansible_collections.ktfleet.numa.plugins.module_utils.sysfs import (
    MAX_MEMORY_KB,
    READ_LIMIT,
    Root,
    meminfo_bytes,
    parse_meminfo,
)


def write(root, rel, data: bytes | str) -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


# --- reading ----------------------------------------------------------------------------------------


def test_a_value_and_its_padding(tmp_path):
    write(tmp_path, "sys/a", "0-3\n")
    write(tmp_path, "sys/kunpeng", b"31\n\x00\x00")  # firmware's NUL padding after the newline
    write(tmp_path, "sys/empty_list", b"\n\x00")
    root = Root(str(tmp_path))
    assert root.read_text("sys/a") == ("0-3\n", None)  # no NUL: the text as it is
    assert root.read_text("sys/kunpeng") == ("31", None)
    assert root.read_text("sys/empty_list") == ("", None)


def test_only_nul_is_no_value(tmp_path):
    write(tmp_path, "sys/nul", b"\x00\x00\x00")
    assert Root(str(tmp_path)).read_text("sys/nul") == (None, (sysfs.ONLY_NUL, "only NUL bytes, no value"))


def test_missing_names_the_os_words(tmp_path):
    write(tmp_path, "sys/file", "1\n")
    root = Root(str(tmp_path))
    assert root.read_text("sys/nope") == (None, (sysfs.MISSING, "No such file or directory"))
    assert root.read_text("sys/file/below")[1].code == sysfs.MISSING  # a path through a file


def test_a_directory_a_fifo_and_a_huge_file_are_refused(tmp_path):
    (tmp_path / "sys/dir").mkdir(parents=True)
    os.mkfifo(tmp_path / "sys/fifo")  # no writer: a plain open() would block
    write(tmp_path, "sys/huge", b"1" * (READ_LIMIT + 1))
    root = Root(str(tmp_path))
    assert root.read_text("sys/dir") == (None, (sysfs.DIRECTORY, "a directory"))
    assert root.read_text("sys/fifo") == (None, (sysfs.NOT_A_FILE, "not a regular file"))
    assert root.read_text("sys/huge") == (None, (sysfs.NOT_A_FILE, f"larger than {READ_LIMIT >> 20} MiB"))


def test_links_stay_inside_the_root(tmp_path):
    outside = tmp_path / "secret"
    outside.write_text("root:x:0:0\n")
    root_dir = tmp_path / "dump"
    write(root_dir, "node1-cpus", "4-7\n")
    write(root_dir, "sys/real/cpulist", "0-3\n")
    os.symlink("../node1-cpus", root_dir / "sys/inside")
    os.symlink(str(outside), root_dir / "sys/outside")
    os.symlink("real", root_dir / "sys/linkdir")  # a directory link inside the root
    os.symlink(str(tmp_path), root_dir / "sys/escape")  # a directory link out of it
    root = Root(str(root_dir))
    assert root.read_text("sys/inside") == ("4-7\n", None)
    assert root.read_text("sys/linkdir/cpulist") == ("0-3\n", None)
    refused = (None, (sysfs.NOT_A_FILE, "a link that leaves the root"))
    assert root.read_text("sys/outside") == refused
    assert root.read_text("sys/escape/secret") == refused
    # the live host's root follows every link: there is nothing outside /
    assert Root("/").read_text(str(outside).lstrip("/")) == ("root:x:0:0\n", None)


def test_listing_a_directory_stays_inside_the_root(tmp_path):
    root_dir = tmp_path / "dump"
    write(root_dir, "sys/real/node0/cpulist", "0-3\n")
    os.symlink("real", root_dir / "sys/linkdir")
    os.symlink(str(tmp_path), root_dir / "sys/escape")
    root = Root(str(root_dir))
    assert root.listdir("sys/linkdir") == ["node0"]
    assert sorted(root.listdir("")) == ["sys"]
    with pytest.raises(sysfs.NotAFile, match="a link that leaves the root"):
        root.listdir("sys/escape")
    with pytest.raises(FileNotFoundError):
        root.listdir("sys/none")


def test_a_nul_in_the_path_is_a_bad_path(tmp_path):
    text, problem = Root(str(tmp_path)).read_text("sys/node\x00/cpulist")
    assert text is None and problem.code == sysfs.BAD_PATH


def test_permission_denied_is_unreadable(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads a mode 000 file")
    write(tmp_path, "sys/locked", "1\n")
    os.chmod(tmp_path / "sys/locked", 0)
    assert Root(str(tmp_path)).read_text("sys/locked") == (None, (sysfs.UNREADABLE, "Permission denied"))


def test_bytes_decode_with_replacement(tmp_path):
    write(tmp_path, "proc/1/stat", "1 (caf\u00e9) S\n".encode())
    root = Root(str(tmp_path))
    assert root.read_text("proc/1/stat") == ("1 (caf\u00e9) S\n", None)
    assert root.read_text("proc/1/stat", encoding="ascii") == ("1 (caf\ufffd\ufffd) S\n", None)


def test_slurp_reads_past_the_first_chunk(tmp_path):
    data = b"x" * (sysfs.CHUNK * 3 + 5)
    write(tmp_path, "big", data)
    assert sysfs.slurp(str(tmp_path / "big")) == data


# --- meminfo ----------------------------------------------------------------------------------------


def test_meminfo_of_the_system_and_of_a_node():
    assert parse_meminfo("MemTotal:  100 kB\nMemAvailable: 50 kB\nHugePages_Total: 3\n") == {
        "MemTotal": 102400, "MemAvailable": 51200, "HugePages_Total": 3}
    assert parse_meminfo("Node 1 MemFree:   4 kB\nNode 1 Active(file):  8 kB\n") == {
        "MemFree": 4096, "Active(file)": 8192}


def test_meminfo_bytes_of_named_fields():
    text = "Node 0 MemTotal:  16384 kB\nNode 0 MemFree:   1024 kB\nNode 0 HugePages_MemTotal: 9 kB\n"
    assert meminfo_bytes(text, ("MemTotal", "MemFree", "MemAvailable")) == [16384 * 1024, 1024 * 1024, None]
    # a name is a whole name: MemTotal is not found inside HugePages_MemTotal
    assert meminfo_bytes("HugePages_MemTotal: 9 kB\n", ("MemTotal",)) == [None]
    assert meminfo_bytes("MemTotal: 1 kB\nMemTotal: 2 kB\n", ("MemTotal",)) == [1024]  # the first line counts


@pytest.mark.parametrize(
    "text, message",
    [
        ("MemTotal:\n", "no value for MemTotal"),
        ("MemTotal: lots kB\n", "not a number: 'lots'"),
        (f"MemTotal: {MAX_MEMORY_KB + 1} kB\n", f"MemTotal of {MAX_MEMORY_KB + 1} kB is beyond any machine"),
    ],
)
def test_a_corrupt_field_is_an_error_when_named_and_left_out_otherwise(text, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        meminfo_bytes(text + "MemFree: 1 kB\n", ("MemTotal", "MemFree"))
    assert meminfo_bytes(text + "MemFree: 1 kB\n", ("MemFree",)) == [1024]
    assert parse_meminfo(text + "MemFree: 1 kB\n") == {"MemFree": 1024}


def test_garbage_is_no_field():
    assert parse_meminfo("\x00garbage ) ( 1 2\n") == {}
    assert meminfo_bytes("garbage\n", ("MemTotal",)) == [None]
