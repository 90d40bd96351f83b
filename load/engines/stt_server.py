#!/usr/bin/env python3
"""OpenAI-compatible speech-to-text server over PocketSphinx (switchyard engine kind `whisper`).

    $VENV/bin/python stt_server.py --host 127.0.0.1 --port 0     # needs `pip install pocketsphinx`

Endpoints
  GET  /health                   -> {"status": "ok"}  (answers once the decoder is loaded)
  GET  /v1/models, /v1/models/{id}
  POST /v1/audio/transcriptions  multipart/form-data as OpenAI's SDK sends it:
                                 file (required), model (required), language, prompt,
                                 response_format (json|text|srt|verbose_json|vtt, default json),
                                 temperature (0-1), timestamp_granularities[] (word|segment)
  POST /v1/audio/translations    same form (no language); the model is English-only, so this
                                 is a transcription labelled task "translate"

Pipeline: the multipart body is parsed as it streams in (formdata.py); the file part is
spooled to a temporary file (over --max-file-bytes, default 25 MiB -> 413); the audio is
converted to 16 kHz mono 16-bit PCM by ffmpeg (any format it reads), else sox, else -- WAV
input only -- the wave module; PocketSphinx's voice-activity endpointer splits it into speech
regions, each decoded by the PocketSphinx en-us model; the regions become the segments, the
decoder's word alignment the words.

English only: `language` other than en/english -> 400. `prompt` and `temperature` are
accepted and validated but do not change decoding. Models: --model (repeatable; default
pocketsphinx-en-us, whisper-1, gpt-4o-transcribe, gpt-4o-mini-transcribe); unknown -> 404
unless --any-model.
"""

from __future__ import annotations

import array
import json
import math
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import time
import wave
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import formdata  # noqa: E402
from engine_http import ApiError, BodyTooLarge, JsonHandler, base_arg_parser, request_body_reader, serve  # noqa: E402

DEFAULT_MODELS = ["pocketsphinx-en-us", "whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"]
RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
RATE = 16000
BYTES_PER_SECOND = RATE * 2
FRAMES_PER_SECOND = 100  # PocketSphinx frame rate (-frate)
FORM_OVERHEAD = 1 << 20  # room for the other form fields and the multipart framing
DRAIN_LIMIT = 128 << 20  # read and drop at most this much of an oversize body before a 413


# ---------------------------------------------------------------- audio conversion

class Converter:
    def __init__(self, ffmpeg, sox, max_seconds):
        self.ffmpeg = ffmpeg
        self.sox = sox
        self.max_seconds = max_seconds
        self.soxr = False
        if ffmpeg:
            try:
                out = subprocess.run([ffmpeg, "-hide_banner", "-h", "filter=aresample"],
                                     capture_output=True, text=True, timeout=20).stdout
                self.soxr = "soxr" in out
            except (OSError, subprocess.SubprocessError):
                pass

    def to_pcm16k(self, src, dst):
        """Convert the audio file src to raw s16le 16 kHz mono in dst. Returns seconds.
        Raises ApiError(400) when the audio cannot be read."""
        limit = str(self.max_seconds + 1)
        if self.ffmpeg:
            # soxr resampling: noticeably better recognition than swr's default here
            af = ["-af", "aresample=resampler=soxr"] if self.soxr else []
            cmd = [self.ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", src, "-vn",
                   "-t", limit, "-ac", "1", "-ar", str(RATE)] + af + ["-f", "s16le", "-y", dst]
            self._run(cmd, "ffmpeg")
        elif self.sox:
            cmd = [self.sox, "-q", "-D", src, "-t", "raw", "-e", "signed-integer", "-b", "16", "-L",
                   "-c", "1", "-r", str(RATE), dst, "trim", "0", limit]
            self._run(cmd, "sox")
        else:
            wav_to_pcm16k(src, dst, self.max_seconds + 1)
        seconds = os.path.getsize(dst) / BYTES_PER_SECOND
        if seconds > self.max_seconds:
            raise ApiError(400, f"audio is longer than the limit of {self.max_seconds} seconds",
                           param="file", code="audio_too_long")
        return seconds

    @staticmethod
    def _run(cmd, tool):
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=600)
        except subprocess.TimeoutExpired:
            raise ApiError(400, f"{tool} took too long to read the audio file", param="file",
                           code="invalid_audio")
        if p.returncode != 0:
            msg = p.stderr.decode(errors="replace").strip().splitlines()
            raise ApiError(400, f"could not read the audio file ({tool}: {msg[-1] if msg else 'failed'})",
                           param="file", code="invalid_audio")


