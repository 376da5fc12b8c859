"""Typed inputs and output of the planner (pydantic v2; controller side only).

Inputs: ``Facts`` (the part of ``ansible_facts.numa`` the controller reads, the
planner and the fleet report alike, see docs/facts.md; other keys are ignored),
``ModelSpec`` (``ktfleet_model``),
``PlanOptions`` (the ``ktfleet_*`` planner variables) and ``Backend``.
Output: ``Plan`` with its ``MemoryFit`` (docs/plan.md). The ``parse_*`` helpers turn
any validation failure into a one-line ``PlanError`` naming the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..errors import PlanError, dotted, from_validation_error
from ..sizes import parse_size


class Backend(StrEnum):
    LEGACY = "legacy"  # KTransformers 0.2.x-0.3.x: python -m ktransformers.server.main
    SGLANG_KT = "sglang-kt"  # KTransformers 0.4+: SGLang with kt-kernel


# the server flag that takes the CPU thread count (the plan's cpu_infer)
CPU_INFER_FLAG = {Backend.LEGACY: "--cpu_infer", Backend.SGLANG_KT: "--kt-cpuinfer"}


class Policy(StrEnum):
    AUTO = "auto"
    BIND = "bind"
    SHARD = "shard"
    REPLICATE = "replicate"
    INTERLEAVE = "interleave"


# --- facts ------------------------------------------------------------------------

_FACTS = ConfigDict(extra="ignore", frozen=True)
# no machine addresses more than 2^57 bytes (x86 5-level paging, arm64 LPA2): a
# larger size in the facts is corruption (module_utils/sysfs.py MAX_MEMORY_KB on the host side)
MAX_MEMORY_BYTES = 1 << 57


class CpuFlags(BaseModel):
    model_config = _FACTS
    avx2: bool = False
    avx512f: bool = False
    avx512bw: bool | None = None  # null: facts gathered before ktfleet read it
    amx_tile: bool = False
    amx_int8: bool = False
    amx_bf16: bool = False


class CpuInfo(BaseModel):
    model_config = _FACTS
    architecture: str | None = None
    vendor: str | None = None
    model_name: str | None = None
    hypervisor: bool = False
    flags: CpuFlags = Field(default_factory=CpuFlags)


class Gpu(BaseModel):
    model_config = _FACTS
    pci_address: str | None = None
    vendor: str | None = None
    device_id: str | None = None
    model: str | None = None
    numa_node: int | None = None
    memory_bytes: int | None = None


class KernelInfo(BaseModel):
    model_config = _FACTS
    numa_balancing: int | None = None


class Node(BaseModel):
    model_config = _FACTS
    id: int = Field(ge=0)
    cpus: tuple[int, ...] = ()
    cores: int = Field(default=0, ge=0)
    package_ids: tuple[int, ...] = ()
    memory_total_bytes: int | None = Field(default=None, ge=0, le=MAX_MEMORY_BYTES)
    memory_free_bytes: int | None = None
    memory_only: bool = False
    distances: tuple[int, ...] = ()


class Package(BaseModel):
    model_config = _FACTS
    id: int
    nodes: tuple[int, ...] = ()
    cores: int | None = None
    cpus: tuple[int, ...] = ()


class GpuMemoryNode(BaseModel):
    """A NUMA node that is a GPU's own memory (NVLink-C2C, POWER9 NVLink): never weights or pools."""

    model_config = _FACTS
    id: int = Field(ge=0)
    pci_address: str | None = None
    memory_total_bytes: int | None = Field(default=None, ge=0, le=MAX_MEMORY_BYTES)


# the fact module writes null for what it could not see: these keys then take their defaults
_NULL_MEANS_DEFAULT = frozenset(
    ("cpu", "kernel", "gpus", "warnings", "gpu_memory_nodes", "cpus_without_node", "packages", "core_cpus")
)


