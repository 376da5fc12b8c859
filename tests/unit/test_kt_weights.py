"""kt_weights: the NUMA shard count of kt-kernel weights, from the safetensors headers' tensor names.

kt-kernel counts it the same way (kt_kernel 0.7.2 wheel, kt_kernel/utils/loader.py,
SafeTensorLoader.load_experts; tests/oracle/test_oracle_kt_rules.py reads that line).
"""

from __future__ import annotations

import json
import struct

import pytest

from ansible_collections.ktfleet.numa.plugins.module_utils import kt_weights


def amx_keys(layers=(3, 4), experts=3, shards=2):
    return [f"blk.{layer}.ffn_{p}_exps.{e}.numa.{n}.{w}" for layer in layers for p in ("up", "gate", "down")
            for e in range(experts) for n in range(shards) for w in ("weight", "scale")]  # fmt: skip


def write_safetensors(path, keys):
    header = json.dumps({"__metadata__": {"format": "pt"}} | {k: {"dtype": "I8", "shape": [1], "data_offsets": [0, 1]} for k in keys})
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0")


@pytest.mark.parametrize("shards", [1, 2, 4, 8])
def test_the_count_of_numa_shards(shards):
    assert kt_weights.numa_shards(amx_keys(shards=shards)) == shards


def test_weights_that_are_not_sharded():
    assert kt_weights.numa_shards(["model.layers.3.mlp.experts.0.up_proj.weight", "lm_head.weight"]) is None


def test_a_gap_stops_the_count_as_kt_kernels_loader_stops():
    keys = [k for k in amx_keys(shards=4) if ".numa.2." not in k]
    assert kt_weights.numa_shards(keys) == 2  # load_experts probes .numa.0, .numa.1, then stops at 2


def test_layers_that_disagree_are_an_error():
    keys = amx_keys(layers=(3,), shards=2) + amx_keys(layers=(4,), shards=4)
    with pytest.raises(ValueError, match=r"sharded differently \(2, 4 shards; blk.3: 2, blk.4: 4\)"):
        kt_weights.numa_shards(keys)


def test_the_weights_directory_is_read_from_the_headers(tmp_path):
    (tmp_path / "sub").mkdir()
    write_safetensors(tmp_path / "a.safetensors", amx_keys(layers=(3,)))
    write_safetensors(tmp_path / "sub" / "b.safetensors", amx_keys(layers=(4,)))
    (tmp_path / "config.json").write_text("{}")
    assert kt_weights.read_weights_dir(str(tmp_path)) == {"exists": True, "numa_shards": 2, "files": 2, "tensors": 72}


def test_gguf_or_missing_weights_say_nothing(tmp_path):
    (tmp_path / "model-Q4_K_M.gguf").write_bytes(b"GGUF")
    assert kt_weights.read_weights_dir(str(tmp_path))["numa_shards"] is None
    assert kt_weights.read_weights_dir(str(tmp_path / "absent")) == {"exists": False, "numa_shards": None, "files": 0, "tensors": 0}


@pytest.mark.parametrize("content", [b"", b"\xff" * 8 + b"{}", struct.pack("<Q", 2) + b"[]"])
def test_a_broken_header_is_a_clear_error(tmp_path, content):
    (tmp_path / "x.safetensors").write_bytes(content)
    with pytest.raises(ValueError, match="x.safetensors"):
        kt_weights.read_weights_dir(str(tmp_path))
