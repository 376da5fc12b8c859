"""Hostile input: nothing a role variable holds changes the unit or the environment beyond the plan.

The role's real templates (roles/ktransformers/templates/) are rendered here in
process, with the role's own filters, for many generated values per test; what
they produce is read back with systemd's own code where the shared library is
present (tests/unit/systemd_oracle.py) and with a reader written from systemd's
documentation. Either a value is refused with an error naming its variable, or
the parsed directives and values are exactly the intended ones.
tests/integration/test_hostile_role.py runs a handful of the same through Ansible.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planner_hosts import cxl_host, seed_host
from systemd_oracle import libsystemd, parse_env_file, parse_unit, systemd_env_file, systemd_split, unspecify

from ansible_collections.ktfleet.numa.plugins.filter import systemd_unit as unit_filters
from ansible_collections.ktfleet.numa.plugins.plugin_utils.errors import PlanError
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner import planner
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.rollout import (
    max_fail_percentage,
    rollout_batches,
)
from ansible_collections.ktfleet.numa.plugins.plugin_utils.planner.systemd_syntax import (
    env_file,
    existing_account,
    unit_fields,
)

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "ktransformers"
PYTHON = "/opt/ktfleet/sglang-kt-0.7.2/bin/python"
MODEL = {"name": "DeepSeek-V3", "weights_bytes": "2G", "model_path": "/srv/models/m", "weights_path": "/srv/models/w"}
SYSTEMD = libsystemd() is not None
needs_libsystemd = pytest.mark.skipif(not SYSTEMD, reason="libsystemd-shared not found: Molecule verify reads it")

# Strings that have broken units and environment files elsewhere.
HOSTILE = [
    "ktfleet\nExecStartPre=/bin/touch /tmp/pwned",
    "ktfleet\nAmbientCapabilities=CAP_SYS_ADMIN",
    "x\n[Service]\nExecStartPre=/bin/sh -c id",
    "a\rb", "nul\x00byte", "tab\there", "trailing\\", "%n%i%h", "$HOME", "${PATH}", "'single'", '"double"',
    "back\\slash", " lead", "trail ", "[Section]", "semi;colon", "#hash", "=eq", "x" * 5000, "\x7f", "\udcff",
    "../../../escaped", "/", "a/../b", "root", "",
]
hostile = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(alphabet=st.sampled_from(list("\n\r\x00\t []%$\"'\\;#=/.:@-_aZ09\u00e9")), max_size=40),
    st.text(max_size=30),
    st.binary(max_size=20).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
MANY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _comment(text: str) -> str:
    return "#\n" + "\n".join(f"# {line}" for line in text.splitlines()) + "\n#"


def _env():
    env = jinja2.Environment(  # the template module's settings: trim_blocks, strict undefined
        loader=jinja2.FileSystemLoader(ROLE / "templates"), trim_blocks=True, undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["comment"] = _comment
    for name, func in unit_filters.FilterModule().filters().items():
        env.filters[f"ktfleet.numa.{name}"] = func
    return env


JINJA = _env()


def role_inputs(**overrides) -> dict:
    """The unit_fields inputs as vars/main.yml builds them from the role's defaults."""
    values = {
        "backend": "sglang-kt", "model_name": "DeepSeek-V3", "user": "ktfleet", "group": "ktfleet",
        "state_dir": "/var/lib/ktfleet", "service_name": "ktransformers", "install_dir": "/opt/ktfleet",
        "python": "", "system_root": "/", "api_key": "", "listen_host": "127.0.0.1",
        "allow_unauthenticated": False, "environment": {}, "plan_environment": {"SGLANG_SET_CPU_AFFINITY": "0"},
        "model_path": "/srv/models/DeepSeek-V3", "weights_path": "/srv/models/DeepSeek-V3-AMXINT4",
        "interpreter": PYTHON,
    }
    values.update(overrides)
    return values


