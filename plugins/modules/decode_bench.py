#!/usr/bin/python
# Copyright: ktfleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: decode throughput of the server running on the host."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: decode_bench
short_description: Measure an OpenAI-compatible LLM server's decode speed in tokens per second
version_added: 0.1.0
author: ktfleet contributors (@ktfleet)
description:
  - Streams C(POST /v1/completions) requests with a fixed prompt and a fixed output length to a server
    on the host (SGLang with kt-kernel, or the KTransformers 0.2/0.3 server) and times the tokens.
  - A sample's speed is the tokens after the first divided by the time from the first to the last
    token, so prompt processing does not count; warm-up requests are not counted; the result is the
    median of O(samples).
  - Runs on the host itself, so network latency between controller and host does not count.
  - Only sends requests; it changes nothing on the host, so it also runs in check mode.
options:
  url:
    description: Base URL of the server.
    type: str
    default: http://127.0.0.1:30000
  model:
    description: Model name to send; empty asks C(/v1/models) for the served one.
    type: str
    default: ""
  api_key:
    description: Bearer token, when the server requires one.
    type: str
    default: ""
  prompt:
    description: The fixed prompt.
    type: str
  max_tokens:
    description: Tokens to generate per request (the server is asked to ignore end-of-sequence).
    type: int
    default: 64
  warmup:
    description: Requests sent first and not counted (caches, lazy initialisation).
    type: int
    default: 1
  samples:
    description: Timed requests; their median is the result.
    type: int
    default: 3
  duration:
    description:
      - Keep sending timed requests until this many seconds have passed (at least O(samples) of them),
        a steady decode load while the host is sampled, as C(playbooks/diagnose.yml) does.
    type: float
    default: 0
  timeout:
    description: Seconds one request may take.
    type: float
    default: 600
requirements:
  - A server answering the OpenAI C(/v1/completions) API with C(stream=true).
attributes:
  check_mode:
    support: full
    description: Sends requests only; nothing on the host changes.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
"""

EXAMPLES = r"""
- name: Decode speed of the local KTransformers server
  ktfleet.numa.decode_bench:
    url: http://127.0.0.1:30000
    max_tokens: 128
    samples: 5
  register: bench

- name: Show it
  ansible.builtin.debug:
    msg: "{{ bench.median }} tokens/s (samples {{ bench.samples }})"
"""

RETURN = r"""
model:
  description: The model name the requests used.
  returned: success
  type: str
  sample: DeepSeek-V3
samples:
  description: Decode speed of each timed request, tokens per second.
  returned: success
  type: list
  elements: float
  sample: [12.4, 12.6, 12.5]
median:
  description: Median of O(samples) speeds, tokens per second.
  returned: success
  type: float
  sample: 12.5
spread:
  description: (max - min) / median of the samples; above a few percent the host is noisy.
  returned: success
  type: float
  sample: 0.016
time_to_first_token:
  description: Seconds to the first token of each timed request (prefill plus queueing).
  returned: success
  type: list
  elements: float
max_tokens:
  description: Tokens requested per sample.
  returned: success
  type: int
warmup:
  description: Requests sent before timing.
  returned: success
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ktfleet.numa.plugins.module_utils.decode_bench import (
    DEFAULT_PROMPT,
    BenchError,
    bench,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "default": "http://127.0.0.1:30000"},
            "model": {"type": "str", "default": ""},
            "api_key": {"type": "str", "default": "", "no_log": True},
            "prompt": {"type": "str"},
            "max_tokens": {"type": "int", "default": 64, "no_log": False},
            "warmup": {"type": "int", "default": 1},
            "samples": {"type": "int", "default": 3},
            "duration": {"type": "float", "default": 0},
            "timeout": {"type": "float", "default": 600},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = bench(
            p["url"],
            model=p["model"],
            prompt=p["prompt"] or DEFAULT_PROMPT,
            max_tokens=p["max_tokens"],
            warmup=p["warmup"],
            samples=p["samples"],
            duration=p["duration"],
            api_key=p["api_key"],
            timeout=p["timeout"],
        )
    except BenchError as exc:
        module.fail_json(msg=f"decode_bench against {p['url']}: {exc}")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
