"""The fleet report: records -> HTML page and Markdown, merging, and bad records."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal, TypedDict

import pytest
from planner_hosts import NodeSpec, cxl_host, make_facts, seed_host, snc4_host

from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner import planner
from ansible_collections.ktfleet.numa.plugins.plugin_utils.report import (
    RecordError,
    id_ranges,
    load_records,
    merge_hostvars,
    merge_record,
    nice_ticks,
    parse_ranges,
    render_html,
    render_markdown,
)

GiB = 1024**3
REPO = Path(__file__).resolve().parents[2]
MODEL = {"name": "DeepSeek-V3", "weights_bytes": 300 * GiB, "moe_intermediate_size": 2048,
         "model_path": "/m", "weights_path": "/w-AMXINT4"}  # fmt: skip
TUNE = {
    "table": [
        {"threads": 24, "samples": [9.0, 9.4, 9.2], "median": 9.2},
        {"threads": 62, "samples": [12.1, 12.0], "median": 12.05},
        {"threads": 48, "samples": [13.0, 13.3], "median": 13.1},
    ],
    "chosen": 46, "knee": 48, "reason": "fastest at 48; backing off 2", "unit": "tokens/s",
}  # fmt: skip
DIAGNOSIS = {
    "window_seconds": 30.0,
    "verdicts": [
        {"check": "remote_memory", "status": "warn", "summary": "12% remote", "remedy": "bind", "numbers": {"ratio": 0.12}},
        {"check": "throttle", "status": "ok", "summary": "none", "remedy": "", "numbers": {"rising": False}},
    ],
}


def plan_of(facts: dict, backend: str = "sglang-kt", **options) -> dict:
    return planner.make_plan(facts, MODEL, backend, **options).model_dump(mode="json")


def record(host: str = "gpu-a01", facts: dict | None = None, **parts) -> dict:
    facts = seed_host() if facts is None else facts
    out = {"host": host, "updated": "2025-06-01T12:00:00Z", "facts": facts}
    out.update(parts if "plan" in parts else {**parts, "plan": plan_of(facts)})
    return {k: v for k, v in out.items() if v is not None}


class Elements(HTMLParser):
    """Every start tag with its attributes and the data-node of the nearest enclosing node group."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict, list[dict]]] = []
        self.stack: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.found.append((tag, attrs, list(self.stack)))
        if tag not in ("rect", "circle", "line", "polyline", "meta", "br", "img", "input"):
            self.stack.append({"tag": tag, **attrs})

    def handle_startendtag(self, tag, attrs):
        self.found.append((tag, dict(attrs), list(self.stack)))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()["tag"] == tag:
                break

    def having(self, css: str) -> list[tuple[str, dict, list[dict]]]:
        return [e for e in self.found if css in (e[1].get("class") or "").split()]


