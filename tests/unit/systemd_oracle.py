"""Read rendered units and environment files back as systemd does (test equipment).

Two readers for each thing, so a test never trusts ktfleet's own writer:

* systemd's own code: ``load_env_file`` (src/basic/env-file.c, what the service
  manager runs for EnvironmentFile=) and ``extract_first_word`` (the splitter of
  ExecStart= and Environment=) from libsystemd-shared, called through ctypes;
* a Python reader written from the documentation: systemd.syntax(7) for unit
  lines, systemd.exec(5) "EnvironmentFile=" for the environment file grammar.

``libsystemd()`` is None where the shared library is missing; tests then rely on
the Python readers and the Molecule VMs (molecule/shared/verify.yml).
"""

from __future__ import annotations

import ctypes
import glob
import re
from functools import cache
from pathlib import Path

# src/basic/extract-word.h in systemd 252: EXTRACT_CUNESCAPE = 1 << 1, EXTRACT_UNQUOTE = 1 << 5
EXTRACT_CUNESCAPE_UNQUOTE = (1 << 1) | (1 << 5)


@cache
def libsystemd() -> ctypes.CDLL | None:
    for path in sorted(glob.glob("/usr/lib/*/systemd/libsystemd-shared-*.so") + glob.glob("/lib/systemd/libsystemd-shared-*.so")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        lib.load_env_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.POINTER(ctypes.c_char_p))]
        lib.load_env_file.restype = ctypes.c_int
        lib.extract_first_word.argtypes = [
            ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_int,
        ]
        lib.extract_first_word.restype = ctypes.c_int
        if _split_with(lib, b'"a b" c\\x41') != [b"a b", b"cA"]:
            continue  # another flag layout than 252's: do not guess
        return lib
    return None


def _split_with(lib: ctypes.CDLL, line: bytes) -> list[bytes] | None:
    buf = ctypes.create_string_buffer(line)
    cursor = ctypes.c_char_p(ctypes.addressof(buf))
    words = []
    while True:
        word = ctypes.c_void_p()
        rc = lib.extract_first_word(ctypes.byref(cursor), ctypes.byref(word), None, EXTRACT_CUNESCAPE_UNQUOTE)
        if rc < 0:
            return None
        if rc == 0:
            return words
        words.append(ctypes.string_at(word.value))


def systemd_split(line: str) -> list[str] | None:
    """Words of an ExecStart=/Environment= value as systemd's extract_first_word splits them (None: refused)."""
    lib = libsystemd()
    assert lib is not None
    words = _split_with(lib, line.encode())
    return None if words is None else [w.decode() for w in words]


def systemd_env_file(path: Path) -> dict[str, str]:
    """The variables systemd's load_env_file reads from ``path`` (what EnvironmentFile= gives the service)."""
    lib = libsystemd()
    assert lib is not None
    out = ctypes.POINTER(ctypes.c_char_p)()
    rc = lib.load_env_file(None, str(path).encode(), ctypes.byref(out))
    assert rc == 0, f"load_env_file failed: {rc}"
    pairs, i = {}, 0
    while out[i]:
        key, _, value = out[i].decode().partition("=")
        pairs[key] = value
        i += 1
    return pairs


# --- Python readers, from the documentation ------------------------------------------


def parse_env_file(text: str) -> dict[str, str]:
    """systemd.exec(5) EnvironmentFile= grammar (env-file.c's states): KEY=VALUE per line,
    '#'/';' comments, unquoted values stripped with '\\' dropping before any character,
    single quotes literal, double quotes with '\\' escaping only " \\ ` $ and newline."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        # pre-key: skip whitespace; comments run to end of line
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            break
        if text[i] in "#;":
            while i < n and text[i] != "\n":
                i += 1
            continue
        start = i
        while i < n and text[i] not in "=\n":
            i += 1
        if i >= n or text[i] == "\n":
            continue  # a line without '=' is ignored
        key = text[start:i].strip()
        i += 1
        value, last_quoted = [], 0
        while i < n and text[i] in " \t":
            i += 1
        while i < n and text[i] != "\n":
            c = text[i]
            if c == "'":
                end = text.index("'", i + 1)
                value.append(text[i + 1 : end])
                i = end + 1
                last_quoted = len("".join(value))
            elif c == '"':
                i += 1
                while text[i] != '"':
                    if text[i] == "\\" and text[i + 1] in '"\\`$\n':
                        if text[i + 1] != "\n":
                            value.append(text[i + 1])
                        i += 2
                    else:
                        value.append(text[i])
                        i += 1
                i += 1
                last_quoted = len("".join(value))
            elif c == "\\":
                if i + 1 < n and text[i + 1] != "\n":
                    value.append(text[i + 1])
                i += 2
                last_quoted = len("".join(value))
            else:
                value.append(c)
                i += 1
        joined = "".join(value)
        # trailing whitespace after the last quoted/escaped part is stripped
        out[key] = joined[:last_quoted] + joined[last_quoted:].rstrip(" \t\r")
    return out


def parse_unit(text: str) -> list[tuple[str, str, str]]:
    """systemd.syntax(7): (section, key, raw value) in order; comments, continuation lines
    (a trailing backslash joins the next line with a space) and whitespace around '='."""
    entries, section, pending = [], "", ""
    for raw in text.split("\n"):
        line = pending + raw if pending else raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {line!r}"
        entries.append((section, key.strip(), value.strip()))
    return entries


_SPECIFIER = re.compile(r"%(.)")


def unspecify(value: str) -> str:
    """A unit value after specifier expansion, where only '%%' may occur (anything else is an injection)."""

    def one(match: re.Match) -> str:
        assert match.group(1) == "%", f"specifier %{match.group(1)} would expand: {value!r}"
        return "%"

    return _SPECIFIER.sub(one, value)
