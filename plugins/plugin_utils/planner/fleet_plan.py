"""Offline fleet planning: every recorded host of an Ansible inventory planned, rendered and verified in one pass.

``ktfleet plan --inventory INVENTORY --out DIR`` (cli/cli.py) is a thin shell over
``plan_inventory()``. What the role does per host in ``deploy.yml --check``
(plan.yml, preflight.yml's decisions, configure.yml's render and verify), done
here in one Python process for a fleet whose facts come from recorded dumps:

* the inventory is read by Ansible itself (InventoryManager + VariableManager),
  so group_vars, host_vars and their precedence are exactly Ansible's; the
  role's defaults sit under them and its vars/main.yml above, as in a play;
  every value is templated with Ansible's Templar (one that cannot be, such as
  one naming facts or another host, refuses that host naming the variable);
* a host is *recorded* when ``ktfleet_facts_root`` is not ``/`` (the role's
  ``__ktfleet_recorded``); the others are live hosts and are skipped, not failed;
* each dump is read once (``facts_call.read``, the function numa_facts runs),
  keyed as ``facts_call.read_cached`` keys an archive, whatever number of hosts
  share it;
* the plan is ``planner.make_plan`` with the arguments plan.yml gives it; the
  mechanism and the memory check are preflight.yml's; the unit fields are
  ``systemd_syntax.unit_fields`` (the role's ``systemd_unit_fields`` filter);
* the unit and the environment file are the role's own templates rendered by
  Ansible's template lookup (what configure.yml calls), written under
  ``DIR/<host>/`` as the role stages them (``etc/systemd/system/``,
  ``etc/ktfleet/``), and every distinct unit is checked by ``systemd-analyze
  verify`` in batches (``release_files.verify_units``).

Not checked offline (they are the target's, not this machine's): the model
directory, numactl, the port, the service account, the installed server; the
systemd version is ``ktfleet_recorded_systemd_version``, as for a recorded host
in deploy.yml. A path the unit runs that is not on this machine (the server's
interpreter, numactl) is verified with /bin/sh standing in, as check mode does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes

from ansible_collections.ktfleet.numa.plugins.module_utils import facts_call
from ansible_collections.ktfleet.numa.plugins.module_utils.kt_weights import read_weights_dir
from ansible_collections.ktfleet.numa.plugins.module_utils.release_files import verify_units

from ..errors import PlanError
from ..plain import plain
from . import fleet_table as _fleet_table
from .planner import make_plan
from .systemd_syntax import unit_fields

try:  # the role's filters, beside this file in a checkout (not in the CLI's wheel)
    from ansible_collections.ktfleet.numa.plugins.filter.systemd_unit import FilterModule as _ROLE_FILTERS
except ImportError:  # pragma: no cover - the pip-installed CLI without the collection
    _ROLE_FILTERS = None

TEMPLATES = ("ktransformers.service.j2", "ktransformers.env.j2")
DEFAULT_PATTERN = "gpu_nodes"  # what deploy.yml plays on (ktfleet_target's default)
STAND_IN = "/bin/sh"

# What plan.yml passes ktfleet.numa.plan, as make_plan's keyword: the role variable.
PLAN_OPTIONS = {
    "policy": "ktfleet_policy",
    "nodes": "ktfleet_nodes",
    "cpu_infer": "ktfleet_cpu_infer",
    "reserve_cores": "ktfleet_reserve_cores",
    "gpus": "ktfleet_gpus",
    "headroom": "ktfleet_headroom",
    "smt": "ktfleet_smt",
    "numa_build": "ktfleet_legacy_numa_build",
    "host": "ktfleet_listen_host",
    "port": "ktfleet_port",
    "extra_args": "ktfleet_server_extra_args",
    "kt_num_gpu_experts": "ktfleet_kt_num_gpu_experts",
    "chunked_prefill_size": "ktfleet_chunked_prefill_size",
}
# Every public variable the plan, preflight's decisions and the templates read:
# templated one by one up front, so an error names the variable.
PUBLIC = (
    "ktfleet_facts_root", "ktfleet_facts_label", "ktfleet_backend", "ktfleet_model", *PLAN_OPTIONS.values(),
    "ktfleet_versions", "ktfleet_numa_mechanism", "ktfleet_recorded_systemd_version", "ktfleet_service_name",
    "ktfleet_user", "ktfleet_group", "ktfleet_state_dir", "ktfleet_install_dir", "ktfleet_python",
    "ktfleet_system_root", "ktfleet_api_key", "ktfleet_allow_unauthenticated", "ktfleet_environment",
)

OPTIONAL = {"ktfleet_facts_label"}  # the fleet table's label (the demo's "recorded"), no role default


class InventoryError(ValueError):
    """The inventory as a whole cannot be planned (missing, no hosts, no role): exit 2."""


@dataclass
class HostOutcome:
    """One host: ``planned`` (unit written and verified), ``refused`` (with the reason) or ``skipped``."""

    host: str
    status: str
    reason: str = ""
    label: str | None = None
    facts: dict | None = None
    plan: dict | None = None
    warnings: list[str] = field(default_factory=list)
    unit: str | None = None
    env: str | None = None
    unit_path: Path | None = None
    env_path: Path | None = None
    stand_ins: dict[str, str] = field(default_factory=dict)


@dataclass
class FleetOutcome:
    hosts: list[HostOutcome]
    table: str
    facts_reads: int = 0
    distinct_units: int = 0
    verify_calls: int = 0
    facts_warnings: dict[str, list[str]] = field(default_factory=dict)  # dump -> warnings, once each

    def by_status(self, status: str) -> list[HostOutcome]:
        return [h for h in self.hosts if h.status == status]


class DumpReader:
    """facts_call.read() once per dump: an archive by facts_call.archive_key (as the
    action plugin's per-run cache keys it), a directory by its real path."""

    def __init__(self, read: Callable[..., Any] = facts_call.read) -> None:
        self._read = read
        self._seen: dict[str, tuple[dict, list[str]] | facts_call.FactsError] = {}
        self.reads = 0

    def facts(self, root: str) -> tuple[dict, list[str]]:
        if not os.path.exists(root):
            raise facts_call.FactsError(
                f"ktfleet_facts_root: {root} does not exist: give an extracted topology dump or its tar archive"
            )
        key = facts_call.archive_key(root) if os.path.isfile(root) else "dir:" + os.path.realpath(root)
        if key not in self._seen:
            self.reads += 1
            try:
                facts, important = self._read(root, gpu_memory=True)[:2]
                self._seen[key] = (facts, list(important))
            except facts_call.FactsError as exc:
                self._seen[key] = facts_call.FactsError(f"ktfleet_facts_root: {exc}")
        seen = self._seen[key]
        if isinstance(seen, facts_call.FactsError):
            raise seen
        facts, important = seen
        return {**facts, "root": root}, important


def role_dir() -> Path:
    """roles/ktransformers of this collection, beside this file: a checkout (./run setup,
    ``pip install -e .``); the CLI's wheel carries no role."""
    here = Path(__file__).resolve().parents[3] / "roles" / "ktransformers"
    if (here / "templates").is_dir() and _ROLE_FILTERS is not None:
        return here
    raise InventoryError(
        "--inventory renders the role ktfleet.numa.ktransformers (its templates, defaults and filters), which "
        "this installation does not carry: run ktfleet from a checkout (./run setup, or pip install -e .)"
    )


class _Fleet:
    """Ansible's view of the inventory, and the role around each host's variables."""

    def __init__(self, sources: list[str], extra_vars: Mapping[str, Any] | Iterable[str] | None) -> None:
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader
        from ansible.template import Templar
        from ansible.vars.manager import VariableManager

        for source in sources:
            if not os.path.exists(source):
                raise InventoryError(f"--inventory: {source} does not exist: give an inventory file or directory")
        # Ansible's collection finder is not installed (init_plugin_loader): this process
        # imported ktfleet.numa already, and the finder would shadow it; so inventory
        # values can use Ansible's builtin filters and lookups, not other collections' ones
        # (such a value refuses its host, naming the variable).
        self.loader = DataLoader()
        self.inventory = InventoryManager(loader=self.loader, sources=list(sources))
        self.variables = VariableManager(loader=self.loader, inventory=self.inventory)
        self.role = role_dir()
        self.defaults = self.loader.load_from_file(str(self.role / "defaults" / "main.yml"), trusted_as_template=True)
        self.role_vars = self.loader.load_from_file(str(self.role / "vars" / "main.yml"), trusted_as_template=True)
        self.extra = extra_vars if isinstance(extra_vars, Mapping) else self._extra(extra_vars or [])
        self.templar = Templar(loader=self.loader)
        self._syntax = jinja2.Environment()  # only to parse which variables a template names
        self._parsed: dict[str, frozenset[str] | None] = {}
        self._results: dict[tuple, Any] = {}
        self._untemplated: dict[int, tuple[Any, Any]] = {}
        self.jinja = _role_jinja(self.role / "templates")
        self.managed = {t: _ansible_managed(self.role / "templates" / t) for t in TEMPLATES}
        self.referenced = {t: _referenced(self.jinja, t) for t in TEMPLATES}

    def _extra(self, options: Iterable[str]) -> dict[str, Any]:
        """-e as ansible-playbook reads it (ansible.utils.vars.load_extra_vars, without its global cache)."""
        from ansible.errors import AnsibleError
        from ansible.parsing.splitter import parse_kv
        from ansible.template import trust_as_template
        from ansible.utils.vars import combine_vars

        merged: dict[str, Any] = {}
        for text in options:
            option = trust_as_template(text)  # the user's own command line, as ansible-playbook trusts it
            try:
                if option.startswith("@"):
                    data = self.loader.load_from_file(option[1:], trusted_as_template=True)
                elif option[:1] in ("{", "["):
                    data = self.loader.load(option)
                else:
                    data = parse_kv(option)
            except AnsibleError as exc:
                raise InventoryError(f"-e {option[:60]}: {str(exc).splitlines()[0]}") from None
            if not isinstance(data, Mapping):
                raise InventoryError(f"-e {option[:60]}: not a mapping of variables")
            merged = combine_vars(merged, data)
        return merged

    def hosts(self, pattern: str) -> list[str]:
        return [h.name for h in self.inventory.get_hosts(pattern)]

    def host_vars(self, host: str) -> dict[str, Any]:
        """A play's precedence: role defaults < inventory (group_vars, host_vars, magic
        variables) < role vars < extra vars."""
        found = self.variables.get_vars(host=self.inventory.get_host(host), include_hostvars=False)
        return {**self.defaults, **found, **self.role_vars, **self.extra}

    def _names(self, value: Any) -> frozenset[str] | None:
        """The variables the templates in ``value`` name (None: one that does not parse)."""
        found: set[str] = set()
        for text in _template_strings(value):
            if text not in self._parsed:
                try:
                    tree = self._syntax.parse(text)
                    # every name read (over-inclusive: a loop variable too, which then is no variable: not cached)
                    self._parsed[text] = frozenset(n.name for n in tree.find_all(nodes.Name) if n.ctx == "load")
                except jinja2.TemplateError:
                    self._parsed[text] = None
            names = self._parsed[text]
            if names is None:
                return None
            found |= names
        return frozenset(found)

    def _inputs(self, values: Mapping[str, Any], name: str) -> tuple | None:
        """What templating ``name`` reads: each variable it names, again for theirs, with its
        raw value; None when that cannot be known (a lookup, vars[...], hostvars, a name
        that is not a variable): then it is templated afresh."""
        seen: dict[str, str] = {}
        todo = [name]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            if current not in values or current in ("vars", "hostvars"):
                return None
            seen[current] = repr(values[current])
            names = self._names(values[current])
            if names is None:
                return None
            todo.extend(names)
        return tuple(sorted(seen.items()))

    def templated(self, values: dict[str, Any], name: str, host: str) -> Any:
        """``values[name]`` templated by Ansible's Templar over ``values``. The same template
        over the same inputs (group_vars shared by many hosts) is templated once."""
        from ansible.errors import AnsibleError

        if name not in values:
            raise PlanError(name, "is not defined (not in the inventory, nor a default of the role)")
        raw = values[name]
        known = self._untemplated.get(id(raw))
        if known is not None and known[0] is raw:  # the same object (a default, a group's value): no template
            return known[1]
        if next(iter(_template_strings(raw)), None) is None:
            value = plain(raw)
            self._untemplated[id(raw)] = (raw, value)  # raw kept alive, so its id stays its own
            return value
        key = self._inputs(values, name)
        if key is not None and key in self._results:
            return plain(self._results[key])
        self.templar.available_variables = values
        try:
            result = plain(self.templar.template(raw))
            if key is not None:
                self._results[key] = result
            return plain(result)
        except AnsibleError as exc:
            first = str(exc.message if hasattr(exc, "message") else exc).splitlines()[0]
            shown = next(iter(_template_strings(raw)), "")
            raise PlanError(
                name,
                f"cannot be templated for {host} offline: {shown[:120]!r}: {first}; offline planning has no facts, "
                "no connection and no other host's variables; give it a value the inventory alone defines",
            ) from None

    def render(self, values: dict[str, Any], template: str, host: str, done: set[str]) -> str:
        """``template`` over the variables it names, each templated first (as the lookup does
        lazily) unless in ``done`` (templated already, or set here in Python)."""
        context = {"ansible_managed": self.managed[template]}
        for name in self.referenced[template]:
            if name in values:
                context[name] = values[name] if name in done else self.templated(values, name, host)
        return self.jinja.get_template(template).render(context)


def _role_jinja(templates: Path) -> Any:
    """The role's templates as Ansible's template lookup renders them: its settings
    (trim_blocks, the trailing newline kept, an undefined name an error), Ansible's
    own ``comment`` filter and the role's ``ktfleet.numa.systemd_*`` filters
    (plugins/filter/systemd_unit.py), and ``ansible_managed`` as the lookup sets it
    (DEFAULT_MANAGED_STR). They only render: every value was templated and checked
    before (Templar, unit_fields), as in the role."""
    from ansible.plugins.filter.core import comment

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)), trim_blocks=True, keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined, autoescape=False,
    )
    env.filters["comment"] = comment
    for name, func in _ROLE_FILTERS().filters().items():
        env.filters[f"ktfleet.numa.{name}"] = func
    return env


