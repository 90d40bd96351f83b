#!/usr/bin/env python3
"""End-to-end checks with the official `openai` SDK, against the switchyard router or,
in direct mode, against the engines themselves.

Through a router (one base URL serves every model):
    openai_checks.py --base-url http://127.0.0.1:8080/v1 --api-key sk-test-key \\
        --chat-model gemma-3-270m --embed-model gemma-3-270m-embed \\
        --tts-model tts-1 --stt-model whisper-1 --image-model mock-image --video-model mock-video

Directly against the engines started by start_engines.sh (per-modality base URLs and models
read from engines.json; the error checks go to the TTS server, since llama-server accepts any
model name and an empty message list):
    openai_checks.py --engines-json ~/.cache/switchyard-engines/run/engines.json

Per-modality base URLs may also be given one by one (--chat-base-url, --embed-base-url,
--tts-base-url, --stt-base-url, --image-base-url, --video-base-url); each falls back to
--base-url. A check whose model is not given prints SKIP. --only picks checks by name.

Prints one PASS/FAIL/SKIP line per check with its time, then "N passed, N failed, N skipped";
exits 1 when any check failed.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import sys
import tempfile
import time
import traceback
import wave

import openai

SENTENCE = "hello world, this is a test of the speech recognition system"
CONTENT_WORDS = ["hello", "world", "test", "speech", "recognition", "system"]
MODALITIES = ("chat", "embed", "tts", "stt", "image", "video")


class Skip(Exception):
    pass


class CheckFailed(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise CheckFailed(msg)


class Checks:
    def __init__(self, args):
        self.args = args
        self.clients = {}
        self.state = {}  # results shared between checks (e.g. the TTS audio for STT)
        self.tmp = tempfile.mkdtemp(prefix="openai-checks-")

    # ---------------------------------------------------------------- plumbing
    def base_url(self, modality):
        return getattr(self.args, f"{modality}_base_url") or self.args.base_url

    def model(self, modality):
        return getattr(self.args, f"{modality}_model")

    def client(self, modality, api_key=None):
        url = self.base_url(modality)
        if not url:
            raise Skip(f"no base URL for {modality} (give --base-url or --{modality}-base-url)")
        key = api_key or self.args.api_key or "sk-no-key-required"
        ck = (url, key)
        if ck not in self.clients:
            self.clients[ck] = openai.OpenAI(base_url=url, api_key=key, timeout=self.args.timeout,
                                             max_retries=0)
        return self.clients[ck]

    def need(self, modality):
        m = self.model(modality)
        if not m:
            raise Skip(f"no --{modality}-model given")
        return self.client(modality), m

    # ---------------------------------------------------------------- checks
    def check_models(self):
        """models.list() on each base URL lists the models expected there."""
        by_url = {}
        for mod in MODALITIES:
            m, url = self.model(mod), self.base_url(mod)
            if m and url:
                by_url.setdefault(url, []).append(m)
        if not by_url:
            raise Skip("no models given")
        notes = []
        for url, wanted in by_url.items():
            ids = [m.id for m in self.client_for_url(url).models.list()]
            missing = [m for m in wanted if m not in ids]
            expect(not missing, f"{url}: models.list() lacks {missing} (has {ids})")
            notes.append(f"{len(ids)} at {url}")
        return "; ".join(notes)

    def client_for_url(self, url):
        key = self.args.api_key or "sk-no-key-required"
        if (url, key) not in self.clients:
            self.clients[(url, key)] = openai.OpenAI(base_url=url, api_key=key,
                                                     timeout=self.args.timeout, max_retries=0)
        return self.clients[(url, key)]

    def check_chat(self):
        c, m = self.need("chat")
        r = c.chat.completions.create(
            model=m, max_tokens=24, temperature=0,
            messages=[{"role": "user", "content": "Write one sentence about the sea."}])
        content = r.choices[0].message.content
        expect(content and content.strip(), f"empty content (finish_reason={r.choices[0].finish_reason})")
        expect(r.usage is not None, "no usage")
        expect(r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0, f"usage {r.usage}")
        return f"{r.usage.prompt_tokens}+{r.usage.completion_tokens} tokens: {content.strip()[:60]!r}"

    def check_chat_stream(self):
        c, m = self.need("chat")
        t0 = time.monotonic()
        ttft = None
        chunks, text, usage = 0, [], None
        stream = c.chat.completions.create(
            model=m, max_tokens=24, temperature=0, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Count from one to ten."}])
        for ch in stream:
            chunks += 1
            if ch.choices and ch.choices[0].delta and ch.choices[0].delta.content:
                if ttft is None:
                    ttft = time.monotonic() - t0
                text.append(ch.choices[0].delta.content)
            if ch.usage is not None:
                usage = ch.usage
        expect(text, f"no content in {chunks} chunks")
        expect(usage is not None, "no usage chunk although stream_options.include_usage was set")
        expect(usage.completion_tokens > 0, f"usage {usage}")
        return (f"{chunks} chunks, TTFT {ttft:.2f}s, {usage.completion_tokens} completion tokens: "
                f"{''.join(text).strip()[:50]!r}")

    def need_completions(self):
        m = self.args.completions_model
        if not m:
            raise Skip("no --completions-model given")
        return self.client("chat"), m

    def check_completions(self):
        """The legacy completions API, relayed to a backend that serves it natively."""
        c, m = self.need_completions()
        r = c.completions.create(model=m, prompt="The sea is", max_tokens=16, temperature=0)
        expect(r.model == m, f"model {r.model!r}, expected {m!r}")
        text = r.choices[0].text
        expect(text and text.strip(), f"empty text (finish_reason={r.choices[0].finish_reason})")
        expect(r.usage is not None and r.usage.completion_tokens > 0, f"usage {r.usage}")
        return f"{r.usage.prompt_tokens}+{r.usage.completion_tokens} tokens: {text.strip()[:60]!r}"

    def check_completions_stream(self):
        c, m = self.need_completions()
        chunks, text, usage = 0, [], None
        stream = c.completions.create(model=m, prompt="One, two, three,", max_tokens=16, temperature=0,
                                      stream=True, stream_options={"include_usage": True})
        for ch in stream:
            chunks += 1
            if ch.choices and ch.choices[0].text:
                text.append(ch.choices[0].text)
            if ch.usage is not None:
                usage = ch.usage
        expect(text, f"no text in {chunks} chunks")
        expect(usage is not None and usage.completion_tokens > 0, f"usage {usage}")
        return f"{chunks} chunks, {usage.completion_tokens} completion tokens: {''.join(text).strip()[:50]!r}"

    def check_completions_bad_request(self):
        c, m = self.need_completions()
        try:
            c.completions.create(model=m, prompt=[], max_tokens=4)
        except openai.BadRequestError as e:
            return f"BadRequestError {e.status_code}: {_msg(e)}"
        raise CheckFailed("an empty prompt list did not raise BadRequestError")

    def check_completions_chat_only(self):
        """A model whose routes serve only chat: completions are not translated, the router
        says so with a 501 `unsupported_endpoint` the SDK raises as its own status error."""
        m = self.args.chat_only_model
        if not m:
            raise Skip("no --chat-only-model given")
        c = self.client("chat")
        r = c.chat.completions.create(model=m, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
        expect(r.choices[0].message.content is not None, "the chat-only model does not chat")
        try:
            c.completions.create(model=m, prompt="hi", max_tokens=4)
        except openai.APIStatusError as e:
            code = (e.body or {}).get("code") if isinstance(e.body, dict) else None
            expect(e.status_code == 501 and code == "unsupported_endpoint", f"{e.status_code} {code}: {_msg(e)}")
            return f"chat works; completions: {type(e).__name__} {e.status_code} {code}"
        raise CheckFailed("completions on a chat-only route did not raise")

    def check_embeddings(self):
        c, m = self.need("embed")
        r = c.embeddings.create(model=m, input=["hello world", "the sea is blue"])
        expect(len(r.data) == 2, f"{len(r.data)} embeddings for 2 inputs")
        dims = {len(d.embedding) for d in r.data}
        expect(len(dims) == 1 and min(dims) > 0, f"vector lengths {dims}")
        expect(any(abs(x) > 0 for x in r.data[0].embedding), "all-zero vector")
        return f"2 vectors of {dims.pop()} floats"

    def check_tts(self):
        c, m = self.need("tts")
        r = c.audio.speech.create(model=m, voice=self.args.voice, input=SENTENCE, response_format="wav")
        data = r.content
        expect(data[:4] == b"RIFF" and data[8:12] == b"WAVE", f"not a WAV file: {data[:16]!r}")
        with wave.open(io.BytesIO(data)) as w:
            seconds = w.getnframes() / w.getframerate()
        expect(0.5 < seconds < 30, f"implausible duration {seconds:.2f}s")
        path = f"{self.tmp}/speech.wav"
        with open(path, "wb") as f:
            f.write(data)
        self.state["wav"] = path
        return f"{len(data)} bytes, {seconds:.2f}s of audio -> {path}"

    def check_stt(self):
        c, m = self.need("stt")
        if "wav" not in self.state:
            if not self.model("tts"):
                raise Skip("needs audio from TTS: give --tts-model too")
            self.check_tts()  # e.g. with --only stt
        path = self.state["wav"]
        with open(path, "rb") as f:
            r = c.audio.transcriptions.create(model=m, file=("speech.wav", f, "audio/wav"))
        words = set(re.findall(r"[a-z']+", r.text.lower()))
        hits = [w for w in CONTENT_WORDS if w in words]
        expect(len(hits) >= 2, f"only {hits} of {CONTENT_WORDS} in {r.text!r}")
        with open(path, "rb") as f:
            v = c.audio.transcriptions.create(model=m, file=("speech.wav", f, "audio/wav"),
                                              response_format="verbose_json",
                                              timestamp_granularities=["segment"])
        expect(v.duration and v.duration > 0.5, f"verbose_json duration {v.duration}")
        expect(v.segments, "verbose_json without segments")
        return f"{len(hits)}/{len(CONTENT_WORDS)} words: {r.text!r}; {len(v.segments)} segment(s)"

    def check_image(self):
        c, m = self.need("image")
        r = c.images.generate(model=m, prompt="a red square", n=1, size="256x256",
                              response_format="b64_json")
        expect(r.data and r.data[0].b64_json, "no b64_json in the response")
        png = base64.b64decode(r.data[0].b64_json)
        expect(png[:8] == b"\x89PNG\r\n\x1a\n", f"not a PNG: {png[:8]!r}")
        return f"PNG of {len(png)} bytes"

    def check_video(self):
        c, m = self.need("video")
        job = c.post("/video/generations", cast_to=object,
                     body={"model": m, "prompt": "a red square turning", "seconds": 1})
        expect(isinstance(job, dict) and job.get("id"), f"no job id in {job!r}")
        jid = job["id"]
        deadline = time.monotonic() + self.args.video_timeout
        status = job.get("status")
        while status != "completed":
            expect(status not in ("failed", "cancelled", "canceled"), f"job {jid} {status}: {job!r}")
            expect(time.monotonic() < deadline, f"job {jid} still {status} after {self.args.video_timeout}s")
            time.sleep(0.5)
            job = c.get(f"/video/generations/{jid}", cast_to=object)
            status = job.get("status")
        content = c.get(f"/video/generations/{jid}/content", cast_to=bytes)
        expect(len(content) > 0, "empty video content")
        return f"job {jid} completed, {len(content)} bytes of video"

    def check_error_not_found(self):
        via = self.args.errors_via
        bogus = "switchyard-no-such-model"
        try:
            self._call_with_model(via, bogus)
        except openai.NotFoundError as e:
            return f"{via}: NotFoundError {e.status_code}: {_msg(e)}"
        raise CheckFailed(f"{via} with model {bogus!r} did not raise NotFoundError")

    def check_error_bad_request(self):
        via = self.args.errors_via
        c, m = self.need(via)
        try:
            if via == "chat":
                c.chat.completions.create(model=m, messages=[], max_tokens=4)
            elif via == "embed":
                c.embeddings.create(model=m, input=[])
            elif via == "tts":
                c.audio.speech.create(model=m, voice=self.args.voice, input="")
            elif via == "stt":
                c.audio.transcriptions.create(model=m, file=("empty.wav", b"", "audio/wav"))
        except openai.BadRequestError as e:
            return f"{via}: BadRequestError {e.status_code}: {_msg(e)}"
        raise CheckFailed(f"{via} with empty input did not raise BadRequestError")

    def check_error_auth(self):
        if not self.args.api_key:
            raise Skip("no --api-key given (the target is not expected to enforce keys)")
        via = self.args.errors_via
        m = self.model(via)
        if not m:
            raise Skip(f"no --{via}-model given")
        bad = self.client(via, api_key="sk-switchyard-wrong-key")
        try:
            self._call_with_model(via, m, client=bad)
        except openai.AuthenticationError as e:
            return f"{via}: AuthenticationError {e.status_code}: {_msg(e)}"
        raise CheckFailed(f"{via} with a wrong API key did not raise AuthenticationError")

    def _call_with_model(self, via, model, client=None):
        c = client or self.client(via)
        if via == "chat":
            c.chat.completions.create(model=model, max_tokens=4, messages=[{"role": "user", "content": "hi"}])
        elif via == "embed":
            c.embeddings.create(model=model, input="hi")
        elif via == "tts":
            c.audio.speech.create(model=model, voice=self.args.voice, input="hi", response_format="wav")
        elif via == "stt":
            c.audio.transcriptions.create(model=model, file=("a.wav", _silence_wav(), "audio/wav"))
        else:
            raise Skip(f"--errors-via {via} is not supported")


def _msg(e):
    body = e.body if isinstance(e.body, dict) else {}
    return str(body.get("message") or e.message)[:80]


def _silence_wav(seconds=0.5, rate=16000):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(seconds * rate))
    return buf.getvalue()


CHECKS = ["models", "chat", "chat_stream", "completions", "completions_stream",
          "completions_bad_request", "completions_chat_only", "embeddings", "tts", "stt", "image",
          "video", "error_not_found", "error_bad_request", "error_auth"]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1")
    p.add_argument("--api-key", help="API key; enables the AuthenticationError check")
    p.add_argument("--engines-json", help="direct mode: take base URLs and models from start_engines.sh's engines.json")
    for mod in MODALITIES:
        p.add_argument(f"--{mod}-base-url", help=f"base URL for {mod} (default --base-url)")
        p.add_argument(f"--{mod}-model", help=f"{mod} model; its checks SKIP without it")
    p.add_argument("--completions-model", help="model for completions.create (at the chat base URL); SKIP without it")
    p.add_argument("--chat-only-model", help="a model whose routes serve only chat (completions must be a 501)")
    p.add_argument("--voice", default="alloy", help="TTS voice (default alloy)")
    p.add_argument("--errors-via", choices=["chat", "embed", "tts", "stt"], default=None,
                   help="which endpoint the error checks use (default chat; tts with --engines-json)")
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(CHECKS)}")
    p.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, seconds")
    p.add_argument("--video-timeout", type=float, default=120.0, help="how long to poll a video job")
    p.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failures")
    args = p.parse_args(argv)
    if args.engines_json:
        with open(args.engines_json) as f:
            eng = json.load(f)["engines"]
        for mod, name in (("chat", "chat"), ("embed", "embeddings"), ("tts", "tts"), ("stt", "stt")):
            if name in eng:
                if not getattr(args, f"{mod}_base_url"):
                    setattr(args, f"{mod}_base_url", eng[name]["base_url"])
                if not getattr(args, f"{mod}_model"):
                    setattr(args, f"{mod}_model", eng[name]["model"])
        if args.errors_via is None:
            args.errors_via = "tts"
    if args.errors_via is None:
        args.errors_via = "chat"
    if args.only:
        unknown = set(args.only.split(",")) - set(CHECKS)
        if unknown:
            p.error(f"unknown checks: {', '.join(sorted(unknown))}")
    return args


def main(argv=None):
    args = parse_args(argv)
    checks = Checks(args)
    selected = args.only.split(",") if args.only else CHECKS
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    print(f"openai SDK {openai.__version__}; errors via {args.errors_via}", flush=True)
    for name in CHECKS:
        if name not in selected:
            continue
        t0 = time.monotonic()
        try:
            detail = getattr(checks, f"check_{name}")()
            verdict = "PASS"
        except Skip as e:
            verdict, detail = "SKIP", str(e)
        except CheckFailed as e:
            verdict, detail = "FAIL", str(e)
        except Exception as e:  # noqa: BLE001 - an SDK/transport error is a failed check
            verdict, detail = "FAIL", f"{type(e).__name__}: {e}"
            if args.verbose:
                traceback.print_exc()
        counts[verdict] += 1
        print(f"{verdict} {name:<18} {time.monotonic() - t0:6.2f}s  {detail}", flush=True)
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped", flush=True)
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