def render(plan: dict, fields: dict, *, api_key: str = "", mechanism: str = "systemd") -> tuple[str, str]:
    """(unit, environment file) from the role's templates, as the template module renders them."""
    context = {
        "ansible_managed": "Ansible managed", "inventory_hostname": "h1", "ktfleet_plan": plan,
        "__ktfleet_mechanism": mechanism, "__ktfleet_unit": fields, "__ktfleet_env_host_path": "/etc/ktfleet/x.env",
        "__ktfleet_python": PYTHON, "__ktfleet_systemd_version": "252",
        "ktfleet_service_name": fields["service_name"], "ktfleet_api_key": api_key,
    }
    unit = JINJA.get_template("ktransformers.service.j2").render(context)
    envf = JINJA.get_template("ktransformers.env.j2").render(context)
    return unit, envf


def a_plan(backend="sglang-kt", facts=None, **options) -> dict:
    facts = facts or seed_host()
    return planner.make_plan(facts, MODEL, backend, **options).model_dump(mode="json")


SHARD = a_plan()


def directives(unit: str) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for section, key, value in parse_unit(unit):
        out.setdefault((section, key), []).append(value)
    return out


EXPECTED_KEYS = {
    ("Unit", "Description"), ("Unit", "Documentation"), ("Unit", "After"), ("Unit", "Wants"),
    ("Service", "Type"), ("Service", "User"), ("Service", "Group"), ("Service", "WorkingDirectory"),
    ("Service", "EnvironmentFile"), ("Service", "Environment"), ("Service", "NUMAPolicy"), ("Service", "NUMAMask"),
    ("Service", "CPUAffinity"), ("Service", "ExecStart"), ("Service", "Restart"), ("Service", "RestartSec"),
    ("Service", "TimeoutStopSec"), ("Service", "LimitMEMLOCK"), ("Service", "LimitNOFILE"),
    ("Service", "NoNewPrivileges"), ("Service", "CapabilityBoundingSet"), ("Service", "AmbientCapabilities"),
    ("Service", "ProtectSystem"), ("Service", "ReadWritePaths"), ("Service", "ProtectHome"), ("Service", "PrivateTmp"),
    ("Service", "DevicePolicy"), ("Service", "DeviceAllow"), ("Service", "UMask"), ("Service", "RemoveIPC"),
    ("Service", "ProtectProc"), ("Service", "RestrictAddressFamilies"), ("Service", "ProtectKernelTunables"),
    ("Service", "ProtectKernelModules"), ("Service", "ProtectKernelLogs"), ("Service", "ProtectControlGroups"),
    ("Service", "ProtectClock"), ("Service", "ProtectHostname"), ("Service", "RestrictSUIDSGID"),
    ("Service", "RestrictRealtime"), ("Service", "RestrictNamespaces"), ("Service", "LockPersonality"),
    ("Service", "SystemCallArchitectures"), ("Service", "SystemCallFilter"), ("Service", "SystemCallErrorNumber"),
    ("Service", "RuntimeDirectory"), ("Service", "RuntimeDirectoryMode"), ("Service", "ExecStartPre"),
    ("Install", "WantedBy"),
}


def exec_words(value: str) -> list[str]:
    """ExecStart= as the service gets it: systemd's splitter (or a documented reading), then '%%' and '$$'."""
    words = systemd_split(value) if SYSTEMD else None
    if words is None:
        import shlex

        words = shlex.split(value)
    out = []
    for word in words:
        word = unspecify(word)
        if word != "${RUNTIME_DIRECTORY}/sglang.yaml":
            assert "$" not in word.replace("$$", ""), f"a variable would expand in {word!r}"
            word = word.replace("$$", "$")
        out.append(word)
    return out


