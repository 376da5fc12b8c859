"""The report as one self-contained HTML page: templates/page.html.j2 with templates/report.css inlined."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from jinja2 import Environment, StrictUndefined, Template
from markupsafe import Markup

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import format_cpulist as id_ranges

from ..sizes import format_size_short as human_bytes
from .svg import topology_svg, tune_svg
from .views import (
    MEMORY_WORDS,
    PALETTE,
    SUMMARY_COLUMNS,
    _fmt,
    _latest,
    _smt_note,
    fleet_views,
    is_strict,
    plan_cpus,
)

# --- HTML ---------------------------------------------------------------------------


TEMPLATES = Path(__file__).with_name("templates")


def _template(name: str) -> str:
    """A file of templates/: the page (Jinja, autoescaped) and its style sheet."""
    return (TEMPLATES / name).read_text(encoding="utf-8")


@functools.cache
def _page() -> Template:
    """templates/page.html.j2 compiled once; autoescape: every value the template prints is escaped."""
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["bytes"] = human_bytes
    env.filters["fmt"] = _fmt
    return env.from_string(_template("page.html.j2"))


def _anchor(host: str, taken: set[str]) -> str:
    base = "host-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", host).strip("-") or "x")
    anchor, n = base, 2
    while anchor in taken:
        anchor, n = f"{base}-{n}", n + 1
    taken.add(anchor)
    return anchor


def _html_view(view: dict, taken: set[str]) -> dict:
    view["anchor"] = _anchor(view["host"], taken)
    if view["topology"] is not None:
        view["topology_svg"] = topology_svg(view["host"], view["topology"])
        view["smt_unpaired"] = _smt_note(view)
    if view["tune_points"]:
        view["tune_svg"] = tune_svg(view["host"], view["tune"], view["tune_points"])
    plan = view["plan"]
    if plan is not None:
        view["plan_cpus"] = id_ranges(plan_cpus(plan, view["facts"]))
        view["systemd"] = " ".join(f"{k}={v}" for k, v in plan["systemd"].items() if v is not None)
        view["headroom"] = f"{plan['memory']['headroom_ratio'] or 0:.0%}"
        view["spread"] = not is_strict(plan)
    return view


def render_html(records: Iterable[Mapping]) -> str:
    """The whole fleet as one self-contained HTML page."""
    views = fleet_views(records)
    taken: set[str] = set()
    views = [_html_view(view, taken) for view in views]
    return _page().render(
        css=Markup(_template("report.css")), views=views, columns=SUMMARY_COLUMNS, palette=PALETTE, latest=_latest(views),
        mem_words=MEMORY_WORDS, fmt=_fmt,
    )  # fmt: skip
