# custom engine: models outside the other engines. BACKEND picks the implementation:
# diffusers-image (text-to-image on /v1/images/generations) or nemo-asr (NVIDIA NeMo ASR on
# /v1/audio/transcriptions).
import base64
import tempfile

from fastapi import File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

BACKEND = os.environ.get("BACKEND", "")
STEPS = int(os.environ.get("STEPS", "30"))
MAX_IMAGES = 4


def load():
    if BACKEND == "diffusers-image":
        import torch
        from diffusers import AutoPipelineForText2Image

        device, dtype = device_and_dtype()
        variant = "fp16" if dtype == torch.float16 else None
        return AutoPipelineForText2Image.from_pretrained(MODEL_ID, torch_dtype=dtype, variant=variant, use_safetensors=True).to(device)
    if BACKEND == "nemo-asr":
        import nemo.collections.asr as nemo_asr

        return nemo_asr.models.ASRModel.from_pretrained(MODEL_ID).eval()
    raise ValueError(f"unknown BACKEND {BACKEND!r}")


def parse_size(size):
    try:
        width, height = (int(v) for v in str(size).lower().split("x"))
    except ValueError:
        raise ApiError(400, "size must look like 1024x1024", param="size")
    if not (256 <= width <= 2048 and 256 <= height <= 2048 and width % 8 == 0 and height % 8 == 0):
        raise ApiError(400, "size must be 256..2048 pixels per side, multiples of 8", param="size")
    return width, height


@app.post("/v1/images/generations")
async def images(request: Request):
    import torch

    if BACKEND != "diffusers-image":
        raise ApiError(404, f"{SERVED_MODEL_NAME} does not generate images")
    body = await json_body(request)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApiError(400, "prompt must be a non-empty string", param="prompt")
    if body.get("response_format", "b64_json") != "b64_json":
        raise ApiError(400, "only response_format b64_json is supported (no image hosting here)", param="response_format")
    n = body.get("n", 1)
    if not isinstance(n, int) or not 1 <= n <= MAX_IMAGES:
        raise ApiError(400, f"n must be an integer from 1 to {MAX_IMAGES}", param="n")
    width, height = parse_size(body.get("size", "1024x1024"))
    pipe = model()

    def run():
        generator = torch.Generator(device="cpu").manual_seed(int(body["seed"])) if body.get("seed") is not None else None
        with inference_lock:
            result = pipe(prompt=prompt, num_images_per_prompt=n, width=width, height=height, num_inference_steps=STEPS, generator=generator)
        encoded = []
        for image in result.images:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            encoded.append({"b64_json": base64.b64encode(buffer.getvalue()).decode(), "revised_prompt": prompt})
        return encoded

    return {"created": int(time.time()), "data": await run_in_threadpool(run)}


@app.post("/v1/audio/transcriptions")
async def transcriptions(file: UploadFile = File(...), model_name: str = Form("", alias="model"), response_format: str = Form("json")):
    import soundfile as sf

    if BACKEND != "nemo-asr":
        raise ApiError(404, f"{SERVED_MODEL_NAME} does not serve transcriptions")
    if response_format not in ("json", "text"):
        raise ApiError(400, "response_format must be json or text", param="response_format")
    samples = decode_audio(await file.read())
    asr = model()

    def run():
        # NeMo reads audio from files: hand it 16 kHz mono WAV.
        with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
            sf.write(wav.name, samples, 16000, subtype="PCM_16")
            with inference_lock:
                result = asr.transcribe([wav.name], batch_size=1)
        first = result[0][0] if isinstance(result, tuple) else result[0]
        return getattr(first, "text", first)

    text = str(await run_in_threadpool(run)).strip()
    if response_format == "text":
        return PlainTextResponse(text)
    return {"text": text, "usage": {"type": "duration", "seconds": int(round(len(samples) / 16000))}}


if __name__ == "__main__":
    main()