_TEMPLATE = re.compile(r"\{\{|\{%|\{#")


def _template_strings(value: Any) -> Iterable[str]:
    """Every string in ``value`` (nested) that holds a template."""
    if isinstance(value, str):
        if _TEMPLATE.search(value):
            yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _template_strings(key)
            yield from _template_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _template_strings(item)


def _referenced(env: Any, template: str) -> set[str]:
    source = env.loader.get_source(env, template)[0]
    return set(meta.find_undeclared_variables(env.parse(source)))


def _ansible_managed(path: Path) -> str:
    """``ansible_managed`` as the template lookup sets it for ``path`` (unless the inventory sets it)."""
    import pwd
    import time

    from ansible import constants as C

    st = path.stat()
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    text = C.config.get_config_value("DEFAULT_MANAGED_STR").format(host=os.uname()[1], uid=owner, file=path.name)
    return time.strftime(text, time.localtime(st.st_mtime))


def _model_with_shards(model: dict, backend: str) -> dict:
    """plan.yml's "Read the NUMA shard count from the weights' tensor names": kt_weights
    reads nothing when weights_path is not a directory; here it is read where it is one."""
    path = model.get("weights_path")
    if backend != "sglang-kt" or not isinstance(path, str) or not os.path.isdir(path):
        return model
    try:
        found = read_weights_dir(path)["numa_shards"]
    except (OSError, ValueError) as err:
        raise PlanError("ktfleet_model.weights_path", f"cannot read the tensor names: {err}") from None
    if found is None:
        return model
    given = model.get("numa_shards")
    if given is not None and given != found:
        raise PlanError(
            "ktfleet_model.numa_shards", f"{given} given, but the tensors under {path} are sharded for {found}"
        )
    return {**model, "numa_shards": found}


