"""The fleet report of the 39 recorded machines, opened in headless Chromium.

Facts come from the real dumps through the fact gatherer, plans from the real
planner; one extra host (the seed's shape with GPUs, a tuning curve and a
diagnosis) brings the parts the dumps cannot. The page must load, hold every
host's section, and paint a screenshot of the right size that is not blank.
Artifacts: build/report-chromium/index.html and build/report.png.
"""

from __future__ import annotations

import collections
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest
from conftest import DUMP_NAMES

from ansible_collections.ktfleet.numa.plugins.module_utils.topology import gather
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner import planner
from ansible_collections.ktfleet.numa.plugins.plugin_utils.report import render_html, render_markdown

REPO = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 1400, 2400
CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium)")
GiB = 1024**3
MODEL = {"name": "DeepSeek-V3", "weights_bytes": 2 * GiB, "moe_intermediate_size": 2048,
         "model_path": "/srv/models/DeepSeek-V3", "weights_path": "/srv/models/DeepSeek-V3-AMXINT4"}  # fmt: skip
# The recorded machines predate AMX (most have no AVX512): kt-kernel's llamafile path reads GGUF there
GGUF_MODEL = {**MODEL, "weights_path": "/srv/models/DeepSeek-V3-GGUF"}


def seed_with_gpus() -> dict:
    """2 sockets x 4 cores x 2 threads, SMT pairs known, a GPU per node and one whose node is unknown."""
    cpus = [[c for c in range(16) if c % 8 // 4 == n] for n in (0, 1)]
    nodes = [
        {"id": n, "cpus": cpus[n], "cores": 4, "package_ids": [n], "memory_total_bytes": 64 * GiB,
         "memory_free_bytes": 60 * GiB, "memory_only": False, "distances": [10, 21] if n == 0 else [21, 10],
         "thread_siblings": [[c, c + 8] for c in cpus[n] if c < 8]}
        for n in (0, 1)
    ]  # fmt: skip
    gpus = [{"pci_address": f"0000:{bus}:00.0", "vendor": "nvidia", "device_id": "0x2684", "numa_node": node,
             "local_cpus": [], "memory_bytes": 24 * GiB} for bus, node in (("17", 0), ("65", 1), ("b3", None))]  # fmt: skip
    return {
        "nodes": nodes, "packages": [{"id": n, "nodes": [n], "cores": 4, "cpus": cpus[n]} for n in (0, 1)],
        "nodes_per_package": 1, "cores_total": 8, "threads_per_core": 2, "smt_active": True,
        "memory_total_bytes": 128 * GiB, "cpu": {"architecture": "x86_64", "model_name": "synthetic <seed>"},
        "gpus": gpus, "warnings": [],
    }  # fmt: skip


def extra_host() -> dict:
    facts = seed_with_gpus()
    table = [{"threads": t, "samples": [s * 0.97, s, s * 1.02], "median": s}
             for t, s in ((2, 3.1), (4, 5.8), (6, 7.9), (8, 7.2))]  # fmt: skip
    return {
        "host": "synthetic-seed-gpus", "updated": "2025-06-01T00:00:00Z", "facts": facts,
        "plan": planner.make_plan(facts, MODEL, "sglang-kt", gpus=2).model_dump(mode="json"),
        "rollout": {"outcome": "new"},
        "tune": {"table": table, "knee": 6, "chosen": 4, "reason": "fastest at 6, backing off 2", "unit": "tokens/s"},
        "diagnosis": {"window_seconds": 30.0, "verdicts": [
            {"check": "remote_memory", "status": "warn", "summary": "12% of pages remote", "remedy": "bind", "numbers": {"ratio": 0.12}},
            {"check": "throttle", "status": "ok", "summary": "no throttling", "remedy": "", "numbers": {}}]},
    }  # fmt: skip


@pytest.fixture(scope="module")
def fleet(dumps_dir) -> list[dict]:
    records = [extra_host()]
    for index, name in enumerate(DUMP_NAMES):
        facts = gather(str(dumps_dir / name), gpu_memory=False)
        backend = ("sglang-kt", "legacy")[index % 2]
        plan = planner.make_plan(facts, GGUF_MODEL, backend).model_dump(mode="json")
        records.append({"host": name, "updated": "2025-06-01T00:00:00Z", "facts": facts, "plan": plan})
    return records


@pytest.fixture(scope="module")
def page(fleet) -> Path:
    out = REPO / "build/report-chromium"
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    html = render_html(fleet)
    elapsed = time.perf_counter() - started
    print(f"\nrendered {len(fleet)} hosts in {elapsed:.2f} s ({len(html) / 1e6:.1f} MB)")
    (out / "index.html").write_text(html, encoding="utf-8")
    (out / "REPORT.md").write_text(render_markdown(fleet), encoding="utf-8")
    return out / "index.html"


def chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", *args],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_dom_holds_every_host(page, fleet):
    run = chromium("--dump-dom", page.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    assert dom.count('<section class="host"') == len(fleet) == 40
    for record in fleet:
        assert f'data-host="{record["host"]}"' in dom
    assert dom.count('<svg class="topology"') == len(fleet)
    assert dom.count('<svg class="tune"') == 1
    assert dom.count('class="gpu"') == 3


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and the unfiltered rows of an 8-bit RGB/RGBA PNG (stdlib only)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"unexpected PNG format {header}"
    return width, height, unfilter(zlib.decompress(b"".join(chunks)), width, height, 3 if colour == 2 else 4)


def unfilter(raw: bytes, width: int, height: int, bpp: int) -> list[bytes]:
    stride = width * bpp
    prev = bytearray(stride)
    rows = []
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                line[i] = (line[i] + ((line[i - bpp] if i >= bpp else 0) + prev[i]) // 2) & 255
        elif kind == 4:
            for i in range(stride):
                a, b, c = (line[i - bpp] if i >= bpp else 0), prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return rows


def test_screenshot_is_painted(page):
    shot = REPO / "build/report.png"
    shot.unlink(missing_ok=True)
    run = chromium(f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", page.as_uri())
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    width, height, rows = read_png(shot)
    assert (width, height) == (WIDTH, HEIGHT)
    bpp = len(rows[0]) // width
    colours = collections.Counter(row[i : i + 3] for row in rows[::4] for i in range(0, len(row), bpp * 4))
    assert len(colours) > 50, f"only {len(colours)} colours: a blank or failed page"
    white = colours[b"\xff\xff\xff"] / sum(colours.values())
    assert 0.3 < white < 0.98, f"{white:.0%} white"
    # the first pool's blue (drawings, bars) and the red of a misfit in the fleet table are painted
    assert near(colours, (0x4E, 0x79, 0xA7)), "no pool colour"
    assert near(colours, (0xF8, 0xC9, 0xC9)), "no DOES NOT FIT cell"


def near(colours: collections.Counter, rgb: tuple[int, int, int], tolerance: int = 12) -> bool:
    return any(all(abs(have - want) <= tolerance for have, want in zip(c, rgb, strict=True)) for c in colours)