def wav_to_pcm16k(src, dst, max_seconds):
    """Pure-stdlib fallback: PCM WAV (8/16/24/32-bit, any rate/channels) -> s16le 16 kHz mono."""
    try:
        w = wave.open(src, "rb")
    except (wave.Error, EOFError, OSError) as exc:
        raise ApiError(400, f"could not read the audio file: not a PCM WAV file and neither ffmpeg "
                       f"nor sox is installed ({exc})", param="file", code="invalid_audio")
    with w:
        ch, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        if width not in (1, 2, 3, 4) or rate <= 0:
            raise ApiError(400, "unsupported WAV sample format", param="file", code="invalid_audio")
        step = rate / RATE  # input frames per output sample
        pos = 0.0           # next output sample position, in input frames
        base = 0            # input frame index of mono[0]
        prev = []           # carry-over mono samples
        with open(dst, "wb") as out:
            while True:
                raw = w.readframes(RATE)
                if not raw:
                    break
                mono = prev + _mono(raw, ch, width)
                res = array.array("h")
                while pos + 1 < base + len(mono):
                    i = int(pos) - base
                    frac = pos - int(pos)
                    v = mono[i] + (mono[i + 1] - mono[i]) * frac
                    res.append(max(-32768, min(32767, int(round(v)))))
                    pos += step
                if sys.byteorder == "big":
                    res.byteswap()
                out.write(res.tobytes())
                keep = max(0, int(pos) - base)
                prev, base = mono[keep:], base + keep
                if base / rate > max_seconds:
                    break


def _mono(raw, ch, width):
    n = len(raw) // width
    if width == 1:
        vals = [(b - 128) << 8 for b in raw[:n]]
    elif width == 2:
        a = array.array("h", raw[:n * 2])
        if sys.byteorder == "big":
            a.byteswap()
        vals = a.tolist()
    else:
        vals = [int.from_bytes(raw[i:i + width], "little", signed=True) >> (8 * width - 16)
                for i in range(0, n * width, width)]
    if ch == 1:
        return vals
    return [sum(vals[i:i + ch]) / ch for i in range(0, len(vals) - ch + 1, ch)]


# ---------------------------------------------------------------- recognition

_FILLER = re.compile(r"^(<.*>|\[.*\]|\+\+.*\+\+)$")
_ALT = re.compile(r"\(\d+\)$")


