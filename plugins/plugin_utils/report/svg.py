"""The report's drawings as inline SVG (markupsafe escapes every text)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import format_cpulist as id_ranges

from ..sizes import format_size_short as human_bytes
from .views import NodeView, Topology, _fmt, _text, _weights, gpu_text

# --- SVG ----------------------------------------------------------------------------
# Each block is drawn at (0, 0) and returned with its size; parents place blocks
# with translate(). Sizes assume 10px monospace (6 px per character).

CELL_W, CELL_H = 26, 15
PAD, GAP, LINE = 6, 8, 13
CHAR_W = 6.1
MAX_W = 1320
GRID_COLS = 16
GPU_H = 28


@dataclass
class Block:
    svg: Markup
    w: float
    h: float


def el(tag: str, attrs: Mapping[str, Any] | None = None, *children: Any) -> Markup:
    """One SVG element; attribute values and text children are escaped."""
    text = "".join(f' {name}="{escape(_num(value))}"' for name, value in (attrs or {}).items() if value is not None)
    if not children:
        return Markup(f"<{tag}{text}/>")
    inner = Markup("").join(escape(child) for child in children)
    return Markup(f"<{tag}{text}>") + inner + Markup(f"</{tag}>")


def _num(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return value


def _text_w(*lines: str) -> float:
    return max((len(line) for line in lines), default=0) * CHAR_W


def _place(block: Block, x: float, y: float) -> Markup:
    return el("g", {"transform": f"translate({_num(float(x))},{_num(float(y))})"}, block.svg)


def flow(blocks: list[Block], max_w: float, gap: float = GAP) -> Block:
    """Left to right, wrapping at max_w."""
    x = y = row_h = width = 0.0
    parts = []
    for block in blocks:
        if x > 0 and x + block.w > max_w:
            x, y, row_h = 0.0, y + row_h + gap, 0.0
        parts.append(_place(block, x, y))
        width = max(width, x + block.w)
        x += block.w + gap
        row_h = max(row_h, block.h)
    return Block(Markup("").join(parts), width, y + row_h)


def _cell(cpu: int, x: float, y: float, node: NodeView, used: set[int]) -> Markup:
    on = cpu in used
    title = f"CPU {cpu}, node {node.id}" + (f", used by the plan ({node.label or 'affinity'})" if on else "")
    fill = (node.colour or "#888") if on else "#ffffff"
    return el(
        "g", {"class": "cpu used" if on else "cpu", "data-cpu": cpu},
        el("title", None, title),
        el("rect", {"x": x, "y": y, "width": CELL_W - 2, "height": CELL_H - 2, "rx": 2, "fill": fill,
                    "fill-opacity": 0.35 if on else 1, "stroke": "#666", "stroke-width": 0.6}),
        el("text", {"x": x + (CELL_W - 2) / 2, "y": y + CELL_H - 5, "class": "cpuid"}, str(cpu)),
    )  # fmt: skip


def cpu_grid(node: NodeView, used: set[int]) -> Block:
    """Cores as boxes holding their threads when the pairing is known, else one cell per CPU."""
    parts = []
    if node.groups is None:
        cols = min(GRID_COLS, max(len(node.cpus), 1))
        for i, cpu in enumerate(node.cpus):
            parts.append(_cell(cpu, (i % cols) * CELL_W, (i // cols) * CELL_H, node, used))
        rows = math.ceil(len(node.cpus) / cols)
        return Block(Markup("").join(parts), cols * CELL_W, rows * CELL_H)
    width = max(len(g) for g in node.groups) if node.groups else 1
    core_w, core_h = CELL_W + 4, width * CELL_H + 4
    cols = min(GRID_COLS, max(len(node.groups), 1))
    for i, group in enumerate(node.groups):
        x, y = (i % cols) * (core_w + 2), (i // cols) * (core_h + 2)
        cells = [_cell(cpu, x + 3, y + 3 + j * CELL_H, node, used) for j, cpu in enumerate(group)]
        parts.append(
            el("g", {"class": "core", "data-cpus": ",".join(map(str, group))},
               el("rect", {"x": x, "y": y, "width": core_w, "height": core_h - 1, "rx": 3,
                           "class": "corebox"}), *cells)
        )  # fmt: skip
    rows = math.ceil(len(node.groups) / cols)
    return Block(Markup("").join(parts), cols * (core_w + 2), rows * (core_h + 2))


def gpu_block(gpu: Mapping, width: float, node: int | None) -> Block:
    first, second = gpu_text(gpu)
    width = max(width, _text_w(first, second) + 2 * PAD)
    attrs = {"class": "gpu", "data-node": "unknown" if node is None else node, "data-pci": gpu["pci_address"]}
    return _gpu_box(attrs, first, second, width)


def _gpu_box(attrs: dict, first: str, second: str, width: float) -> Block:
    return Block(
        el("g", attrs,
           el("rect", {"width": width, "height": GPU_H - 4, "rx": 3, "class": "gpubox"}),
           el("text", {"x": PAD, "y": 10}, first),
           el("text", {"x": PAD, "y": 21, "class": "small"}, second)),
        width, GPU_H,
    )  # fmt: skip


def gpu_memory_block(node: Mapping) -> Block:
    """A NUMA node that is a GPU's memory (NVLink-C2C, POWER9 NVLink), drawn as GPU memory."""
    size = human_bytes(node["memory_total_bytes"]) if node.get("memory_total_bytes") is not None else "? mem"
    first = f"node {node['id']} · GPU memory · {size}"
    second = f"GPU {node.get('pci_address') or 'unknown'}"
    width = _text_w(first, second) + 2 * PAD
    attrs = {"class": "gpumem", "data-node": node["id"], "data-pci": node.get("pci_address") or "unknown"}
    return _gpu_box(attrs, first, second, width)


