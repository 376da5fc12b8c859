"""ktfleet.numa.sysfs_value, in process, against a staged /proc/sys and /sys (its root option)."""

from __future__ import annotations

import errno
import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.ktfleet.numa.plugins.modules import sysfs_value

THP = "/sys/kernel/mm/transparent_hugepage/enabled"
NUMA = "/proc/sys/kernel/numa_balancing"
GOVERNORS = "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor"


def put(root, path, text):
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


@pytest.fixture
def root(tmp_path):
    put(tmp_path, THP, "[always] madvise never\n")
    put(tmp_path, NUMA, "1\n")
    for cpu in (0, 1, 2, 10):
        cpufreq = f"/sys/devices/system/cpu/cpu{cpu}/cpufreq"
        put(tmp_path, f"{cpufreq}/scaling_governor", "schedutil\n" if cpu == 10 else "powersave\n")
        put(tmp_path, f"{cpufreq}/scaling_available_governors", "performance powersave schedutil\n")
    # not a CPU directory: the glob must not take it
    put(tmp_path, "/sys/devices/system/cpu/cpufreq/policy0/scaling_governor", "powersave\n")
    return tmp_path


def run(capsys, root, check=False, diff=False, **args):
    """The module's JSON result (failures included: ``failed`` is then true)."""
    args = {"root": str(root), "_ansible_check_mode": check, "_ansible_diff": diff, **args}
    with patch_module_args(args), pytest.raises(SystemExit):
        sysfs_value.main()
    return json.loads(capsys.readouterr().out)


def read(root, path):
    return (root / path.lstrip("/")).read_text()


# --- pure helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "choices"),
    [
        ("[always] madvise never\n", "always", ["always", "madvise", "never"]),
        ("always defer defer+madvise [madvise] never\n", "madvise", ["always", "defer", "defer+madvise", "madvise", "never"]),
        ("1\n", "1", None),
        ("4096\t16384   4194304\n", "4096 16384 4194304", None),
        ("[x]\n", "[x]", None),  # one bracketed word alone is a value, not a choice list
        ("", "", None),
    ],
)
def test_parse_value(text, value, choices):
    assert sysfs_value.parse_value(text) == (value, choices)


def test_summarize_and_natural_order():
    assert sysfs_value.summarize({}) is None
    assert sysfs_value.summarize({"a": "x", "b": "x"}) == "x"
    assert sysfs_value.summarize({"a": "y", "b": "x", "c": "y"}) == "mixed: x x1, y x2"
    paths = ["/cpu10/g", "/cpu2/g", "/cpu1/g"]
    assert sorted(paths, key=sysfs_value.natural_key) == ["/cpu1/g", "/cpu2/g", "/cpu10/g"]


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "proc/sys/kernel/numa_balancing", "/sys/../etc/shadow", "/procfoo/sys/x"]
)
def test_paths_outside_proc_sys_and_sys_are_refused(capsys, root, path):
    result = run(capsys, root, path=path, value="0")
    assert result["failed"]
    assert result["msg"].startswith("path: ")


# --- reading ------------------------------------------------------------------------


def test_read_only_reports_value_and_choices(capsys, root):
    result = run(capsys, root, path=THP)
    assert not result["changed"]
    assert result["exists"]
    assert result["paths"] == [THP]
    assert result["before"] == result["after"] == "always"
    assert result["values_before"] == {THP: "always"}
    assert result["choices"] == ["always", "madvise", "never"]
    assert result["check_mode"] is False


def test_glob_reads_every_cpu_in_natural_order_and_summarizes_a_mix(capsys, root):
    result = run(capsys, root, path=GOVERNORS, choices_file="scaling_available_governors")
    assert result["paths"] == [f"/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor" for c in (0, 1, 2, 10)]
    assert result["before"] == "mixed: powersave x3, schedutil x1"
    assert result["choices"] == ["performance", "powersave", "schedutil"]


def test_no_match_is_not_an_error_and_changes_nothing(capsys, tmp_path):
    result = run(capsys, tmp_path, path=GOVERNORS, value="performance")
    assert not result.get("failed")
    assert not result["changed"]
    assert not result["exists"]
    assert result["paths"] == []
    assert result["before"] is None and result["after"] is None