def check_unit(unit: str, fields: dict, plan: dict, *, user: str, group: str, state_dir: str, model: str) -> None:
    found = directives(unit)
    assert set(found) <= EXPECTED_KEYS, set(found) - EXPECTED_KEYS
    assert [s for s, _, _ in parse_unit(unit) if s not in ("Unit", "Service", "Install")] == []
    assert found[("Service", "User")] == [user]
    assert found[("Service", "Group")] == [group]
    assert found[("Service", "WorkingDirectory")] == [state_dir]
    assert found[("Service", "ReadWritePaths")] == [state_dir]
    assert [unspecify(v) for v in found[("Unit", "Description")]] == [f"KTransformers {plan['backend']} server ({model})"]
    assert len(found[("Service", "ExecStart")]) == 1
    argv = exec_words(found[("Service", "ExecStart")][0])
    assert argv[:1] == [PYTHON]
    assert not any("KTFLEET_API_KEY" in word for word in argv)  # never in argv (/proc/<pid>/cmdline)
    if fields["key_config"]:
        assert argv[-2:] == ["--config", "${RUNTIME_DIRECTORY}/sglang.yaml"]
        assert found[("Service", "RuntimeDirectoryMode")] == ["0700"]


# --- the findings, one by one -----------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "field", "value"),
    [
        ("ktfleet_user", "user", "ktfleet\nExecStartPre=/bin/touch /tmp/pwned"),
        ("ktfleet_user", "user", "ktfleet\nAmbientCapabilities=CAP_SYS_ADMIN"),
        ("ktfleet_group", "group", "ktfleet\nExecStartPre=/bin/touch /tmp/pwned"),
        ("ktfleet_state_dir", "state_dir", "/var/lib/ktfleet\nExecStartPre=/bin/touch /tmp/pwned"),
        ("ktfleet_model.name", "model_name", "x\n[Service]\nExecStartPre=/bin/touch /tmp/pwned"),
        ("ktfleet_service_name", "service_name", "../../../escaped"),
        ("ktfleet_service_name", "service_name", "a/b"),
        ("ktfleet_state_dir", "state_dir", "/var/lib/../../etc"),
        ("ktfleet_state_dir", "state_dir", "relative/dir"),
        ("ktfleet_install_dir", "install_dir", "/opt/kt fleet"),
        ("ktfleet_python", "python", "/opt/$HOME/python"),
        ("ktfleet_system_root", "system_root", "/stage\n"),
        ("ktfleet_user", "user", "root"),
        ("ktfleet_group", "group", "root"),
        ("ktfleet_api_key", "api_key", "secret\nLD_PRELOAD=/tmp/evil.so"),
        ("ktfleet_api_key", "api_key", "nul\x00"),
        ("ktfleet_listen_host", "listen_host", "127.0.0.1\n--api-key x"),
    ],
)
def test_injection_is_refused_naming_the_variable(variable, field, value):
    with pytest.raises(PlanError) as err:
        unit_fields(**role_inputs(**{field: value}))
    assert str(err.value).startswith(f"{variable}: ")


def test_environment_must_not_override_the_plan():
    with pytest.raises(PlanError, match=r"^ktfleet_environment: sets SGLANG_SET_CPU_AFFINITY, .*SGLANG_SET_CPU_AFFINITY=0"):
        unit_fields(**role_inputs(environment={"SGLANG_SET_CPU_AFFINITY": "1"}))
    with pytest.raises(PlanError, match=r"^ktfleet_environment: sets KTFLEET_API_KEY"):
        unit_fields(**role_inputs(environment={"KTFLEET_API_KEY": "x"}))
    with pytest.raises(PlanError, match=r"^ktfleet_environment\.HF_HOME: must be one line"):
        unit_fields(**role_inputs(environment={"HF_HOME": "/x\nLD_PRELOAD=/e.so"}))
    ok = unit_fields(**role_inputs(environment={"HF_HOME": "/var/lib/ktfleet/hf 100%"}))
    assert ok["environment"] == ['"HF_HOME=/var/lib/ktfleet/hf 100%%"', '"SGLANG_SET_CPU_AFFINITY=0"']