class Recognizer:
    """A pool of PocketSphinx decoders (a decoder is not thread-safe)."""

    def __init__(self, count, decoder_args):
        import pocketsphinx  # imported here so --help works without it
        from pocketsphinx import Decoder, Endpointer

        pocketsphinx.set_loglevel(os.environ.get("POCKETSPHINX_LOGLEVEL", "ERROR"))
        self._Endpointer = Endpointer
        self.pool = queue.Queue()
        for _ in range(count):
            self.pool.put(Decoder(samprate=RATE, **decoder_args))
        # Cepstral mean normalisation adapts as audio is decoded; start every request from the
        # model's initial estimate so a result does not depend on earlier requests.
        self.initial_cmn = self.pool.queue[0].get_cmn()

    def regions(self, pcm_path):
        """Speech regions (start_s, end_s, pcm) from PocketSphinx's endpointer."""
        ep = self._Endpointer(sample_rate=RATE)
        fb = ep.frame_bytes
        speech = []
        with open(pcm_path, "rb") as f:
            frame = f.read(fb)
            while frame:
                nxt = f.read(fb)
                last = not nxt or len(frame) < fb
                out = ep.end_stream(frame) if last else ep.process(frame)
                if out is not None:
                    speech.append(out)
                if speech and not ep.in_speech:
                    yield ep.speech_start, ep.speech_end, b"".join(speech)
                    speech = []
                frame = nxt if not last else b""
        if speech:
            yield ep.speech_start, ep.speech_end, b"".join(speech)

    def transcribe(self, pcm_path):
        """-> list of segments {start, end, text, words: [{word, start, end, prob}]}"""
        segments = []
        dec = self.pool.get()
        try:
            dec.set_cmn(self.initial_cmn)
            for start, end, pcm in self.regions(pcm_path):
                dec.start_utt()
                dec.process_raw(pcm, full_utt=True)
                dec.end_utt()
                words = []
                for s in dec.seg():
                    w = s.word
                    if _FILLER.match(w):
                        continue
                    words.append({
                        "word": _ALT.sub("", w),
                        "start": round(start + s.start_frame / FRAMES_PER_SECOND, 3),
                        "end": round(start + (s.end_frame + 1) / FRAMES_PER_SECOND, 3),
                        "prob": s.prob,
                    })
                if words:
                    segments.append({"start": round(start, 3), "end": round(end, 3),
                                     "text": " ".join(w["word"] for w in words), "words": words})
        finally:
            self.pool.put(dec)
        return segments


# ---------------------------------------------------------------- responses

def _ts(seconds, sep):
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def render(fmt, task, duration, segments, granularities):
    """-> (content_type, body bytes)"""
    text = " ".join(s["text"] for s in segments)
    usage = {"type": "duration", "seconds": int(math.ceil(duration))}
    if fmt == "json":
        return "application/json", json.dumps({"text": text, "usage": usage}).encode()
    if fmt == "text":
        return "text/plain; charset=utf-8", (text + "\n").encode()
    if fmt == "srt":
        cues = [f"{i}\n{_ts(s['start'], ',')} --> {_ts(s['end'], ',')}\n{s['text']}\n"
                for i, s in enumerate(segments, 1)]
        return "text/plain; charset=utf-8", "\n".join(cues).encode()
    if fmt == "vtt":
        cues = [f"{_ts(s['start'], '.')} --> {_ts(s['end'], '.')}\n{s['text']}\n" for s in segments]
        return "text/vtt; charset=utf-8", ("WEBVTT\n\n" + "\n".join(cues)).encode()
    # verbose_json
    body = {"task": task, "language": "english", "duration": round(duration, 3), "text": text}
    if "segment" in granularities:
        body["segments"] = [segment_obj(i, s) for i, s in enumerate(segments)]
    if "word" in granularities:
        body["words"] = [{"word": w["word"], "start": w["start"], "end": w["end"]}
                         for s in segments for w in s["words"]]
    body["usage"] = usage
    return "application/json", json.dumps(body).encode()


def segment_obj(i, s):
    logprobs = [math.log(max(w["prob"], 1e-10)) for w in s["words"]]
    raw = s["text"].encode()
    return {
        "id": i,
        "seek": int(s["start"] * 100),
        "start": s["start"],
        "end": s["end"],
        "text": s["text"],
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": round(sum(logprobs) / len(logprobs), 4) if logprobs else 0.0,
        "compression_ratio": round(len(raw) / len(zlib.compress(raw)), 4) if raw else 0.0,
        "no_speech_prob": 0.0,
    }


