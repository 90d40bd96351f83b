#!/usr/bin/env python3
"""OpenAI's Responses API through the switchyard router, with the official `openai` SDK:
`responses.create` and `responses.stream` (text and a function call), a function call's
result sent back, `previous_response_id` on a natively served model, and 4xx answers raised
as the SDK's own exception classes.

    responses_checks.py --base-url http://127.0.0.1:8080/v1 --api-key sk-test \\
        --native-model gemma-native --translated-model gemma-chat-only

`--native-model` is a model whose route serves /v1/responses itself (vLLM, llama.cpp);
`--translated-model` one whose route serves only chat (the router translates). Either may be
left out (its checks print SKIP). Prints one PASS/FAIL/SKIP line per check, then
"N passed, N failed, N skipped"; exits 1 when any check failed.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

import openai

# The same outcome vocabulary as the other SDK checks (this folder is on sys.path when run).
from openai_checks import CheckFailed, Skip, expect

TOOLS = [
    {
        "type": "function",
        "name": "lookup",
        "description": "Look a word up in the dictionary.",
        "parameters": {
            "type": "object",
            "properties": {"word": {"type": "string"}},
            "required": ["word"],
        },
    }
]


def function_calls(response):
    return [item for item in response.output if item.type == "function_call"]


def check_create(client, model):
    r = client.responses.create(model=model, instructions="Be brief.", input="Say hello.", max_output_tokens=32)
    expect(r.object == "response", f"object {r.object!r}")
    expect(r.id.startswith("resp"), f"id {r.id!r}")
    expect(r.output_text.strip() != "", "no output text")
    expect(r.usage is not None and r.usage.output_tokens > 0, f"usage {r.usage}")
    return f"{len(r.output_text)} chars, {r.usage.total_tokens} tokens"


def check_stream(client, model):
    deltas = []
    kinds = []
    with client.responses.stream(model=model, input="Count to three.", max_output_tokens=32) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        # The SDK's final response exists only after `response.completed`; a reply cut by
        # max_output_tokens ends with `response.incomplete` (as OpenAI's API does), whose
        # event carries the response.
        final = stream.get_final_response() if "response.completed" in kinds else event.response
    expect(kinds[:1] == ["response.created"], f"first event {kinds[:1]}")
    expect("response.completed" in kinds or "response.incomplete" in kinds, f"no end event in {kinds}")
    expect(deltas, "no text deltas")
    expect(final.output_text == "".join(deltas), "deltas do not add up to the final text")
    return f"{len(kinds)} events"


def check_tool_round_trip(client, model, stream):
    ask = [{"role": "user", "content": "Use the lookup tool on the word 'hello'."}]
    if stream:
        with client.responses.stream(model=model, input=ask, tools=TOOLS, tool_choice="required") as s:
            for _ in s:
                pass
            first = s.get_final_response()
    else:
        first = client.responses.create(model=model, input=ask, tools=TOOLS, tool_choice="required")
    calls = function_calls(first)
    expect(calls, f"no function_call in {[i.type for i in first.output]}")
    call = calls[0]
    expect(call.name == "lookup", f"called {call.name!r}")
    follow = ask + [
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "a greeting"},
    ]
    second = client.responses.create(model=model, input=follow, tools=TOOLS)
    expect(second.output_text.strip() != "" or function_calls(second), "nothing after the tool result")
    return f"call {call.arguments}"


def check_previous_response(client, model):
    first = client.responses.create(model=model, input="Remember the number 7.", max_output_tokens=16)
    second = client.responses.create(
        model=model, input="Which number?", previous_response_id=first.id, max_output_tokens=16
    )
    expect(second.previous_response_id == first.id, f"previous_response_id {second.previous_response_id!r}")
    return "follow-up answered"


def check_translated_previous_response_is_400(client, model):
    try:
        client.responses.create(model=model, input="x", previous_response_id="resp_123")
    except openai.BadRequestError as e:
        expect(e.status_code == 400, f"status {e.status_code}")
        expect("previous_response_id" in str(e), f"message {e}")
        return "BadRequestError"
    raise CheckFailed("no error raised")


def check_unknown_previous_response_is_400(client, model):
    try:
        client.responses.create(model=model, input="x", previous_response_id="resp_does_not_exist")
    except openai.BadRequestError as e:
        return f"BadRequestError {e.code}"
    raise CheckFailed("no error raised")


def check_unknown_model_is_404(client, _model):
    try:
        client.responses.create(model="no-such-model-here", input="x")
    except openai.NotFoundError as e:
        return f"NotFoundError {e.code}"
    raise CheckFailed("no error raised")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", default="none")
    parser.add_argument("--native-model")
    parser.add_argument("--translated-model")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--no-tools", metavar="WHY", help="skip the function-call checks, saying why (a model that cannot call tools)")
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, timeout=args.timeout, max_retries=0)

    checks = []
    for label, model in (("native", args.native_model), ("translated", args.translated_model)):
        checks += [
            (f"{label}: responses.create", check_create, model),
            (f"{label}: responses.stream", check_stream, model),
            (f"{label}: function call round trip", lambda c, m: check_tool_round_trip(c, m, False), model),
            (f"{label}: function call round trip (stream)", lambda c, m: check_tool_round_trip(c, m, True), model),
        ]
    checks += [
        ("native: previous_response_id", check_previous_response, args.native_model),
        ("native: unknown previous_response_id is BadRequestError", check_unknown_previous_response_is_400, args.native_model),
        ("translated: previous_response_id is BadRequestError", check_translated_previous_response_is_400, args.translated_model),
        ("unknown model is NotFoundError", check_unknown_model_is_404, args.native_model or args.translated_model),
    ]
    passed = failed = skipped = 0
    for name, check, model in checks:
        started = time.monotonic()
        try:
            if not model:
                raise Skip("no model given")
            if args.no_tools and "function call" in name:
                raise Skip(f"--no-tools: {args.no_tools}")
            detail = check(client, model)
            passed += 1
            print(f"PASS {name.replace(' ', '_')} {time.monotonic() - started:.2f}s {detail}")
        except Skip as e:
            skipped += 1
            print(f"SKIP {name.replace(' ', '_')} 0.00s {e}")
        except CheckFailed as e:
            failed += 1
            print(f"FAIL {name.replace(' ', '_')} {time.monotonic() - started:.2f}s {e}")
        except Exception as e:  # an SDK error is a failure of the check, reported in full
            failed += 1
            print(f"FAIL {name.replace(' ', '_')} {time.monotonic() - started:.2f}s {type(e).__name__}: {e}")
            traceback.print_exc(file=sys.stderr)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
