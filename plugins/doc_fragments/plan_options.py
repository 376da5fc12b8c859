# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by the ktfleet.numa.plan, cpu_infer and memory_fit filters."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  _input:
    description:
      - The host's C(ansible_facts.numa), as gathered by M(ktfleet.numa.numa_facts) (docs/facts.md).
      - 'A dict of the form C({"ansible_facts": {"numa": ...}}) is accepted as well.'
    type: dict
    required: true
  backend:
    description:
      - V(sglang-kt) is KTransformers 0.4+ (SGLang with kt-kernel, C(python -m sglang.launch_server)).
      - V(legacy) is the KTransformers 0.2.x-0.3.x server (C(python -m ktransformers.server.main)).
    type: str
    choices: [sglang-kt, legacy]
    default: sglang-kt
  policy:
    description:
      - V(auto) picks the fastest policy that fits. sglang-kt shards over every usable node; legacy replicates if every
        node fits a copy, else binds to one node if one fits, else interleaves.
      - V(shard) (sglang-kt only) runs one kt-kernel pool per node, each holding 1/pools of the weights.
      - V(bind) runs on and allocates from the listed (or best) node only.
      - V(replicate) (legacy only) needs the C(USE_NUMA=1) build, which keeps a full copy on every node.
      - V(interleave) (legacy only) spreads one copy page by page over the nodes.
    type: str
    choices: [auto, bind, shard, replicate, interleave]
    default: auto
  nodes:
    description:
      - NUMA node ids to use instead of the planner's choice. Each must exist in the facts.
      - Memory-only nodes are only meaningful under V(interleave); they never get threads.
    type: list
    elements: int
  cpu_infer:
    description:
      - Override the thread count. Refused above the physical cores of the nodes used
        (with O(smt), logical CPUs; legacy adds one scheduling thread).
    type: int
  reserve_cores:
    description:
      - Cores kept free of inference threads. Default, sglang-kt one per GPU rank (O(gpus)), plus 2 for the OS when more
        than 64 cores are in use; legacy only the OS share.
    type: int
  gpus:
    description: Number of GPUs, that is tensor-parallel ranks (C(--tensor-parallel-size) for sglang-kt). Alias O(tp_size).
    type: int
    default: 1
    aliases: [tp_size]
  headroom:
    description: Share of each node's memory kept free when checking the fit (the seed keeps 20%).
    type: float
    default: 0.20
  smt:
    description:
      - Count logical CPUs (SMT siblings) instead of physical cores; legacy only (kt-kernel pins to physical cores).
      - Oversubscribing SMT measured ~10x slower for large models; only small models may gain.
    type: bool
    default: false
  numa_build:
    description:
      - Whether the legacy server is the multi-NUMA build (C(USE_NUMA=1)), which copies the weights to every node.
      - Null lets the planner choose and report it as RV(_value.numa_build); V(true) forces replicate, V(false) forbids it.
      - Inventory variable C(ktfleet_legacy_numa_build).
    type: bool
    aliases: [legacy_numa_build]
  host:
    description: Address the server listens on (inventory variable C(ktfleet_listen_host)).
    type: str
    default: 127.0.0.1
    aliases: [listen_host]
  port:
    description: Port the server listens on; default 30000 (sglang-kt) or 10002 (legacy).
    type: int
  trust_remote_code:
    description: Pass C(--trust-remote-code) to SGLang (the KTransformers docs always do).
    type: bool
    default: true
  kt_num_gpu_experts:
    description:
      - C(--kt-num-gpu-experts), experts per MoE layer kept on the GPUs (sglang-kt). Always passed, since without it
        sglang-kt serves the model as plain SGLang, without kt-kernel; null takes KTransformers' own C(kt run)
        default, 1.
    type: int
  chunked_prefill_size:
    description:
      - C(--chunked-prefill-size) (sglang-kt), the longest prefill chunk; kt-kernel sizes each pool's buffers by it.
        Always passed; the default is KTransformers' own C(kt run) default (SGLang's own grows with GPU memory).
        The memory check counts these buffers (about 2.7 GiB per pool for DeepSeek-V3 at 4096).
    type: int
    default: 4096
  legacy_release:
    description:
      - The legacy ktransformers release the command line is for (the role passes C(ktfleet_versions.legacy.ktransformers)).
      - Below 0.3 (0.2.1.post1, the package index's last 0.2/0.3 server) C(--chunk_size) and C(--backend_type)
        are not passed, since they are 0.3's balance_serve flags and 0.2's argparse would refuse them.
      - Null plans for 0.3.
    type: str
  chunk_size:
    description: Legacy C(--chunk_size) (0.3 and later).
    type: int
    default: 256
  max_new_tokens:
    description: Legacy C(--max_new_tokens).
    type: int
    default: 1024
  cache_lens:
    description: Legacy C(--cache_lens).
    type: int
    default: 32768
  max_batch_size:
    description: Legacy C(--max_batch_size).
    type: int
    default: 4
  backend_type:
    description: Legacy C(--backend_type).
    type: str
    default: balance_serve
  extra_args:
    description:
      - Further server arguments, appended as they are (inventory variable C(ktfleet_server_extra_args)).
      - Flags the plan sets itself are refused (use the option instead), and so are SGLang's C(--numa-node), which
        fights kt-kernel's pinning, C(--kt-gpu-experts-ratio), which overrides the expert count, and any C(--kt-*)
        flag sglang-kt does not have (a typo).
    type: list
    elements: str
    default: []
    aliases: [server_extra_args]
  numactl_path:
    description: Path of numactl in RV(_value.numactl).
    type: str
    default: /usr/bin/numactl
notes:
  - 'Bad input fails with one line naming the variable and what is allowed, for example
    C(ktfleet_model.weights_bytes: must be >= 0, got -5).'
  - Options are named after the inventory variables without their C(ktfleet_) prefix, except O(numa_build),
    O(host) and O(extra_args) (C(ktfleet_legacy_numa_build), C(ktfleet_listen_host), C(ktfleet_server_extra_args));
    both spellings are accepted.
  - Needs pydantic 2 on the controller.
"""