def _mechanism(values: Mapping[str, Any]) -> tuple[str, int]:
    """preflight.yml's "Choose how the unit applies the NUMA policy" for a recorded host."""
    try:
        version = int(values["ktfleet_recorded_systemd_version"])
    except (TypeError, ValueError):
        raise PlanError(
            "ktfleet_recorded_systemd_version",
            f"must be a systemd version number, got {values['ktfleet_recorded_systemd_version']!r}",
        ) from None
    wanted = values["ktfleet_numa_mechanism"]
    if wanted not in ("auto", "systemd", "numactl"):
        raise PlanError("ktfleet_numa_mechanism", f"must be auto, systemd or numactl, got {wanted!r}")
    mechanism = wanted if wanted != "auto" else ("systemd" if version >= 243 else "numactl")
    if mechanism == "systemd" and version < 243:
        raise PlanError(
            "ktfleet_numa_mechanism",
            f"systemd {version} has no NUMAPolicy= (needs 243); use ktfleet_numa_mechanism=numactl or auto",
        )
    return mechanism, version


def _not_fit(plan: Mapping[str, Any]) -> str:
    """preflight.yml's "Require the model to fit in memory" message."""
    reasons = [r for r in plan["reasons"] if re.match("(policy|memory)", r)]
    return " | ".join(
        ["the plan does NOT fit (or memory is unknown); nothing was written", *reasons, *plan["warnings"],
         "Remedy: change the model, policy or nodes, or leave the host out."]
    )