def validate_form(form, task, models, any_model):
    """-> (fmt, granularities) or raise ApiError."""
    if "file" not in form.files:
        raise ApiError(400, "'file' is required: send the audio as the multipart field 'file'",
                       param="file", code="missing_required_parameter")
    if form.files["file"].size == 0:
        raise ApiError(400, "the uploaded file is empty", param="file", code="invalid_value")
    model = form.get("model")
    if not model:
        raise ApiError(400, "'model' is required", param="model", code="missing_required_parameter")
    if not any_model and model not in models:
        raise ApiError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")
    fmt = form.get("response_format") or "json"
    if fmt not in RESPONSE_FORMATS:
        raise ApiError(400, f"'response_format' must be one of {', '.join(RESPONSE_FORMATS)}",
                       param="response_format", code="invalid_value")
    lang = (form.get("language") or "").strip().lower()
    if task == "transcribe" and lang and lang not in ("en", "english") and not lang.startswith("en-"):
        raise ApiError(400, f"language '{lang}' is not supported: this engine recognizes English (en) only",
                       param="language", code="unsupported_language")
    temp = form.get("temperature")
    if temp not in (None, ""):
        try:
            t = float(temp)
        except ValueError:
            t = -1
        if not 0 <= t <= 1:
            raise ApiError(400, "'temperature' must be a number between 0 and 1", param="temperature",
                           code="invalid_value")
    if (form.get("stream") or "").lower() == "true":
        raise ApiError(400, "streamed transcription is not supported by this engine", param="stream",
                       code="unsupported_value")
    gran = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    for g in gran:
        if g not in ("word", "segment"):
            raise ApiError(400, "'timestamp_granularities[]' values must be 'word' or 'segment'",
                           param="timestamp_granularities", code="invalid_value")
    if gran and fmt != "verbose_json":
        raise ApiError(400, "timestamp_granularities requires response_format 'verbose_json'",
                       param="timestamp_granularities", code="invalid_value")
    return fmt, set(gran) or {"segment"}


# ---------------------------------------------------------------- HTTP

def make_handler(recognizer, converter, models, any_model, max_file_bytes, tmp_root, quiet,
                 api_key=None):
    body_limit = max_file_bytes + FORM_OVERHEAD

    class Handler(JsonHandler):
        pass

    Handler.quiet = quiet
    Handler.api_key = api_key

    def too_large(self):
        return ApiError(413, f"the request is larger than the {max_file_bytes // (1 << 20)} MiB "
                        "limit for audio files", param="file", code="request_too_large")

    def handle_expect_100(self):
        try:
            if int(self.headers.get("Content-Length", "0")) > body_limit:
                self.send_api_error(too_large(self), close=True)
                return False
        except ValueError:
            pass
        return super(Handler, self).handle_expect_100()

    def do_GET(self):
        if not self.authorized():
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/health":
            return self.send_json(200, {"status": "ok"})
        if path == "/v1/models":
            return self.send_json(200, {"object": "list", "data": [model_obj(m) for m in models]})
        if path.startswith("/v1/models/"):
            mid = path[len("/v1/models/"):]
            if mid in models:
                return self.send_json(200, model_obj(mid))
            return self.send_api_error(ApiError(404, f"The model '{mid}' does not exist",
                                                param="model", code="model_not_found"))
        self.send_api_error(ApiError(404, f"no route for GET {path}", code="not_found"))

    def drain(self, reader):
        """Read and drop the rest of an oversize body (bounded) so the client sees the 413."""
        try:
            n = 0
            while n < DRAIN_LIMIT:
                b = reader.read(1 << 16)
                if not b:
                    return
                n += len(b)
        except Exception:  # noqa: BLE001 - best effort
            pass

    def do_POST(self):
        if not self.authorized():
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        tasks = {"/v1/audio/transcriptions": "transcribe", "/v1/audio/translations": "translate"}
        if path not in tasks:
            return self.send_api_error(ApiError(404, f"no route for POST {path}", code="not_found"),
                                       close=True)
        task = tasks[path]
        tmp = tempfile.mkdtemp(prefix="stt-", dir=tmp_root)
        reader = None
        try:
            boundary = formdata.boundary_from_content_type(self.headers.get("Content-Type", ""))
            if boundary is None:
                raise ApiError(400, "expected Content-Type: multipart/form-data with a boundary",
                               code="invalid_content_type")
            try:
                reader = request_body_reader(self, body_limit)
            except ApiError as err:
                if err.status == 413:  # Content-Length says too much: drop it unread (bounded)
                    reader = request_body_reader(self, None)
                    drain(self, reader)
                    raise too_large(self)
                raise
            t0 = time.monotonic()
            try:
                form = formdata.parse(reader, boundary, tmp, max_file_bytes)
            except (formdata.FileTooLarge, BodyTooLarge):
                reader.limit = None  # read and drop the rest (drain is bounded by itself)
                drain(self, reader)
                raise too_large(self)
            except formdata.FormDataError as exc:
                raise ApiError(400, f"malformed multipart body: {exc}", code="invalid_body")
            fmt, gran = validate_form(form, task, models, any_model)
            upload = form.files["file"]
            # keep the extension: sox needs it to know the format
            ext = re.sub(r"[^A-Za-z0-9]", "", os.path.splitext(upload.filename)[1])[:8]
            src = upload.path + ("." + ext if ext else "")
            os.rename(upload.path, src)
            pcm = os.path.join(tmp, "audio.s16le")
            t1 = time.monotonic()
            duration = converter.to_pcm16k(src, pcm)
            t2 = time.monotonic()
            segments = recognizer.transcribe(pcm)
            t3 = time.monotonic()
            ctype, body = render(fmt, task, duration, segments, gran)
            self.log_message("%s %.2fs audio: upload %.2fs convert %.2fs decode %.2fs", task, duration,
                             t1 - t0, t2 - t1, t3 - t2)
            self.send_bytes(200, body, ctype)
        except ApiError as err:
            self.send_api_error(err, close=err.status == 413 or reader is None or not reader.done)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    Handler.handle_expect_100 = handle_expect_100
    Handler.do_GET = do_GET
    Handler.do_HEAD = do_GET
    Handler.do_POST = do_POST
    return Handler


