# syntax=docker/dockerfile:1.7
# The engine on NVIDIA GPUs: `vllm` (the version the project tests: the `gpu` extra of
# pyproject.toml) on NVIDIA's CUDA runtime image, Python 3.11 from uv's pinned builds, and Ray for
# multi-node serving (the chart's Ray head + workers). One process: `budrt serve engine`.
#   docker build -f deploy/docker/engine-gpu.Dockerfile -t bud-runtime/engine-gpu:0.1.0 .
# CUDA_VERSION: the CUDA the pinned vLLM's wheels are built for; bump it with the vllm pin.
ARG CUDA_VERSION=12.9.1
ARG UBUNTU_VERSION=22.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.9.7

FROM ${UV_IMAGE} AS uv

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION} AS build
ARG PYTHON_VERSION=3.11.14
ARG RAY_VERSION=2.49.2
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python UV_LINK_MODE=copy UV_NO_CACHE=1
RUN uv python install "${PYTHON_VERSION}" \
 && uv venv --python "${PYTHON_VERSION}" /opt/bud
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
RUN uv pip install --python /opt/bud/bin/python "/src[gpu]" "ray[default]==${RAY_VERSION}"

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION}
LABEL org.opencontainers.image.title="bud-runtime-engine-gpu" \
      org.opencontainers.image.description="Bud Runtime engine on NVIDIA GPUs (vllm, Ray)" \
      org.opencontainers.image.source="https://github.com/bud-runtime/bud-runtime"
RUN groupadd --system --gid 10001 bud \
 && useradd --system --no-log-init --uid 10001 --gid bud --home-dir /var/lib/bud --create-home bud \
 && mkdir -p /models \
 && chown bud:bud /models
COPY --from=build /opt/python /opt/python
COPY --from=build /opt/bud /opt/bud
COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/bin/bud-healthcheck
ENV PATH=/opt/bud/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BUD_DATA_DIR=/var/lib/bud \
    BUD_ALLOWED_MODEL_ROOTS=/models \
    HF_HOME=/models/hf \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /var/lib/bud
# The engine's gRPC port (EngineService, mutual TLS): the settings' default.
EXPOSE 50071
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 CMD ["bud-healthcheck", "engine"]
ENTRYPOINT ["budrt", "serve"]
CMD ["engine"]