def node_block(node: NodeView, used: set[int]) -> Block:
    cores = "" if node.memory_only else f" · {_text(node.cores)} cores"
    head = f"node {node.id}{cores} · {human_bytes(node.memory) if node.memory is not None else '? mem'}"
    plan_line = " · ".join(part for part in (node.label, _weights(node)) if part)
    if node.memory_only:
        plan_line = plan_line or "memory only"
    grid = cpu_grid(node, used) if node.cpus else Block(Markup(""), 0, 0)
    inner_w = max(grid.w, _text_w(head, plan_line), 150)
    gpus = [gpu_block(gpu, inner_w, node.id) for gpu in node.gpus]
    inner_w = max([inner_w, *(g.w for g in gpus)])
    top = PAD + 2 * LINE + 2
    placed = [_place(grid, PAD, top)]
    y = top + grid.h + (4 if grid.h else 0)
    for gpu in gpus:
        placed.append(_place(gpu, PAD, y))
        y += gpu.h
    width, height = inner_w + 2 * PAD, y + PAD - 2
    # threads: the pool's colour; weights only (interleave over memory-only nodes): dark
    stroke = node.colour or ("#333" if node.weights else None)
    box = {"width": width, "height": height, "rx": 4, "class": "nodebox",
           "stroke": stroke, "stroke-width": 2.5 if stroke else None}  # fmt: skip
    kind = "node memory-only" if node.memory_only else "node"
    kind += " used" if node.colour else ""
    kind += " weights" if node.weights else ""
    return Block(
        el("g", {"class": kind, "data-node": node.id},
           el("title", None, _node_title(node)),
           el("rect", box),
           el("text", {"x": PAD, "y": PAD + 9, "class": "bold"}, head),
           el("text", {"x": PAD, "y": PAD + 9 + LINE, "class": "plan", "fill": node.colour}, plan_line),
           *placed),
        width, height,
    )  # fmt: skip


def _node_title(node: NodeView) -> str:
    text = f"node {node.id}: CPUs {id_ranges(node.cpus) or 'none'}"
    if len(node.package_ids) > 1:
        text += f", packages {id_ranges(node.package_ids)}"
    if node.groups is None and node.cpus:
        text += f" ({_text(node.cores)} cores; which CPUs are siblings is not in the facts)"
    return text


def group_block(label: str, kind: str, blocks: list[Block], data: Mapping[str, Any] | None = None) -> Block:
    inner = flow(blocks, MAX_W - 4 * PAD)
    width = max(inner.w, _text_w(label)) + 2 * PAD
    height = inner.h + 2 * PAD + LINE + 2
    return Block(
        el("g", {"class": kind, **(data or {})},
           el("rect", {"width": width, "height": height, "rx": 6, "class": kind + "box"}),
           el("text", {"x": PAD, "y": PAD + 9, "class": "bold"}, label),
           _place(inner, PAD, PAD + LINE + 2)),
        width, height,
    )  # fmt: skip


