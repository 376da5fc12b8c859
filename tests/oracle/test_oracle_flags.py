"""Every flag the planner emits or refuses, against the servers' own argparse definitions.

The definitions are read from the pinned releases (wheels.lock) by server_flags.py:
sglang-kt 0.7.2 ``sglang/srt/server_args.py`` (ServerArgs.add_cli_args) and the legacy
server's ``ktransformers/server/args.py`` (0.2.1.post1, the only 0.2/0.3 server on the
package index). A version bump in wheels.lock re-runs all of this against the new code.
"""

from __future__ import annotations

import itertools

import pytest
import server_flags
import wheels
from planner_hosts import (
    DEEPSEEK_V3_Q4KM,
    cxl_host,
    seed_host,
    single_node_host,
    snc3_host,
    snc4_host,
    tutorial_host_1tb,
    tutorial_host_512gb,
)

from ansible_collections.ktfleet.numa.plugins.plugin_utils.errors import PlanError
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner import launch, planner
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.models import Backend

PATHS = {"model_path": "/srv/models/DeepSeek-V3", "weights_path": "/srv/models/DeepSeek-V3-AMXINT4"}
V3 = {**DEEPSEEK_V3_Q4KM, **PATHS, "optimize_config_path": "/srv/rules.yaml"}
HOSTS = [seed_host, tutorial_host_1tb, tutorial_host_512gb, snc4_host, snc3_host, single_node_host, cxl_host]
# the 0.3 balance_serve server's flags the planner's legacy argv uses and 0.2.1.post1 does not have
# (kvcache-ai/ktransformers ktransformers/server/args.py @0521e375: --backend_type, --chunk_size)
LEGACY_03_ONLY = {"--chunk_size", "--backend_type"}


@pytest.fixture(scope="module")
def sglang():
    return server_flags.sglang_kt()


@pytest.fixture(scope="module")
def legacy():
    return server_flags.legacy()


def _plans(backend):
    """Many plans: every hand-built host under option sets that change the argv."""
    variants = [
        {},
        {"kt_num_gpu_experts": 8, "chunked_prefill_size": 8192, "gpus": 2, "port": 8000},
        {"policy": "bind"},
        {"server_extra_args": ["--kt-max-deferred-experts-per-token", "2", "--mem-fraction-static", "0.9"]},
    ]
    if backend == "legacy":
        variants = [{}, {"policy": "interleave"}, {"port": 8000, "cpu_infer": 3}]
    for host, options in itertools.product(HOSTS, variants):
        try:
            yield host.__name__, planner.make_plan(host(), V3, backend, **options)
        except PlanError:
            continue  # an option this host cannot take (e.g. interleave on one node)


def _walk(argv, table, skip=()):
    """(flag, values) for each flag word of argv, each checked against the table's type and nargs."""
    i = 0
    while i < len(argv):
        flag = argv[i]
        assert flag.startswith("--"), f"{flag!r} is not a flag"
        values = list(itertools.takewhile(lambda w: not w.startswith("--"), argv[i + 1 :]))
        i += 1 + len(values)
        if flag in skip:
            continue
        assert flag in table, f"{flag} is not a flag of {table.source}"
        spec = table[flag]
        if not spec.takes_value:
            assert values == [], f"{flag} takes no value ({table.cite(flag)}), got {values}"
        elif spec.nargs is None:
            assert len(values) == 1, f"{flag} takes one value ({table.cite(flag)}), got {values}"
        elif spec.nargs == "+":
            assert values, f"{flag} takes one or more values ({table.cite(flag)})"
        convert = {"int": int, "float": float}.get(spec.type or "str", str)
        for value in values:
            convert(value)  # ValueError: not the type the server converts it to
        if spec.choices:
            assert set(values) <= set(spec.choices), f"{flag} {values} not in {spec.choices}"
        yield flag, values


def test_the_lock_is_well_formed_and_every_file_matches_its_hash(tmp_path):
    pinned = wheels.pins()
    assert {(p.name, p.version) for p in pinned} >= {("kt-kernel", "0.7.2"), ("sglang-kt", "0.7.2")}
    for p in pinned:
        assert wheels.ensure(p) == p.path
    bad = tmp_path / "wheels.lock"
    bad.write_text("sglang-kt 0.7.2 sglang_kt.whl deadbeef\n")
    with pytest.raises(wheels.WheelError, match="want 'name version filename sha256"):
        wheels.pins(bad)


def test_a_changed_file_fails_its_hash(tmp_path, monkeypatch):
    monkeypatch.setattr(wheels, "CACHE", tmp_path)
    p = wheels.pin("sglang-kt")
    (tmp_path / p.filename).write_bytes(b"not the wheel")
    with pytest.raises(wheels.WheelError, match="sha256 .* pins f24dfb7c"):
        wheels.ensure(p)


@pytest.mark.parametrize("backend", ["sglang-kt", "legacy"])
def test_every_emitted_flag_exists_with_the_servers_type_and_nargs(backend, sglang, legacy):
    table = sglang if backend == "sglang-kt" else legacy
    seen = set()
    count = 0
    for name, p in _plans(backend):
        count += 1
        assert p.server_args[:2] == ["-m", table.module], name
        skip = LEGACY_03_ONLY if backend == "legacy" else ()
        seen |= {flag for flag, _ in _walk(p.server_args[2:], table, skip)}
        if backend == "sglang-kt":
            table.parse(p.server_args[2:])  # the server's own parser takes the whole line
    assert count >= 2 * len(HOSTS)
    # what every plan passes, by the wheel's definitions (sglang_kt: sglang/srt/server_args.py)
    if backend == "sglang-kt":
        assert sglang["--kt-numa-nodes"].nargs == "+" and sglang["--kt-numa-nodes"].type == "int"
        assert sglang["--kt-num-gpu-experts"].type == "int" and sglang["--chunked-prefill-size"].type == "int"
        assert seen >= {"--kt-cpuinfer", "--kt-threadpool-count", "--kt-numa-nodes", "--kt-num-gpu-experts",
                        "--chunked-prefill-size", "--kt-weight-path", "--tensor-parallel-size"}  # fmt: skip
    else:
        assert legacy["--cpu_infer"].type == "int" and seen >= {"--cpu_infer", "--gguf_path", "--model_path"}