def parse(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    return parser


def enclosing(ancestors: list[dict], css: str) -> dict | None:
    return next((a for a in reversed(ancestors) if css in (a.get("class") or "").split()), None)


# --- the drawing --------------------------------------------------------------------


def test_page_is_self_contained():
    page = render_html([record(tune=TUNE, diagnosis=DIAGNOSIS, rollout={"outcome": "new"})])
    assert page.startswith("<!DOCTYPE html>")
    lowered = page.lower()
    for forbidden in ("<script", "http://", "https://", "src=", "url(", "@import", "<link", "javascript:"):
        assert forbidden not in lowered, forbidden


def test_one_cell_per_cpu_in_its_node():
    facts = snc4_host()
    cells = parse(render_html([record(facts=facts)])).having("cpu")
    assert sorted(int(attrs["data-cpu"]) for _, attrs, _ in cells) == sorted(c for n in facts["nodes"] for c in n["cpus"])
    for _, attrs, ancestors in cells:
        node = enclosing(ancestors, "node")
        owner = next(n for n in facts["nodes"] if int(attrs["data-cpu"]) in n["cpus"])
        assert int(node["data-node"]) == owner["id"]
        assert int(enclosing(ancestors, "package")["data-package"]) == owner["package_ids"][0]


def test_gpus_hang_on_their_node_or_are_marked_unknown():
    facts = make_facts([NodeSpec(8, 64 * GiB, 0), NodeSpec(8, 64 * GiB, 1)], gpus=(1, None, 0))
    gpus = parse(render_html([record(facts=facts)])).having("gpu")
    where = {attrs["data-pci"]: (attrs["data-node"], enclosing(ancestors, "node")) for _, attrs, ancestors in gpus}
    assert where["0000:17:00.0"][0] == "1" and where["0000:17:00.0"][1]["data-node"] == "1"
    assert where["0000:19:00.0"][1]["data-node"] == "0"
    assert where["0000:18:00.0"] == ("unknown", None)
    assert "GPUs, NUMA node unknown" in render_html([record(facts=facts)])


def test_the_plans_cpus_and_pools_are_highlighted():
    facts = seed_host()
    bound = plan_of(facts, "legacy", policy="bind", nodes=[1])
    page = render_html([record(facts=facts, plan=bound)])
    used = {int(attrs["data-cpu"]) for _, attrs, _ in parse(page).having("used") if "data-cpu" in attrs}
    assert used == set(bound["cpus"]) == set(facts["nodes"][1]["cpus"])
    shard = render_html([record(facts=facts)])
    assert "pool 0: 31 threads" in shard and "pool 1: 31 threads" in shard
    nodes = {attrs["data-node"]: attrs["class"] for _, attrs, _ in parse(shard).having("node")}
    assert nodes == {"0": "node used weights", "1": "node used weights"}


def test_cores_show_their_threads_when_the_facts_pair_them():
    facts = make_facts([NodeSpec(4, 64 * GiB, 0, threads=2)])
    unpaired = render_html([record(facts=facts)])
    assert not parse(unpaired).having("core")
    assert "do not say which CPUs are SMT siblings" in unpaired
    facts["core_cpus"] = [[c, c + 4] for c in range(4)]
    cores = parse(render_html([record(facts=facts)])).having("core")
    assert [attrs["data-cpus"] for _, attrs, _ in cores] == ["0,4", "1,5", "2,6", "3,7"]
    # one thread per core needs no pairing
    single = parse(render_html([record(facts=make_facts([NodeSpec(4, 64 * GiB, 0, threads=1)]))]))
    assert len(single.having("core")) == 4


def test_memory_only_nodes_are_drawn_apart():
    elements = parse(render_html([record(facts=cxl_host(), plan=None)]))
    where = {a["data-node"]: (enclosing(anc, "package"), enclosing(anc, "memgroup")) for _, a, anc in elements.having("node")}
    assert where["0"][0] is not None and where["0"][1] is None
    assert where["1"][0] is None and where["1"][1] is not None


def test_memory_bars_are_red_where_the_weights_do_not_fit():
    facts = seed_host()
    too_big = planner.make_plan(facts, {**MODEL, "weights_bytes": 900 * GiB}).model_dump(mode="json")
    page = render_html([record(facts=facts, plan=too_big), record("fine", facts=facts)])
    rows = {e[1]["class"] for e in parse(page).found if e[0] == "tr" and "mem-" in (e[1].get("class") or "")}
    assert rows == {"mem-bad", "mem-ok"}
    summary = [e[1]["class"] for e in parse(page).found if e[0] == "tr" and e[1].get("class") in ("ok", "bad")]
    assert summary == ["ok", "bad"]  # sorted by host: fine fits, gpu-a01 does not
    assert "DOES NOT FIT" in page


def test_memory_bars_show_buffers_and_the_tight_tier():
    # kt-kernel scratch (memory.scratch_per_pool) drawn apart from the weights; tight is amber, not red
    facts = seed_host()
    shaped = {**MODEL, "weights_bytes": 360 * GiB, "moe_intermediate_size": 2048, "hidden_size": 7168,
              "num_experts": 256, "num_experts_per_tok": 8}  # fmt: skip
    tight = planner.make_plan(facts, shaped).model_dump(mode="json")
    assert tight["memory"]["tier"] == "tight"
    page = render_html([record(facts=facts, plan=tight)])
    rows = {e[1]["class"] for e in parse(page).found if e[0] == "tr" and "mem-" in (e[1].get("class") or "")}
    assert rows == {"mem-tight"}
    assert 'class="buf"' in page and 'class="margin"' in page
    markdown = render_markdown([record(facts=facts, plan=tight)])
    assert re.search(r"node 0 +\[#+\++~+[~|.]*\] .*buffers 2\.\dG.*: tight", markdown)
    assert "| tight |" in markdown  # the fleet table's verdict


def test_interleave_checks_only_the_total():
    plan = plan_of(cxl_host(), "legacy", policy="interleave")
    page = render_html([record(facts=cxl_host(), plan=plan)])
    assert 'class="mem-spread"' in page and "only the total is checked" in page


def test_tuning_curve_marks_knee_and_chosen():
    page = render_html([record(tune=TUNE)])
    chart = page[page.index('<svg class="tune"') :]
    chart = chart[: chart.index("</svg>")]
    assert chart.count('class="sample"') == 7
    assert chart.count("medianpt") == 3 and chart.count("chosenpt") == 0  # 46 was not measured
    assert ">knee 48<" in chart and ">chosen 46<" in chart
    xs = [float(x) for x in re.findall(r'<circle cx="([\d.]+)" cy="[\d.]+" r="3.5"', chart)]
    assert xs == sorted(xs), "points in thread order"


def test_diagnosis_table_and_verdict():
    page = render_html([record(diagnosis=DIAGNOSIS)])
    assert '<td class="warn">warn</td>' in page and '<td class="ok">ok</td>' in page
    assert "ratio=0.12" in page and "1 warn, 1 ok" in page
    failing = copy.deepcopy(DIAGNOSIS)
    failing["verdicts"][1]["status"] = "fail"
    assert "DIAGNOSIS FAILS" in render_html([record(diagnosis=failing)])


def test_every_text_is_escaped():
    evil = "<script>alert(1)</script>&\"'"
    plan = plan_of(seed_host())
    plan["reasons"].append("<b>bold</b> & co")
    diagnosis = copy.deepcopy(DIAGNOSIS)
    diagnosis["verdicts"][0]["summary"] = "<img src=x onerror=alert(1)>"
    rec = record(evil, plan=plan, diagnosis=diagnosis, rollout={"outcome": "new", "note": "</style>"})
    page = render_html([rec])
    assert "<script>" not in page and "<b>bold" not in page and "<img" not in page and "</style>\"" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&#34;&#39;" in page
    assert 'id="host-script-alert-1-script"' in page
    markdown = render_markdown([rec])
    assert not re.search(r"(?<!\\)<", markdown), "every < is escaped: no HTML in the Markdown"
    assert "## \\<script\\>alert(1)\\</script\\>\\&\"'" in markdown


def test_missing_parts_render():
    bare = {"host": "bare", "updated": "2025-06-01T00:00:00+00:00"}
    facts_only = {"host": "facts-only", "updated": "2025-06-01T00:00:00Z", "facts": seed_host()}
    plan_only = {"host": "plan-only", "updated": "2025-06-01T00:00:00Z", "plan": plan_of(seed_host())}
    tune_only = {"host": "tune-only", "updated": "2025-06-01T00:00:00Z", "tune": {"table": [{"threads": 8, "samples": [1.0, 3.0]}]}}
    nulls = {"host": "nulls", "updated": "2025-06-01T00:00:00Z", "facts": {"nodes": [{"id": 0, "cpus": [0], "cores": None,
             "memory_total_bytes": None}], "cpu": None, "gpus": None}, "plan": None}  # fmt: skip
    records = [bare, facts_only, plan_only, tune_only, nulls]
    page = render_html(records)
    assert page.count('<section class="host"') == 5
    assert page.count("No facts recorded") == 3
    assert "no plan" in page and "fits" in page
    assert "<svg class=\"tune\"" in page  # the median comes from the samples
    markdown = render_markdown(records)
    assert markdown.count("\n## ") == 6  # the fleet table and five hosts


def test_minimal_facts_place_nodes_by_packages():
    """The brief shape: nodes without package_ids, placed through packages[].nodes; no packages at all."""
    facts = {
        "nodes": [{"id": 0, "cpus": [0, 1], "cores": 2}, {"id": 1, "cpus": [2, 3], "cores": 2},
                  {"id": 2, "cpus": [], "memory_only": True, "memory_total_bytes": GiB}],
        "packages": [{"id": 0, "nodes": [0]}, {"id": 1, "nodes": [1]}],
    }  # fmt: skip
    elements = parse(render_html([{"host": "h", "updated": "2025-01-01", "facts": facts, "plan": {}}]))
    packages = {a["data-node"]: enclosing(anc, "package") for _, a, anc in elements.having("node")}
    assert packages["0"]["data-package"] == "0" and packages["1"]["data-package"] == "1" and packages["2"] is None
    del facts["packages"]
    page = render_html([{"host": "h", "updated": "2025-01-01", "facts": facts}])
    assert "package unknown" in page and len(parse(page).having("cpu")) == 4


def test_duplicate_node_ids_are_refused():
    facts = seed_host()
    facts["nodes"][1]["id"] = 0
    with pytest.raises(RecordError, match=r"facts\.nodes\[1\]\.id: must be a node id of its own, got 0"):
        render_html([record(facts=facts, plan=None)])


def test_plan_naming_nodes_the_facts_lack_is_said():
    plan = plan_of(snc4_host())
    page = render_html([record(facts=seed_host(), plan=plan)])
    assert "the plan names node(s) 2-3, which the facts do not have" in page


def test_output_is_deterministic_and_sorted():
    records = [record("b"), record("a", tune=TUNE)]
    first = render_html(records)
    assert first == render_html(list(reversed(copy.deepcopy(records))))
    assert first.index('id="host-a"') < first.index('id="host-b"')
    assert render_markdown(records) == render_markdown(list(reversed(records)))


def test_markdown_has_the_tables_and_bars():
    markdown = render_markdown([record(tune=TUNE, diagnosis=DIAGNOSIS, rollout={"outcome": "rolled_back"})])
    assert "| host | nodes | cores | SMT | policy | cpu_infer |" in markdown
    assert "ROLLED BACK" in markdown
    # weights (#) + margin (~; memory.MARGIN_SHARE, new) of MemTotal, | where the recommended 20% stays free
    assert re.search(
        r"node 0 +\[#+~+\.+\|\.*\] 176\.2G of 251\.0G \(weights 150\.0G \+ buffers 0B? \+ margin 26\.2G\), "
        r"keep-free line 200\.8G: fits",
        markdown,
    )
    assert "| 48 | 13.1 | 13, 13.3 | knee |" in markdown
    assert "| remote_memory | WARN | 12% remote | bind | ratio=0.12 |" in markdown
    assert "pool 0: 31 threads" in markdown


# --- records: merge, load, errors -----------------------------------------------------


def test_merge_keeps_parts_the_new_run_lacks():
    old = record(tune=TUNE)
    merged = merge_record(old, {"host": "gpu-a01", "updated": "2025-07-01T00:00:00Z", "diagnosis": DIAGNOSIS})
    assert merged["tune"] == TUNE and merged["diagnosis"] == DIAGNOSIS and merged["facts"] == old["facts"]
    assert merged["updated"] == "2025-07-01T00:00:00Z"


def test_merge_keeps_the_time_when_nothing_changed():
    old = record(tune=TUNE)
    again = merge_record(old, {"host": "gpu-a01", "updated": "2025-08-01T00:00:00Z", "tune": copy.deepcopy(TUNE)})
    assert again == old
    first = merge_record(None, {"host": "new", "tune": TUNE})
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["updated"])


