# {{name}} ({{hf_id}}) on the vllm engine.
# Rendered by `switchyard catalogue dockerfile {{id}}` from catalogue/templates/vllm.Dockerfile.
FROM vllm/vllm-openai:v0.16.0

# Weights are downloaded at start into HF_HOME; mount a volume there to keep them across restarts.
ENV MODEL_NAME="{{hf_id}}" \
    SERVED_MODEL_NAME="{{served_model_name}}" \
    HOME=/home/vllm \
    HF_HOME=/home/vllm/.cache/huggingface

RUN groupadd --gid 10001 vllm \
    && useradd --create-home --home-dir /home/vllm --uid 10001 --gid 10001 --shell /usr/sbin/nologin vllm

# Numeric so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/vllm
EXPOSE {{port}}

# vLLM answers GET /health with 200 once the engine is up; loading large weights takes minutes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=900s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{{port}}/health', timeout=4)"]

ENTRYPOINT ["python3", "-m", "vllm.entrypoints.openai.api_server"]
CMD [{{cmd_args}}]
