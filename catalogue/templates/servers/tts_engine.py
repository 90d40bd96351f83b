# tts-engine: OpenAI-compatible /v1/audio/speech. TTS_BACKEND picks the library:
# transformers (Bark, SpeechT5, MMS/VITS), coqui (XTTS), kokoro, piper, parler, f5.
# Each loader returns synth(text, voice, speed) -> (float32 samples, sample rate).
import numpy as np
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

BACKEND = os.environ.get("TTS_BACKEND", "transformers")
DEFAULT_VOICE = os.environ.get("DEFAULT_VOICE", "")
MAX_INPUT_CHARS = 4096
FORMATS = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac", "opus": "audio/ogg", "pcm": "audio/pcm"}


def load_transformers():
    import torch
    from transformers import AutoProcessor, BarkModel, pipeline

    device, _ = device_and_dtype()
    if "bark" in MODEL_ID:
        processor = AutoProcessor.from_pretrained(MODEL_ID)
        bark = BarkModel.from_pretrained(MODEL_ID).to(device)

        def synth(text, voice, _speed):
            inputs = processor(text, voice_preset=voice or DEFAULT_VOICE or None).to(device)
            audio = bark.generate(**inputs, pad_token_id=processor.tokenizer.pad_token_id)
            return audio.cpu().float().numpy().squeeze(), bark.generation_config.sample_rate

        return synth
    pipe = pipeline("text-to-speech", model=MODEL_ID, device=device)
    # SpeechT5 needs a speaker x-vector; a zero vector gives its neutral voice without a dataset download.
    forward = {"speaker_embeddings": torch.zeros((1, 512))} if "speecht5" in MODEL_ID else {}

    def synth(text, _voice, _speed):
        out = pipe(text, forward_params=forward) if forward else pipe(text)
        return np.asarray(out["audio"], dtype=np.float32).squeeze(), int(out["sampling_rate"])

    return synth


def load_coqui():
    from TTS.api import TTS

    device, _ = device_and_dtype()
    tts = TTS(os.environ["COQUI_MODEL"]).to(device)
    language = os.environ.get("TTS_LANGUAGE", "en")

    def synth(text, voice, speed):
        wav = tts.tts(text=text, speaker=voice or DEFAULT_VOICE, language=language, speed=speed)
        return np.asarray(wav, dtype=np.float32), tts.synthesizer.output_sample_rate

    return synth


def load_kokoro():
    from kokoro import KPipeline

    pipe = KPipeline(lang_code=os.environ.get("KOKORO_LANG", "a"), repo_id=MODEL_ID)

    def synth(text, voice, speed):
        parts = [np.asarray(audio, dtype=np.float32) for _, _, audio in pipe(text, voice=voice or DEFAULT_VOICE, speed=speed)]
        return (np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)), 24000

    return synth


def load_piper():
    from huggingface_hub import hf_hub_download
    from piper import PiperVoice

    voice_file = os.environ["PIPER_VOICE_FILE"]
    onnx = hf_hub_download(MODEL_ID, voice_file)
    config = hf_hub_download(MODEL_ID, voice_file + ".json")
    piper_voice = PiperVoice.load(onnx, config_path=config)

    def synth(text, _voice, speed):
        raw = b"".join(piper_voice.synthesize_stream_raw(text, length_scale=1.0 / speed))
        return np.frombuffer(raw, dtype=np.int16).astype(np.float32) / 32768.0, piper_voice.config.sample_rate

    return synth


def load_parler():
    from parler_tts import ParlerTTSForConditionalGeneration
    from transformers import AutoTokenizer

    device, _ = device_and_dtype()
    parler = ParlerTTSForConditionalGeneration.from_pretrained(MODEL_ID).to(device)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_ID)

    def synth(text, voice, _speed):
        # Parler describes the voice in words; the request's voice field is that description.
        description = tokenizer(voice or DEFAULT_VOICE, return_tensors="pt").input_ids.to(device)
        prompt = tokenizer(text, return_tensors="pt").input_ids.to(device)
        audio = parler.generate(input_ids=description, prompt_input_ids=prompt)
        return audio.cpu().float().numpy().squeeze(), parler.config.sampling_rate

    return synth


def load_f5():
    from importlib.resources import files

    from f5_tts.api import F5TTS

    device, _ = device_and_dtype()
    f5 = F5TTS(device=device)
    # The package ships a reference clip and its transcript; F5 clones that voice.
    ref_file = str(files("f5_tts").joinpath("infer/examples/basic/basic_ref_en.wav"))
    ref_text = "Some call me nature, others call me mother nature."

    def synth(text, _voice, speed):
        wav, rate, _ = f5.infer(ref_file=ref_file, ref_text=ref_text, gen_text=text, speed=speed)
        return np.asarray(wav, dtype=np.float32), rate

    return synth


LOADERS = {"transformers": load_transformers, "coqui": load_coqui, "kokoro": load_kokoro, "piper": load_piper,
           "parler": load_parler, "f5": load_f5}


def load():
    if BACKEND not in LOADERS:
        raise ValueError(f"unknown TTS_BACKEND {BACKEND!r}")
    return LOADERS[BACKEND]()


def resample(samples, rate, target):
    if rate == target or samples.size == 0:
        return samples
    positions = np.arange(int(len(samples) * target / rate)) * (rate / target)
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)


def encode(samples, rate, response_format):
    import soundfile as sf

    samples = np.clip(samples, -1.0, 1.0)
    if response_format == "pcm":  # OpenAI's pcm is 24 kHz signed 16-bit little-endian
        return (resample(samples, rate, 24000) * 32767).astype("<i2").tobytes()
    if response_format == "opus":  # Opus only runs at 8/12/16/24/48 kHz
        samples, rate = resample(samples, rate, 48000), 48000
    buffer = io.BytesIO()
    layout = {"mp3": ("MP3", "MPEG_LAYER_III"), "wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "opus": ("OGG", "OPUS")}
    container, subtype = layout[response_format]
    sf.write(buffer, samples, rate, format=container, subtype=subtype)
    return buffer.getvalue()


@app.post("/v1/audio/speech")
async def speech(request: Request):
    body = await json_body(request)
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "input must be a non-empty string", param="input")
    if len(text) > MAX_INPUT_CHARS:
        raise ApiError(400, f"input is longer than {MAX_INPUT_CHARS} characters", param="input")
    response_format = body.get("response_format") or "mp3"
    if response_format not in FORMATS:
        raise ApiError(400, f"response_format must be one of {', '.join(FORMATS)}", param="response_format")
    try:
        speed = float(body.get("speed", 1.0))
    except (TypeError, ValueError):
        raise ApiError(400, "speed must be a number", param="speed")
    if not 0.25 <= speed <= 4.0:
        raise ApiError(400, "speed must be between 0.25 and 4.0", param="speed")
    voice = body.get("voice") if isinstance(body.get("voice"), str) and body.get("voice") != "default" else ""
    synth = model()

    def run():
        with inference_lock:
            samples, rate = synth(text, voice, speed)
        return encode(np.asarray(samples, dtype=np.float32), int(rate), response_format)

    audio = await run_in_threadpool(run)
    return Response(content=audio, media_type=FORMATS[response_format])


if __name__ == "__main__":
    main()