class Facts(BaseModel):
    model_config = _FACTS
    nodes: tuple[Node, ...] = Field(min_length=1)
    packages: tuple[Package, ...] = ()
    nodes_per_package: int = Field(default=1, ge=0)
    cores_total: int | None = None
    core_cpus: tuple[tuple[int, ...], ...] = ()  # each core's logical CPUs (SMT siblings)
    threads_per_core: int | None = None
    smt_active: bool = False
    memory_total_bytes: int | None = Field(default=None, ge=0, le=MAX_MEMORY_BYTES)
    memory_available_bytes: int | None = Field(default=None, ge=0, le=MAX_MEMORY_BYTES)
    cpu: CpuInfo = Field(default_factory=CpuInfo)
    gpus: tuple[Gpu, ...] = ()
    gpu_memory_nodes: tuple[GpuMemoryNode, ...] = ()
    cpus_without_node: tuple[int, ...] = ()
    kernel: KernelInfo = Field(default_factory=KernelInfo)
    warnings: tuple[str, ...] = ()
    root: str | None = None  # where the facts were read: "/" or a recorded dump

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if not (v is None and k in _NULL_MEANS_DEFAULT)}
        return data

    @field_validator("nodes")
    @classmethod
    def _unique_sorted(cls, nodes: tuple[Node, ...]) -> tuple[Node, ...]:
        ids = [n.id for n in nodes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"node ids must be unique, got {ids}")
        return tuple(sorted(nodes, key=lambda n: n.id))


# --- model spec and options -------------------------------------------------------

_INPUT = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class ModelSpec(BaseModel):
    """``ktfleet_model``: what is served and what the CPU side holds."""

    model_config = _INPUT
    name: str = Field(min_length=1)
    weights_bytes: int = Field(gt=0)  # 0 bytes is a wrong path or size, never a model that fits
    model_path: str | None = None
    weights_path: str | None = None
    moe_intermediate_size: int | None = Field(default=None, gt=0)
    # the expert layer's shape (config.json): sizes kt-kernel's scratch buffers
    hidden_size: int | None = Field(default=None, gt=0)
    num_experts: int | None = Field(default=None, gt=0)  # n_routed_experts
    num_experts_per_tok: int | None = Field(default=None, gt=0)
    numa_shards: int | None = Field(default=None, gt=0)
    kt_method: str | None = None
    optimize_config_path: str | None = None

    @field_validator("weights_bytes", mode="before")
    @classmethod
    def _human_size(cls, value: Any) -> Any:
        return parse_size(value) if value is not None else value

    @field_validator("kt_method")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.upper() if value else None