def test_merge_refuses_another_host_and_bad_parts():
    with pytest.raises(RecordError, match="cannot merge into the record of 'gpu-a01'"):
        merge_record(record(), {"host": "gpu-a02"})
    with pytest.raises(RecordError, match=r"host 'gpu-a01': tune.chosen: must be an int, got 'many'"):
        merge_record(record(), {"host": "gpu-a01", "tune": {"chosen": "many"}})


def test_the_plan_part_is_read_as_the_planners_model_writes_it():
    """The record's plan spec is derived from planner.models.Plan: every key, each checked by its type."""
    from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.models import Plan
    from ansible_collections.ktfleet.numa.plugins.plugin_utils.report.records import check_record, spec_of

    plan = json.loads(json.dumps(plan_of(seed_host())))  # as the record file holds it: node keys are strings
    view = check_record(record(plan=plan), "gpu-a01.json")["plan"]
    assert set(view) == set(Plan.model_fields) and "port" in view
    assert view["port"] == plan["port"] == 30000
    assert view["threads_per_node"] == {int(node): n for node, n in plan["threads_per_node"].items()}
    assert view["memory"]["keep_free_per_node_bytes"].keys() == {0, 1}
    with pytest.raises(RecordError, match=r"gpu-a01.json: plan.port: must be an int, got '30000'"):
        check_record(record(plan={**plan, "port": "30000"}), "gpu-a01.json")
    with pytest.raises(RecordError, match=r"plan.memory.free_ratio: must be a number"):
        check_record(record(plan={**plan, "memory": {**plan["memory"], "free_ratio": "most"}}), "gpu-a01.json")
    assert spec_of(dict[str, float | None]) == ("names", "num")
    with pytest.raises(TypeError, match="no record spec"):
        spec_of(bytes)


