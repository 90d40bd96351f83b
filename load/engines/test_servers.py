"""Tests for the reference engine servers (tts_server.py, stt_server.py) and formdata.py.

    $VENV/bin/python -m pytest -q load/engines/test_servers.py

Each server is started on port 0 as a subprocess. Needs espeak-ng; the STT tests need the
pocketsphinx package (skipped without it); the mp3/opus/aac tests need ffmpeg and the sox
fallback tests sox (skipped without them).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
import wave

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import formdata  # noqa: E402

SENTENCE = "hello world, this is a test of the speech recognition system"
CONTENT_WORDS = ["hello", "world", "test", "speech", "recognition", "system"]
HAVE_FFMPEG = shutil.which("ffmpeg") is not None
HAVE_SOX = shutil.which("sox") is not None
HAVE_ESPEAK = shutil.which("espeak-ng") is not None
try:
    import pocketsphinx  # noqa: F401
    HAVE_PS = True
except ImportError:
    HAVE_PS = False

needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng not installed")
needs_ps = pytest.mark.skipif(not HAVE_PS, reason="pocketsphinx not installed")
needs_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg not installed")
needs_sox = pytest.mark.skipif(not HAVE_SOX, reason="sox not installed")


# ---------------------------------------------------------------- helpers

class Server:
    def __init__(self, script, *args, env=None):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, script), "--port", "0", "--quiet", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, **(env or {})))
        line = self.proc.stdout.readline()
        m = re.match(r"listening on http://([^:]+):(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"{script} did not start: {line!r} {self.proc.stderr.read()}")
        self.host, self.port = m.group(1), int(m.group(2))

    def request(self, method, path, body=None, headers=None, chunked=False, timeout=120):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            if chunked:
                conn.putrequest(method, path)
                for k, v in (headers or {}).items():
                    conn.putheader(k, v)
                conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                try:
                    for i in range(0, len(body), 1 << 20):
                        part = body[i:i + (1 << 20)]
                        conn.send(b"%x\r\n%s\r\n" % (len(part), part))
                    conn.send(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
            else:
                conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def post_json(self, path, obj, **kw):
        return self.request("POST", path, json.dumps(obj).encode(),
                            {"Content-Type": "application/json"}, **kw)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.proc.stdout.close()
        self.proc.stderr.close()


def multipart(fields, files):
    """-> (body, content_type). files: {name: (filename, bytes, content_type)}"""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for k, vals in fields.items():
        for v in (vals if isinstance(vals, list) else [vals]):
            out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for k, (fn, data, ct) in files.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{fn}"\r\n'
                  f'Content-Type: {ct}\r\n\r\n'.encode())
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def assert_openai_error(status, body, want_status, param=None):
    assert status == want_status, body
    err = json.loads(body)["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert err["message"]
    if want_status < 500:
        assert err["type"] == "invalid_request_error"
    if param:
        assert err["param"] == param, err


def wav_seconds(data):
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() / w.getframerate()


def content_hits(text):
    words = set(re.findall(r"[a-z']+", text.lower()))
    return [w for w in CONTENT_WORDS if w in words]


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tts():
    if not HAVE_ESPEAK:
        pytest.skip("espeak-ng not installed")
    s = Server("tts_server.py")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def stt():
    if not HAVE_PS:
        pytest.skip("pocketsphinx not installed")
    s = Server("stt_server.py")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def speech_wav(tts):
    status, headers, body = tts.post_json("/v1/audio/speech", {
        "model": "tts-1", "input": SENTENCE, "voice": "alloy", "response_format": "wav"})
    assert status == 200
    return body


# ---------------------------------------------------------------- TTS

def test_tts_health_and_models(tts):
    status, _, body = tts.request("GET", "/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, _, body = tts.request("GET", "/v1/models")
    ids = [m["id"] for m in json.loads(body)["data"]]
    assert status == 200 and "tts-1" in ids
    status, _, body = tts.request("GET", "/v1/models/tts-1")
    assert status == 200 and json.loads(body)["id"] == "tts-1"
    status, _, body = tts.request("GET", "/v1/models/nope")
    assert_openai_error(status, body, 404)


def test_tts_wav(tts, speech_wav):
    assert speech_wav[:4] == b"RIFF" and speech_wav[8:12] == b"WAVE"
    # header sizes are the real ones, not espeak-ng's streaming placeholders
    assert int.from_bytes(speech_wav[4:8], "little") == len(speech_wav) - 8
    seconds = wav_seconds(speech_wav)
    assert 2.0 < seconds < 8.0, seconds
    with wave.open(io.BytesIO(speech_wav)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)


def test_tts_default_format_is_mp3_or_400(tts):
    status, headers, body = tts.post_json("/v1/audio/speech", {"model": "tts-1", "input": "hi", "voice": "alloy"})
    if HAVE_FFMPEG:
        assert status == 200 and headers["content-type"] == "audio/mpeg"
    else:
        assert_openai_error(status, body, 400, "response_format")


def test_tts_speed(tts):
    def seconds(speed):
        status, _, body = tts.post_json("/v1/audio/speech", {
            "model": "tts-1", "input": SENTENCE, "voice": "alloy", "response_format": "wav", "speed": speed})
        assert status == 200
        return wav_seconds(body)
    assert seconds(2.0) < seconds(1.0) * 0.7


def test_tts_raw_espeak_voice(tts):
    status, headers, body = tts.post_json("/v1/audio/speech", {
        "model": "tts-1", "input": "good morning", "voice": "en-gb", "response_format": "wav"})
    assert status == 200 and body[:4] == b"RIFF"


MAGIC = {
    "mp3": lambda b: b[:3] == b"ID3" or (b[0] == 0xFF and b[1] & 0xE0 == 0xE0),
    "opus": lambda b: b[:4] == b"OggS" and b"OpusHead" in b[:64],
    "aac": lambda b: b[0] == 0xFF and b[1] & 0xF6 == 0xF0,
    "flac": lambda b: b[:4] == b"fLaC",
    "pcm": lambda b: len(b) % 2 == 0,
}
CTYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac", "pcm": "audio/pcm"}


@needs_ffmpeg
@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "pcm"])
def test_tts_encoded_formats(tts, fmt):
    status, headers, body = tts.post_json("/v1/audio/speech", {
        "model": "tts-1", "input": SENTENCE, "voice": "nova", "response_format": fmt})
    assert status == 200, body[:300]
    assert headers["content-type"] == CTYPES[fmt]
    assert headers.get("transfer-encoding") == "chunked"  # streamed as encoded
    assert len(body) > 1000 and MAGIC[fmt](body), body[:16]
    if fmt == "pcm":  # 16-bit mono 24 kHz
        assert 2.0 < len(body) / 48000 < 8.0


@pytest.mark.parametrize("req,param,status", [
    ({"voice": "alloy"}, "input", 400),
    ({"input": "", "voice": "alloy"}, "input", 400),
    ({"input": "x" * 4097, "voice": "alloy"}, "input", 400),
    ({"input": "hi", "voice": "alloy", "response_format": "ogg"}, "response_format", 400),
    ({"input": "hi", "voice": "alloy", "speed": 5}, "speed", 400),
    ({"input": "hi", "voice": "alloy", "speed": 0.1}, "speed", 400),
    ({"input": "hi", "voice": "alloy", "speed": "fast"}, "speed", 400),
    ({"input": "hi", "voice": "qqq-no-such-voice"}, "voice", 400),
    ({"input": "hi", "voice": "--help"}, "voice", 400),
    ({"input": "hi", "voice": "alloy", "stream_format": "sse"}, "stream_format", 400),
    ({"input": "hi", "voice": "alloy", "model": None}, "model", 400),
    ({"input": "hi", "voice": "alloy", "model": "no-such-model"}, "model", 404),
])
def test_tts_bad_requests(tts, req, param, status):
    body = dict({"model": "tts-1"}, **req)
    if body.get("model") is None:
        del body["model"]
    st, _, resp = tts.post_json("/v1/audio/speech", body)
    assert_openai_error(st, resp, status, param)


def test_tts_bad_json_and_routes(tts):
    st, _, body = tts.request("POST", "/v1/audio/speech", b"{nope", {"Content-Type": "application/json"})
    assert_openai_error(st, body, 400)
    st, _, body = tts.request("POST", "/v1/audio/speech", b"input=hi", {"Content-Type": "text/plain"})
    assert_openai_error(st, body, 400)
    st, _, body = tts.request("POST", "/v1/nope", b"{}", {"Content-Type": "application/json"})
    assert_openai_error(st, body, 404)


@needs_espeak
def test_tts_without_encoders():
    s = Server("tts_server.py", "--ffmpeg", "none", "--sox", "none")
    try:
        st, _, body = s.post_json("/v1/audio/speech", {"model": "tts-1", "input": "hi", "voice": "alloy",
                                                       "response_format": "mp3"})
        assert_openai_error(st, body, 400, "response_format")
        assert "ffmpeg" in json.loads(body)["error"]["message"]
        st, _, body = s.post_json("/v1/audio/speech", {"model": "tts-1", "input": "hi", "voice": "alloy",
                                                       "response_format": "wav"})
        assert st == 200 and body[:4] == b"RIFF"
    finally:
        s.stop()


@needs_espeak
@needs_sox
def test_tts_sox_fallback():
    s = Server("tts_server.py", "--ffmpeg", "none")
    try:
        for fmt in ("flac", "pcm"):
            st, headers, body = s.post_json("/v1/audio/speech", {
                "model": "tts-1", "input": SENTENCE, "voice": "alloy", "response_format": fmt})
            assert st == 200 and MAGIC[fmt](body) and len(body) > 1000, fmt
            assert headers["content-type"] == CTYPES[fmt]
        st, _, body = s.post_json("/v1/audio/speech", {"model": "tts-1", "input": "hi", "voice": "alloy",
                                                       "response_format": "opus"})
        assert_openai_error(st, body, 400, "response_format")
        assert "ffmpeg" in json.loads(body)["error"]["message"]
    finally:
        s.stop()


@needs_espeak
def test_tts_api_key():
    s = Server("tts_server.py", "--api-key", "sk-test")
    try:
        req = {"model": "tts-1", "input": "hi", "voice": "alloy", "response_format": "wav"}
        st, _, body = s.post_json("/v1/audio/speech", req)
        assert st == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
        st, _, _ = s.request("POST", "/v1/audio/speech", json.dumps(req).encode(),
                             {"Content-Type": "application/json", "Authorization": "Bearer sk-test"})
        assert st == 200
        assert s.request("GET", "/health")[0] == 200
        assert s.request("GET", "/v1/models")[0] == 401
    finally:
        s.stop()


# ---------------------------------------------------------------- STT

def transcribe(stt, audio, filename="speech.wav", ctype="audio/wav", path="/v1/audio/transcriptions", **fields):
    fields.setdefault("model", "whisper-1")
    body, ct = multipart(fields, {"file": (filename, audio, ctype)})
    return stt.request("POST", path, body, {"Content-Type": ct})


@needs_ps
def test_stt_health_and_models(stt):
    status, _, body = stt.request("GET", "/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, _, body = stt.request("GET", "/v1/models")
    assert status == 200 and "whisper-1" in [m["id"] for m in json.loads(body)["data"]]


@needs_ps
def test_stt_roundtrip_json(stt, speech_wav):
    st, headers, body = transcribe(stt, speech_wav)
    assert st == 200 and headers["content-type"] == "application/json"
    obj = json.loads(body)
    hits = content_hits(obj["text"])
    assert len(hits) >= len(CONTENT_WORDS) // 2, obj["text"]
    assert obj["usage"]["type"] == "duration" and obj["usage"]["seconds"] >= 2


@needs_ps
def test_stt_is_deterministic(stt, speech_wav):
    texts = {json.loads(transcribe(stt, speech_wav)[2])["text"] for _ in range(2)}
    assert len(texts) == 1, texts


@needs_ps
def test_stt_text_srt_vtt(stt, speech_wav):
    st, headers, body = transcribe(stt, speech_wav, response_format="text")
    assert st == 200 and headers["content-type"].startswith("text/plain")
    assert len(content_hits(body.decode())) >= 3
    st, headers, body = transcribe(stt, speech_wav, response_format="srt")
    assert st == 200 and headers["content-type"].startswith("text/plain")
    assert re.match(r"1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n\S", body.decode()), body
    st, headers, body = transcribe(stt, speech_wav, response_format="vtt")
    assert st == 200 and headers["content-type"].startswith("text/vtt")
    assert re.match(r"WEBVTT\n\n\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}\n\S", body.decode()), body


@needs_ps
def test_stt_verbose_json(stt, speech_wav):
    st, _, body = transcribe(stt, speech_wav, response_format="verbose_json",
                             **{"timestamp_granularities[]": ["word", "segment"]})
    assert st == 200
    obj = json.loads(body)
    assert obj["language"] == "english" and obj["task"] == "transcribe"
    assert abs(obj["duration"] - wav_seconds(speech_wav)) < 0.1
    assert obj["segments"] and obj["words"]
    seg = obj["segments"][0]
    assert {"id", "start", "end", "text", "tokens", "avg_logprob", "no_speech_prob"} <= set(seg)
    assert 0 <= seg["start"] < seg["end"] <= obj["duration"] + 0.05
    starts = [w["start"] for w in obj["words"]]
    assert starts == sorted(starts) and all(w["end"] > w["start"] for w in obj["words"])
    assert " ".join(w["word"] for w in obj["words"]) == obj["text"]


@needs_ps
def test_stt_translation(stt, speech_wav):
    st, _, body = transcribe(stt, speech_wav, path="/v1/audio/translations", response_format="verbose_json")
    assert st == 200
    obj = json.loads(body)
    assert obj["task"] == "translate" and len(content_hits(obj["text"])) >= 3


@needs_ps
@needs_ffmpeg
def test_stt_mp3_input(stt, tts):
    st, _, mp3 = tts.post_json("/v1/audio/speech", {"model": "tts-1", "input": SENTENCE, "voice": "alloy",
                                                     "response_format": "mp3"})
    assert st == 200
    st, _, body = transcribe(stt, mp3, filename="speech.mp3", ctype="audio/mpeg")
    assert st == 200 and len(content_hits(json.loads(body)["text"])) >= 3, body


@needs_ps
def test_stt_silence(stt):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 16000)
    st, _, body = transcribe(stt, buf.getvalue(), response_format="verbose_json")
    assert st == 200
    obj = json.loads(body)
    assert obj["text"] == "" and obj["segments"] == [] and abs(obj["duration"] - 1.0) < 0.01


@needs_ps
@pytest.mark.parametrize("fields,param,status", [
    ({"model": None}, "model", 400),
    ({"model": "no-such-model"}, "model", 404),
    ({"language": "de"}, "language", 400),
    ({"response_format": "diarized_json"}, "response_format", 400),
    ({"temperature": "2"}, "temperature", 400),
    ({"timestamp_granularities[]": "word"}, "timestamp_granularities", 400),
    ({"response_format": "verbose_json", "timestamp_granularities[]": "phoneme"}, "timestamp_granularities", 400),
])
def test_stt_bad_fields(stt, speech_wav, fields, param, status):
    fields = dict({"model": "whisper-1"}, **fields)
    if fields["model"] is None:
        del fields["model"]
    body, ct = multipart(fields, {"file": ("a.wav", speech_wav, "audio/wav")})
    st, _, resp = stt.request("POST", "/v1/audio/transcriptions", body, {"Content-Type": ct})
    assert_openai_error(st, resp, status, param)


@needs_ps
def test_stt_missing_or_bad_file(stt):
    body, ct = multipart({"model": "whisper-1"}, {})
    st, _, resp = stt.request("POST", "/v1/audio/transcriptions", body, {"Content-Type": ct})
    assert_openai_error(st, resp, 400, "file")
    st, _, resp = transcribe(stt, b"")
    assert_openai_error(st, resp, 400, "file")
    st, _, resp = transcribe(stt, b"this is not audio at all" * 100, filename="x.wav")
    assert_openai_error(st, resp, 400, "file")
    st, _, resp = stt.request("POST", "/v1/audio/transcriptions", b'{"model":"whisper-1"}',
                              {"Content-Type": "application/json"})
    assert_openai_error(st, resp, 400)
    body, ct = multipart({"model": "whisper-1"}, {"file": ("a.wav", b"RIFF", "audio/wav")})
    st, _, resp = stt.request("POST", "/v1/audio/transcriptions", body[:-10], {"Content-Type": ct})
    assert_openai_error(st, resp, 400)


@needs_ps
@pytest.mark.parametrize("chunked", [False, True])
def test_stt_oversize_413(stt, chunked):
    big = b"\0" * (25 * 1024 * 1024 + 4096)
    st, _, resp = transcribe(stt, big) if not chunked else _chunked_transcribe(stt, big)
    assert_openai_error(st, resp, 413)
    # the server is fine afterwards
    assert stt.request("GET", "/health")[0] == 200


def _chunked_transcribe(stt, audio):
    body, ct = multipart({"model": "whisper-1"}, {"file": ("big.wav", audio, "audio/wav")})
    return stt.request("POST", "/v1/audio/transcriptions", body, {"Content-Type": ct}, chunked=True)


@needs_ps
def test_stt_chunked_request_body(stt, speech_wav):
    st, _, resp = _chunked_transcribe(stt, speech_wav)
    assert st == 200 and len(content_hits(json.loads(resp)["text"])) >= 3, resp


@needs_ps
def test_stt_wave_module_fallback(speech_wav):
    """Without ffmpeg and sox, WAV input is resampled in Python (22.05 -> 16 kHz)."""
    s = Server("stt_server.py", "--ffmpeg", "none", "--sox", "none")
    try:
        st, _, body = transcribe(s, speech_wav, response_format="verbose_json")
        assert st == 200, body
        obj = json.loads(body)
        assert abs(obj["duration"] - wav_seconds(speech_wav)) < 0.05
        assert len(content_hits(obj["text"])) >= 2, obj["text"]
        st, _, body = transcribe(s, b"\xff\xfb" + b"\0" * 2000, filename="x.mp3", ctype="audio/mpeg")
        assert_openai_error(st, body, 400, "file")
    finally:
        s.stop()


@needs_ps
def test_stt_with_openai_sdk(stt, speech_wav):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"http://{stt.host}:{stt.port}/v1", api_key="x", max_retries=0)
    r = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", speech_wav, "audio/wav"),
                                           response_format="verbose_json", timestamp_granularities=["word"])
    assert len(content_hits(r.text)) >= 3 and r.words
    text = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", speech_wav),
                                              response_format="text")
    assert isinstance(text, str) and len(content_hits(text)) >= 3
    with pytest.raises(openai.NotFoundError):
        client.audio.transcriptions.create(model="nope", file=("speech.wav", speech_wav))


# ---------------------------------------------------------------- formdata

class _Trickle:
    def __init__(self, data, seed):
        self.f = io.BytesIO(data)
        self.rnd = random.Random(seed)

    def read(self, n):
        return self.f.read(min(n, self.rnd.randint(1, 300)))


def test_formdata_split_reads():
    payload = os.urandom(50_000) + b"\r\n--BOUNDAR"  # looks like a boundary but is not
    body = (b"preamble\r\n--BOUNDARY\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"g[]\"\r\n\r\nword\r\n"
            b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"g[]\"\r\n\r\nsegment\r\n"
            b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a \\\"b\\\".wav\"\r\n"
            b"Content-Type: audio/wav\r\n\r\n" + payload + b"\r\n--BOUNDARY--\r\nepilogue")
    for seed in range(5):
        d = tempfile.mkdtemp()
        try:
            form = formdata.parse(_Trickle(body, seed), b"BOUNDARY", d, 1 << 20)
            assert form.get("model") == "whisper-1" and form.getlist("g[]") == ["word", "segment"]
            f = form.files["file"]
            assert f.filename == 'a "b".wav' and f.content_type == "audio/wav" and f.size == len(payload)
            with open(f.path, "rb") as fh:
                assert fh.read() == payload
        finally:
            shutil.rmtree(d)


def test_formdata_limits_and_errors():
    body = b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n" + b"a" * 5000 + b"\r\n--B--"
    d = tempfile.mkdtemp()
    try:
        with pytest.raises(formdata.FileTooLarge):
            formdata.parse(io.BytesIO(body), b"B", d, 4000)
        with pytest.raises(formdata.FormDataError):
            formdata.parse(io.BytesIO(body[:-6]), b"B", d, 1 << 20)
        with pytest.raises(formdata.FormDataError):
            formdata.parse(io.BytesIO(b"no boundary here"), b"B", d, 1 << 20)
    finally:
        shutil.rmtree(d)
    assert formdata.boundary_from_content_type('multipart/form-data; boundary="a b"') == b"a b"
    assert formdata.boundary_from_content_type("multipart/form-data; boundary=xyz") == b"xyz"
    assert formdata.boundary_from_content_type("application/json") is None