def model_obj(mid):
    return {"id": mid, "object": "model", "created": 0, "owned_by": "pocketsphinx"}


def main(argv=None):
    p = base_arg_parser("OpenAI-compatible speech-to-text over PocketSphinx")
    p.add_argument("--model", action="append", dest="models",
                   help=f"model name to accept and list (repeatable; default {', '.join(DEFAULT_MODELS)})")
    p.add_argument("--any-model", action="store_true", help="accept any model name")
    p.add_argument("--ffmpeg", default=shutil.which("ffmpeg"),
                   help="ffmpeg binary, or 'none' (default: from PATH)")
    p.add_argument("--sox", default=shutil.which("sox"), help="sox binary, or 'none' (default: from PATH)")
    p.add_argument("--decoders", type=int, default=1,
                   help="PocketSphinx decoders = requests decoded at once (default 1, ~2 s to load each)")
    p.add_argument("--max-file-bytes", type=int, default=25 << 20, help="upload limit (default 25 MiB)")
    p.add_argument("--max-seconds", type=int, default=3600, help="longest audio accepted (default 3600)")
    p.add_argument("--tmp-dir", default=None, help="where uploads are spooled (default: system temp)")
    p.add_argument("--ps-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra PocketSphinx decoder option, e.g. --ps-arg beam=1e-60 (repeatable)")
    args = p.parse_args(argv)
    none = lambda v: None if (not v or v.lower() == "none") else v  # noqa: E731
    decoder_args = {}
    for kv in args.ps_arg:
        k, _, v = kv.partition("=")
        decoder_args[k] = v
    t = time.monotonic()
    recognizer = Recognizer(max(1, args.decoders), decoder_args)
    converter = Converter(none(args.ffmpeg), none(args.sox), args.max_seconds)
    models = args.models or DEFAULT_MODELS
    sys.stderr.write(f"stt: {args.decoders} decoder(s) loaded in {time.monotonic() - t:.1f}s; "
                     f"ffmpeg={converter.ffmpeg} (soxr={converter.soxr}) sox={converter.sox} "
                     f"models={','.join(models)}{' (any accepted)' if args.any_model else ''}\n")
    serve(args.host, args.port, make_handler(recognizer, converter, models, args.any_model,
                                             args.max_file_bytes, args.tmp_dir, args.quiet, args.api_key))


if __name__ == "__main__":
    main()
