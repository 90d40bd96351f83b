# --- common.py: shared by every Python engine server (switchyard catalogue) ---
# `switchyard catalogue context` writes server.py as this file followed by the engine's file.
# The engine part defines load() and its routes; main() below starts loading in the background
# so /health can answer 503 ("loading") until the weights are ready, as the probes expect.
import io
import json
import logging
import os
import threading
import time
import uuid

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

MODEL_ID = os.environ["MODEL_ID"]
SERVED_MODEL_NAME = os.environ.get("SERVED_MODEL_NAME", MODEL_ID)
PORT = int(os.environ.get("PORT", "8000"))
TRUST_REMOTE_CODE = os.environ.get("TRUST_REMOTE_CODE") == "1"

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
log = logging.getLogger("server")
app = FastAPI(title=SERVED_MODEL_NAME)
state = {"model": None, "error": None}
# One request at a time on the accelerator: these libraries are not safe for concurrent calls.
inference_lock = threading.Lock()


class ApiError(Exception):
    def __init__(self, status, message, param=None, code=None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


@app.exception_handler(ApiError)
async def _api_error(_request, exc):
    error_type = "invalid_request_error" if exc.status < 500 else "server_error"
    body = {"error": {"message": exc.message, "type": error_type, "param": exc.param, "code": exc.code}}
    return JSONResponse(body, status_code=exc.status)


@app.exception_handler(HTTPException)
async def _http_error(_request, exc):
    body = {"error": {"message": str(exc.detail), "type": "invalid_request_error", "param": None, "code": None}}
    return JSONResponse(body, status_code=exc.status_code)


def device_and_dtype():
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.float16
    return "cpu", torch.float32


def model():
    """The loaded model, or a 503 while it is still loading."""
    if state["model"] is None:
        raise ApiError(503, "model is loading" if state["error"] is None else "model failed to load", code="model_not_ready")
    return state["model"]


async def json_body(request):
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "request body is not valid JSON")
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def decode_audio(data, rate=16000):
    """Any container/codec PyAV can read -> mono float32 samples at `rate`."""
    import av
    import numpy as np

    chunks = []
    try:
        with av.open(io.BytesIO(data)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in container.decode(audio=0):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise ApiError(400, f"could not decode the audio file: {exc}", param="file")
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def new_id(prefix):
    return f"{prefix}-{uuid.uuid4().hex}"


@app.get("/health")
def health():
    if state["model"] is not None:
        return {"status": "ok"}
    if state["error"] is not None:
        return JSONResponse({"status": "error", "error": state["error"]}, status_code=503)
    return JSONResponse({"status": "loading"}, status_code=503)


@app.get("/v1/models")
def list_models():
    entry = {"id": SERVED_MODEL_NAME, "object": "model", "created": int(time.time()), "owned_by": "self_hosted"}
    return {"object": "list", "data": [entry]}


def _load_in_background():
    started = time.monotonic()
    try:
        state["model"] = load()  # noqa: F821 - defined by the engine part of server.py
        log.info("loaded %s in %.0fs", MODEL_ID, time.monotonic() - started)
    except Exception as exc:  # keep serving /health so the probes report the failure
        log.exception("loading %s failed", MODEL_ID)
        state["error"] = f"{type(exc).__name__}: {exc}"


def main():
    threading.Thread(target=_load_in_background, name="load-model", daemon=True).start()
    uvicorn.run(app, host="0.0.0.0", port=PORT, log_level="info")


# --- engine part ---
