"""Stage the kt-kernel test server into a directory (host side; stdlib only).

    python molecule/shared/ktserver/stage.py DEST      # then put DEST on a venv's sys.path (.pth)

DEST then holds everything ``python -m sglang.launch_server`` needs to run the test
server (``ktserver.py``) without torch, CUDA or the real sglang-kt:

* ``kt_kernel/`` and ``kt_kernel.libs/``: the AVX2 path of the pinned, hash-checked
  ``kt-kernel`` wheel (``extract_kt_kernel``), exactly as the wheel lays them out, so the
  extension's RPATH (``$ORIGIN/../kt_kernel.libs``) finds its own hwloc, libnuma, libgomp;
* ``sglang-kt-flags.json``: every ``add_argument`` of the pinned sglang-kt wheel's
  ``sglang/srt/server_args.py``, extracted by tests/oracle/server_flags.py here, where the
  wheel is (an emulated guest would spend many seconds parsing that 6,800-line file);
* ``server_flags.py`` and ``wheels.py`` (tests/oracle, copied unchanged) to rebuild the
  parser from that table, and the server itself: ``ktserver.py``, ``sglang/``.

Test equipment only: never in a shipped role.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORACLE = HERE.parents[2] / "tests" / "oracle"
if str(ORACLE) not in sys.path:
    sys.path.insert(0, str(ORACLE))

import server_flags  # noqa: E402  (tests/oracle)
import wheels  # noqa: E402

FLAGS_FILE = "sglang-kt-flags.json"


def _kt_kernel_member(name: str) -> bool:
    """The wheel members the AVX2 path needs (kt_kernel/_cpu_detect.py loads the .so by glob)."""
    if name.startswith("kt_kernel.libs/"):
        return not name.endswith("/")
    if not name.startswith("kt_kernel/") or name.count("/") != 1:
        return False  # kt_kernel/cli, sft, utils: torch-only Python the server does not import
    base = name.split("/", 1)[1]
    return base.endswith(".py") or (base.startswith("_kt_kernel_ext_avx2.") and base.endswith(".so"))


def extract_kt_kernel(dest: str | Path) -> list[Path]:
    """Extract kt_kernel/*.py, the AVX2 extension and kt_kernel.libs/* of the pinned kt-kernel wheel.

    The wheel comes from the cache (wheels.lock: fetched once, its sha256 checked every time).
    Returns the files written, under ``dest``.
    """
    dest = Path(dest)
    path = wheels.ensure(wheels.pin("kt-kernel"))
    written = []
    with zipfile.ZipFile(path) as whl:
        for info in whl.infolist():
            if not _kt_kernel_member(info.filename):
                continue
            target = dest / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            with whl.open(info) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)
            target.chmod(0o755 if info.filename.endswith(".so") or ".so." in info.filename else 0o644)
            written.append(target)
    if not any(p.name.startswith("_kt_kernel_ext_avx2.") for p in written):
        raise wheels.WheelError(f"{path.name} has no kt_kernel/_kt_kernel_ext_avx2.*.so")
    return written


def flag_table_json(table: server_flags.FlagTable) -> str:
    """A FlagTable as JSON (ktserver.load_flag_table reads it back)."""
    flags = [dataclasses.asdict(flag) for flag in table.unique()]
    return json.dumps({"source": table.source, "module": table.module, "flags": flags}, indent=0) + "\n"


def stage(dest: str | Path) -> Path:
    """Everything the test server needs, under ``dest`` (created; existing files replaced)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    extract_kt_kernel(dest)
    (dest / FLAGS_FILE).write_text(flag_table_json(server_flags.sglang_kt()))
    for src in (ORACLE / "server_flags.py", ORACLE / "wheels.py", HERE / "ktserver.py"):
        shutil.copyfile(src, dest / src.name)
    (dest / "sglang").mkdir(exist_ok=True)
    for src in (HERE / "sglang").glob("*.py"):
        shutil.copyfile(src, dest / "sglang" / src.name)
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: stage.py DEST")
    try:
        out = stage(sys.argv[1])
    except wheels.WheelError as err:
        sys.exit(f"stage: {err}")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"staged the kt-kernel test server in {out} ({size / 2**20:.1f} MiB)")