class PlanOptions(BaseModel):
    """The planner's ``ktfleet_*`` variables (keyword arguments of the filters)."""

    model_config = _INPUT
    policy: Policy = Policy.AUTO
    nodes: tuple[int, ...] | None = None
    cpu_infer: int | None = Field(default=None, gt=0)
    reserve_cores: int | None = Field(default=None, ge=0)
    gpus: int = Field(default=1, ge=1, validation_alias=AliasChoices("gpus", "tp_size"))
    headroom: float = Field(default=0.20, ge=0, lt=1)
    smt: bool = False
    numa_build: bool | None = Field(
        default=None, validation_alias=AliasChoices("numa_build", "legacy_numa_build")
    )
    host: str = Field(default="127.0.0.1", min_length=1, validation_alias=AliasChoices("host", "listen_host"))
    port: int | None = Field(default=None, ge=1, le=65535)
    trust_remote_code: bool = True
    kt_num_gpu_experts: int | None = Field(default=None, ge=0)
    # --chunked-prefill-size; sizes kt-kernel's per-pool scratch (kt's own default:
    # kt_kernel/cli/commands/run.py:453 resolve(..., "inference.chunked_prefill_size", 4096))
    chunked_prefill_size: int = Field(default=4096, gt=0)
    # the legacy release the argv is for (ktfleet_versions.legacy.ktransformers); None: 0.3
    legacy_release: str | None = Field(default=None, pattern=r"^[0-9]+(\.[0-9A-Za-z]+)*$")
    chunk_size: int = Field(default=256, gt=0)
    max_new_tokens: int = Field(default=1024, gt=0)
    cache_lens: int = Field(default=32768, gt=0)
    max_batch_size: int = Field(default=4, gt=0)
    backend_type: str = Field(default="balance_serve", min_length=1)
    extra_args: tuple[str, ...] = Field(
        default=(), validation_alias=AliasChoices("extra_args", "server_extra_args")
    )
    numactl_path: str = Field(default="/usr/bin/numactl", min_length=1)

    @field_validator("policy", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("nodes", mode="before")
    @classmethod
    def _node_list(cls, value: Any) -> Any:
        # [] and "" mean "let the planner choose"; "0,1" is accepted from a CLI
        if value in (None, "", [], ()):
            return None
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, int) and not isinstance(value, bool):
            return [value]
        return value

    @field_validator("nodes")
    @classmethod
    def _sorted_unique(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and any(n < 0 for n in value):
            raise ValueError(f"node ids are >= 0, got {list(value)}")
        return tuple(sorted(set(value))) if value is not None else None

    @field_validator("extra_args", mode="before")
    @classmethod
    def _args_are_strings(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ValueError(f"must be a list of argv words, got {value!r}")
        words = tuple(str(word) for word in value)
        for i, word in enumerate(words):
            if any(ord(c) < 32 or ord(c) == 127 for c in word):
                raise ValueError(f"word {i} holds a newline or control character: {word!r}")
        return words


# --- plan ---------------------------------------------------------------------------

_OUTPUT = ConfigDict(frozen=True)


class MemoryFit(BaseModel):
    """Whether the process fits where the policy puts it (all sizes in bytes; memory.py).

    ``required_per_node_bytes`` = weights + kt-kernel buffers + margin on each node; the
    hard limit is the node's MemTotal. ``tier``: ``fits``, ``tight`` (fits, but leaves less
    than ``headroom_ratio`` free: deploys with a warning) or ``does_not_fit``; ``fits`` is
    true for the first two. Both are null when the facts carry no memory sizes.
    """

    model_config = _OUTPUT
    fits: bool | None
    tier: str | None
    required_total_bytes: int
    required_per_node_bytes: dict[int, int]
    weights_per_node_bytes: dict[int, int]
    buffers_per_node_bytes: dict[int, int]
    margin_per_node_bytes: dict[int, int]
    available_total_bytes: int | None
    available_per_node_bytes: dict[int, int | None]
    free_ratio: float | None  # what stays free: the tightest node's share (strict) or the set's
    tightest_node: int | None
    headroom_ratio: float  # the recommended free share (the seed's 20%): advice, not the limit
    # the planner's rules, stated for what reads the plan (report, diagnosis):
    # must each node hold its part (replicate, shard, bind to one node), or only the set's total?
    per_node_checked: bool | None = None
    # each node's line past which it is tight: MemTotal x (1 - headroom_ratio); null when unknown
    keep_free_per_node_bytes: dict[int, int | None] = {}


class SystemdNuma(BaseModel):
    """The policy in systemd.exec(5) words; null: leave the setting out."""

    model_config = _OUTPUT
    NUMAPolicy: str | None = None
    NUMAMask: str | None = None
    CPUAffinity: str | None = None


class Plan(BaseModel):
    model_config = _OUTPUT
    backend: Backend
    model: str
    policy: Policy
    numa_build: bool | None
    cpu_infer: int
    threadpool_count: int
    numa_nodes: list[int]
    memory_nodes: list[int]
    threads_per_node: dict[int, int]
    cpus: list[int]
    numactl: list[str]
    systemd: SystemdNuma
    server_args: list[str]
    # where the server listens (also in server_args): what health checks, tuning and diagnosis call
    listen_host: str
    port: int
    environment: dict[str, str]
    memory: MemoryFit
    reasons: list[str]
    warnings: list[str]

    @model_validator(mode="after")
    def _argv_says_what_the_plan_says(self) -> Plan:
        # cpu_infer, port and listen_host are stated twice, as fields (what tuning, health
        # checks and the report read) and in the argv (what the unit runs): they must agree
        words = {CPU_INFER_FLAG[self.backend]: str(self.cpu_infer), "--port": str(self.port),
                 "--host": self.listen_host}  # fmt: skip
        if self.backend is Backend.SGLANG_KT:
            words["--kt-threadpool-count"] = str(self.threadpool_count)
        for flag, value in words.items():
            at = self.server_args.index(flag) if flag in self.server_args else -1
            given = self.server_args[at + 1] if 0 <= at < len(self.server_args) - 1 else None
            if given != value:
                raise ValueError(f"server_args give {flag} {given}, the plan {value}")
        return self


# --- parsing with one-line errors ---------------------------------------------------


def unwrap_facts(data: Any) -> Any:
    """Accept ``{"ansible_facts": {"numa": ...}}`` and ``{"numa": ...}`` as well."""
    if isinstance(data, Mapping) and "nodes" not in data:
        if isinstance(data.get("ansible_facts"), Mapping):
            data = data["ansible_facts"]
        if isinstance(data.get("numa"), Mapping):
            return data["numa"]
    return data


def parse_facts(data: Any) -> Facts:
    if isinstance(data, Facts):
        return data
    data = unwrap_facts(data)
    if not isinstance(data, Mapping):
        raise PlanError(
            "ansible_facts.numa",
            f"missing or not a mapping (got {type(data).__name__}); run ktfleet.numa.numa_facts first",
        )
    if "nodes" not in data:
        raise PlanError(
            "ansible_facts.numa.nodes",
            "missing; these are not ktfleet.numa.numa_facts facts (see docs/facts.md)",
        )
    try:
        return Facts.model_validate(dict(data))
    except ValidationError as err:
        raise from_validation_error(err, lambda loc: dotted("ansible_facts.numa", loc)) from None


def parse_model(data: Any) -> ModelSpec:
    if isinstance(data, ModelSpec):
        return data
    if not isinstance(data, Mapping):
        raise PlanError(
            "ktfleet_model", f"must be a mapping with name and weights_bytes, got {type(data).__name__}"
        )
    try:
        return ModelSpec.model_validate(dict(data))
    except ValidationError as err:
        raise from_validation_error(
            err, lambda loc: dotted("ktfleet_model", loc), sorted(ModelSpec.model_fields)
        ) from None


def parse_backend(value: Any) -> Backend:
    try:
        return Backend(str(value).strip().lower())
    except ValueError:
        allowed = ", ".join(b.value for b in Backend)
        raise PlanError("ktfleet_backend", f"must be one of {allowed}, got {value!r}") from None


# options whose inventory variable is not simply ktfleet_<option>
_OPTION_VARIABLES = {
    "numa_build": "ktfleet_legacy_numa_build",
    "legacy_numa_build": "ktfleet_legacy_numa_build",
    "host": "ktfleet_listen_host",
    "listen_host": "ktfleet_listen_host",
    "extra_args": "ktfleet_server_extra_args",
    "server_extra_args": "ktfleet_server_extra_args",
    "tp_size": "ktfleet_gpus",
}


def option_variable(option: str) -> str:
    """The inventory variable an option comes from: 'host' -> 'ktfleet_listen_host'."""
    return _OPTION_VARIABLES.get(option, "ktfleet_" + option)


def _option_label(loc: tuple) -> str:
    return dotted(option_variable(str(loc[0])), loc[1:]) if loc else "ktfleet options"


def parse_options(options: Mapping[str, Any] | PlanOptions | None) -> PlanOptions:
    if isinstance(options, PlanOptions):
        return options
    # None means "not set" (an inventory's `ktfleet_cpu_infer: null`): use the default
    given = {k: v for k, v in dict(options or {}).items() if v is not None}
    try:
        return PlanOptions.model_validate(given)
    except ValidationError as err:
        allowed = sorted(PlanOptions.model_fields)
        raise from_validation_error(err, _option_label, allowed) from None
