#!/usr/bin/env python3
"""OpenAI-compatible text-to-speech server over espeak-ng (switchyard engine kind `tts-engine`).

    python3 tts_server.py --host 127.0.0.1 --port 0

Endpoints
  GET  /health             -> {"status": "ok"}
  GET  /v1/models          -> OpenAI model list (the names accepted in "model")
  GET  /v1/models/{id}
  POST /v1/audio/speech    JSON {model, input, voice, response_format, speed}
                           -> audio bytes of the spoken input

response_format (default mp3):
  wav   audio/wav    espeak-ng's own 22.05 kHz mono 16-bit WAV, header sizes fixed up,
                     sent with Content-Length (needs nothing but espeak-ng)
  pcm   audio/pcm    raw signed 16-bit little-endian mono at 24 kHz (as OpenAI's pcm)
  mp3   audio/mpeg   \
  opus  audio/ogg     | 24 kHz mono, encoded by ffmpeg (or sox for flac/pcm/mp3 when sox
  aac   audio/aac     | has the format and ffmpeg is absent), streamed with chunked
  flac  audio/flac   /  transfer encoding as the encoder produces it
A format whose encoder is missing answers 400 naming the missing tool.

speed (0.25-4.0, default 1.0) maps to espeak-ng words per minute = 175 * speed, clamped to
espeak-ng's usable 80-700 wpm (so speeds below ~0.46 sound like 0.46).

voice: the OpenAI voice names (alloy, ash, ballad, coral, echo, fable, nova, onyx, sage,
shimmer, verse, marin, cedar) map to English espeak-ng voices (see OPENAI_VOICES); any other
value is used as a raw espeak-ng voice name (e.g. "en-gb", "en-us+f2", "de") and answers 400
when espeak-ng cannot load it.

model: one of --model (repeatable; default: espeak-ng, tts-1, tts-1-hd, gpt-4o-mini-tts);
an unknown model answers 404 model_not_found unless --any-model is given.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_http import ApiError, ChunkedWriter, JsonHandler, base_arg_parser, serve  # noqa: E402

DEFAULT_MODELS = ["espeak-ng", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"]

# OpenAI voice name -> espeak-ng voice. All English. The klatt and female variants are the
# ones PocketSphinx recognises best (measured on a few sentences, see docs/real-engines.md);
# alloy, the SDK examples' voice, is the best of them.
OPENAI_VOICES = {
    "alloy": "en-us+klatt3",
    "ash": "en-us+klatt4",
    "ballad": "en+klatt4",
    "coral": "en-us+f2",
    "echo": "en-us+klatt",
    "fable": "en+klatt3",
    "nova": "en-us+f5",
    "onyx": "en-us+klatt2",
    "sage": "en+f2",
    "shimmer": "en-us+f1",
    "verse": "en+klatt",
    "marin": "en-us+f3",
    "cedar": "en-us+m1",
}

CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

OUT_RATE = 24000  # Hz, for everything but wav (which is espeak-ng's native rate)
MAX_INPUT_CHARS = 4096
ESPEAK_BASE_WPM = 175
ESPEAK_MIN_WPM, ESPEAK_MAX_WPM = 80, 700


class Tools:
    """Paths of the external programs; None when absent or disabled."""

    def __init__(self, espeak, ffmpeg, sox):
        self.espeak = espeak
        self.ffmpeg = ffmpeg
        self.sox = sox
        self.sox_formats = set()
        if sox:
            try:
                out = subprocess.run([sox, "-h"], capture_output=True, text=True, timeout=10).stdout
                for line in out.splitlines():
                    if line.startswith("AUDIO FILE FORMATS:"):
                        self.sox_formats = set(line.split(":", 1)[1].split())
            except (OSError, subprocess.SubprocessError):
                pass
        self._voice_ok = {}
        self._lock = threading.Lock()

    def voice_exists(self, voice):
        with self._lock:
            if voice in self._voice_ok:
                return self._voice_ok[voice]
        try:
            rc = subprocess.run(
                [self.espeak, "-v", voice, "-q", "x"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                timeout=20,
            ).returncode
        except (OSError, subprocess.SubprocessError):
            return False
        ok = rc == 0
        with self._lock:
            if len(self._voice_ok) < 1024:  # bounded: voice names come from clients
                self._voice_ok[voice] = ok
        return ok

    def encoder_cmd(self, fmt):
        """argv that reads a WAV on stdin and writes `fmt` to stdout; None for wav."""
        if fmt == "wav":
            return None
        if self.ffmpeg:
            base = [self.ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "wav", "-i", "pipe:0",
                    "-ac", "1", "-ar", str(OUT_RATE), "-flush_packets", "1"]
            codec = {
                "mp3": ["-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"],
                "opus": ["-c:a", "libopus", "-b:a", "32k", "-f", "ogg"],
                "aac": ["-c:a", "aac", "-b:a", "64k", "-f", "adts"],
                "flac": ["-c:a", "flac", "-f", "flac"],
                "pcm": ["-c:a", "pcm_s16le", "-f", "s16le"],
            }[fmt]
            return base + codec + ["pipe:1"]
        sox_type = {"flac": "flac", "pcm": "raw", "mp3": "mp3"}.get(fmt)
        if self.sox and sox_type and sox_type in self.sox_formats:
            out = ["-t", sox_type]
            if fmt == "pcm":
                out = ["-t", "raw", "-e", "signed-integer", "-b", "16", "-L"]
            return [self.sox, "-q", "-t", "wav", "-", "-r", str(OUT_RATE), "-c", "1"] + out + ["-"]
        need = "ffmpeg" if fmt in ("opus", "aac") else "ffmpeg or sox"
        raise ApiError(
            400,
            f"response_format '{fmt}' needs {need}, which is not installed on this engine; "
            "use response_format 'wav'",
            param="response_format",
            code="unsupported_response_format",
        )


def fix_wav_header(data: bytes) -> bytes:
    """espeak-ng --stdout to a pipe writes placeholder sizes; set the real RIFF/data sizes."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data
    buf = bytearray(data)
    struct.pack_into("<I", buf, 4, len(buf) - 8)
    pos = 12
    while pos + 8 <= len(buf):
        cid = bytes(buf[pos:pos + 4])
        size = struct.unpack_from("<I", buf, pos + 4)[0]
        if cid == b"data":
            struct.pack_into("<I", buf, pos + 4, len(buf) - pos - 8)
            break
        pos += 8 + size + (size & 1)
    return bytes(buf)


