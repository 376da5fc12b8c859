"""``ktfleet plan``: print the plan for a facts JSON or a captured dump, before deploying.

    ktfleet plan --facts host.json --model-name DeepSeek-V3 --weights-bytes 382GB
    ktfleet plan --root /tmp/dump --weights-bytes 378GiB --backend legacy --json
    ktfleet plan --inventory inventory/demo --out build/plans   # every recorded host of an inventory
    ktfleet report build/report > fleet.html        # the fleet report from saved records

Bad input exits 2 with one line on stderr; nothing else is written.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tarfile
from pathlib import Path
from typing import Any, NoReturn

from ansible_collections.ktfleet.numa.plugins.module_utils.kt_weights import read_weights_dir

from ..errors import PlanError
from ..planner.models import Backend, Plan, Policy
from ..planner.planner import make_plan
from ..report import load_records, render_html, render_markdown
from ..sizes import SIZE_HELP, format_size, parse_size

INVENTORY_HELP = """--inventory plans every recorded host of --hosts (a host whose ktfleet_facts_root is a dump, not /)
in one pass, with the inventory's variables read by Ansible (group_vars, host_vars, their precedence;
-e as ansible-playbook's), prints deploy.yml's fleet table, writes each host's unit and environment
file under --out DIR/<host>/etc/ and checks every unit with systemd-analyze verify. Live hosts are
listed as skipped. Exit status: 0 when every recorded host was planned, fits and its unit verified;
1 when any host was refused (a dump missing or unreadable, a variable that cannot be templated or is
refused, a plan that does not fit, a unit systemd-analyze refuses), each said on one line; 2 for bad
input as a whole (no inventory, no host matched, no recorded host).
"""

PLACEHOLDER_MODEL_PATH = "<model_path>"
PLACEHOLDER_WEIGHTS_PATH = "<weights_path>"


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tristate(text: str) -> bool | None:
    value = text.strip().lower()
    if value in ("auto", ""):
        return None
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected auto, true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="ktfleet", description="ktfleet: plan KTransformers deployments over NUMA nodes"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    plan = commands.add_parser(
        "plan",
        help="print the plan for one host, or for every recorded host of an inventory",
        description=__doc__.split("\n\n", maxsplit=1)[0],
        epilog=INVENTORY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = plan.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--facts",
        type=Path,
        metavar="FILE.json",
        help='ansible_facts.numa as JSON (or {"ansible_facts": {"numa": ...}})',
    )
    source.add_argument(
        "--root", type=Path, metavar="DIR", help="a captured /sys + /proc dump, its tar archive, or / for this host"
    )
    source.add_argument(
        "--inventory", action="append", metavar="INVENTORY",
        help="an Ansible inventory (file or directory; again for more): plan its recorded hosts (below)",
    )
    fleet = plan.add_argument_group("--inventory")
    fleet.add_argument("--out", type=Path, metavar="DIR", help="write DIR/<host>/etc/{systemd/system,ktfleet}/ files")
    fleet.add_argument("--hosts", default="gpu_nodes", metavar="PATTERN", help="hosts to plan (default gpu_nodes, as deploy.yml)")
    fleet.add_argument(
        "-e", "--extra-vars", action="append", default=[], metavar="VARS",
        help="as ansible-playbook's: key=value, YAML/JSON, or @file (e.g. another ktfleet_model)",
    )
    model = plan.add_argument_group("model (ktfleet_model)")
    model.add_argument("--model-name", default="model", help="name (default: model)")
    model.add_argument("--weights-bytes", type=_size, metavar="SIZE", help=SIZE_HELP + " (required with --facts, --root)")
    model.add_argument("--model-path", default=PLACEHOLDER_MODEL_PATH, help="the model's config directory")
    model.add_argument("--weights-path", default=PLACEHOLDER_WEIGHTS_PATH, help="the CPU weights' directory")
    model.add_argument("--moe-intermediate-size", type=int, help="2048 for DeepSeek-V3/R1 and Kimi-K2")
    model.add_argument(
        "--numa-shards",
        type=int,
        help="node count AMX weights were converted for (sglang-kt: read from the tensor names when --weights-path is here)",
    )
    model.add_argument("--kt-method", help="AMXINT4, AMXINT8, BF16, FP8, LLAMAFILE, ...")
    model.add_argument("--optimize-config-path", help="legacy injection rules YAML")
    options = plan.add_argument_group("planner options (ktfleet_*)")
    options.add_argument("--backend", default=Backend.SGLANG_KT.value, choices=[b.value for b in Backend])
    options.add_argument("--policy", default=Policy.AUTO.value, choices=[p.value for p in Policy])
    options.add_argument("--nodes", help="node ids, e.g. 0,1")
    options.add_argument("--cpu-infer", type=int)
    options.add_argument("--reserve-cores", type=int)
    options.add_argument("--gpus", type=int, default=1, help="GPUs / tensor-parallel ranks (default 1)")
    options.add_argument("--headroom", type=float, default=0.20, help="memory kept free (default 0.20)")
    options.add_argument("--smt", action="store_true", help="count SMT siblings (legacy; usually slower)")
    options.add_argument("--legacy-numa-build", type=_tristate, default=None, metavar="{auto,true,false}")
    options.add_argument("--host", default="127.0.0.1")
    options.add_argument("--port", type=int)
    options.add_argument("--kt-num-gpu-experts", type=int, help="experts per layer on the GPUs (default 1, as kt run)")
    options.add_argument("--chunked-prefill-size", type=int, help="sglang-kt prefill chunk (default 4096, as kt run)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    report = commands.add_parser(
        "report",
        help="print the fleet report from saved records",
        description="Print the fleet report (one HTML page, or Markdown) rendered from the <host>.json "
        "records playbooks/report.yml saved in DIR.",
    )
    report.add_argument("directory", type=Path, metavar="DIR", help="the report directory (ktfleet_report_dir)")
    report.add_argument("--markdown", action="store_true", help="Markdown instead of HTML")
    return parser


def _load_facts(args: argparse.Namespace) -> Any:
    if args.facts is not None:
        try:
            return json.loads(args.facts.read_bytes().decode("utf-8"))
        except OSError as exc:
            raise PlanError("--facts", f"cannot read {args.facts}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise PlanError(
                "--facts", f"{args.facts} is not UTF-8 text (byte {exc.start}): give the JSON numa_facts wrote"
            ) from None
        except json.JSONDecodeError as exc:
            raise PlanError("--facts", f"{args.facts} is not JSON: {exc.msg} at line {exc.lineno}") from None
    if not args.root.exists():
        raise PlanError("--root", f"{args.root} does not exist: give a dump directory or its tar archive")
    try:
        from ansible_collections.ktfleet.numa.plugins.module_utils.topology import (
            gather_with_report,
            open_root,
            tree_problem,
        )
    except ImportError as exc:
        raise PlanError("--root", f"the fact gatherer is not importable ({exc}); use --facts") from None
    try:
        with open_root(str(args.root)) as tree:
            problem = tree_problem(tree, str(args.root))
            if problem:
                raise PlanError("--root", problem)
            facts, important = gather_with_report(tree, gpu_memory=False)
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise PlanError(
            "--root", f"{args.root} is neither a dump directory nor a readable tar archive: {str(exc).splitlines()[0]}"
        ) from None
    # what numa_facts shows as task warnings, ktfleet plan shows too
    for warning in important:
        print(f"ktfleet: facts: {warning}", file=sys.stderr)
    return facts


def _plan(args: argparse.Namespace) -> Plan:
    model = {
        "name": args.model_name,
        "weights_bytes": args.weights_bytes,
        "model_path": args.model_path,
        "weights_path": args.weights_path,
        "moe_intermediate_size": args.moe_intermediate_size,
        "numa_shards": args.numa_shards,
        "kt_method": args.kt_method,
        "optimize_config_path": args.optimize_config_path,
    }
    options = {
        "policy": args.policy,
        "nodes": args.nodes,
        "cpu_infer": args.cpu_infer,
        "reserve_cores": args.reserve_cores,
        "gpus": args.gpus,
        "headroom": args.headroom,
        "smt": args.smt,
        "numa_build": args.legacy_numa_build,
        "host": args.host,
        "port": args.port,
        "kt_num_gpu_experts": args.kt_num_gpu_experts,
        "chunked_prefill_size": args.chunked_prefill_size,
    }
    if args.backend == Backend.SGLANG_KT.value and Path(args.weights_path).is_dir():
        # as the role's plan.yml does: the tensor names say how many shards kt-kernel will load
        try:
            found = read_weights_dir(args.weights_path)["numa_shards"]
        except (OSError, ValueError) as err:
            raise PlanError("ktfleet_model.weights_path", f"cannot read the tensor names: {err}") from None
        if found is not None and args.numa_shards not in (None, found):
            raise PlanError(
                "ktfleet_model.numa_shards",
                f"{args.numa_shards} given, but the tensors under {args.weights_path} are sharded for {found}",
            )
        model["numa_shards"] = found if found is not None else args.numa_shards
    return make_plan(
        _load_facts(args), {k: v for k, v in model.items() if v is not None}, args.backend, **options
    )


def render(plan: Plan) -> str:
    """The plan for a human: the numbers, the command, then why."""
    mem = plan.memory
    fits = {"fits": "yes", "tight": "yes, tight", "does_not_fit": "NO", None: "unknown"}[mem.tier]
    unit = {k: v for k, v in plan.systemd.model_dump().items() if v is not None}
    env = " ".join(f"{k}={v}" for k, v in sorted(plan.environment.items()))
    lines = [
        f"ktfleet plan: {plan.model} on {plan.backend.value}",
        f"  policy            {plan.policy.value}"
        + ("" if plan.numa_build is None else f"  (USE_NUMA=1 build: {'yes' if plan.numa_build else 'no'})"),
        f"  nodes             threads on {_ids(plan.numa_nodes)}; weights on {_ids(plan.memory_nodes)}",
        f"  cpu_infer         {plan.cpu_infer}  ({', '.join(f'node {n}: {t}' for n, t in sorted(plan.threads_per_node.items()))})",
        f"  threadpool_count  {plan.threadpool_count}",
        f"  memory fits       {fits}: needs {format_size(mem.required_total_bytes)}, has {format_size(mem.available_total_bytes)}"
        f" ({'unknown' if mem.free_ratio is None else f'{mem.free_ratio:.0%}'} left free; recommended {mem.headroom_ratio:.0%})",
        f"  numactl           {shlex.join(plan.numactl) if plan.numactl else '(none)'}",
        f"  systemd           {' '.join(f'{k}={v}' for k, v in unit.items()) if unit else '(nothing to set)'}",
        f"  environment       {env or '(none)'}",
        f"  command           {shlex.join([*plan.numactl, 'python', *plan.server_args])}",
        "reasons:",
        *(f"  - {reason}" for reason in plan.reasons),
    ]
    if plan.warnings:
        lines += ["warnings:", *(f"  - {warning}" for warning in plan.warnings)]
    return "\n".join(lines)


def _ids(nodes: list[int]) -> str:
    return ",".join(str(n) for n in nodes) or "-"


def _report(args: argparse.Namespace) -> str:
    if not args.directory.is_dir():
        raise ValueError(f"{args.directory}: not a directory; give the report directory (ktfleet_report_dir)")
    records = load_records(args.directory)
    if not records:
        raise ValueError(f"{args.directory}: no <host>.json records; run playbooks/report.yml first")
    return render_markdown(records) if args.markdown else render_html(records)


def _usage(message: str) -> int:
    print(f"ktfleet plan: error: {message} (see --help)", file=sys.stderr)
    return 2


# the one-host options (--facts, --root): with --inventory the inventory's variables decide
_ONE_HOST = {
    "model_name": "model", "weights_bytes": None, "model_path": PLACEHOLDER_MODEL_PATH,
    "weights_path": PLACEHOLDER_WEIGHTS_PATH, "moe_intermediate_size": None, "numa_shards": None, "kt_method": None,
    "optimize_config_path": None, "backend": Backend.SGLANG_KT.value, "policy": Policy.AUTO.value, "nodes": None,
    "cpu_infer": None, "reserve_cores": None, "gpus": 1, "headroom": 0.20, "smt": False, "legacy_numa_build": None,
    "host": "127.0.0.1", "port": None, "kt_num_gpu_experts": None, "chunked_prefill_size": None,
}


def _plan_inventory(args: argparse.Namespace) -> int:
    """--inventory: every recorded host planned, rendered and verified (planner/fleet_plan.py)."""
    given = [name for name, default in _ONE_HOST.items() if getattr(args, name) != default]
    if given:
        flag = "--" + given[0].replace("_", "-")
        return _usage(f"{flag} is for one host (--facts, --root); with --inventory the inventory's variables "
                      f"decide: override them with -e (e.g. -e '{{\"ktfleet_model\": {{...}}}}')")
    from ..planner import fleet_plan

    try:
        fleet = fleet_plan.plan_inventory(args.inventory, args.out, args.hosts, extra_vars=args.extra_vars)
    except fleet_plan.InventoryError as exc:
        print(f"ktfleet: error: {exc}", file=sys.stderr)
        return 2
    for root, warnings in fleet.facts_warnings.items():
        for warning in warnings:
            print(f"ktfleet: facts: {root}: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(fleet_plan.as_json(fleet, args.out), indent=2, sort_keys=True))
    else:
        print(fleet_plan.render_summary(fleet, args.out))
    if not fleet.by_status("planned") and not fleet.by_status("refused"):
        print(f"ktfleet: error: no host of {args.hosts} is recorded (ktfleet_facts_root not /): nothing to plan",
              file=sys.stderr)
        return 2
    return 1 if fleet.by_status("refused") else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "report":
        try:
            sys.stdout.write(_report(args))
        except ValueError as exc:
            print(f"ktfleet: error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.inventory:
        return _plan_inventory(args)
    for flag, value in (("--out", args.out), ("--hosts", args.hosts != "gpu_nodes"), ("-e", args.extra_vars)):
        if value:
            return _usage(f"{flag} goes with --inventory")
    if args.weights_bytes is None:
        return _usage("the following arguments are required: --weights-bytes")
    try:
        plan = _plan(args)
    except PlanError as exc:
        print(f"ktfleet: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan.model_dump(mode="json"), indent=2, sort_keys=True))
    else:
        print(render(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
