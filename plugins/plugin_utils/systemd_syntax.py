"""systemd unit-file quoting: argv and environment as systemd parses them back.

systemd splits ExecStart= on whitespace, honours C-style double quotes, and
expands ``%`` specifiers and ``$VAR`` in every word; an argument is therefore
quoted when it has whitespace or quotes, and ``%``/``$`` are always doubled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_NEEDS_QUOTES = re.compile(r'[\s"\'\\;]')


def quote_word(word: object) -> str:
    """One argv word in unit-file syntax (systemd.service(5), "COMMAND LINES")."""
    text = str(word)
    if "\n" in text or "\x00" in text:
        raise ValueError(f"a systemd argument cannot contain a newline or NUL: {text!r}")
    text = text.replace("%", "%%").replace("$", "$$")
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_line(argv: Iterable[object]) -> str:
    """An argv list as the value of ExecStart=."""
    words = [quote_word(w) for w in argv]
    if not words:
        raise ValueError("an ExecStart= command line needs at least the program")
    if not words[0].lstrip('"').startswith("/"):
        raise ValueError(f"ExecStart= needs an absolute program path, got {argv!r}")
    return " ".join(words)


def environment_lines(env: Mapping[str, object]) -> list[str]:
    """Environment= assignments, one per variable, sorted for stable diffs."""
    lines = []
    for key in sorted(env):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"not a valid environment variable name: {key!r}")
        value = str(env[key]).replace("%", "%%")
        if "\n" in value:
            raise ValueError(f"environment variable {key} cannot contain a newline")
        lines.append('"' + f"{key}={value}".replace("\\", "\\\\").replace('"', '\\"') + '"')
    return lines