class _Part(TypedDict):
    kind: Literal["a", "b"]
    figures: dict[str, int | float]
    label: str | None


def test_every_part_is_read_as_its_producer_declares_it():
    """Facts from the planner's Facts model, tune and diagnosis from their producers' TypedDicts, the
    rollout outcome from its Literal: a key or value the producer adds reaches the report's checks."""
    from typing import get_args

    from ansible_collections.ktfleet.numa.plugins.plugin_utils.diagnosis.diagnosis import Diagnosis, diagnose
    from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.fleet_table import Outcome
    from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.models import Facts
    from ansible_collections.ktfleet.numa.plugins.plugin_utils.report.records import check_record, spec_of
    from ansible_collections.ktfleet.numa.plugins.plugin_utils.tuning.tuning import TuneResult

    facts = seed_host()
    view = check_record(record(facts=facts), "gpu-a01.json")
    assert set(view["facts"]) == set(Facts.model_fields)
    assert view["facts"]["packages"] == facts["packages"] and view["facts"]["core_cpus"] == []  # not in this fixture
    with pytest.raises(RecordError, match=r"facts\.packages\[0\]\.cores: must be an int"):
        check_record(record(facts={**facts, "packages": [{**facts["packages"][0], "cores": "32"}]}), "gpu-a01.json")

    result = diagnose({"window_seconds": 5.0})
    view = check_record(record(diagnosis=json.loads(json.dumps(result))), "gpu-a01.json")["diagnosis"]
    assert set(view) == set(Diagnosis.__annotations__) and view["status"] == result["status"]
    assert view["thresholds"] == result["thresholds"]
    with pytest.raises(RecordError, match=r"diagnosis\.status: must be one of ok, warn, fail, info, got 'broken'"):
        check_record(record(diagnosis={**result, "status": "broken"}), "gpu-a01.json")

    assert set(check_record(record(tune={"chosen": 4}), "gpu-a01.json")["tune"]) == set(TuneResult.__annotations__)
    assert get_args(Outcome) == ("new", "rolled_back", "old")

    assert spec_of(_Part) == {"kind": ("a", "b"), "figures": ("names", "num"), "label": "str"}
    with pytest.raises(TypeError, match="no record spec"):
        spec_of(int | list[int])