@pytest.mark.parametrize(
    ("backend", "host", "key", "allow", "refused"),
    [
        ("sglang-kt", "0.0.0.0", "", False, True),
        ("sglang-kt", "10.0.0.5", "", False, True),
        ("sglang-kt", "gpu-a01.example", "", False, True),
        ("sglang-kt", "::", "", False, True),
        ("sglang-kt", "0.0.0.0", "k3y", False, False),  # sglang enforces the key
        ("legacy", "0.0.0.0", "k3y", False, True),  # ktfleet passes the legacy server no key
        ("legacy", "0.0.0.0", "", True, False),  # opted out on purpose
        ("sglang-kt", "127.0.0.1", "", False, False),
        ("sglang-kt", "::1", "", False, False),
        ("legacy", "localhost", "", False, False),
    ],
)
def test_an_external_address_needs_a_key_or_an_explicit_opt_out(backend, host, key, allow, refused):
    inputs = role_inputs(backend=backend, listen_host=host, api_key=key, allow_unauthenticated=allow)
    if refused:
        with pytest.raises(PlanError, match=r"^ktfleet_listen_host: .*ktfleet_allow_unauthenticated: true"):
            unit_fields(**inputs)
    else:
        unit_fields(**inputs)


def test_the_role_listens_on_loopback_by_default():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert defaults["ktfleet_listen_host"] == spec["ktfleet_listen_host"]["default"] == "127.0.0.1"
    assert defaults["ktfleet_allow_unauthenticated"] is spec["ktfleet_allow_unauthenticated"]["default"] is False


def test_protect_home_stays_readable_where_the_model_lives():
    assert unit_fields(**role_inputs())["protect_home"] == "yes"
    assert unit_fields(**role_inputs(weights_path="/home/ai/models/ds"))["protect_home"] == "read-only"
    assert unit_fields(**role_inputs(python="/root/venv/bin/python"))["protect_home"] == "read-only"
    assert unit_fields(**role_inputs(model_path="/homeless/m"))["protect_home"] == "yes"


def test_an_existing_account_is_used_not_modified_and_uid_0_is_refused():
    assert existing_account("ktfleet_user", "ktfleet", None) is False
    assert existing_account("ktfleet_user", "svc", ["x", "998", "998", "", "/srv/svc", "/bin/bash"]) is True
    with pytest.raises(PlanError, match=r"^ktfleet_user: 'toor' has uid 0"):
        existing_account("ktfleet_user", "toor", ["x", "0", "0", "", "/root", "/bin/bash"])
    configure = yaml.safe_load((ROLE / "tasks" / "configure.yml").read_text())
    user_task = next(t for t in configure if "ansible.builtin.user" in t)
    assert "__ktfleet_account_exists" in user_task["when"]


# --- the environment file, read back by systemd -----------------------------------------

KEYS = ['plain', 'with "double" quotes', "with 'single' quotes", "back\\slash\\", "  lead and trail  ", "$HOME ${X} `id`",
        "#not-a-comment", ";semi", "a=b=c", "100%", "ünïcode", "\\\"\\'"]


@pytest.mark.parametrize("key", KEYS)
def test_env_file_reads_back_byte_for_byte_documented_grammar(key):
    assert parse_env_file(env_file([("KTFLEET_API_KEY", "ktfleet_api_key", key)])) == {"KTFLEET_API_KEY": key}


@needs_libsystemd
def test_env_file_reads_back_byte_for_byte_with_systemds_own_parser(tmp_path):
    path = tmp_path / "k.env"
    path.write_text(env_file([(f"K{i}", "ktfleet_api_key", key) for i, key in enumerate(KEYS)]))
    assert systemd_env_file(path) == {f"K{i}": key for i, key in enumerate(KEYS)}


def test_the_oracle_is_not_our_writer():
    """The documented reader disagrees with a naive writer exactly where systemd does."""
    assert parse_env_file('A=  x y  \nB=a\\"b\nC="q\\w"\n') == {"A": "x y", "B": 'a"b', "C": "q\\w"}


@needs_libsystemd
def test_the_naive_env_file_of_the_issue_loses_bytes_in_systemd(tmp_path):
    """What the role wrote before (KEY=value raw): systemd changes quotes, backslashes, spaces."""
    path = tmp_path / "naive.env"
    path.write_text('KTFLEET_API_KEY=  s"e\\cret  \n')
    assert systemd_env_file(path)["KTFLEET_API_KEY"] != '  s"e\\cret  '


SGLANG_WHEEL = Path("/root/.cache/ktfleet/wheels/sglang_kt-0.7.2-py3-none-manylinux_2_35_x86_64.whl")


