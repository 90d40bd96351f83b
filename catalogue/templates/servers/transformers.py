# transformers engine: TASK selects chat | multimodal | embedding | transcription | ner.
# Endpoints follow OpenAI's shapes; streaming sends the whole reply as one SSE chunk because
# generation here is not incremental.
import base64
import urllib.request

from fastapi import File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, StreamingResponse

TASK = os.environ.get("TASK", "chat")
MM_STYLE = os.environ.get("MM_STYLE", "vision2seq")  # vision2seq | florence2 | moondream
MAX_IMAGE_BYTES = 20 * 1024 * 1024


def load():
    from transformers import pipeline

    device, dtype = device_and_dtype()
    if TASK == "embedding":
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(MODEL_ID, device=device, trust_remote_code=TRUST_REMOTE_CODE)
    if TASK == "transcription":
        return pipeline("automatic-speech-recognition", model=MODEL_ID, device=device, torch_dtype=dtype)
    if TASK == "ner":
        return pipeline("token-classification", model=MODEL_ID, aggregation_strategy="simple", device=device)
    if TASK == "chat":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(MODEL_ID, trust_remote_code=TRUST_REMOTE_CODE)
        net = AutoModelForCausalLM.from_pretrained(MODEL_ID, torch_dtype=dtype, trust_remote_code=TRUST_REMOTE_CODE)
        return tokenizer, net.to(device).eval()
    if TASK == "multimodal":
        from transformers import AutoModelForCausalLM, AutoModelForVision2Seq, AutoProcessor

        if MM_STYLE == "moondream":
            net = AutoModelForCausalLM.from_pretrained(MODEL_ID, trust_remote_code=True, torch_dtype=dtype)
            return None, net.to(device).eval()
        processor = AutoProcessor.from_pretrained(MODEL_ID, trust_remote_code=TRUST_REMOTE_CODE)
        cls = AutoModelForCausalLM if MM_STYLE == "florence2" else AutoModelForVision2Seq
        net = cls.from_pretrained(MODEL_ID, torch_dtype=dtype, trust_remote_code=TRUST_REMOTE_CODE)
        return processor, net.to(device).eval()
    raise ValueError(f"unknown TASK {TASK!r}")


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def load_image(url):
    from PIL import Image

    if url.startswith("data:"):
        try:
            data = base64.b64decode(url.split(",", 1)[1], validate=False)
        except (IndexError, ValueError):
            raise ApiError(400, "image_url is not a valid data URL", param="messages")
    elif url.startswith(("http://", "https://")):
        with urllib.request.urlopen(url, timeout=20) as resp:  # noqa: S310 - scheme checked above
            data = resp.read(MAX_IMAGE_BYTES + 1)
    else:
        raise ApiError(400, "image_url must be a data: or http(s) URL", param="messages")
    if len(data) > MAX_IMAGE_BYTES:
        raise ApiError(400, "image is larger than 20 MiB", param="messages")
    return Image.open(io.BytesIO(data)).convert("RGB")


def images_of(messages):
    urls = []
    for m in messages:
        if isinstance(m.get("content"), list):
            for part in m["content"]:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    image_url = part.get("image_url")
                    urls.append(image_url.get("url", "") if isinstance(image_url, dict) else str(image_url))
    return [load_image(u) for u in urls]


def strip_prompt(output_ids, inputs):
    """Decoder-only models echo the prompt; keep only the new tokens."""
    import torch

    prompt = inputs.get("input_ids")
    if prompt is not None and output_ids.shape[0] > prompt.shape[1] and torch.equal(output_ids[: prompt.shape[1]], prompt[0]):
        return output_ids[prompt.shape[1]:]
    return output_ids


def sampling(params):
    temperature = float(params.get("temperature", 1.0) or 0.0)
    kwargs = {"max_new_tokens": params["max_tokens"], "do_sample": temperature > 0}
    if temperature > 0:
        kwargs.update(temperature=temperature, top_p=float(params.get("top_p", 1.0)))
    return kwargs


def generate_chat(messages, params):
    import torch

    tokenizer, net = model()
    chat = [{"role": m.get("role", "user"), "content": text_of(m.get("content"))} for m in messages]
    input_ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt").to(net.device)
    with inference_lock, torch.inference_mode():
        out = net.generate(input_ids, pad_token_id=tokenizer.eos_token_id, **sampling(params))[0]
    new = out[input_ids.shape[1]:]
    return tokenizer.decode(new, skip_special_tokens=True), input_ids.shape[1], len(new)