def test_merge_hostvars_maps_the_variables_to_parts():
    facts = seed_host()
    plan = plan_of(facts)
    hostvars = {
        "a": {"ansible_facts": {"numa": facts}, "ktfleet_plan": plan, "ktfleet_rollout_outcome": "new"},
        "b": {"ktfleet_diagnosis": DIAGNOSIS},
        "c": {},  # nothing known, nothing saved: left out
    }
    saved = [record("b", tune=TUNE), record("z")]
    out = merge_hostvars(saved, hostvars, ["a", "b", "c"], updated="2025-09-01T00:00:00Z")
    assert [r["host"] for r in out] == ["a", "b", "z"]
    assert out[0] == {"host": "a", "updated": "2025-09-01T00:00:00Z", "facts": facts, "plan": plan, "rollout": {"outcome": "new"}}
    assert out[1]["tune"] == TUNE and out[1]["diagnosis"] == DIAGNOSIS
    assert out[2] == saved[1]


def test_the_inventory_label_of_a_host_reaches_the_fleet_table():
    """The demo labels its machines synthetic or recorded (ktfleet_facts_label): the report says so too."""
    facts = seed_host()
    hostvars = {"seed": {"ansible_facts": {"numa": facts}, "ktfleet_plan": plan_of(facts),
                         "ktfleet_facts_label": "synthetic"},
                "plain": {"ansible_facts": {"numa": facts}, "ktfleet_plan": plan_of(facts)}}  # fmt: skip
    records = merge_hostvars([], hostvars, ["seed", "plain"], updated="2025-09-01T00:00:00Z")
    assert [r.get("label") for r in records] == [None, "synthetic"]
    markdown = render_markdown(records)
    assert "seed (synthetic)" in markdown and "plain (" not in markdown
    assert "seed (synthetic)" in render_html(records)


