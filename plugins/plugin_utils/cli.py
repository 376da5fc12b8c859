"""``ktfleet plan``: print the plan for a facts JSON or a captured dump, before deploying.

    ktfleet plan --facts host.json --model-name DeepSeek-V3 --weights-bytes 382GB
    ktfleet plan --root /tmp/dump --weights-bytes 378GiB --backend legacy --json
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

from .errors import PlanError
from .models import Backend, Plan, Policy
from .planner import make_plan
from .report import load_records, render_html, render_markdown
from .sizes import SIZE_HELP, format_size, parse_size

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
        "plan", help="print the plan for one host", description=__doc__.split("\n\n", maxsplit=1)[0]
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
    model = plan.add_argument_group("model (ktfleet_model)")
    model.add_argument("--model-name", default="model", help="name (default: model)")
    model.add_argument("--weights-bytes", type=_size, required=True, metavar="SIZE", help=SIZE_HELP)
    model.add_argument("--model-path", default=PLACEHOLDER_MODEL_PATH, help="the model's config directory")
    model.add_argument("--weights-path", default=PLACEHOLDER_WEIGHTS_PATH, help="the CPU weights' directory")
    model.add_argument("--moe-intermediate-size", type=int, help="2048 for DeepSeek-V3/R1 and Kimi-K2")
    model.add_argument("--numa-shards", type=int, help="node count AMX weights were converted for")
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
    options.add_argument("--kt-num-gpu-experts", type=int)
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
            return json.loads(args.facts.read_text())
        except OSError as exc:
            raise PlanError("--facts", f"cannot read {args.facts}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise PlanError("--facts", f"{args.facts} is not JSON: {exc.msg} at line {exc.lineno}") from None
    if not args.root.exists():
        raise PlanError("--root", f"{args.root} does not exist: give a dump directory or its tar archive")
    try:
        from ansible_collections.ktfleet.numa.plugins.module_utils.topology import gather, open_root
    except ImportError as exc:
        raise PlanError("--root", f"the fact gatherer is not importable ({exc}); use --facts") from None
    try:
        with open_root(str(args.root)) as tree:
            return gather(tree, gpu_memory=False)
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise PlanError(
            "--root", f"{args.root} is neither a dump directory nor a readable tar archive: {str(exc).splitlines()[0]}"
        ) from None


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
    }
    return make_plan(
        _load_facts(args), {k: v for k, v in model.items() if v is not None}, args.backend, **options
    )


def render(plan: Plan) -> str:
    """The plan for a human: the numbers, the command, then why."""
    mem = plan.memory
    fits = {True: "yes", False: "NO", None: "unknown"}[mem.fits]
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
        f" (keeping {mem.headroom_ratio:.0%} free)",
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "report":
        try:
            sys.stdout.write(_report(args))
        except ValueError as exc:
            print(f"ktfleet: error: {exc}", file=sys.stderr)
            return 2
        return 0
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
