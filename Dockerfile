# syntax=docker/dockerfile:1
# sparki-exporter: a two-stage build. The first stage builds a virtualenv with the
# exporter and its dependencies (wheels only, no compiler); the second copies that
# virtualenv onto a clean slim image and runs it as an unprivileged user.
#
#   docker build -t sparki-exporter:0.1.0 .
#   docker run -p 9840:9840 -e PG_HOST=db -e PG_PASSWORD=... sparki-exporter:0.1.0
#   docker run -v ./sparki.yml:/etc/sparki/sparki.yml:ro sparki-exporter:0.1.0 \
#       --config /etc/sparki/sparki.yml

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/sparki
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN /opt/sparki/bin/pip install --only-binary=:all: --no-compile ".[otel]" \
    && /opt/sparki/bin/sparki-exporter --version

FROM python:3.11-slim
LABEL org.opencontainers.image.title="sparki-exporter" \
      org.opencontainers.image.description="Prometheus exporter for PostgreSQL, Redis/Valkey and S3/MinIO" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 sparki \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin sparki
COPY --from=build /opt/sparki /opt/sparki
ENV PATH=/opt/sparki/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 9840
# /healthz answers while the process serves HTTP; the subcommand tries HTTP then HTTPS
# (for --web.config.file with TLS) and counts a 401 (basic auth on) as alive.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["sparki-exporter", "healthcheck", "--web.listen-address", ":9840"]
ENTRYPOINT ["sparki-exporter"]