def generate_multimodal(messages, params):
    import torch

    processor, net = model()
    images = images_of(messages)
    prompt_text = text_of(messages[-1].get("content"))
    if MM_STYLE == "moondream":
        if not images:
            raise ApiError(400, "moondream needs an image_url part", param="messages")
        with inference_lock, torch.inference_mode():
            answer = net.query(images[0], prompt_text)["answer"] if prompt_text else net.caption(images[0])["caption"]
        return answer, 0, 0
    if MM_STYLE == "florence2":
        if not images:
            raise ApiError(400, "Florence-2 needs an image_url part", param="messages")
        # Florence-2 is driven by task tokens such as <OCR> or <CAPTION_TO_PHRASE_GROUNDING>text.
        prompt = prompt_text.strip() if prompt_text.strip().startswith("<") else "<MORE_DETAILED_CAPTION>"
        task = prompt.split(">", 1)[0] + ">"
        inputs = processor(text=prompt, images=images[0], return_tensors="pt").to(net.device, net.dtype)
        with inference_lock, torch.inference_mode():
            out = net.generate(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"], max_new_tokens=params["max_tokens"], num_beams=3)
        raw = processor.batch_decode(out, skip_special_tokens=False)[0]
        parsed = processor.post_process_generation(raw, task=task, image_size=images[0].size)
        value = parsed.get(task, parsed)
        return (value if isinstance(value, str) else json.dumps(value)), inputs["input_ids"].shape[1], out.shape[1]
    if getattr(processor, "chat_template", None):
        chat = []
        for m in messages:
            parts = m.get("content") if isinstance(m.get("content"), list) else [{"type": "text", "text": text_of(m.get("content"))}]
            content = [{"type": "image"} if p.get("type") == "image_url" else {"type": "text", "text": p.get("text", "")} for p in parts if isinstance(p, dict)]
            chat.append({"role": m.get("role", "user"), "content": content})
        prompt = processor.apply_chat_template(chat, add_generation_prompt=True)
    else:
        prompt = prompt_text
    inputs = processor(text=prompt or None, images=images or None, return_tensors="pt").to(net.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(net.dtype)
    with inference_lock, torch.inference_mode():
        out = net.generate(**inputs, **sampling(params))[0]
    new = strip_prompt(out, inputs)
    prompt_tokens = inputs["input_ids"].shape[1] if "input_ids" in inputs else 0
    return processor.decode(new, skip_special_tokens=True).strip(), prompt_tokens, len(new)


def recognise_entities(messages, _params):
    text = text_of(messages[-1].get("content"))
    with inference_lock:
        found = model()(text)
    entities = [
        {"entity": e["entity_group"], "word": e["word"], "start": int(e["start"]), "end": int(e["end"]), "score": round(float(e["score"]), 4)}
        for e in found
    ]
    return json.dumps(entities), len(text.split()), len(entities)


GENERATORS = {"chat": generate_chat, "multimodal": generate_multimodal, "ner": recognise_entities}


@app.post("/v1/chat/completions")
async def chat_completions(request: Request):
    if TASK not in GENERATORS:
        raise ApiError(404, f"{SERVED_MODEL_NAME} does not serve chat completions")
    body = await json_body(request)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ApiError(400, "messages must be a non-empty array of objects", param="messages")
    params = dict(body)
    params["max_tokens"] = int(body.get("max_completion_tokens") or body.get("max_tokens") or 512)
    text, prompt_tokens, completion_tokens = await run_in_threadpool(GENERATORS[TASK], messages, params)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
    completion_id, created = new_id("chatcmpl"), int(time.time())
    if body.get("stream"):
        return StreamingResponse(stream_chunks(completion_id, created, text, usage, body), media_type="text/event-stream")
    message = {"role": "assistant", "content": text}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return {"id": completion_id, "object": "chat.completion", "created": created, "model": SERVED_MODEL_NAME, "choices": [choice], "usage": usage}


def stream_chunks(completion_id, created, text, usage, body):
    def chunk(delta, finish=None, **extra):
        payload = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": SERVED_MODEL_NAME,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(payload)}\n\n"

    yield chunk({"role": "assistant", "content": text})
    yield chunk({}, "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        payload = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": SERVED_MODEL_NAME, "choices": [], "usage": usage}
        yield f"data: {json.dumps(payload)}\n\n"
    yield "data: [DONE]\n\n"


@app.post("/v1/embeddings")
async def embeddings(request: Request):
    if TASK != "embedding":
        raise ApiError(404, f"{SERVED_MODEL_NAME} does not serve embeddings")
    body = await json_body(request)
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(s, str) for s in inputs):
        raise ApiError(400, "input must be a string or an array of strings", param="input")
    dimensions = body.get("dimensions")
    encoder = model()

    def encode():
        with inference_lock:
            return encoder.encode(inputs, normalize_embeddings=True, convert_to_numpy=True, truncate_dim=dimensions)

    vectors = await run_in_threadpool(encode)
    tokens = sum(len(encoder.tokenizer(s)["input_ids"]) for s in inputs)
    data = []
    for i, v in enumerate(vectors):
        if body.get("encoding_format") == "base64":
            value = base64.b64encode(v.astype("<f4").tobytes()).decode()
        else:
            value = v.astype(float).tolist()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {"object": "list", "data": data, "model": SERVED_MODEL_NAME, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


@app.post("/v1/audio/transcriptions")
async def transcriptions(file: UploadFile = File(...), model_name: str = Form("", alias="model"), language: str = Form(""),
                         response_format: str = Form("json")):
    if TASK != "transcription":
        raise ApiError(404, f"{SERVED_MODEL_NAME} does not serve transcriptions")
    if response_format not in ("json", "text", "verbose_json"):
        raise ApiError(400, "response_format must be json, text or verbose_json", param="response_format")
    samples = decode_audio(await file.read())
    kwargs = {"generate_kwargs": {"language": language}} if language and "whisper" in MODEL_ID else {}

    def run():
        with inference_lock:
            return model()({"raw": samples, "sampling_rate": 16000}, chunk_length_s=30, **kwargs)

    text = (await run_in_threadpool(run))["text"].strip()
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format == "verbose_json":
        return {"task": "transcribe", "language": language or None, "duration": round(len(samples) / 16000, 2), "text": text, "segments": []}
    return {"text": text}


if __name__ == "__main__":
    main()
