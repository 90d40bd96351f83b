# whisper engine: OpenAI-compatible transcription and translation on faster-whisper.
# DEVICE (cpu|cuda) and COMPUTE_TYPE (int8|float16|...) come from the catalogue entry.
from fastapi import File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

DEVICE = os.environ.get("DEVICE", "cpu")
COMPUTE_TYPE = os.environ.get("COMPUTE_TYPE", "int8")
FORMATS = ("json", "text", "verbose_json", "srt", "vtt")


def load():
    from faster_whisper import WhisperModel

    return WhisperModel(MODEL_ID, device=DEVICE, compute_type=COMPUTE_TYPE)


def timestamp(seconds, separator):
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def render(segments, info, task, response_format):
    text = "".join(s.text for s in segments).strip()
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format == "srt":
        blocks = [f"{i}\n{timestamp(s.start, ',')} --> {timestamp(s.end, ',')}\n{s.text.strip()}\n" for i, s in enumerate(segments, 1)]
        return PlainTextResponse("\n".join(blocks))
    if response_format == "vtt":
        blocks = [f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n{s.text.strip()}\n" for s in segments]
        return PlainTextResponse("WEBVTT\n\n" + "\n".join(blocks), media_type="text/vtt")
    if response_format == "verbose_json":
        items = [{"id": s.id, "start": s.start, "end": s.end, "text": s.text, "avg_logprob": s.avg_logprob,
                  "no_speech_prob": s.no_speech_prob, "temperature": s.temperature} for s in segments]
        return {"task": task, "language": info.language, "duration": info.duration, "text": text, "segments": items}
    return {"text": text, "usage": {"type": "duration", "seconds": int(round(info.duration))}}


async def run(file, task, language, prompt, response_format, temperature):
    if response_format not in FORMATS:
        raise ApiError(400, f"response_format must be one of {', '.join(FORMATS)}", param="response_format")
    data = await file.read()
    if not data:
        raise ApiError(400, "the audio file is empty", param="file")
    whisper = model()

    def transcribe():
        with inference_lock:
            segments, info = whisper.transcribe(io.BytesIO(data), task=task, language=language or None,
                                                initial_prompt=prompt or None, temperature=temperature, vad_filter=True)
            return list(segments), info  # the generator does the work; drain it under the lock

    try:
        segments, info = await run_in_threadpool(transcribe)
    except ValueError as exc:
        raise ApiError(400, f"could not transcribe the file: {exc}", param="file")
    return render(segments, info, task, response_format)


@app.post("/v1/audio/transcriptions")
async def transcriptions(file: UploadFile = File(...), model_name: str = Form("", alias="model"), language: str = Form(""),
                         prompt: str = Form(""), response_format: str = Form("json"), temperature: float = Form(0.0)):
    return await run(file, "transcribe", language, prompt, response_format, temperature)


@app.post("/v1/audio/translations")
async def translations(file: UploadFile = File(...), model_name: str = Form("", alias="model"), prompt: str = Form(""),
                       response_format: str = Form("json"), temperature: float = Form(0.0)):
    if MODEL_ID.endswith(".en"):
        raise ApiError(400, f"{SERVED_MODEL_NAME} is English-only and cannot translate")
    return await run(file, "translate", "", prompt, response_format, temperature)


if __name__ == "__main__":
    main()
