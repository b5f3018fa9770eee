# syntax=docker/dockerfile:1.7
# The control and edge services on a slim Python base: gateway, app (hosting the registry) and
# prompt. One image, one process per container: `budrt serve NAME` (the CMD names the service).
# Build from the repository root (its .dockerignore keeps tests, venvs and state out):
#   docker build -f deploy/docker/services.Dockerfile -t bud-runtime/services:0.1.0 .
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
# The project's own pins (grpcio, protobuf... in pyproject.toml); no vLLM in this image.
RUN /opt/bud/bin/pip install --no-cache-dir /src

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="bud-runtime-services" \
      org.opencontainers.image.description="Bud Runtime gateway, app (with the registry) and prompt services" \
      org.opencontainers.image.source="https://github.com/bud-runtime/bud-runtime"
# A fixed non-root user (the chart's securityContext names the same ids); its home is the data
# dir (generated secrets, the SQLite database when no PostgreSQL is configured).
RUN groupadd --system --gid 10001 bud \
 && useradd --system --no-log-init --uid 10001 --gid bud --home-dir /var/lib/bud --create-home bud
COPY --from=build /opt/bud /opt/bud
COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/bin/bud-healthcheck
ENV PATH=/opt/bud/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BUD_DATA_DIR=/var/lib/bud \
    BUD_GATEWAY_HTTP_HOST=0.0.0.0
USER 10001:10001
WORKDIR /var/lib/bud
# gateway HTTP (OpenAI REST + management REST), gateway gRPC (OpenAI service), app gRPC
# (management, routing, usage; the registry), prompt gRPC: the settings' default ports.
EXPOSE 8000 50051 50061 50081
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["bud-healthcheck"]
ENTRYPOINT ["budrt", "serve"]
CMD ["gateway"]
