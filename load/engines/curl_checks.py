#!/usr/bin/env python3
"""Check what HybridInference's guide and README curl commands printed (used by e2e.sh). Standard library only.

    curl_checks.py health FILE                   # router /health: status ok, every endpoint ready
    curl_checks.py models FILE --expect a,b      # OpenAI model list containing a and b
    curl_checks.py chat FILE [--model M]         # chat.completion: content and usage
    curl ... -N ... | curl_checks.py sse - [--model M] [--min-seconds S] [--since UNIXTIME]
                                                 # SSE chat stream, read as it arrives: content
                                                 # chunks, [DONE], and (for streams that last at
                                                 # least S seconds) the content spread over at least
                                                 # half of its time, i.e. not buffered on the way
    curl_checks.py error FILE --code C           # OpenAI-shaped error with this code

Prints one line of detail; exits 1 with the reason when the output is not what it should be.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


class Bad(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise Bad(msg)


def load_json(path):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw)
    except ValueError as e:
        raise Bad(f"not JSON ({e}): {raw[:200]!r}") from None


def check_health(args):
    doc = load_json(args.file)
    expect(doc.get("status") == "ok", f"status {doc.get('status')!r}")
    ep = doc.get("endpoints") or {}
    expect(ep.get("total", 0) > 0, f"no endpoints: {ep}")
    expect(ep.get("ready") == ep.get("total"), f"not every endpoint ready: {ep}")
    return f"status ok, {ep['ready']}/{ep['total']} endpoints ready, {doc.get('models')} models"


def check_models(args):
    doc = load_json(args.file)
    expect(doc.get("object") == "list" and isinstance(doc.get("data"), list), f"not a model list: {str(doc)[:200]}")
    ids = [m.get("id") for m in doc["data"]]
    want = [m for m in (args.expect or "").split(",") if m]
    missing = [m for m in want if m not in ids]
    expect(not missing, f"missing {missing}; listed {ids}")
    return f"{len(ids)} models: {', '.join(ids)}"


def check_chat(args):
    doc = load_json(args.file)
    expect("error" not in doc, f"error: {doc.get('error')}")
    expect(doc.get("object") == "chat.completion", f"object {doc.get('object')!r}")
    if args.model:
        expect(doc.get("model") == args.model, f"model {doc.get('model')!r}, expected {args.model!r}")
    choice = (doc.get("choices") or [{}])[0]
    content = (choice.get("message") or {}).get("content")
    expect(isinstance(content, str) and content.strip(), f"empty content (finish_reason {choice.get('finish_reason')})")
    usage = doc.get("usage") or {}
    expect(usage.get("prompt_tokens", 0) > 0 and usage.get("completion_tokens", 0) > 0, f"usage {usage}")
    return (f"{usage['prompt_tokens']}+{usage['completion_tokens']} tokens, finish {choice.get('finish_reason')}: "
            f"{content.strip()[:50]!r}")


def check_sse(args):
    src = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    t0 = args.since or time.time()  # when the request was sent; times are relative to it
    first_content = last_content = None
    events, contents, done, usage, model = 0, [], False, None, None
    for raw in src:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line or line.startswith(":"):
            continue
        expect(line.startswith("data:"), f"not an SSE data line: {line[:120]!r}")
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            continue
        expect(not done, "data after [DONE]")
        try:
            chunk = json.loads(data)
        except ValueError:
            raise Bad(f"event is not JSON: {data[:120]!r}") from None
        expect("error" not in chunk, f"error event: {chunk.get('error')}")
        events += 1
        model = chunk.get("model", model)
        for ch in chunk.get("choices") or []:
            text = (ch.get("delta") or {}).get("content")
            if text:
                now = time.time() - t0
                first_content = now if first_content is None else first_content
                last_content = now
                contents.append(text)
        usage = chunk.get("usage") or usage
    end = time.time() - t0
    expect(events > 0, "no events")
    expect(contents, f"no content in {events} events")
    expect(done, "no data: [DONE]")
    if args.model:
        expect(model == args.model, f"model {model!r}, expected {args.model!r}")
    spread = ""
    if args.min_seconds is not None and end >= args.min_seconds:
        # streamed, not buffered: the content arrives spread over most of the stream's time
        expect(last_content - first_content >= 0.5 * end,
               f"content from +{first_content:.2f}s to +{last_content:.2f}s of a {end:.2f}s stream: buffered?")
        spread = f", content arrived from +{first_content:.2f}s to +{last_content:.2f}s"
    return f"{events} events{spread}, [DONE]: {''.join(contents).strip()[:40]!r}"


def check_error(args):
    doc = load_json(args.file)
    err = doc.get("error")
    expect(isinstance(err, dict), f"not an OpenAI error: {str(doc)[:200]}")
    expect(all(k in err for k in ("message", "type", "param", "code")), f"error lacks keys: {err}")
    expect(err.get("code") == args.code, f"code {err.get('code')!r}, expected {args.code!r}")
    return f"{err['code']}: {err['message'][:60]}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["health", "models", "chat", "sse", "error"])
    p.add_argument("file", help="curl's output, or - for stdin")
    p.add_argument("--model", help="the public model id the answer must carry")
    p.add_argument("--expect", help="models: comma-separated ids that must be listed")
    p.add_argument("--code", help="error: expected error code")
    p.add_argument("--min-seconds", type=float, help="sse: check the spread when the stream lasts this long")
    p.add_argument("--since", type=float, help="sse: when the request was sent (Unix time; default: now)")
    args = p.parse_args(argv)
    try:
        print(globals()[f"check_{args.kind}"](args))
    except Bad as e:
        print(f"FAIL: {e}")
        return 1
    except OSError as e:
        print(f"FAIL: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
