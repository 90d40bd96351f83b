# video-engine: /v1/video/generations on a Diffusers text-to-video pipeline, answered synchronously
# with the MP4 bytes. Frame rate, frame limits and size are the model's own (entry env), because
# these pipelines only produce good video at the settings they were trained on.
import tempfile

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

FPS = int(os.environ.get("VIDEO_FPS", "8"))
MAX_FRAMES = int(os.environ.get("MAX_FRAMES", "49"))
FRAME_STEP = int(os.environ.get("FRAME_STEP", "4"))  # valid frame counts are k * FRAME_STEP + 1
WIDTH = int(os.environ.get("WIDTH", "720"))
HEIGHT = int(os.environ.get("HEIGHT", "480"))
STEPS = int(os.environ.get("STEPS", "50"))
TORCH_DTYPE = os.environ.get("TORCH_DTYPE", "bfloat16")
PORTRAIT = {"9:16", "3:4", "2:3", "9:21"}


def load():
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(MODEL_ID, torch_dtype=getattr(torch, TORCH_DTYPE))
    # Offloading keeps only the active sub-model on the GPU, so the large video models fit one card.
    pipe.enable_model_cpu_offload()
    if hasattr(pipe, "vae") and hasattr(pipe.vae, "enable_tiling"):
        pipe.vae.enable_tiling()
    return pipe


def frame_count(duration):
    wanted = max(1, min(MAX_FRAMES, int(round(duration * FPS))))
    return max(FRAME_STEP, (wanted - 1) // FRAME_STEP * FRAME_STEP) + 1


@app.post("/v1/video/generations")
async def generate(request: Request):
    import torch
    from diffusers.utils import export_to_video

    body = await json_body(request)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApiError(400, "prompt must be a non-empty string", param="prompt")
    try:
        duration = float(body.get("duration", MAX_FRAMES / FPS))
        seed = int(body["seed"]) if body.get("seed") is not None else None
    except (TypeError, ValueError):
        raise ApiError(400, "duration and seed must be numbers", param="duration")
    if duration <= 0:
        raise ApiError(400, "duration must be positive", param="duration")
    width, height = (HEIGHT, WIDTH) if body.get("aspect_ratio") in PORTRAIT else (WIDTH, HEIGHT)
    pipe = model()

    def run():
        generator = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
        with inference_lock:
            frames = pipe(prompt=prompt, num_frames=frame_count(duration), width=width, height=height,
                          num_inference_steps=STEPS, generator=generator).frames[0]
        with tempfile.NamedTemporaryFile(suffix=".mp4") as out:
            export_to_video(frames, out.name, fps=FPS)
            return open(out.name, "rb").read()

    video = await run_in_threadpool(run)
    return Response(content=video, media_type="video/mp4")


if __name__ == "__main__":
    main()
