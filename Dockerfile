# syntax=docker/dockerfile:1
# One image for every process: `csae router`, `csae referral worker`, `csae referral api`,
# `csae db upgrade`, `csae topics create`. Build: docker build -t csae-referrals .
# The final stage has no compiler, no uv and no build files; it runs as uid 10001 and writes
# nothing outside /tmp, so it runs with a read-only root filesystem.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The same uv as the Makefile's UV_VERSION.
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /usr/local/bin/uv
# Bytecode compiled here, once, because the final stage cannot write it; copy, not hard-link,
# from uv's cache, which stays in this stage.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/csae
WORKDIR /src
# The locked dependencies first, in their own layer, so a code change does not reinstall them.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY README.md ./
COPY schemas ./schemas
COPY services ./services
RUN uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="csae-referrals" \
      org.opencontainers.image.description="Routes CSAE moderation flags to metadata-only police referrals" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 csae \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin csae
COPY --from=builder /opt/csae /opt/csae
ENV PATH=/opt/csae/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    CSAE_API_HOST=0.0.0.0
WORKDIR /tmp
USER 10001:10001
# API, router /metrics, worker /metrics
EXPOSE 8000 9101 9102
ENTRYPOINT ["csae"]
CMD ["--help"]