def _plan_host(fleet: _Fleet, dumps: DumpReader, host: str) -> HostOutcome:
    if "/" in host or host in (".", ".."):
        return HostOutcome(host, "refused", "the host name cannot name its directory under --out")
    values = fleet.host_vars(host)
    root = fleet.templated(values, "ktfleet_facts_root", host)
    if not isinstance(root, str) or not root.rstrip("/"):
        return HostOutcome(host, "skipped", "live host (ktfleet_facts_root is /): deploy.yml reads it over its connection")
    connection = str(values.get("ansible_connection") or "ssh")
    if connection not in ("local", "ansible.builtin.local") and not os.path.exists(root):
        return HostOutcome(
            host, "skipped", f"its dump {root} is on the host (ansible_connection={connection}), not on this machine"
        )
    outcome = HostOutcome(host, "refused")
    try:
        _plan_recorded(fleet, dumps, values, root, outcome)
    except (PlanError, facts_call.FactsError) as exc:
        outcome.reason = str(exc)
    return outcome


def _plan_recorded(fleet: _Fleet, dumps: DumpReader, values: dict, root: str, outcome: HostOutcome) -> None:
    host = outcome.host
    resolved = {name: fleet.templated(values, name, host) for name in PUBLIC if name in values or name not in OPTIONAL}
    values.update(resolved)  # later templates (the role's vars) read the templated values
    outcome.label = resolved.get("ktfleet_facts_label")
    outcome.facts = dumps.facts(root)[0]
    model, backend = resolved["ktfleet_model"], resolved["ktfleet_backend"]
    if not isinstance(model, dict):
        raise PlanError("ktfleet_model", f"must be a mapping (name, model_path, weights_bytes ...), got {type(model).__name__}")
    if model.get("weights_bytes") is None:
        raise PlanError(
            "ktfleet_model.weights_bytes",
            "not given: offline planning cannot measure the weight files on the host (deploy.yml does); give their size",
        )
    legacy = resolved["ktfleet_versions"].get("legacy") if isinstance(resolved["ktfleet_versions"], dict) else None
    options = {key: resolved[name] for key, name in PLAN_OPTIONS.items()}
    options["legacy_release"] = legacy.get("ktransformers") if isinstance(legacy, dict) else None
    plan = make_plan(outcome.facts, _model_with_shards(model, backend), backend, **options).model_dump(mode="json")
    outcome.plan, outcome.warnings = plan, list(plan["warnings"])
    if not plan["memory"]["fits"]:
        outcome.reason = _not_fit(plan)
        return
    mechanism, version = _mechanism(resolved)
    values["ktfleet_plan"] = plan
    inputs = fleet.templated(values, "__ktfleet_unit_inputs", host)
    for name in ("environment", "plan_environment"):
        if not isinstance(inputs.get(name), dict):
            variable = "ktfleet_environment" if name == "environment" else "plan.environment"
            raise PlanError(variable, f"must be a mapping, got {type(inputs.get(name)).__name__}")
    values.update(
        __ktfleet_unit=unit_fields(**inputs), __ktfleet_mechanism=mechanism, __ktfleet_systemd_version=version
    )
    done = {*resolved, "ktfleet_plan", "__ktfleet_unit", "__ktfleet_mechanism", "__ktfleet_systemd_version"}
    outcome.unit = fleet.render(values, "ktransformers.service.j2", host, done)
    outcome.env = fleet.render(values, "ktransformers.env.j2", host, done)
    service = values["ktfleet_service_name"]
    outcome.unit_path = Path(host) / "etc" / "systemd" / "system" / f"{service}.service"
    outcome.env_path = Path(host) / "etc" / "ktfleet" / f"{service}.env"
    # what the unit runs that is the host's, not this machine's: verified with a stand-in (as check mode does)
    runs = [fleet.templated(values, "__ktfleet_python", host)]
    if mechanism == "numactl" and plan["numactl"]:
        runs.append(plan["numactl"][0])
    outcome.stand_ins = {path: STAND_IN for path in runs if not os.path.exists(path)}
    outcome.status = "planned"