def test_the_legacy_argv_targets_the_03_server_not_the_indexed_021(legacy):
    """0.2.1.post1 (the index's only 0.2/0.3 server) has neither --chunk_size nor --backend_type:
    the planner's legacy line is the 0.3 balance_serve server's; this goes red when the lock
    pins a server that has them (then drop LEGACY_03_ONLY) or the planner stops passing them."""
    p = planner.make_plan(seed_host(), V3, "legacy")
    emitted = {w for w in p.server_args if w.startswith("--")}
    assert emitted - set(legacy.flags) == LEGACY_03_ONLY
    assert "--max_chunk_size" in legacy and "--type" in legacy  # what 0.2.1.post1 calls them


@pytest.mark.parametrize("backend", [Backend.SGLANG_KT, Backend.LEGACY])
def test_every_planned_or_refused_flag_is_refused_in_extra_args(backend):
    for flag in [*launch._PLANNED[backend], *launch._REFUSED[backend]]:
        for words in ([flag, "1"], [f"{flag}=1"]):
            with pytest.raises(PlanError, match=f"^ktfleet_server_extra_args: {flag} "):
                planner.make_plan(seed_host(), V3, backend.value, server_extra_args=words)


def test_every_emitted_flag_is_owned_and_every_alias_of_an_owned_flag_too(sglang, legacy):
    owned = launch._PLANNED[Backend.SGLANG_KT]
    for _, p in _plans("sglang-kt"):
        planned_words = p.server_args[2 : len(p.server_args) - len(_extra(p))]
        emitted = {w for w in planned_words if w.startswith("--")}
        assert emitted - set(owned) <= {"--trust-remote-code"}
    for flag in owned:  # an alias argparse would take for a planned flag must be refused too
        assert flag in sglang, f"_PLANNED names {flag}, which sglang-kt does not have"
        assert set(sglang[flag].names) <= set(owned), f"{sglang.cite(flag)}: alias of {flag} not refused"
    for flag in launch._PLANNED[Backend.LEGACY]:
        assert flag in legacy or flag in LEGACY_03_ONLY, flag


def _extra(p):
    for word in ("--kt-max-deferred-experts-per-token",):
        if word in p.server_args:
            return p.server_args[p.server_args.index(word) :]
    return []


def test_kt_flags_are_exactly_the_wheels(sglang):
    """launch.KT_FLAGS (what extra args may name) is every --kt-* flag of sglang-kt's server_args.py."""
    assert {name for name in sglang.flags if name.startswith("--kt-")} == launch.KT_FLAGS


@pytest.mark.parametrize(
    "word",
    ["--kt-num-gpu-expert", "--kt-gpu-experts", "--kt-numa-node", "--kt-cpu-infer=8", "--kt-method-x"],
)
def test_an_unknown_kt_flag_in_extra_args_is_refused(word, sglang):
    flag = word.split("=")[0]
    assert flag not in sglang  # argparse would take a prefix as the longer flag, or stop the server
    with pytest.raises(PlanError, match=f"^ktfleet_server_extra_args: {flag} is not a flag of sglang-kt"):
        planner.make_plan(seed_host(), V3, server_extra_args=[word, "1"])


def test_known_kt_flags_pass_and_parse(sglang):
    extra = ["--kt-gpu-prefill-token-threshold", "4096", "--kt-enable-dynamic-expert-update",
             "--kt-expert-placement-strategy", "frequency"]  # fmt: skip
    p = planner.make_plan(seed_host(), V3, server_extra_args=extra)
    ns = sglang.parse(p.server_args[2:])
    assert (ns.kt_gpu_prefill_token_threshold, ns.kt_enable_dynamic_expert_update) == (4096, True)
    assert ns.kt_expert_placement_strategy == "frequency"


def test_the_role_installs_the_releases_the_oracle_read():
    """ktfleet_versions (roles/ktransformers/defaults) pins what wheels.lock pins: bumping one
    without the other is red; bumping both re-runs every oracle test against the new code."""
    import yaml

    defaults = yaml.safe_load((wheels.LOCK.parents[2] / "roles/ktransformers/defaults/main.yml").read_text())
    pinned = defaults["ktfleet_versions"]["sglang-kt"]
    assert pinned == {name: wheels.pin(name).version for name in ("kt-kernel", "sglang-kt")}


def test_the_legacy_argv_for_the_pinned_021_release_parses_with_its_own_argparse(legacy):
    """The role passes ktfleet_versions.legacy.ktransformers (0.2.1.post1, the lock's legacy pin):
    the argv then leaves out 0.3's flags and 0.2.1.post1's own parser takes every word."""
    p = planner.make_plan(seed_host(), V3, "legacy", legacy_release="0.2.1.post1")
    assert not LEGACY_03_ONLY & set(p.server_args)
    legacy.parser().parse_args(p.server_args[2:])  # argparse exits on a word it does not know
    assert any(r.startswith("legacy release 0.2.1.post1: no --chunk_size/--backend_type") for r in p.reasons)
    assert set(planner.make_plan(seed_host(), V3, "legacy", legacy_release="0.3.2").server_args) >= LEGACY_03_ONLY
