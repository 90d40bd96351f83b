#!/usr/bin/env python3
"""End-to-end checks of switchyard's Anthropic Messages API with the official `anthropic` SDK.

    anthropic_checks.py --base-url http://127.0.0.1:8080 --api-key sk-test-key \\
        --model gemma-3-270m --translated-model gemma-3-270m-chat-only

`--base-url` is the router's root (the SDK adds `/v1/messages`); the key goes out as the SDK
sends it, in `x-api-key`. Each model given gets every check: `--model` is meant to be a route
that serves Messages natively (llama.cpp, vLLM), `--translated-model` one whose kind serves only
chat, so the router translates. `--tool-choice-name` is the tool the tool checks force.

Checks per model: messages.create (text), messages.create (a forced tool call: a `tool_use`
block whose input is an object), messages.stream (text, the final message built from the
events), messages.stream (a tool call, its arguments streamed as input_json_delta),
messages.count_tokens; once: a 4xx raised as the SDK's own exception classes (unknown model →
NotFoundError, wrong key → AuthenticationError, max_tokens 0 → BadRequestError).

Prints one PASS/FAIL/SKIP line per check with its time, then "N passed, N failed, N skipped";
exits 1 when any check failed. Needs `pip install anthropic` (any 0.40+ or 1.x/2.x release).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

import anthropic

TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
PROMPT = [{"role": "user", "content": "Say hello in five words."}]
TOOL_PROMPT = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]


class CheckFailed(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def text_of(message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def check_create_text(client, model, args):
    m = client.messages.create(model=model, max_tokens=args.max_tokens, system="Be brief.", messages=PROMPT)
    expect(m.type == "message" and m.role == "assistant", f"not a message: {m}")
    expect(m.model == model, f"model {m.model!r} is not the public id {model!r}")
    expect(text_of(m).strip(), f"no text: {m.content}")
    expect(m.stop_reason in ("end_turn", "max_tokens", "stop_sequence"), f"stop_reason {m.stop_reason}")
    expect(m.usage.input_tokens > 0 and m.usage.output_tokens > 0, f"usage {m.usage}")
    return f"{m.usage.output_tokens} tokens, {m.stop_reason}"


def tool_args(args):
    return dict(tools=[TOOL], tool_choice={"type": "tool", "name": TOOL["name"]})


def check_create_tool(client, model, args):
    m = client.messages.create(model=model, max_tokens=args.max_tokens, messages=TOOL_PROMPT, **tool_args(args))
    calls = [b for b in m.content if b.type == "tool_use"]
    expect(calls, f"no tool_use block: {m.content}")
    expect(calls[0].name == TOOL["name"], f"tool {calls[0].name}")
    expect(isinstance(calls[0].input, dict), f"input {calls[0].input!r} is not an object")
    expect(m.stop_reason == "tool_use", f"stop_reason {m.stop_reason}")
    return f"{calls[0].name}({calls[0].input})"


def check_stream_text(client, model, args):
    names = []
    with client.messages.stream(model=model, max_tokens=args.max_tokens, messages=PROMPT) as stream:
        for event in stream:
            names.append(event.type)
        final = stream.get_final_message()
    expect(names and names[0] == "message_start", f"first event {names[:1]}")
    expect("content_block_delta" in names or "text" in names, f"no deltas: {names}")
    expect(names[-1] == "message_stop", f"last event {names[-1:]}")
    expect(text_of(final).strip(), f"no text in the final message: {final.content}")
    expect(final.usage.output_tokens > 0, f"usage {final.usage}")
    return f"{len(names)} events"


def check_stream_tool(client, model, args):
    pieces = 0
    with client.messages.stream(model=model, max_tokens=args.max_tokens, messages=TOOL_PROMPT, **tool_args(args)) as stream:
        for event in stream:
            if event.type == "input_json":
                pieces += 1
        final = stream.get_final_message()
    calls = [b for b in final.content if b.type == "tool_use"]
    expect(calls and isinstance(calls[0].input, dict), f"no tool call with an object input: {final.content}")
    expect(final.stop_reason == "tool_use", f"stop_reason {final.stop_reason}")
    return f"{pieces} argument pieces, input {calls[0].input}"


def check_count_tokens(client, model, args):
    counted = client.messages.count_tokens(model=model, messages=PROMPT)
    expect(counted.input_tokens > 0, f"input_tokens {counted.input_tokens}")
    return f"{counted.input_tokens} tokens"


def check_errors(client, model, args):
    wrong_key = anthropic.Anthropic(base_url=args.base_url, api_key="sk-wrong-key", max_retries=0)
    cases = [
        ("unknown model", anthropic.NotFoundError, lambda: client.messages.create(model="no-such-model", max_tokens=8, messages=PROMPT)),
        ("max_tokens 0", anthropic.BadRequestError, lambda: client.messages.create(model=model, max_tokens=0, messages=PROMPT)),
    ]
    if args.api_key:
        cases.append(("wrong key", anthropic.AuthenticationError, lambda: wrong_key.messages.create(model=model, max_tokens=8, messages=PROMPT)))
    seen = []
    for what, cls, call in cases:
        try:
            call()
        except cls as e:
            body = e.body if isinstance(e.body, dict) else {}
            expect(body.get("type") == "error", f"{what}: body {e.body!r} is not Anthropic's error shape")
            seen.append(f"{what}→{cls.__name__}")
            continue
        except anthropic.APIStatusError as e:
            raise CheckFailed(f"{what}: {type(e).__name__} ({e.status_code}) instead of {cls.__name__}")
        raise CheckFailed(f"{what}: no error raised")
    return ", ".join(seen)


PER_MODEL = [
    ("create_text", check_create_text),
    ("create_tool", check_create_tool),
    ("stream_text", check_stream_text),
    ("stream_tool", check_stream_tool),
    ("count_tokens", check_count_tokens),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", required=True, help="the router's root, e.g. http://127.0.0.1:8080")
    p.add_argument("--api-key", default="", help="a client key (sent as x-api-key)")
    p.add_argument("--model", help="a model whose route serves Messages natively")
    p.add_argument("--translated-model", help="a model whose route serves only chat")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--only", help="comma-separated check names")
    p.add_argument("--no-tools", metavar="WHY", help="skip the tool-call checks, saying why (a model that cannot call tools)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    client = anthropic.Anthropic(base_url=args.base_url, api_key=args.api_key or "unused", max_retries=0, timeout=args.timeout)
    only = set(args.only.split(",")) if args.only else None
    results = {"PASS": 0, "FAIL": 0, "SKIP": 0}

    def run(name, fn, model):
        if only and name.split(":")[0] not in only:
            return
        why = "no model given" if not model else None
        if args.no_tools and "_tool" in name:
            why = f"--no-tools: {args.no_tools}"
        if why:
            print(f"SKIP {name} 0.00s {why}", flush=True)
            results["SKIP"] += 1
            return
        t = time.monotonic()
        try:
            detail = fn(client, model, args)
            verdict = "PASS"
        except Exception as e:  # every failure is reported, the run goes on
            verdict, detail = "FAIL", f"{type(e).__name__}: {e}"
            if args.verbose:
                traceback.print_exc()
        results[verdict] += 1
        print(f"{verdict} {name} {time.monotonic() - t:.2f}s {detail}", flush=True)

    for label, model in (("native", args.model), ("translated", args.translated_model)):
        for name, fn in PER_MODEL:
            run(f"{name}:{label}", fn, model)
    run("errors", check_errors, args.model or args.translated_model)
    print(f"{results['PASS']} passed, {results['FAIL']} failed, {results['SKIP']} skipped")
    return 1 if results["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