def _verify(outcomes: list[HostOutcome], run: Callable) -> tuple[int, int]:
    """Every distinct unit through systemd-analyze verify (comments left out: the
    header names the host, and systemd ignores comment lines); findings refuse each
    host whose unit has them. Returns (distinct units, systemd-analyze calls)."""
    distinct: dict[str, list[HostOutcome]] = {}
    texts: dict[str, str] = {}
    for outcome in outcomes:
        text = outcome.unit or ""
        for missing, present in outcome.stand_ins.items():
            text = text.replace(missing, present)
        key = "\n".join(line for line in text.splitlines() if not line.startswith(("#", ";")))
        if key not in distinct:
            texts[key] = text
        distinct.setdefault(key, []).append(outcome)
    named = {f"ktfleet-verify-{i}.service": key for i, key in enumerate(distinct)}
    findings, calls = verify_units({name: texts[key].encode() for name, key in named.items()}, run)
    for name, key in named.items():
        if findings.get(name):
            for outcome in distinct[key]:
                outcome.status = "refused"
                outcome.reason = "systemd-analyze verify refused the unit: " + " | ".join(findings[name])
    return len(named), calls


def plan_inventory(
    sources: Iterable[str],
    out_dir: str | os.PathLike | None = None,
    pattern: str = DEFAULT_PATTERN,
    *,
    extra_vars: Mapping[str, Any] | Iterable[str] | None = None,
    run: Callable = facts_call.run_local,
    dumps: DumpReader | None = None,
) -> FleetOutcome:
    """Plan, render and verify every recorded host of ``pattern`` in ``sources``; write
    each planned host's unit and environment file under ``out_dir`` (when given)."""
    fleet = _Fleet([str(s) for s in sources], extra_vars)
    hosts = fleet.hosts(pattern)
    if not hosts:
        raise InventoryError(f"--hosts {pattern}: matches no host of the inventory")
    dumps = dumps or DumpReader()
    outcomes = []
    for host in hosts:
        try:
            outcomes.append(_plan_host(fleet, dumps, host))
        except PlanError as exc:  # ktfleet_facts_root itself
            outcomes.append(HostOutcome(host, "refused", str(exc)))
    planned = [o for o in outcomes if o.status == "planned"]
    distinct, calls = _verify(planned, run) if planned else (0, 0)
    if out_dir is not None:
        _write(Path(out_dir), planned)
    facts_warnings: dict[str, list[str]] = {}
    for outcome in outcomes:
        if outcome.facts:
            facts_warnings.setdefault(outcome.facts["root"], dumps.facts(outcome.facts["root"])[1])
    shown = [o for o in outcomes if o.status != "skipped"]
    table = _fleet_table.fleet_table(
        {o.host: {"ansible_facts": {"numa": o.facts}, "ktfleet_facts_label": o.label, "ktfleet_plan": o.plan}
         for o in shown},
        [o.host for o in shown],
    )
    return FleetOutcome(
        outcomes, table, facts_reads=dumps.reads, distinct_units=distinct, verify_calls=calls,
        facts_warnings={root: w for root, w in facts_warnings.items() if w},
    )


