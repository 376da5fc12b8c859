"""The tuning search's set-up (tuning.search_smt / search_step / search_setup), which
roles/ktransformers/tasks/tune.yml used to compute in Jinja."""

from __future__ import annotations

import pytest

from ansible_collections.ktfleet.numa.plugins.filter.tune import FilterModule
from ansible_collections.ktfleet.numa.plugins.plugin_utils.tuning import tuning

KT_PLAN = {"cpu_infer": 62, "threadpool_count": 2, "policy": "shard", "numa_nodes": [0, 1]}
LEGACY_REPLICATE = {"cpu_infer": 65, "threadpool_count": 1, "policy": "replicate", "numa_nodes": [0, 1]}
KEY = {"backend": "sglang-kt", "model": "m", "versions": {"kt": "0.4"}, "policy": "shard", "nodes": [0, 1],
       "max_tokens": 128, "smt": False}


@pytest.mark.parametrize(("smt", "backend", "facts", "want"), [
    (True, "sglang-kt", {"smt_active": False}, True),
    (False, "sglang-kt", {"smt_active": True}, False),
    (False, "legacy", {"smt_active": True}, True),
    (False, "legacy", {}, False),
    (False, "legacy", None, False),
])
def test_smt_is_searched_when_asked_or_for_legacy_on_smt(smt, backend, facts, want):
    assert tuning.search_smt(smt, backend, facts) is want


def test_step_follows_pools_nodes_or_one():
    assert tuning.search_step(KT_PLAN, "sglang-kt") == 2
    assert tuning.search_step(LEGACY_REPLICATE, "legacy") == 2
    assert tuning.search_step({**LEGACY_REPLICATE, "policy": "bind"}, "legacy") == 1
    assert tuning.search_step(KT_PLAN, "sglang-kt", "4") == 4


def test_setup_clips_starts_and_resumes_the_same_search():
    saved = {"key": KEY, "table": [{"threads": 62, "median": 10.0}]}
    setup = tuning.search_setup(KT_PLAN, range(2, 65), backend="sglang-kt", key=KEY, minimum=40, maximum="60",
                                saved=saved)
    assert setup["allowed"] == list(range(40, 61))
    assert setup["start"] == 62 and setup["step"] == 2 and setup["key"] == KEY
    assert setup["table"] == saved["table"]


def test_setup_starts_afresh_for_another_search_or_on_restart():
    saved = {"key": {**KEY, "smt": True}, "table": [{"threads": 62, "median": 10.0}]}
    assert tuning.search_setup(KT_PLAN, [62], backend="sglang-kt", key=KEY, saved=saved)["table"] == []
    same = {**saved, "key": KEY}
    assert tuning.search_setup(KT_PLAN, [62], backend="sglang-kt", key=KEY, saved=same, restart=True)["table"] == []
    assert tuning.search_setup(KT_PLAN, [62], backend="sglang-kt", key=KEY, saved={}, start=30)["start"] == 30


def test_unset_bounds_are_no_bounds():
    setup = tuning.search_setup(KT_PLAN, [1, 2, 500], backend="sglang-kt", key=KEY, minimum=0, maximum=None)
    assert setup["allowed"] == [1, 2, 500]


def test_filters_are_registered():
    filters = FilterModule().filters()
    assert filters["tune_smt"](False, "legacy", {"smt_active": True}) is True
    assert filters["tune_setup"](KT_PLAN, [60, 62], backend="sglang-kt", key=KEY)["allowed"] == [60, 62]