def topology_svg(host: str, topo: Topology) -> Markup:
    used = topo.used_cpus
    blocks = []
    for package, nodes in topo.packages:
        label = f"package {package['id']} · {_text(package['cores'])} cores · {len(package['cpus'])} CPUs"
        blocks.append(group_block(label, "package", [node_block(n, used) for n in nodes], {"data-package": package["id"]}))
    if topo.unplaced:
        label = "nodes across packages" if any(n.package_ids for n in topo.unplaced) else "package unknown"
        blocks.append(group_block(label, "package", [node_block(n, used) for n in topo.unplaced]))
    if topo.memory_only:
        blocks.append(group_block("memory-only nodes", "memgroup", [node_block(n, used) for n in topo.memory_only]))
    if topo.gpus_unknown:
        gpus = [gpu_block(gpu, 150, None) for gpu in topo.gpus_unknown]
        blocks.append(group_block("GPUs, NUMA node unknown", "gpugroup", gpus))
    if topo.gpu_memory:
        blocks.append(
            group_block(
                "GPU memory (not for weights)", "gpugroup", [gpu_memory_block(g) for g in topo.gpu_memory]
            )
        )
    if topo.cpus_without_node:
        text = f"CPUs {id_ranges(topo.cpus_without_node)}: in no NUMA node, no threads planned"
        width = _text_w(text) + 2 * PAD
        blocks.append(Block(
            el("g", {"class": "nodeless", "data-cpus": id_ranges(topo.cpus_without_node)},
               el("rect", {"width": width, "height": GPU_H, "rx": 3, "class": "gpubox"}),
               el("text", {"x": PAD, "y": 14}, text)),
            width, GPU_H,
        ))  # fmt: skip
    drawing = flow(blocks, MAX_W)
    width, height = max(drawing.w, 10), max(drawing.h, 10)
    return el(
        "svg",
        {"class": "topology", "width": width + 2, "height": height + 2, "viewBox": f"-1 -1 {_num(float(width + 2))} {_num(float(height + 2))}",
         "role": "img", "aria-label": f"NUMA topology of {host}"},
        el("title", None, f"NUMA topology of {host}"),
        drawing.svg,
    )  # fmt: skip


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values from at most low to at least high (steps of 1, 2 or 5 times a power of ten)."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    last = math.ceil(high / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(round((last - first) / step) + 1)]


def tune_svg(host: str, tune: Mapping, points: list[dict]) -> Markup:
    """threads -> tokens/s: samples as dots, the median line, knee and chosen marked."""
    width, height, left, right, top, bottom = 620, 300, 60, 20, 24, 44
    threads = [p["threads"] for p in points]
    values = [v for p in points for v in (p["median"], *p["samples"])]
    x_lo, x_hi = min(threads), max(threads)
    if x_lo == x_hi:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_ticks = nice_ticks(0, max(values + [0]) * 1.08 or 1)
    y_hi = y_ticks[-1] or 1

    def sx(t: float) -> float:
        return left + (t - x_lo) / (x_hi - x_lo) * (width - left - right)

    def sy(v: float) -> float:
        return height - bottom - v / y_hi * (height - top - bottom)

    parts = [el("rect", {"x": left, "y": top, "width": width - left - right, "height": height - top - bottom,
                         "class": "plot"})]  # fmt: skip
    for tick in y_ticks:
        parts.append(el("line", {"x1": left, "x2": width - right, "y1": sy(tick), "y2": sy(tick), "class": "gridline"}))
        parts.append(el("text", {"x": left - 6, "y": sy(tick) + 3, "class": "tick", "text-anchor": "end"}, _fmt(tick)))
    x_ticks = threads if len(threads) <= 16 else nice_ticks(x_lo, x_hi, 8)
    for tick in x_ticks:
        parts.append(el("text", {"x": sx(tick), "y": height - bottom + 14, "class": "tick", "text-anchor": "middle"}, _fmt(tick)))
    unit = tune["unit"] or "tokens/s"
    parts.append(el("text", {"x": (left + width - right) / 2, "y": height - 8, "text-anchor": "middle"}, "threads"))
    parts.append(el("text", {"x": 14, "y": (top + height - bottom) / 2, "text-anchor": "middle",
                             "transform": f"rotate(-90 14 {_num(float((top + height - bottom) / 2))})"}, unit))  # fmt: skip
    for name, value, css in (("knee", tune["knee"], "knee"), ("chosen", tune["chosen"], "chosen")):
        if value is not None:
            x = sx(min(max(value, x_lo), x_hi))
            parts.append(el("line", {"x1": x, "x2": x, "y1": top, "y2": height - bottom, "class": css}))
            label_y = top + 12 if css == "knee" else top + 26
            parts.append(el("text", {"x": x + 4, "y": label_y, "class": css + "label"}, f"{name} {value}"))
    for point in points:
        for sample in point["samples"]:
            parts.append(el("circle", {"cx": sx(point["threads"]), "cy": sy(sample), "r": 2.2, "class": "sample"}))
    line = " ".join(f"{_num(float(sx(p['threads'])))},{_num(float(sy(p['median'])))}" for p in points)
    parts.append(el("polyline", {"points": line, "class": "median"}))
    for point in points:
        chosen = point["threads"] == tune["chosen"]
        parts.append(
            el("circle", {"cx": sx(point["threads"]), "cy": sy(point["median"]), "r": 5 if chosen else 3.5,
                          "class": "medianpt chosenpt" if chosen else "medianpt"},
               el("title", None, f"{point['threads']} threads: median {_fmt(point['median'])} {unit}"))
        )  # fmt: skip
    return el(
        "svg",
        {"class": "tune", "width": width, "height": height, "viewBox": f"0 0 {width} {height}", "role": "img",
         "aria-label": f"tuning curve of {host}"},
        el("title", None, f"tuning curve of {host}: {unit} by threads"), *parts,
    )  # fmt: skip
