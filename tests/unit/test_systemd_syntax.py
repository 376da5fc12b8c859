"""systemd quoting, checked against systemd itself (systemd-analyze), not only our own reading."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.systemd_syntax import (
    environment_lines,
    exec_line,
    quote_word,
)


def test_plain_words_stay_bare():
    assert exec_line(["/usr/bin/numactl", "--cpunodebind=0,1", "/opt/kt/bin/python", "-m", "x"]) == (
        "/usr/bin/numactl --cpunodebind=0,1 /opt/kt/bin/python -m x"
    )


@pytest.mark.parametrize(
    ("word", "quoted"),
    [
        ("My Model", '"My Model"'),
        ("50%", "50%%"),
        ("$HOME", "$$HOME"),
        ('say "hi"', '"say \\"hi\\""'),
        ("a;b", '"a;b"'),
        ("", '""'),
    ],
)
def test_quote_word(word, quoted):
    assert quote_word(word) == quoted


@pytest.mark.parametrize("argv", [[], ["python", "-m", "x"]])
def test_exec_line_rejects_relative_or_empty(argv):
    with pytest.raises(ValueError):
        exec_line(argv)


def test_newline_rejected():
    with pytest.raises(ValueError, match="newline"):
        quote_word("a\nb")


def test_environment_sorted_and_escaped():
    assert environment_lines({"B": "50%", "A": 'x "y"'}) == ['"A=x \\"y\\""', '"B=50%%"']
    with pytest.raises(ValueError, match="variable name"):
        environment_lines({"1BAD": "x"})


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_accepts_the_quoted_unit(tmp_path):
    """Awkward arguments and values render into a unit systemd-analyze verify accepts without a word."""
    argv = ["/bin/echo", "plain", "two words", "50%", "$HOME", 'q"uote', "back\\slash", "semi;colon"]
    unit = tmp_path / "ktfleet-quote-test.service"
    env = {"SGLANG_SET_CPU_AFFINITY": "0", "ODD": "100% sure"}
    unit.write_text(
        "[Service]\nType=oneshot\n"
        + "".join(f"Environment={line}\n" for line in environment_lines(env))
        + f"ExecStart={exec_line(argv)}\n"
    )
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "ktfleet-quote-test" not in out.stderr, out.stderr
