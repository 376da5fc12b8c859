"""The thread-count search of the KTransformers tuning guide, as pure functions.

The guide: start at the physical-core count, step the thread count up while
decode speed rises, stop once it falls (memory bandwidth is saturated and
threads now fight over it), then back off 2-3 threads from the best count to
leave room for the OS and the GPU-feeding threads. Everything here is derived
from the measurements taken so far, so an interrupted run resumes where it
stopped: feed it the saved table and it asks for the next count.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from .. import text_table
from ..errors import PlanError
from ..planner import planner
from ..planner.models import parse_facts


class TuneRow(TypedDict):
    threads: int
    samples: list[float]  # tokens/s of each timed request
    median: float


class TuneResult(TypedDict):
    """What the fleet report reads of ``ktfleet_tune_result`` (tasks/tune.yml sets it,
    with the search's ``start`` and ``step`` beside)."""

    unit: str
    table: list[TuneRow]
    knee: int
    chosen: int
    reason: str


def space(facts: Any, model: Any, backend: Any, **options: Any) -> list[int]:
    """Every thread count the planner accepts for this host and whose plan fits in memory."""
    options = {k: v for k, v in options.items() if k != "cpu_infer"}
    baseline = planner.make_plan(facts, model, backend, **options)
    cpus = sum(len(n.cpus) for n in parse_facts(facts).nodes)
    allowed = []
    for threads in range(1, cpus + 2):  # legacy counts one scheduling thread on top of the workers
        try:
            plan = planner.make_plan(facts, model, backend, cpu_infer=threads, **options)
        except PlanError:
            continue
        if plan.memory.fits:
            allowed.append(threads)
    if baseline.cpu_infer not in allowed:
        allowed.append(baseline.cpu_infer)
    return sorted(allowed)


def medians(table: Iterable[Mapping[str, Any]]) -> dict[int, float]:
    """{threads: median tokens/s} from the saved table rows."""
    out = {}
    for row in table:
        samples = [float(s) for s in row.get("samples") or []]
        value = row.get("median", statistics.median(samples) if samples else None)
        if value is not None:
            out[int(row["threads"])] = float(value)
    return out


def _ladder(start: int, step: int, allowed: list[int], up: bool) -> list[int]:
    """Counts from start in steps of `step` in one direction, kept to those allowed."""
    wanted = range(start, max(allowed) + 1, step) if up else range(start - step, min(allowed) - 1, -step)
    return [t for t in wanted if t in allowed]


def _walk(ladder: list[int], measured: dict[int, float], best: float, tolerance: float) -> tuple[int | None, float]:
    """Next unmeasured count on the ladder, or None once a count fell below the best."""
    for threads in ladder:
        if threads not in measured:
            return threads, best
        if measured[threads] < best * (1 - tolerance):
            return None, best
        best = max(best, measured[threads])
    return None, best


def next_threads(table: Iterable[Mapping[str, Any]], start: int, allowed: list[int], *, step: int = 1,
                 tolerance: float = 0.03) -> int | None:
    """The next thread count to measure, or None when the search is over.

    Up from `start` while the speed holds within `tolerance` of the best so far;
    then down from `start` while it does (fewer threads win when SMT siblings or
    a reserved core were oversubscribed).
    """
    if step < 1:
        raise PlanError("ktfleet_tune_step", f"must be >= 1, got {step}")
    if not 0 <= tolerance < 1:
        raise PlanError("ktfleet_tune_tolerance", f"must be in [0, 1), got {tolerance}")
    if start not in allowed:
        raise PlanError("ktfleet_tune_start", f"{start} is not a thread count this host can run; allowed: {allowed}")
    measured = medians(table)
    nxt, best = _walk(_ladder(start, step, allowed, up=True), measured, 0.0, tolerance)
    if nxt is not None:
        return nxt
    nxt, _best = _walk(_ladder(start, step, allowed, up=False), measured, best, tolerance)
    return nxt


def choose(table: Iterable[Mapping[str, Any]], allowed: list[int], *, backoff: int = 2) -> dict:
    """The knee (fastest count) and the count to deploy: `backoff` threads below it."""
    if backoff < 0:
        raise PlanError("ktfleet_tune_backoff", f"must be >= 0, got {backoff}")
    measured = medians(table)
    if not measured:
        raise PlanError("ktfleet_tune_result", "nothing measured yet: no thread count to choose")
    peak = max(measured.values())
    knee = min(t for t, v in measured.items() if v == peak)  # ties: fewer threads
    below = [t for t in allowed if t <= knee - backoff]
    chosen = max(below) if below else min(allowed)
    speed = f"{measured[chosen]:.1f} tokens/s measured" if chosen in measured else "not measured"
    if chosen == knee:
        why = f"fastest at {knee} threads ({peak:.1f} tokens/s); nothing smaller to back off to"
    else:
        why = (
            f"fastest at {knee} threads ({peak:.1f} tokens/s); backing off {knee - chosen} as the tuning guide "
            f"advises leaves cores for the OS and the GPU-feeding threads: {chosen} ({speed})"
        )
    rows = [{"threads": t, "median": measured[t]} for t in sorted(measured)]
    return {"knee": knee, "chosen": chosen, "peak_tokens_per_second": peak, "reason": why, "table": rows}


def table_text(table: Iterable[Mapping[str, Any]], choice: Mapping[str, Any] | None = None) -> str:
    """threads -> tokens/s as a console table, the knee and the chosen count marked."""
    measured = medians(table)
    if not measured:
        return "no measurements"
    top = max(measured.values())
    widths = (7, 8, 0)
    lines = [text_table.line(("threads", "tokens/s"), widths[:2]), text_table.rule(widths[:2])]
    for threads in sorted(measured):
        scale = "#" * round(30 * measured[threads] / top) if top else ""
        mark = ""
        if choice and threads == choice.get("knee"):
            mark += "  <- knee"
        if choice and threads == choice.get("chosen"):
            mark += "  <- chosen"
        lines.append(text_table.line((threads, f"{measured[threads]:.2f}", scale + mark), widths, ">>"))
    if choice:
        lines.append(choice["reason"])
    return "\n".join(lines)


# --- the search's set-up (roles/ktransformers/tasks/tune.yml renders what these decide) ---

NO_LIMIT = 100000  # ktfleet_tune_max unset: no upper bound


def search_smt(smt: Any, backend: str, facts: Mapping[str, Any] | None) -> bool:
    """Whether SMT siblings are part of the search: when asked (ktfleet_smt), or on the
    legacy server where the host has them (it may run more threads than physical
    cores; kt-kernel pins physical cores only)."""
    return bool(smt) or (backend == "legacy" and bool((facts or {}).get("smt_active", False)))


def search_step(plan: Mapping[str, Any], backend: str, step: Any = None) -> int:
    """Threads between two measured counts: ktfleet_tune_step, else one thread per pool
    (sglang-kt: counts must split evenly over the pools), one per node for the legacy
    server's replicate policy (one worker set per copy), else 1."""
    if step is not None:
        return int(step)
    if backend == "sglang-kt":
        return int(plan["threadpool_count"])
    return len(plan["numa_nodes"]) if plan["policy"] == "replicate" else 1


def search_setup(
    plan: Mapping[str, Any],
    space: Iterable[int],
    *,
    backend: str,
    key: Mapping[str, Any],
    start: Any = None,
    step: Any = None,
    minimum: Any = None,
    maximum: Any = None,
    saved: Mapping[str, Any] | None = None,
    restart: bool = False,
) -> dict:
    """Where the search runs: {allowed, start, step, key, table}.

    ``space`` is tune_space's answer, clipped to [minimum, maximum] (unset or 0:
    no bound); ``start`` is ktfleet_tune_start, else the plan's own count.
    ``key`` says which search this is (backend, model, release, policy, nodes,
    max_tokens, smt): the ``saved`` file's table is resumed only for the same key,
    and not with ``restart``.
    """
    low = int(minimum) if minimum else 1
    high = int(maximum) if maximum else NO_LIMIT
    allowed = [t for t in space if low <= t <= high]
    saved = saved or {}
    same = dict(saved.get("key") or {}) == dict(key)
    return {
        "allowed": allowed,
        "start": int(start) if start is not None else int(plan["cpu_infer"]),
        "step": search_step(plan, backend, step),
        "key": dict(key),
        "table": list(saved.get("table") or []) if same and not restart else [],
    }
