#!/usr/bin/env python3
"""Measure generation speed of an OpenAI-compatible chat endpoint (llama-server directly, or
through the router) with streamed chat completions of a fixed length.

    tokens_per_second.py --base-url http://127.0.0.1:PORT/v1 --model gemma-3-270m \\
        --requests 8 --max-tokens 64 --concurrency 1

For each request: TTFT (time to the first content chunk) and completion tokens (from the
final usage chunk, stream_options.include_usage). Reports per-request decode speed
(tokens after the first / time after the first), aggregate throughput (all completion tokens
/ wall time) and TTFT p50/p90. Requests are bounded in count; all traffic goes to --base-url.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

import openai

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how rain forms, step by step.",
    "List some facts about the moon.",
    "Describe a busy market in the morning.",
]


def one(client, model, max_tokens, i):
    t0 = time.monotonic()
    first = None
    usage = None
    stream = client.chat.completions.create(
        model=model, max_tokens=max_tokens, temperature=0.8, seed=i, stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
    )
    for ch in stream:
        if first is None and ch.choices and ch.choices[0].delta and ch.choices[0].delta.content:
            first = time.monotonic()
        if ch.usage is not None:
            usage = ch.usage
    end = time.monotonic()
    n = usage.completion_tokens if usage else 0
    return {"ttft": (first or end) - t0, "total": end - t0, "tokens": n,
            "decode_tps": (n - 1) / (end - first) if first and n > 1 and end > first else 0.0,
            "prompt_tokens": usage.prompt_tokens if usage else 0}


def pct(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--api-key", default="sk-no-key-required")
    p.add_argument("--requests", type=int, default=8, help="number of requests (default 8)")
    p.add_argument("--max-tokens", type=int, default=64, help="max_tokens per request (default 64)")
    p.add_argument("--concurrency", type=int, default=1, help="requests in flight at once (default 1)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured requests first (default 1)")
    p.add_argument("--json-out", help="also write the summary and every request's figures to this file")
    args = p.parse_args(argv)
    if not 1 <= args.requests <= 1000 or not 1 <= args.concurrency <= 64:
        p.error("--requests must be 1..1000 and --concurrency 1..64")

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=300)
    for i in range(args.warmup):
        one(client, args.model, 8, 1000 + i)

    results, errors = [], []
    lock = threading.Lock()
    next_i = iter(range(args.requests))

    def worker():
        while True:
            with lock:
                i = next(next_i, None)
            if i is None:
                return
            try:
                r = one(client, args.model, args.max_tokens, i)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0

    tokens = sum(r["tokens"] for r in results)
    ttfts = [r["ttft"] for r in results]
    decode = [r["decode_tps"] for r in results if r["decode_tps"] > 0]
    print(f"model {args.model} at {args.base_url}: {len(results)} ok / {len(errors)} failed requests, "
          f"max_tokens {args.max_tokens}, concurrency {args.concurrency}")
    print(f"  completion tokens      {tokens} in {wall:.2f}s wall")
    print(f"  throughput             {tokens / wall:.1f} completion tokens/s (aggregate)")
    if decode:
        print(f"  decode speed/request   p50 {statistics.median(decode):.1f} tokens/s "
              f"(min {min(decode):.1f}, max {max(decode):.1f})")
    print(f"  TTFT                   p50 {pct(ttfts, 0.5) * 1000:.0f} ms, p90 {pct(ttfts, 0.9) * 1000:.0f} ms")
    for e in errors[:5]:
        print(f"  error: {e}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"base_url": args.base_url, "model": args.model, "max_tokens": args.max_tokens,
                       "concurrency": args.concurrency, "ok": len(results), "failed": len(errors),
                       "wall_seconds": wall, "completion_tokens": tokens,
                       "throughput_tps": tokens / wall if wall > 0 else 0.0,
                       "decode_tps_p50": statistics.median(decode) if decode else None,
                       "ttft_p50": pct(ttfts, 0.5), "ttft_p90": pct(ttfts, 0.9),
                       "requests": results, "errors": errors}, f, indent=1)
    return 1 if errors or not results else 0


if __name__ == "__main__":
    sys.exit(main())
