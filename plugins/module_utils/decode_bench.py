"""Decode throughput of an OpenAI-compatible server, measured the way users feel it.

Stdlib only (runs on the target, next to the server, so the network does not
count). One sample is one streamed /v1/completions request with a fixed prompt
and a fixed output length; its decode speed is the tokens after the first over
the time between the first and the last token, so prefill (time to first token)
stays out of the number, as the KTransformers tuning guide measures it.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.error

from ansible.module_utils.urls import open_url

DEFAULT_PROMPT = "Explain in detail how non-uniform memory access affects the speed of large language models."


class BenchError(Exception):
    """The server did not give a usable answer; the message says what it did give."""


def parse_sse_line(line: bytes) -> dict | None:
    """One server-sent-events line: its JSON payload, or None (keep-alives, [DONE], blanks)."""
    text = line.decode("utf-8", "replace").strip()
    if not text.startswith("data:"):
        return None
    payload = text[5:].strip()
    if not payload or payload == "[DONE]":
        return None
    try:
        return json.loads(payload)
    except ValueError:
        raise BenchError(f"not JSON in the event stream: {payload[:200]!r}") from None


def chunk_has_text(event: dict) -> bool:
    choices = event.get("choices") or []
    return any((c.get("text") or (c.get("delta") or {}).get("content")) for c in choices)


def decode_rate(token_times: list[float], completion_tokens: int | None) -> float:
    """Tokens per second after the first token.

    Servers may pack several tokens into one event; when the final usage says
    how many tokens there were, that count is spread over the same time span.
    """
    if len(token_times) < 2:
        raise BenchError(f"need at least 2 streamed chunks to time decoding, got {len(token_times)}")
    span = token_times[-1] - token_times[0]
    if span <= 0:
        raise BenchError("all chunks arrived at once: raise max_tokens")
    tokens = completion_tokens if completion_tokens and completion_tokens >= len(token_times) else len(token_times)
    return (tokens - 1) / span


def one_sample(url: str, model: str, prompt: str, max_tokens: int, api_key: str = "", timeout: float = 600.0) -> dict:
    """Stream one completion; return its decode speed and time to first token."""
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,  # SGLang: always the full length, so samples compare
    }
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    start = time.monotonic()
    times: list[float] = []
    usage_tokens = None
    try:
        with open_url(url.rstrip("/") + "/v1/completions", data=json.dumps(body), headers=headers,
                      method="POST", timeout=timeout) as response:
            for line in response:
                event = parse_sse_line(line)
                if event is None:
                    continue
                if chunk_has_text(event):
                    times.append(time.monotonic())
                usage_tokens = (event.get("usage") or {}).get("completion_tokens", usage_tokens)
    except urllib.error.HTTPError as exc:
        raise BenchError(f"POST /v1/completions answered {exc.code}: {exc.read()[:300]!r}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise BenchError(f"POST /v1/completions failed: {exc}") from None
    return {
        "tokens_per_second": round(decode_rate(times, usage_tokens), 3),
        "time_to_first_token": round(times[0] - start, 3) if times else None,
        "completion_tokens": usage_tokens or len(times),
    }


def served_model(url: str, api_key: str = "", timeout: float = 30.0) -> str:
    """The first model id /v1/models lists (what the server was started with)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with open_url(url.rstrip("/") + "/v1/models", headers=headers, timeout=timeout) as response:
            data = json.load(response).get("data") or []
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise BenchError(f"GET /v1/models failed: {exc}") from None
    if not data:
        raise BenchError("GET /v1/models lists no model")
    return str(data[0]["id"])


def bench(url: str, *, model: str = "", prompt: str = DEFAULT_PROMPT, max_tokens: int = 64, warmup: int = 1,
          samples: int = 3, duration: float = 0.0, api_key: str = "", timeout: float = 600.0) -> dict:
    """Warm-up requests (not counted), then timed ones; the median is the result.

    At least ``samples`` timed requests, and more until ``duration`` seconds have
    passed: a steady load while something else (diagnose.yml) samples the host.
    """
    if samples < 1 or warmup < 0 or max_tokens < 2 or duration < 0:
        raise BenchError("samples >= 1, warmup >= 0, max_tokens >= 2 and duration >= 0 are required")
    model = model or served_model(url, api_key)
    start = time.monotonic()
    for _warm in range(warmup):
        one_sample(url, model, prompt, max_tokens, api_key, timeout)
    runs = []
    while len(runs) < samples or time.monotonic() - start < duration:
        runs.append(one_sample(url, model, prompt, max_tokens, api_key, timeout))
    rates = [r["tokens_per_second"] for r in runs]
    return {
        "model": model,
        "samples": rates,
        "median": round(statistics.median(rates), 3),
        "spread": round((max(rates) - min(rates)) / statistics.median(rates), 4) if statistics.median(rates) else None,
        "time_to_first_token": [r["time_to_first_token"] for r in runs],
        "max_tokens": max_tokens,
        "warmup": warmup,
    }