# --- setting ------------------------------------------------------------------------


def test_set_writes_verifies_and_is_idempotent(capsys, root):
    result = run(capsys, root, path=NUMA, value="0")
    assert result["changed"]
    assert (result["before"], result["after"]) == ("1", "0")
    assert read(root, NUMA) == "0\n"
    again = run(capsys, root, path=NUMA, value="0")
    assert not again["changed"]
    assert again["before"] == "0"


def test_check_mode_writes_nothing_and_says_what_would_be_set(capsys, root):
    result = run(capsys, root, check=True, diff=True, path=THP, value="madvise")
    assert result["changed"]
    assert result["check_mode"] is True
    assert (result["before"], result["after"]) == ("always", "madvise")
    assert result["diff"]["before"] == f"{THP}: always\n"
    assert result["diff"]["after"] == f"{THP}: madvise\n"
    assert read(root, THP) == "[always] madvise never\n"


def test_no_diff_unless_asked_or_changed(capsys, root):
    assert "diff" not in run(capsys, root, path=THP, value="madvise")
    assert "diff" not in run(capsys, root, diff=True, path=THP, value="madvise")


def test_whitespace_does_not_count_as_a_difference(capsys, root):
    put(root, "/proc/sys/net/ipv4/tcp_rmem", "4096\t131072\t6291456\n")
    result = run(capsys, root, path="/proc/sys/net/ipv4/tcp_rmem", value="4096 131072  6291456")
    assert not result["changed"]


def test_a_value_outside_the_bracketed_choices_is_refused_even_in_check_mode(capsys, root):
    for check in (False, True):
        result = run(capsys, root, check=check, path=THP, value="sometimes")
        assert result["failed"]
        assert result["msg"] == f"value: {THP} accepts always, madvise, never; 'sometimes' is not one of them"
        assert read(root, THP) == "[always] madvise never\n"


def test_choices_file_refuses_a_governor_before_writing_any_cpu(capsys, root):
    result = run(capsys, root, path=GOVERNORS, value="ondemand", choices_file="scaling_available_governors")
    assert result["failed"]
    assert "accepts performance, powersave, schedutil" in result["msg"]
    assert read(root, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") == "powersave\n"


def test_set_every_cpu_then_restore_each_exactly(capsys, root):
    tuned = run(capsys, root, path=GOVERNORS, value="performance", choices_file="scaling_available_governors")
    assert tuned["changed"]
    assert tuned["after"] == "performance"
    assert set(tuned["values_after"].values()) == {"performance"}
    # the policy directory outside cpuN/ is not touched
    assert read(root, "/sys/devices/system/cpu/cpufreq/policy0/scaling_governor") == "powersave\n"

    gone = "/sys/devices/system/cpu/cpu99/cpufreq/scaling_governor"  # went offline since: ignored
    restored = run(capsys, root, path=GOVERNORS, values={**tuned["values_before"], gone: "powersave"})
    assert restored["changed"]
    assert restored["values_after"] == tuned["values_before"]
    assert restored["after"] == "mixed: powersave x3, schedutil x1"
    assert gone not in restored["values_after"]


def test_values_for_some_paths_and_value_for_the_rest(capsys, root):
    cpu0 = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
    result = run(capsys, root, path=GOVERNORS, value="performance", values={cpu0: "schedutil"})
    assert result["values_after"][cpu0] == "schedutil"
    assert result["before"] != result["after"]
    assert sorted(set(result["values_after"].values())) == ["performance", "schedutil"]


def test_kernel_refusal_is_reported_with_the_choices(capsys, root, monkeypatch):
    def refuse(real, value):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(sysfs_value, "write", refuse)
    result = run(capsys, root, path=THP, value="never")
    assert result["failed"]
    assert result["msg"] == (
        f"value: the kernel refused 'never' for {THP}: Invalid argument; it accepts always, madvise, never"
    )


def test_a_value_the_kernel_does_not_keep_fails(capsys, root, monkeypatch):
    monkeypatch.setattr(sysfs_value, "write", lambda real, value: None)
    result = run(capsys, root, path=NUMA, value="0")
    assert result["failed"]
    assert result["msg"] == f"value: {NUMA} reads '1' after writing '0'; the kernel did not take it"