def test_load_records_round_trip(tmp_path):
    assert load_records(tmp_path / "missing") == []
    for rec in (record("b"), record("a")):
        (tmp_path / f"{rec['host']}.json").write_text(json.dumps(rec))
    (tmp_path / "index.html").write_text("<html>")
    assert [r["host"] for r in load_records(tmp_path)] == ["a", "b"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"a\.json: not JSON: "),
        ("[1, 2]", r"a\.json: a record must be a JSON object, got list"),
        ('{"host": "b", "updated": "2025-01-01"}', r"a\.json: host: the record is for 'b', the file is named after 'a'"),
        ('{"host": "a"}', r"a\.json: updated: must be an ISO-8601 date string, got null"),
        ('{"host": "a", "updated": "yesterday"}', r"a\.json: updated: must be an ISO-8601 date string, got 'yesterday'"),
    ],
)
def test_load_records_names_the_file(tmp_path, content, message):
    (tmp_path / "a.json").write_text(content)
    with pytest.raises(RecordError, match=message):
        load_records(tmp_path)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("facts", "nodes", 0, "cpus"), ["x"], r"facts\.nodes\[0\]\.cpus\[0\]: must be an int, got 'x'"),
        (("facts", "nodes"), {"0": {}}, r"facts\.nodes: must be a list, got"),
        (("facts", "gpus"), [{"numa_node": "1"}], r"facts\.gpus\[0\]\.numa_node: must be an int, got '1'"),
        (("plan", "memory", "fits"), "yes", r"plan\.memory\.fits: must be true or false, got 'yes'"),
        (("plan", "threads_per_node"), {"zero": 4}, r"plan\.threads_per_node key: must be a node id, got 'zero'"),
        (("plan", "cpu_infer"), True, r"plan\.cpu_infer: must be an int, got true"),
        (("tune",), {"table": [{"threads": 4, "samples": [1, None]}]}, r"tune\.table\[0\]\.samples\[1\]: must be a value, not null"),
        (("diagnosis",), {"verdicts": [{"status": "bad"}]}, r"diagnosis\.verdicts\[0\]\.status: must be one of ok, warn, fail, info, got 'bad'"),
        (("rollout",), {"release": "x"}, r"rollout\.outcome: must be one of new, rolled_back, old, got null"),
        (("rollout",), {"outcome": "new", "hosts": ["a"]}, r"rollout\.hosts: must be a number, a string or a boolean"),
        (("plan",), [], r"plan: must be a mapping, got \[\]"),
    ],
)
def test_malformed_records_name_host_and_field(path, value, message):
    rec = record("gpu-a07")
    target = rec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(RecordError, match=r"^record 'gpu-a07': " + message):
        render_html([rec])
    with pytest.raises(RecordError, match=message):
        render_markdown([rec])


def test_duplicate_hosts_and_non_records_are_refused():
    with pytest.raises(RecordError, match="record 'a': host: appears twice"):
        render_html([record("a"), record("a")])
    with pytest.raises(RecordError, match="record 1: a record must be a JSON object, got str"):
        render_html([record("a"), "b"])
    with pytest.raises(RecordError, match="host: must be a non-empty string"):
        render_markdown([{"host": " ", "updated": "2025-01-01"}])


def test_ranges_and_ticks():
    assert id_ranges([8, 0, 1, 2, 3, 10, 11]) == "0-3,8,10-11" and id_ranges([]) == ""
    assert parse_ranges("0-3,8 10-11") == [0, 1, 2, 3, 8, 10, 11] and parse_ranges("numa") == []
    ticks = nice_ticks(0, 27.9)
    assert ticks[0] == 0 and ticks[-1] >= 27.9 and len(ticks) <= 7


# --- the filter shell -------------------------------------------------------------


def test_filters_raise_ansible_errors():
    from ansible.errors import AnsibleFilterError

    from ansible_collections.ktfleet.numa.plugins.filter.report import fleet_report, report_records

    assert fleet_report({"a": record("a")}, "markdown").startswith("# ktfleet fleet report")
    with pytest.raises(AnsibleFilterError, match="format must be html or markdown, got 'pdf'"):
        fleet_report([record()], "pdf")
    with pytest.raises(AnsibleFilterError, match=r"^ktfleet.numa.fleet_report: record 'gpu-a01': plan.policy: must be a string"):
        fleet_report([record(plan={"policy": 3})])
    with pytest.raises(AnsibleFilterError, match="the input must be a list of records, got str"):
        fleet_report("records")
    with pytest.raises(AnsibleFilterError, match="the input must be hostvars"):
        report_records([], ["a"], "/tmp")


