"""Shared fixtures: the collection on sys.path, and the real machine dumps."""

from __future__ import annotations

import fcntl
import json
import os
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COLLECTIONS = REPO / ".collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
# tests/oracle (wheels, server_flags) and tests/unit (the hand-built hosts) for the oracle tests
for _path in (REPO / "tests" / "oracle", REPO / "tests" / "unit"):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

# ../shared/topologies beside the clone (CI lays a copy there too).
TOPOLOGIES = REPO.parent / "shared" / "topologies"
DUMP_NAMES = sorted(p.name.removesuffix(".tar.bz2") for p in (TOPOLOGIES / "machines").glob("*.tar.bz2"))


def expected(name: str) -> dict:
    return json.loads((TOPOLOGIES / "expected" / f"{name}.json").read_text())


@pytest.fixture(scope="session")
def dumps_dir(tmp_path_factory) -> Path:
    """Every dump extracted once per run, shared by the xdist workers (each worker's own
    extraction cost ~40 s of its time); returns the parent directory. Tests only read it."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # this run's, never an older one's
    out = shared / "topologies"
    with open(shared / "topologies.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second worker waits for the first one's extraction
        if not (out / ".complete").exists():
            out.mkdir(exist_ok=True)
            for name in DUMP_NAMES:
                with tarfile.open(TOPOLOGIES / "machines" / f"{name}.tar.bz2") as tar:
                    tar.extractall(out, filter="tar")
            (out / ".complete").write_text("")
    return out


@pytest.fixture(scope="session")
def dump_root(dumps_dir):
    """dump_root(name) -> the directory to pass as the fact module's root."""

    def _root(name: str) -> Path:
        return dumps_dir / name

    return _root


@pytest.fixture(scope="session")
def single_dump(tmp_path_factory):
    """single_dump(name) -> one dump alone, extracted once per session (much
    cheaper than dumps_dir when a test needs only a few)."""
    cache: dict[str, Path] = {}

    def _one(name: str) -> Path:
        if name not in cache:
            out = tmp_path_factory.mktemp("dump")
            with tarfile.open(TOPOLOGIES / "machines" / f"{name}.tar.bz2") as tar:
                tar.extractall(out, filter="tar")
            cache[name] = out / name
        return cache[name]

    return _one