@pytest.mark.skipif(not SGLANG_WHEEL.exists(), reason="the sglang-kt 0.7.2 wheel is not downloaded")
@pytest.mark.parametrize("key", KEYS)
def test_the_key_reaches_sglang_through_its_config_file_not_argv(key, tmp_path):
    """ExecStartPre writes --config's YAML from the environment; sglang's own merger reads --api-key back."""
    import argparse
    import importlib.util
    import os
    import zipfile

    fields = unit_fields(**role_inputs(api_key=key))
    unit, _ = render(SHARD, fields, api_key=key)
    (pre,) = directives(unit)[("Service", "ExecStartPre")]
    argv = exec_words(pre)
    assert argv[0] == PYTHON and key not in pre
    subprocess.run([sys.executable, *argv[1:]], check=True,
                   env={**os.environ, "RUNTIME_DIRECTORY": str(tmp_path), "KTFLEET_API_KEY": key})
    source = tmp_path / "server_args_config_parser.py"
    with zipfile.ZipFile(SGLANG_WHEEL) as wheel:
        source.write_bytes(wheel.read("sglang/srt/server_args_config_parser.py"))
    spec = importlib.util.spec_from_file_location("sglang_config_parser", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--api-key", type=str)
    parser.add_argument("--port", type=int)
    merged = module.ConfigArgumentMerger(parser).merge_config_with_args(
        ["--port", "30000", "--config", str(tmp_path / "sglang.yaml")]
    )
    assert parser.parse_args(merged).api_key == key


# --- property-based: every string variable, hostile values ------------------------------

STRING_FIELDS = {
    "user": "ktfleet_user", "group": "ktfleet_group", "state_dir": "ktfleet_state_dir",
    "service_name": "ktfleet_service_name", "install_dir": "ktfleet_install_dir", "python": "ktfleet_python",
    "system_root": "ktfleet_system_root", "model_name": "ktfleet_model.name", "listen_host": "ktfleet_listen_host",
    "api_key": "ktfleet_api_key",
}


@MANY
@given(field=st.sampled_from(sorted(STRING_FIELDS)), value=hostile)
def test_every_string_variable_is_refused_by_name_or_renders_exactly(field, value):
    inputs = role_inputs(**{field: value}, allow_unauthenticated=True)
    try:
        fields = unit_fields(**inputs)
    except PlanError as exc:
        assert str(exc).startswith(STRING_FIELDS[field] + ": "), str(exc)
        assert "\n" not in str(exc)
        return
    model = inputs["model_name"]
    plan = dict(SHARD, model=model)
    unit, envf = render(plan, fields, api_key=inputs["api_key"])
    check_unit(unit, fields, plan, user=inputs["user"], group=inputs["group"], state_dir=inputs["state_dir"], model=model)
    assert parse_env_file(envf) == ({"KTFLEET_API_KEY": inputs["api_key"]} if inputs["api_key"] else {})


@MANY
@given(key=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), value=hostile)
def test_environment_values_are_refused_by_name_or_reach_the_service_exactly(key, value):
    try:
        fields = unit_fields(**role_inputs(environment={key: value}))
    except PlanError as exc:
        assert str(exc).startswith("ktfleet_environment"), str(exc)
        return
    unit, _ = render(SHARD, fields)
    assigned = {}
    for raw in directives(unit)[("Service", "Environment")]:
        words = systemd_split(raw) if SYSTEMD else None
        words = words if words is not None else [raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")]
        for word in words:
            name, _, val = unspecify(word).partition("=")
            assigned[name] = val
    assert assigned == {"SGLANG_SET_CPU_AFFINITY": "0", key: value}


@MANY
@given(args=st.lists(hostile, max_size=4), name=hostile, where=hostile)
def test_server_arguments_reach_argv_exactly_or_are_refused(args, name, where):
    """Extra arguments, the model name and its path reach ExecStart= word for word, or are refused by name."""
    model = {**MODEL, "name": name, "model_path": where}
    try:
        fields = unit_fields(**role_inputs(model_name=name, model_path=where))
        plan = planner.make_plan(seed_host(), model, "sglang-kt", extra_args=args).model_dump(mode="json")
    except PlanError as exc:
        assert re.match(r"(ktfleet_model\.(name|model_path)|ktfleet_server_extra_args(\[\d+\])?): ", str(exc)), str(exc)
        return
    unit, _ = render(plan, fields)
    (exec_start,) = directives(unit)[("Service", "ExecStart")]
    assert exec_words(exec_start) == [PYTHON, *plan["server_args"]]


# --- exposure: systemd-analyze security on every backend and mechanism ------------------

COMBINATIONS = {
    "shard (sglang-kt, systemd)": (a_plan(), "systemd"),
    "replicate (legacy, systemd)": (a_plan("legacy", numa_build=True), "systemd"),
    "interleave (legacy, systemd)": (a_plan("legacy", facts=cxl_host(), policy="interleave"), "systemd"),
    "bind (legacy, numactl)": (a_plan("legacy", facts=cxl_host(), policy="bind", nodes=[0]), "numactl"),
    "shard (sglang-kt, numactl)": (a_plan(), "numactl"),
}


def exposure(unit_text: str, tmp_path: Path) -> float:
    path = tmp_path / "ktransformers.service"
    path.write_text(unit_text)
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(path)], capture_output=True, text=True
    )
    last = out.stdout.strip().splitlines()[-1]
    assert "Overall exposure level" in last, out.stdout[-2000:] + out.stderr[-2000:]
    return float(last.split(":")[1].split()[0])


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_exposure_is_at_most_2_5_for_every_backend_and_mechanism(name, tmp_path):
    plan, mechanism = COMBINATIONS[name]
    unit, _ = render(plan, unit_fields(**role_inputs(backend=plan["backend"], api_key="k")), api_key="k", mechanism=mechanism)
    found = directives(unit)
    # what the server needs stays: the NUMA calls (no ~@resources), the GPUs, its sockets, /proc topology
    assert not any("@resources" in v for v in found[("Service", "SystemCallFilter")])
    assert {"char-nvidia-frontend rw", "char-nvidia-uvm rw"} <= set(found[("Service", "DeviceAllow")])
    assert found[("Service", "RestrictAddressFamilies")] == ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"]
    assert ("Service", "ProcSubset") not in found
    assert exposure(unit, tmp_path) <= 2.5


