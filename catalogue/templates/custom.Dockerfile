# {{name}} ({{hf_id}}) on the custom engine: server for models outside the other engines; BACKEND picks the implementation.
# Rendered by `switchyard catalogue dockerfile {{id}}` from catalogue/templates/custom.Dockerfile.
# Build context: this file plus server.py (`switchyard catalogue context {{id}} --out DIR` writes both).
FROM {{base_image}}

# Weights are downloaded at start into HF_HOME; mount a volume there to keep them across restarts.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/app \
    HF_HOME=/home/app/.cache/huggingface \
    MODEL_ID="{{hf_id}}" \
    SERVED_MODEL_NAME="{{served_model_name}}" \
    PORT={{port}}{{env}}

RUN {{torch_install}}pip install --no-cache-dir \
        fastapi==0.115.12 \
        uvicorn==0.34.2 \
        python-multipart==0.0.20 \
        soundfile==0.13.1 \
        av==14.2.0 \
        pillow==11.2.1{{pip_packages}} \
    && groupadd --gid 10001 app \
    && useradd --create-home --home-dir /home/app --uid 10001 --gid 10001 --shell /usr/sbin/nologin app

COPY --chown=10001:10001 server.py /app/server.py

# Numeric so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
WORKDIR /app
EXPOSE {{port}}

# server.py answers GET /health with 503 while the weights load and 200 {"status": "ok"} after.
HEALTHCHECK --interval=30s --timeout=5s --start-period=900s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{{port}}/health', timeout=4)"]

ENTRYPOINT ["python3", "/app/server.py"]
