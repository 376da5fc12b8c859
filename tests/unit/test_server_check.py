"""ktfleet.numa.server_check's decisions (plugins/module_utils/server_check.py), and its probe
against a venv built the way molecule/shared/prepare.yml builds the stand-in's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ansible_collections.ktfleet.numa.plugins.module_utils.server_check import judge, planned_flags, probe

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "molecule/shared/standin"
# test equipment: molecule/shared/standin/venvs.py (loaded by path: the stand-in's sglang
# package must not shadow anything on the tests' sys.path)
_spec = importlib.util.spec_from_file_location("ktfleet_standin_venvs", STANDIN / "venvs.py")
venvs_py = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(venvs_py)

KT_PINS = {"kt-kernel": "0.7.2", "sglang-kt": "0.7.2"}
LEGACY_PINS = {"ktransformers": "0.2.1.post1"}
KT_ARGS = ["-m", "sglang.launch_server", "--model", "/m", "--kt-cpuinfer", "62", "--kt-numa-nodes", "0", "1"]
LEGACY_ARGS = ["-m", "ktransformers.server.main", "--cpu_infer", "65", "--gguf_path", "/g"]
KT_HELP = "usage: ...\n  --model MODEL\n  --kt-cpuinfer KT_CPUINFER\n  --kt-numa-nodes KT_NUMA_NODES [...]\n"


def fork(**over):
    found = {"dists": {"sglang-kt": "0.7.2", "kt-kernel": "0.7.2"}, "modules": {"sglang.launch_server": True},
             "cpuinfer_ext": None, "libnuma": None, "help_rc": 0, "help": KT_HELP}  # fmt: skip
    return {**found, **over}


def legacy(**over):
    found = {"dists": {"ktransformers": "0.2.1.post1"}, "modules": {"ktransformers.server.main": True},
             "cpuinfer_ext": "/v/cpuinfer_ext.so", "libnuma": True, "help_rc": 0, "help": "--cpu_infer --gguf_path"}  # fmt: skip
    return {**found, **over}


def test_planned_flags_are_the_plans_double_dash_words():
    assert planned_flags([*KT_ARGS, "--x=1", "-m"]) == ["--kt-cpuinfer", "--kt-numa-nodes", "--model", "--x"]


def test_the_fork_at_the_pinned_versions_with_every_planned_flag_passes():
    assert judge("sglang-kt", fork(), KT_ARGS, KT_PINS, None) == ([], [])


def test_upstream_sglang_is_refused_with_the_remedy():
    # kt's own test for the fork: the sglang-kt distribution (kt_kernel/cli/utils/sglang_checker.py:46-52)
    errors, _ = judge("sglang-kt", fork(dists={"sglang": "0.5.6", "kt-kernel": "0.7.2"}, help="--model"), KT_ARGS, KT_PINS, None)
    assert errors and "upstream sglang 0.5.6, not the sglang-kt fork" in errors[0]
    assert "fails at argparse" in errors[0] and "install kt-kernel==0.7.2, sglang-kt==0.7.2" in errors[0]


def test_a_planned_flag_missing_from_help_is_refused():
    # kt probes `python -m sglang.launch_server --help` (sglang_checker.py:324-333)
    errors, _ = judge("sglang-kt", fork(help="--model --kt-cpuinfer"), KT_ARGS, KT_PINS, None)
    assert errors == [
        "python -m sglang.launch_server --help lacks --kt-numa-nodes, which the plan passes: the server would fail at "
        "argparse; install the release the plan was made for (ktfleet_versions) or drop them from ktfleet_server_extra_args"
    ]
    errors, _ = judge("sglang-kt", fork(help_rc=1, help="Traceback: no torch"), KT_ARGS, KT_PINS, None)
    assert "--help failed (exit 1)" in errors[0]


def test_another_version_than_the_pin_is_refused():
    errors, _ = judge("sglang-kt", fork(dists={"sglang-kt": "0.7.3", "kt-kernel": "0.7.2"}), KT_ARGS, KT_PINS, None)
    assert errors == [
        "sglang-kt 0.7.3 is installed but the plan was made for sglang-kt==0.7.2 (ktfleet_versions.sglang-kt); "
        "install the pinned release or pin the installed one"
    ]
    errors, _ = judge("sglang-kt", fork(dists={"sglang-kt": "0.7.2"}), KT_ARGS, KT_PINS, None)
    assert errors and errors[0].startswith("kt-kernel is not installed")


def test_legacy_needs_the_0_2_0_3_server_module():
    # no 0.4+ wheel has ktransformers.server.main (ktransformers-0.7.2 ships only ktransformers.py)
    errors, _ = judge("legacy", legacy(dists={"ktransformers": "0.7.2"}, modules={}), LEGACY_ARGS, LEGACY_PINS, True)
    assert "ktransformers 0.7.2 without ktransformers.server.main" in errors[0]


def test_legacy_build_told_by_libnuma_in_cpuinfer_ext():
    # CMake links libnuma into cpuinfer_ext only with USE_NUMA (ktransformers_ext/CMakeLists.txt:234-250)
    assert judge("legacy", legacy(libnuma=True), LEGACY_ARGS, LEGACY_PINS, True) == ([], [])
    errors, _ = judge("legacy", legacy(libnuma=False), LEGACY_ARGS, LEGACY_PINS, True)
    assert "built without USE_NUMA=1" in errors[0] and "rebuild from source with USE_NUMA=1" in errors[0]
    assert "ktfleet_legacy_numa_build: false" in errors[0]
    errors, _ = judge("legacy", legacy(libnuma=True), LEGACY_ARGS, LEGACY_PINS, False)
    assert "built with USE_NUMA=1" in errors[0] and "a build without USE_NUMA" in errors[0]


def test_legacy_build_that_cannot_be_told_warns_instead_of_refusing():
    errors, warnings = judge("legacy", legacy(cpuinfer_ext=None, libnuma=None), LEGACY_ARGS, LEGACY_PINS, True)
    assert errors == [] and "cannot tell whether the installed legacy server was built with USE_NUMA=1" in warnings[0]


# --- the probe against venvs as molecule/shared/prepare.yml builds them -------------------------


def standin_venv(root: Path, name: str, dists: dict[str, str], standin: Path = STANDIN) -> Path:
    """The venv molecule/shared/prepare.yml builds in the VMs, by the same code (standin/venvs.py)."""
    return venvs_py.standin_venv(root / name, dists, standin)


@pytest.fixture(scope="module")
def venvs(tmp_path_factory):
    root = tmp_path_factory.mktemp("venvs")
    upstream = root / "upstream-sglang"  # an upstream-like SGLang: no --kt-* flags
    (upstream / "sglang").mkdir(parents=True)
    (upstream / "sglang/__init__.py").write_text("")
    (upstream / "sglang/launch_server.py").write_text('print("usage: launch_server [-h] --model MODEL --port PORT")\n')
    return {
        "fork": standin_venv(root, "sglang-kt-kt-kernel-0.7.2_sglang-kt-0.7.2", KT_PINS),
        "legacy": standin_venv(root, "legacy-ktransformers-0.2.1.post1", LEGACY_PINS),
        "upstream": standin_venv(root, "sglang-upstream", {"sglang": "0.5.6"}, upstream),
    }


def test_the_standin_answers_as_the_release_it_stands_for(venvs):
    found = probe(str(venvs["fork"]), "sglang-kt")
    assert found["dists"] == KT_PINS and found["help_rc"] == 0
    for flag in ("--kt-numa-nodes", "--kt-cpuinfer", "--kt-gpu-prefill-token-threshold", "--chunked-prefill-size"):
        assert flag in found["help"]  # help/sglang-kt.txt: sglang-kt 0.7.2's own add_argument()s
    assert judge("sglang-kt", found, KT_ARGS, KT_PINS, None) == ([], [])
    found = probe(str(venvs["legacy"]), "legacy")
    assert found["modules"]["ktransformers.server.main"] and found["libnuma"] is None
    errors, warnings = judge("legacy", found, LEGACY_ARGS, LEGACY_PINS, True)
    assert errors == [] and warnings


def test_probe_sees_upstream_sglang(venvs):
    found = probe(str(venvs["upstream"]), "sglang-kt")
    errors, _ = judge("sglang-kt", found, KT_ARGS, KT_PINS, None)
    assert "upstream sglang 0.5.6, not the sglang-kt fork" in errors[0]


def test_probe_reads_libnuma_from_the_extension(venvs, tmp_path):
    site = next((venvs["legacy"].parent.parent / "lib").glob("python3*/site-packages"))
    ext = site / "cpuinfer_ext.cpython-311-x86_64-linux-gnu.so"
    ext.write_bytes(b"\x7fELF...libnuma.so.1\x00numa_alloc_onnode\x00")
    try:
        assert probe(str(venvs["legacy"]), "legacy")["libnuma"] is True
        ext.write_bytes(b"\x7fELF...libgomp.so.1\x00")
        assert probe(str(venvs["legacy"]), "legacy")["libnuma"] is False
    finally:
        ext.unlink()


def test_probe_of_a_missing_interpreter_says_so():
    found = probe("/nonexistent/bin/python", "sglang-kt")
    errors, _ = judge("sglang-kt", found, KT_ARGS, KT_PINS, None)
    assert errors[0].startswith("/nonexistent/bin/python could not be asked what is installed")