# --- the playbook ---------------------------------------------------------------------

WRAPPER = """
- name: Facts, plan and a tuning result for the report
  hosts: gpu_nodes
  gather_facts: false
  vars:  # the inventory describes far-away hosts; these stand in for them
    ansible_connection: local
    ansible_become: false
    ansible_python_interpreter: PYTHON
  tasks:
    - name: Facts from the recorded machine
      ktfleet.numa.numa_facts:
        root: "{{ ktfleet_facts_root }}"
    - name: Plan
      ansible.builtin.set_fact:
        ktfleet_plan: "{{ ansible_facts.numa | ktfleet.numa.plan(ktfleet_model) }}"
    - name: Tuning result
      ansible.builtin.set_fact:
        ktfleet_tune_result: {unit: tokens/s, knee: 6, chosen: 4, reason: x, table: [{threads: 4, samples: [2.0], median: 2.0}]}
      when: with_tune | default(true) | bool

- name: The report
  ansible.builtin.import_playbook: REPORT
"""


@pytest.mark.ansible
def test_playbook_writes_once_and_keeps_saved_parts(tmp_path):
    topologies = REPO / "inventory/topologies"
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(  # hosts the controller cannot reach: the report must not try to
        "all:\n  vars:\n    ansible_connection: ssh\n    ansible_host: 192.0.2.1\n    ansible_user: nobody\n"
        "    ansible_become: true\n    ansible_python_interpreter: /nonexistent/python3\n"
        "    ktfleet_model: {name: m, weights_bytes: 1G, model_path: /m, weights_path: /w}\n"
        "gpu_nodes:\n  hosts:\n"
        f"    xeon:\n      ktfleet_facts_root: {topologies}/32intel64-2p8co2t+8ve.tar.bz2\n"
        f"    knl:\n      ktfleet_facts_root: {topologies}/64intel64-fakeKNL-SNC4-hybrid.tar.bz2\n"
    )
    wrapper = tmp_path / "wrapper.yml"
    wrapper.write_text(
        WRAPPER.replace("REPORT", str(REPO / "playbooks/report.yml")).replace("PYTHON", sys.executable)
    )
    out = tmp_path / "report"

    def play(playbook: Path, *args: str, hosts: str = "xeon") -> dict[str, int]:
        run = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), str(playbook), "-i", str(inventory),
             "-e", f"ktfleet_report_dir={out}", *args],
            cwd=REPO, capture_output=True, text=True, env={"ANSIBLE_FORCE_COLOR": "0", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert "localhost" not in run.stdout, "every task runs on the controller as the fleet's first host"
        counts = re.search(rf"^{hosts}\s+:\s+(ok=.*)$", run.stdout, re.M)[1]
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}

    assert play(wrapper, "--check")["changed"] > 0
    assert not out.exists(), "check mode writes nothing"
    # one release_files task writes the directory, the records, the page and the Markdown
    assert play(wrapper)["changed"] == 1
    written = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(written) == ["REPORT.md", "index.html", "knl.json", "xeon.json"]
    assert play(wrapper, "-e", "with_tune=false")["changed"] == 0, "the same inputs change nothing"
    assert play(REPO / "playbooks/report.yml")["changed"] == 0, "stand-alone: the saved records only"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written
    saved = json.loads((out / "xeon.json").read_text())
    assert saved["tune"]["chosen"] == 4 and saved["plan"]["policy"] == "shard"

    # --limit: the play still runs (as the limited host) and merges that host only
    bigger = '{"ktfleet_model": {"name": "m", "weights_bytes": "2G", "model_path": "/m", "weights_path": "/w"}}'
    knl_before = (out / "knl.json").read_bytes()
    assert play(wrapper, "--limit", "knl", "-e", bigger, hosts="knl")["changed"] == 1  # knl's record, page, Markdown
    assert (out / "knl.json").read_bytes() != knl_before
    assert (out / "xeon.json").read_bytes() == written["xeon.json"], "hosts outside the limit keep their record"
    knl = json.loads((out / "knl.json").read_text())
    assert knl["plan"] != json.loads(written["knl.json"])["plan"] and knl["tune"]["chosen"] == 4
    assert "xeon" in (out / "REPORT.md").read_text(), "the page still shows every saved host"
