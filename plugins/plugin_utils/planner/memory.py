"""Where the weights live under each policy, what the process needs there, and the verdict.

What one node needs = its share of the weights + kt-kernel's scratch buffers + a margin:

- replicate (legacy, USE_NUMA=1): a full copy on every node. The 0.2/0.3 server's
  ``MOE::MOE`` (ktransformers_ext/operators/llamafile/moe.cpp:25-46 in 0.2.1.post1, ``#ifdef USE_NUMA``)
  ``numa_alloc_onnode``s and ``memcpy``s every expert tensor once per configured node.
- shard (kt-kernel): each pool holds 1/K of every expert's intermediate dimension
  (kt-kernel/operators/moe-tp.hpp ``TP_MOE_Common``: ``intermediate_size / tp_count``)
  on its own node, strictly bound. AMX and LLAMAFILE hold *every* expert there, GPU ones
  included (``SafeTensorLoader.load_experts``, kt_kernel/utils/loader.py:267-268 loops
  over all experts; amx/moe_base.hpp ``init()`` allocates a BufferB per expert;
  llamafile/moe.hpp ``LLAMA_MOE_TP`` allocates ``expert_num * intermediate * hidden``),
  so ``weights_bytes`` is all of them and GPU experts do not shrink it.
- bind to one node: all of it on that node, strictly bound (membind: no spill).
- interleave, or bind to several nodes: 1x in total, spread over the nodes; only the
  total is checked, the kernel may place pages on any node of the set.

Scratch (kt-kernel only): every pool allocates one buffer set sized by the chunked-prefill
length (``moe_config.max_len = chunked_prefill_size``, kt_kernel/utils/amx.py:527,
llamafile.py:233), shared by all layers (``shared_mem_buffer_numa.alloc(tp_part_idx, ...)``).
:func:`scratch_per_pool` is that allocation's formula.

Margin: ``MARGIN_SHARE`` of each node's weights wherever the server copies them out of
the memory-mapped files into its own allocations (USE_NUMA=1 and kt-kernel, whose loader
copies each layer into per-pool buffers). The seed measured 2.35x the model for
DeepSeek-R1 Q4_K_M on two nodes under ``USE_NUMA=1``, of which 2.0x are the two copies
the code makes; the other 0.35x over two nodes is 0.175x per node. No kt-kernel figure
has been measured; the same share is kept there. A legacy build without USE_NUMA reads
the weights in place from the mapping (``gate_proj_ = config_.gate_proj``): no margin;
KTransformers' tutorial measured 382G of DRAM for the single-socket Q4_K_M run (~1x).

The verdict (``tier``): ``fits`` when every checked node keeps at least ``headroom`` (the
seed's 20%) free; ``tight`` when the needs fit in MemTotal but leave less than that free
(deploys, with a warning); ``does_not_fit`` when the needs exceed MemTotal (refused).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from ansible_collections.ktfleet.numa.plugins.module_utils.cpulist import join_ids as _ids

from ..sizes import format_size
from .host import HostView
from .models import MemoryFit, ModelSpec, Policy

# exact fractions: bytes must not depend on float rounding
MARGIN_SHARE = Fraction(7, 40)  # 0.175 = (2.35 - 2) / 2, the seed's USE_NUMA=1 measurement

# kt-kernel's AMX kernels (amx/la/amx.hpp GemmKernel224Int8/Int4: M_STEP = TILE_M * 2 = 32)
AMX_M_STEP = 32
# llama.cpp's Q8_K, the vec_dot_type of every K-quant: 256 int8 + a float + 16 int16 sums
Q8_K_BYTES_PER_VALUE = Fraction(4 + 256 + 2 * 16, 256)


@dataclass(frozen=True)
class MoeShape:
    """The expert layer's shape, from the model's config.json."""

    hidden_size: int
    intermediate_size: int  # moe_intermediate_size, the whole expert (before sharding)
    num_experts: int  # n_routed_experts
    num_experts_per_tok: int


def moe_shape(model: ModelSpec) -> MoeShape | None:
    values = (model.hidden_size, model.moe_intermediate_size, model.num_experts, model.num_experts_per_tok)
    return None if None in values else MoeShape(*values)  # type: ignore[arg-type]


def scratch_per_pool(method: str | None, shape: MoeShape, pools: int, chunk: int) -> int:
    """Bytes one kt-kernel pool allocates for its prefill scratch (``max_len`` = ``chunk``).

    LLAMAFILE: llamafile/moe.hpp ``LLAMA_MOE_TP::LLAMA_MOE_TP`` (the ``group_max_len``
    requests). Every other method: amx/moe_base.hpp ``AMX_MOE_BASE::init`` (the AMX and
    native kernels derive from it).
    """
    hidden, k, experts = shape.hidden_size, shape.num_experts_per_tok, shape.num_experts
    inter = shape.intermediate_size // pools  # this pool's slice (moe-tp.hpp)
    rows = k * chunk
    if method == "LLAMAFILE":
        q8 = Q8_K_BYTES_PER_VALUE
        per_token = (
            4 * hidden  # m_input_fp32_
            + 2 * q8 * hidden  # m_gate_input_, m_up_input_
            + 4 * hidden  # m_output_fp32_
        )
        per_row = (
            2 * q8 * hidden  # m_local_gate_input_, m_local_up_input_
            + 3 * 4 * inter  # m_local_gate_output_, m_local_up_output_, m_local_intermediate_fp32_
            + q8 * inter  # m_local_down_input_
            + 4 * hidden  # m_local_down_output_
        )
        return math.ceil(chunk * per_token + rows * per_row)
    # m_local_input_, gate, up, down outputs: bf16, k * max_len rows
    local = 2 * rows * (hidden + inter + inter + hidden)
    pool_rows = rows + experts * AMX_M_STEP  # pool_count_: padding per expert

    def buffer_a(m: int, n: int) -> int:  # int8 values + a float scale per row
        return m * n + 4 * m

    def buffer_c(m: int, n: int) -> int:  # float32
        return 4 * m * n

    pools_bytes = (
        buffer_a(pool_rows, hidden)  # gate_up_ba_pool_
        + 2 * buffer_c(pool_rows, inter)  # gate_bc_pool_, up_bc_pool_
        + buffer_a(pool_rows, inter)  # down_ba_pool_
        + buffer_c(pool_rows, hidden)  # down_bc_pool_
        + 5 * 64 * pool_rows  # "+ pool_count_ * 64" alignment slack on each
    )
    return local + pools_bytes


def weights_per_node(policy: Policy, nodes: list[int], weights: int) -> dict[int, int]:
    if policy is Policy.REPLICATE or len(nodes) == 1:
        return dict.fromkeys(nodes, weights)
    # shard: one slice per pool; interleave / multi-node bind: an even spread
    return dict.fromkeys(nodes, math.ceil(weights / len(nodes)))


def is_strict(policy: Policy, nodes: list[int]) -> bool:
    """Does each node have to hold its own part (True) or only the set as a whole?"""
    return policy in (Policy.REPLICATE, Policy.SHARD) or (policy is Policy.BIND and len(nodes) == 1)


def fit(
    host: HostView,
    policy: Policy,
    nodes: list[int],
    weights: int,
    headroom: float,
    buffers: int = 0,
    copied: bool = True,
) -> MemoryFit:
    """The verdict. ``buffers``: kt-kernel scratch per pool node (0 for the legacy server);
    ``copied``: the server copies the weights out of the mapped files (USE_NUMA=1, kt-kernel)
    and so takes the margin; False for a legacy build without USE_NUMA, which reads them in place."""
    shares = weights_per_node(policy, nodes, weights)
    share = MARGIN_SHARE if copied else 0
    margins = {n: math.ceil(shares[n] * share) for n in nodes}
    scratch = dict.fromkeys(nodes, buffers)
    required = {n: shares[n] + scratch[n] + margins[n] for n in nodes}
    available = {n: host.memory[n] for n in nodes}
    total = host.memory_of(nodes)
    fits: bool | None = None
    free_ratio: float | None = None
    tightest: int | None = None
    if total is not None:
        need_total = sum(required.values())
        fits = need_total <= total
        free_ratio = (total - need_total) / total if total else 0.0
        if is_strict(policy, nodes):
            fits = fits and all(required[n] <= (available[n] or 0) for n in nodes)
            tightest = min(nodes, key=lambda n: _free(required[n], available[n]))
            free_ratio = _free(required[tightest], available[tightest])
    tier = None if fits is None else "does_not_fit" if not fits else "tight" if free_ratio < headroom else "fits"
    return MemoryFit(
        fits=fits,
        tier=tier,
        required_total_bytes=sum(required.values()),
        required_per_node_bytes=required,
        weights_per_node_bytes=shares,
        buffers_per_node_bytes=scratch,
        margin_per_node_bytes=margins,
        available_total_bytes=total,
        available_per_node_bytes=available,
        free_ratio=None if free_ratio is None else round(free_ratio, 4),
        tightest_node=tightest,
        headroom_ratio=headroom,
        per_node_checked=is_strict(policy, nodes),
        keep_free_per_node_bytes={n: None if available[n] is None else int(available[n] * (1 - headroom)) for n in nodes},
    )


def _free(need: int, size: int | None) -> float:
    return (size - need) / size if size else 0.0


def describe(policy: Policy, memory: MemoryFit) -> str:
    """One line: what is needed where (weights + buffers + margin), against what the node has."""
    nodes = sorted(memory.required_per_node_bytes)
    if memory.fits is None:
        return f"memory: needs {format_size(memory.required_total_bytes)}; not checked, the facts carry no memory sizes"
    verdict = {"fits": "fits", "tight": "fits, tight", "does_not_fit": "does NOT fit"}[memory.tier or ""]
    advice = f"recommended: keep {memory.headroom_ratio:.0%} free"
    if is_strict(policy, nodes):
        node = memory.tightest_node if memory.tightest_node is not None else nodes[0]
        size = memory.available_per_node_bytes[node] or 0
        need = memory.required_per_node_bytes[node]
        where = (
            f"on node {node}"
            if len(nodes) == 1
            else f"on each of nodes {_ids(nodes)} ({format_size(memory.required_total_bytes)} in total); tightest is node {node}:"
        )
        return (
            f"memory {verdict}: {format_size(need)} {where} "
            f"({_parts(memory, node)}) of {format_size(size)}; {_left(size, need)} ({advice})"
        )
    size = memory.available_total_bytes or 0
    need = memory.required_total_bytes
    return (
        f"memory {verdict}: {format_size(need)} spread over node(s) {_ids(nodes)} "
        f"({_parts(memory, nodes[0], len(nodes))}) of {format_size(size)}; {_left(size, need)} ({advice})"
    )


def _parts(memory: MemoryFit, node: int, times: int = 1) -> str:
    weights = memory.weights_per_node_bytes[node] * times
    buffers = memory.buffers_per_node_bytes[node] * times
    margin = memory.margin_per_node_bytes[node] * times
    text = f"weights {format_size(weights)}"
    if buffers:
        text += f" + kt-kernel buffers {format_size(buffers)}"
    return text + f" + margin {format_size(margin)}"


def _left(size: int, need: int) -> str:
    if need > size:
        return f"short by {format_size(need - size)}"
    return f"{format_size(size - need)} ({(size - need) / size:.0%}) left free" if size else "nothing left"