def validate(req, models, any_model):
    """Return (model, text, voice_request, fmt, speed) or raise ApiError(400/404)."""
    model = req.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' is required and must be a non-empty string", param="model",
                       code="missing_required_parameter" if model is None else "invalid_type")
    if not any_model and model not in models:
        raise ApiError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")
    text = req.get("input")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "'input' is required and must be a non-empty string", param="input",
                       code="missing_required_parameter" if text is None else "invalid_value")
    if len(text) > MAX_INPUT_CHARS:
        raise ApiError(400, f"'input' is longer than {MAX_INPUT_CHARS} characters", param="input",
                       code="string_above_max_length")
    voice = req.get("voice", "alloy")
    if isinstance(voice, dict):  # {"id": "..."} custom-voice form
        voice = voice.get("id")
    if not isinstance(voice, str) or not voice or len(voice) > 100:
        raise ApiError(400, "'voice' must be a voice name", param="voice", code="invalid_value")
    fmt = req.get("response_format", "mp3")
    if fmt is None:
        fmt = "mp3"
    if fmt not in CONTENT_TYPES:
        raise ApiError(400, f"'response_format' must be one of {', '.join(CONTENT_TYPES)}",
                       param="response_format", code="invalid_value")
    speed = req.get("speed", 1.0)
    if speed is None:
        speed = 1.0
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.25 <= speed <= 4.0:
        raise ApiError(400, "'speed' must be a number between 0.25 and 4.0", param="speed",
                       code="invalid_value")
    stream_format = req.get("stream_format", "audio")
    if stream_format not in (None, "audio"):
        raise ApiError(400, "only stream_format 'audio' is supported", param="stream_format",
                       code="invalid_value")
    return model, text, voice, fmt, float(speed)


def espeak_voice(voice):
    v = OPENAI_VOICES.get(voice.lower())
    if v:
        return v
    if voice.startswith("-") or any(c.isspace() for c in voice):
        return None
    return voice


def make_handler(tools: Tools, models, any_model, quiet, api_key=None):
    class Handler(JsonHandler):
        pass

    Handler.quiet = quiet
    Handler.api_key = api_key

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
        if path == "/v1/audio/speech":
            return self.send_api_error(ApiError(405, "use POST", code="method_not_allowed"))
        self.send_api_error(ApiError(404, f"no route for GET {path}", code="not_found"))

    def do_POST(self):
        if not self.authorized():
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        if path != "/v1/audio/speech":
            return self.send_api_error(ApiError(404, f"no route for POST {path}", code="not_found"),
                                       close=True)
        try:
            req = self.read_json_body()
            model, text, voice, fmt, speed = validate(req, models, any_model)
            ev = espeak_voice(voice)
            if ev is None or not tools.voice_exists(ev):
                raise ApiError(400, f"unknown voice '{voice}': use an OpenAI voice name "
                               f"({', '.join(OPENAI_VOICES)}) or an espeak-ng voice",
                               param="voice", code="invalid_value")
            enc = tools.encoder_cmd(fmt)
        except ApiError as err:
            return self.send_api_error(err, close=err.status == 413)
        wpm = max(ESPEAK_MIN_WPM, min(ESPEAK_MAX_WPM, round(ESPEAK_BASE_WPM * speed)))
        synth(self, tools, text, ev, wpm, fmt, enc)

    Handler.do_GET = do_GET
    Handler.do_HEAD = do_GET
    Handler.do_POST = do_POST
    return Handler


