"""The fleet report: one self-contained HTML page and one Markdown file for the whole fleet.

One JSON record per host (docs/report.md): ``host``, ``updated`` and the optional
parts ``facts`` (``ansible_facts.numa``), ``plan`` (the ``ktfleet.numa.plan``
dict), ``rollout``, ``tune`` and ``diagnosis``. playbooks/report.yml merges what a
run left in hostvars into ``<dir>/<host>.json`` and renders every record.

The page needs nothing but itself: CSS in <style>, drawings as inline SVG, no
JavaScript, no URL. Every text goes through an escaper (Jinja autoescape for the
page, markupsafe for the SVG, ``_md`` for Markdown). Pure Python: stdlib + jinja2.

The package, one module per job (each view only reads the view models):

- ``records``: the record schema, loading ``<dir>/<host>.json``, merging a run's hostvars;
- ``views``: the per-host view models (topology, memory rows, tuning points, summary);
- ``svg``: the drawings; ``html``: the page (``templates/page.html.j2``, ``templates/report.css``);
- ``markdown``: the Markdown file.
"""

from __future__ import annotations

from .html import (
    TEMPLATES,
    render_html,
)
from .markdown import (
    ascii_bar,
    render_markdown,
)
from .records import (
    HOSTVARS_PARTS,
    RecordError,
    Spec,
    check_record,
    load_records,
    merge_hostvars,
    merge_record,
    parts_from_hostvars,
    plain,
    utc_now,
)
from .svg import (
    CHAR_W,
    GPU_H,
    GRID_COLS,
    MAX_W,
    Block,
    cpu_grid,
    el,
    flow,
    gpu_block,
    gpu_memory_block,
    group_block,
    nice_ticks,
    node_block,
    topology_svg,
    tune_svg,
)
from .views import (
    MEMORY_WORDS,
    PALETTE,
    STATUS_ORDER,
    SUMMARY_COLUMNS,
    TIER_STATUS,
    MemoryRow,
    NodeView,
    Topology,
    core_groups,
    diagnosis_counts,
    diagnosis_worst,
    fleet_views,
    gpu_text,
    host_view,
    id_ranges,
    is_strict,
    memory_rows,
    parse_ranges,
    plan_cpus,
    pool_label,
    summary,
    topology,
    tune_points,
)

__all__ = [
    "Block",
    "CHAR_W",
    "GPU_H",
    "GRID_COLS",
    "HOSTVARS_PARTS",
    "MAX_W",
    "MEMORY_WORDS",
    "MemoryRow",
    "NodeView",
    "PALETTE",
    "RecordError",
    "STATUS_ORDER",
    "SUMMARY_COLUMNS",
    "Spec",
    "TEMPLATES",
    "TIER_STATUS",
    "Topology",
    "ascii_bar",
    "check_record",
    "core_groups",
    "cpu_grid",
    "diagnosis_counts",
    "diagnosis_worst",
    "el",
    "fleet_views",
    "flow",
    "gpu_block",
    "gpu_memory_block",
    "gpu_text",
    "group_block",
    "host_view",
    "id_ranges",
    "is_strict",
    "load_records",
    "memory_rows",
    "merge_hostvars",
    "merge_record",
    "nice_ticks",
    "node_block",
    "parse_ranges",
    "parts_from_hostvars",
    "plain",
    "plan_cpus",
    "pool_label",
    "render_html",
    "render_markdown",
    "summary",
    "topology",
    "topology_svg",
    "tune_points",
    "tune_svg",
    "utc_now",
]