# --- rollout batches ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("serial", "message"),
    [
        (0, r"^ktfleet_serial\[0\]: must be at least 1 host, got 0"),
        (-1, r"^ktfleet_serial\[0\]: must be at least 1 host, got -1"),
        (["150%"], r"^ktfleet_serial\[0\]: a share of the hosts must be between 1% and 100%"),
        (["-50%"], r"^ktfleet_serial\[0\]: must be a host count"),
        ("garbage", r"^ktfleet_serial\[0\]: must be a host count"),
        ([1, "0%"], r"^ktfleet_serial\[1\]: a share"),
        ([], r"^ktfleet_serial: must name at least one batch"),
        ([True], r"^ktfleet_serial\[0\]"),
        ([{"a": 1}], r"^ktfleet_serial\[0\]"),
    ],
)
def test_bad_serial_is_refused_naming_the_variable(serial, message):
    with pytest.raises(PlanError, match=message):
        rollout_batches(serial)


def test_good_serial_is_kept():
    assert rollout_batches([1, "25%", "100%"]) == [1, "25%", "100%"]
    assert rollout_batches("3") == [3]
    assert rollout_batches(["100%"]) == ["100%"]  # everywhere at once, on purpose
    assert rollout_batches(2.0) == [2]


@pytest.mark.parametrize("value", [-1, 101, "x", None, True, "150%"])
def test_bad_max_fail_percentage_is_refused(value):
    with pytest.raises(PlanError, match=r"^ktfleet_max_fail_percentage: must be a number from 0 to 100"):
        max_fail_percentage(value)


def test_good_max_fail_percentage():
    assert max_fail_percentage(0) == 0 and max_fail_percentage("25") == 25 and max_fail_percentage(12.5) == 12.5
