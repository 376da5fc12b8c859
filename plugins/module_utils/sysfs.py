# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files of a ``/sys`` + ``/proc`` tree under a root, and the kernel's meminfo text.

The one reader of the fact module (``topology.py``) and the sampling module
(``numa_sample.py``).  It runs on the target, so it is the Python standard
library only, in Python 3.6 syntax (``topology.py`` imports it).

``Root(root).read_text(rel)`` returns ``(text, None)`` or ``(None, Problem)``: it
never raises and never warns.  Each caller words the problem in its own
warnings; ``Problem.code`` is one of the constants below and ``Problem.detail``
the words that go with it.  What a read does:

* a regular file only: a directory, FIFO, socket or device put where a file
  should be is refused (``O_NONBLOCK`` and ``fstat``: a FIFO never blocks the
  read), and so is a file over ``READ_LIMIT`` bytes;
* under a root other than ``/``, links may only lead to files inside the real
  root (a dump's ``sys/bus`` links do; one to ``/etc/shadow`` must not be read,
  nor quoted);
* trailing NULs after a value are padding (Kunpeng 920 firmware writes
  ``"31\\n\\x00"``), and then trailing white space too; NULs with no value
  before them are ``ONLY_NUL``.

``parse_meminfo`` and ``meminfo_bytes`` read ``/proc/meminfo`` and a node's
``nodeN/meminfo`` (``Node 0 MemTotal:  16384 kB``) by one rule: the first line
of each name counts; its first word is the value, in kB when the second word
says so (the ``HugePages_`` counts have no unit); more kB than any machine has
is corruption.  ``parse_meminfo`` leaves a corrupt field out, ``meminfo_bytes``
raises ValueError naming it.
"""

import collections
import errno
import os
import re
import stat

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import parse_uint

READ_LIMIT = 2 << 20  # no sysfs value comes near; a 1 MiB list still parses
CHUNK = 65536
# no machine addresses more than 2^57 bytes (x86 5-level paging, arm64 LPA2):
# a larger MemTotal is corruption, not memory to plan for
MAX_MEMORY_KB = 1 << 47

OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# what real kernels append to a value that is not corruption: Kunpeng 920
# firmware pads every list file with NULs ("31\n\x00"), some dumps carry CRLF
_PADDING = b"\x00\r\n\t "

# Problem codes
MISSING = "missing"  # no such file (or a path through a non-directory); detail: the OS's words
DIRECTORY = "directory"  # a directory where a file should be; detail "a directory"
NOT_A_FILE = "not a file"  # a FIFO, socket or device, a file over READ_LIMIT, a link out of the root
UNREADABLE = "unreadable"  # any other OSError (permission, I/O); detail: the OS's words
BAD_PATH = "bad path"  # a NUL in the path (one built from a corrupt file); detail: Python's words
ONLY_NUL = "only NUL"  # NUL bytes and no value before them

Problem = collections.namedtuple("Problem", "code detail")


class NotAFile(OSError):
    """A path that is no regular file, a file over READ_LIMIT, or a link that leaves the root."""


def read_rest(fd, first):
    """``first`` and the rest of ``fd`` up to EOF or READ_LIMIT bytes."""
    parts = [first]
    size = len(first)
    while size < READ_LIMIT:
        more = os.read(fd, CHUNK)
        if not more:
            break
        parts.append(more)
        size += len(more)
    return b"".join(parts)


def slurp(path, extra_flags=0):
    """Bytes of a regular file, up to READ_LIMIT (NotAFile beyond).  os.open/os.read:
    a sysfs or procfs file comes back in one read, without the cost of a buffered
    file object."""
    fd = os.open(path, OPEN_FLAGS | extra_flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotAFile("a directory" if stat.S_ISDIR(mode) else "not a regular file")
        data = os.read(fd, CHUNK)
        if len(data) == CHUNK:
            data = read_rest(fd, data)
            if len(data) >= READ_LIMIT and os.read(fd, 1):
                raise NotAFile(f"larger than {READ_LIMIT >> 20} MiB")
        return data
    finally:
        os.close(fd)


class Root:
    """A directory read as ``/``: ``rel`` paths are relative to it, without a leading ``/``."""

    def __init__(self, root):
        self.root = os.path.abspath(root or "/")
        self.prefix = self.root if self.root.endswith("/") else self.root + "/"
        self.confined = self.root != "/"
        real = os.path.realpath(self.root)
        self.real_prefix = real if real.endswith("/") else real + "/"
        self._real_dirs = {}

    def _real_dir(self, head):
        """realpath(head), one lstat per directory not seen before."""
        real = self._real_dirs.get(head)
        if real is None:
            parent, _sep, name = head.rpartition("/")
            if not head.startswith(self.prefix) or os.path.islink(head):
                real = os.path.realpath(head)  # the root itself, or a link
            else:
                real = self._real_dir(parent) + "/" + name
            self._real_dirs[head] = real
        return real

    def _inside(self, real):
        if not (real + "/").startswith(self.real_prefix):
            raise NotAFile("a link that leaves the root")
        return real

    def path(self, rel, follow=False):
        """The path to open for root/rel (its directories resolved; the last
        component too with ``follow``); NotAFile when a link leads out of the root."""
        full = self.prefix + rel
        if not self.confined:
            return full
        if follow:
            return self._inside(os.path.realpath(full))
        head, _sep, name = full.rpartition("/")
        return self._inside(self._real_dir(head) + "/" + name)

    def listdir(self, rel):
        """The names in root/rel (``""``: the root itself); raises OSError, or
        NotAFile when a link leads out of the root."""
        return os.listdir(self.path(rel, follow=True) if rel else self.prefix)

    def read_bytes(self, rel):
        """The bytes of root/rel as ``slurp`` reads them; raises OSError or ValueError."""
        if not self.confined:
            return slurp(self.prefix + rel)
        try:
            return slurp(self.path(rel), _NOFOLLOW)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
        return slurp(self.path(rel, follow=True))  # a link: read its target if inside the root

    def read_text(self, rel, encoding="utf-8"):
        """``(text, None)`` or ``(None, Problem)``; undecodable bytes become U+FFFD."""
        try:
            data = self.read_bytes(rel)
        except (FileNotFoundError, NotADirectoryError) as e:
            return None, Problem(MISSING, e.strerror or str(e))
        except NotAFile as e:
            return None, Problem(DIRECTORY if str(e) == "a directory" else NOT_A_FILE, str(e))
        except OSError as e:
            return None, Problem(UNREADABLE, e.strerror or str(e))
        except ValueError as e:  # NUL in a path built from a corrupt file
            return None, Problem(BAD_PATH, str(e))
        if b"\x00" in data:
            body = data.rstrip(b"\x00")
            # padding follows a value's newline ("31\n\x00", an empty list "\n\x00"):
            # NULs with no line before them are no value at all
            if not body.strip() and not body.endswith(b"\n"):
                return None, Problem(ONLY_NUL, "only NUL bytes, no value")
            data = data.rstrip(_PADDING)
        return data.decode(encoding, "replace"), None


# ----------------------------------------------------------------------------
# meminfo: "MemTotal:  16384 kB" lines, "Node 0 " before each in a node's file

_MEMINFO_LINE = re.compile(r"(?:Node\s+[0-9]+\s+)?([A-Za-z_()0-9]+):(.*)\Z")


def _meminfo_fields(text):
    """{name: the words after its colon}, the first line of each name."""
    fields = {}
    for line in text.splitlines():
        match = _MEMINFO_LINE.match(line.strip())
        if match and match.group(1) not in fields:
            fields[match.group(1)] = match.group(2).split()
    return fields


def _value(name, words):
    """Bytes of one field (a kB value times 1024, a count as it is); ValueError when corrupt."""
    if not words:
        raise ValueError(f"no value for {name}")
    value = parse_uint(words[0])
    if words[1:2] == ["kB"]:
        if value > MAX_MEMORY_KB:
            raise ValueError(f"{name} of {value} kB is beyond any machine")
        return value * 1024
    return value


def parse_meminfo(text):
    """Every field of the text in bytes, as ``meminfo_bytes`` reads it; a corrupt one
    is left out, not an error."""
    out = {}
    for name, words in _meminfo_fields(text).items():
        try:
            out[name] = _value(name, words)
        except ValueError:
            continue
    return out


def meminfo_bytes(text, names):
    """The fields ``names`` in bytes, None for one that is absent; ValueError naming the
    first one present but corrupt (no value, not a number, more than any machine has)."""
    fields = _meminfo_fields(text)
    return [None if name not in fields else _value(name, fields[name]) for name in names]