def _write(out: Path, planned: list[HostOutcome]) -> None:
    for outcome in planned:
        for relative, content, mode in ((outcome.unit_path, outcome.unit, 0o644), (outcome.env_path, outcome.env, 0o600)):
            path = out / str(relative)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(content or "")
            os.chmod(path, mode)


def render_summary(fleet: FleetOutcome, out_dir: str | os.PathLike | None) -> str:
    """The table, one line per refused and skipped host, the plans' warnings once each, and the counts."""
    lines = [fleet.table]
    for status, title in (("refused", "refused (nothing written for these):"), ("skipped", "skipped (not recorded):")):
        hosts = fleet.by_status(status)
        if hosts:
            lines += ["", title, *(f"  {h.host}: {h.reason}" for h in hosts)]
    warned: dict[str, list[str]] = {}
    for outcome in fleet.by_status("planned"):  # a refused host's warnings are in its reason
        for warning in outcome.warnings:
            warned.setdefault(warning, []).append(outcome.host)
    if warned:
        lines += ["", "plan warnings:"]
        for warning, hosts in warned.items():
            names = ", ".join(hosts[:3]) + (f" and {len(hosts) - 3} more" if len(hosts) > 3 else "")
            lines.append(f"  {names}: {warning}")
    planned = fleet.by_status("planned")
    stand_ins = sorted({path for h in planned for path in h.stand_ins})
    where = f"written under {out_dir}/<host>/etc/" if out_dir is not None else "not written (no --out)"
    lines += [
        "",
        f"ktfleet: {len(fleet.hosts)} host(s): {len(planned)} planned, {len(fleet.by_status('refused'))} refused, "
        f"{len(fleet.by_status('skipped'))} skipped; {fleet.facts_reads} dump(s) read; units {where}; "
        f"{fleet.distinct_units} distinct unit(s) verified by systemd-analyze in {fleet.verify_calls} call(s)"
        + (f" ({', '.join(stand_ins)}: not on this machine, {STAND_IN} stood in)" if stand_ins else ""),
    ]
    return "\n".join(lines)


def as_json(fleet: FleetOutcome, out_dir: str | os.PathLike | None) -> dict[str, Any]:
    def where(relative: Path | None) -> str | None:
        return None if relative is None or out_dir is None else str(Path(out_dir) / relative)

    return {
        "hosts": {
            h.host: {"status": h.status, "reason": h.reason, "label": h.label, "plan": h.plan,
                     "unit": where(h.unit_path) if h.status == "planned" else None,
                     "environment_file": where(h.env_path) if h.status == "planned" else None,
                     "stand_ins": h.stand_ins}
            for h in fleet.hosts
        },
        "facts_reads": fleet.facts_reads, "distinct_units": fleet.distinct_units, "verify_calls": fleet.verify_calls,
    }
