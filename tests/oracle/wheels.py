"""The pinned KTransformers releases (wheels.lock): fetched once, hash-checked, read in place.

Test equipment only (not shipped in the collection); stdlib only, so ``./run`` can call
it before pytest and issue 14's VM test server can import it.

    python tests/oracle/wheels.py          # fetch what is missing, check every sha256
    read("sglang-kt", "sglang/srt/server_args.py")   # one member's text, from the pinned file
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

LOCK = Path(__file__).with_name("wheels.lock")
CACHE = Path(os.environ.get("KTFLEET_WHEELS", Path.home() / ".cache" / "ktfleet" / "wheels"))


class WheelError(RuntimeError):
    """A pinned file is missing, cannot be fetched, or does not match its hash."""


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    filename: str
    sha256: str
    url: str | None = None

    @property
    def path(self) -> Path:
        return CACHE / self.filename


def pins(lock: Path = LOCK) -> list[Pin]:
    out = []
    for number, line in enumerate(lock.read_text().splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) not in (4, 5) or len(words[3]) != 64:
            raise WheelError(f"{lock}:{number}: want 'name version filename sha256 [url]', got {line!r}")
        out.append(Pin(*words))
    return out


def pin(name: str, version: str | None = None) -> Pin:
    """The lock's line for ``name`` (the first one, i.e. the current release, unless ``version``)."""
    for p in pins():
        if p.name == name and version in (None, p.version):
            return p
    raise WheelError(f"{LOCK.name} pins no {name} {version or ''}".strip())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(p: Pin) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    if p.url:
        part = p.path.with_suffix(p.path.suffix + ".part")
        with urllib.request.urlopen(p.url, timeout=300) as response, part.open("wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        part.replace(p.path)
        return
    # the lock names the exact file; pip picks it by the interpreter and platform it was built for
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:"]
    cmd += ["--python-version", "3.11", "--platform", "manylinux_2_35_x86_64", "--dest", str(CACHE)]
    subprocess.run([*cmd, f"{p.name}=={p.version}"], check=True)


def ensure(p: Pin, verify: bool = True) -> Path:
    """The pinned file in the cache, downloaded when missing; its sha256 checked."""
    if not p.path.is_file():
        try:
            _download(p)
        except (OSError, subprocess.CalledProcessError) as err:
            raise WheelError(f"cannot fetch {p.filename} ({p.name}=={p.version}): {err}") from None
        if not p.path.is_file():
            raise WheelError(f"pip fetched {p.name}=={p.version} but not {p.filename}: fix {LOCK.name}")
    if verify and (got := _sha256(p.path)) != p.sha256:
        raise WheelError(f"{p.path}: sha256 {got}, {LOCK.name} pins {p.sha256}; remove the file to fetch it again")
    return p.path


@cache
def _verified(p: Pin) -> Path:
    return ensure(p)


def read(name: str, member: str, version: str | None = None) -> str:
    """The text of ``member`` inside the pinned wheel (or sdist: path below its top directory)."""
    p = pin(name, version)
    path = _verified(p)
    if p.filename.endswith(".whl"):
        with zipfile.ZipFile(path) as whl:
            return whl.read(member).decode()
    top = p.filename.removesuffix(".tar.gz")
    with tarfile.open(path) as sdist:
        fh = sdist.extractfile(f"{top}/{member}")
        if fh is None:
            raise WheelError(f"{p.filename} has no file {member}")
        return fh.read().decode()


def read_bytes(name: str, member: str) -> bytes:
    """A binary member of a pinned wheel (e.g. one of kt-kernel's CPU-variant extensions)."""
    with zipfile.ZipFile(_verified(pin(name))) as whl:
        return whl.read(member)


def cite(name: str, member: str, needle: str, version: str | None = None) -> int:
    """The 1-based line of ``needle`` in a pinned file; raises when the text is gone (a bump changed it)."""
    for number, line in enumerate(read(name, member, version).splitlines(), 1):
        if needle in line:
            return number
    p = pin(name, version)
    raise WheelError(f"{p.filename}:{member} no longer contains {needle!r}")


def main() -> int:
    try:
        for p in pins():
            ensure(p)
            print(f"ok {p.filename}")
    except WheelError as err:
        print(f"wheels: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