def model_obj(mid):
    return {"id": mid, "object": "model", "created": 0, "owned_by": "espeak-ng"}


def synth(h: JsonHandler, tools: Tools, text, voice, wpm, fmt, enc):
    espeak = subprocess.Popen(
        [tools.espeak, "-v", voice, "-s", str(wpm), "--stdout", "--stdin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )

    # At most 4096 characters: fits in the pipe buffer, so no writer thread is needed.
    try:
        espeak.stdin.write(text.encode("utf-8") + b"\n")
        espeak.stdin.close()
    except OSError:
        pass

    if enc is None:  # wav: buffer (espeak-ng is far faster than real time) and fix the header
        data = espeak.stdout.read()
        err = espeak.stderr.read()
        espeak.wait()
        if espeak.returncode != 0 or len(data) < 44:
            return h.send_api_error(ApiError(500, f"espeak-ng failed: {err.decode(errors='replace')[:300]}"))
        return h.send_bytes(200, fix_wav_header(data), CONTENT_TYPES["wav"])

    encoder = subprocess.Popen(enc, stdin=espeak.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    espeak.stdout.close()  # the encoder owns the pipe now
    procs = (espeak, encoder)
    try:
        out_fd = encoder.stdout.fileno()
        first = os.read(out_fd, 65536)
        if not first:
            encoder.wait()
            espeak.wait()
            msg = (encoder.stderr.read() or espeak.stderr.read()).decode(errors="replace")[:300]
            return h.send_api_error(ApiError(500, f"audio encoding failed: {msg or 'no output'}"))
        h.send_response(200)
        h.send_header("Content-Type", CONTENT_TYPES[fmt])
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        w = ChunkedWriter(h.wfile)
        w.write(first)
        while True:
            chunk = os.read(out_fd, 65536)
            if not chunk:
                break
            w.write(chunk)
        encoder.wait()
        espeak.wait()
        if encoder.returncode != 0 or espeak.returncode != 0:
            # Too late for a status code: end the connection without the final chunk so the
            # client sees a truncated (failed) body instead of a short "successful" one.
            h.log_message("synthesis failed mid-stream (espeak %s, encoder %s)",
                          espeak.returncode, encoder.returncode)
            h.close_connection = True
            return
        w.close()
    except (BrokenPipeError, ConnectionResetError):
        h.close_connection = True
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in (encoder.stdout, encoder.stderr, espeak.stderr):
            f.close()


def main(argv=None):
    p = base_arg_parser("OpenAI-compatible text-to-speech over espeak-ng")
    p.add_argument("--model", action="append", dest="models",
                   help=f"model name to accept and list (repeatable; default {', '.join(DEFAULT_MODELS)})")
    p.add_argument("--any-model", action="store_true", help="accept any model name")
    p.add_argument("--espeak", default=shutil.which("espeak-ng") or shutil.which("espeak"),
                   help="espeak-ng binary (default: from PATH)")
    p.add_argument("--ffmpeg", default=shutil.which("ffmpeg"),
                   help="ffmpeg binary, or 'none' to not use it (default: from PATH)")
    p.add_argument("--sox", default=shutil.which("sox"),
                   help="sox binary, or 'none' to not use it (default: from PATH)")
    args = p.parse_args(argv)
    if not args.espeak:
        p.error("espeak-ng not found: install it (apt-get install espeak-ng) or pass --espeak")
    none = lambda v: None if (not v or v.lower() == "none") else v  # noqa: E731
    tools = Tools(args.espeak, none(args.ffmpeg), none(args.sox))
    models = args.models or DEFAULT_MODELS
    sys.stderr.write(f"tts: espeak={tools.espeak} ffmpeg={tools.ffmpeg} sox={tools.sox} "
                     f"models={','.join(models)}{' (any accepted)' if args.any_model else ''}\n")
    serve(args.host, args.port, make_handler(tools, models, args.any_model, args.quiet, args.api_key))


if __name__ == "__main__":
    main()
