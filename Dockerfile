# syntax=docker/dockerfile:1
# sparki-exporter: a two-stage build. The first stage builds a virtualenv: the
# dependencies from requirements.lock (pinned, hash-checked wheels, no compiler) in a
# layer of their own, then the exporter; everything is compiled to bytecode here. The
# second stage copies that virtualenv onto a clean slim image and runs it as an
# unprivileged user with a read-only root filesystem possible (nothing is written).
#
#   docker build -t sparki-exporter:0.1.0 .
#   docker run -p 9840:9840 -e PG_HOST=db -e PG_PASSWORD=... sparki-exporter:0.1.0
#   docker run -v ./sparki.yml:/etc/sparki/sparki.yml:ro sparki-exporter:0.1.0 \
#       --config /etc/sparki/sparki.yml
#
# The base image is pinned by digest, so a rebuild uses the very same Python and Debian
# layers. To move to a newer python:3.11-slim-bookworm (security updates), look its
# digest up and change the default below (or pass --build-arg PYTHON_IMAGE=...):
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{.Manifest.Digest}}'
#   (or: crane digest python:3.11-slim-bookworm; skopeo inspect docker://python:3.11-slim-bookworm)
# After changing dependencies in pyproject.toml, regenerate the lock: scripts/lock.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/sparki
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY requirements.lock ./
RUN /opt/sparki/bin/pip install --require-hashes --only-binary=:all: --no-deps \
        -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
# --no-deps: every dependency is already there, exactly as locked. Then compile all of
# the virtualenv once (unchecked-hash .pyc files are never revalidated at start-up), so
# the read-only image starts from bytecode instead of compiling in memory every time.
RUN /opt/sparki/bin/pip install --no-deps . \
    && /opt/sparki/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        /opt/sparki/lib \
    && /opt/sparki/bin/sparki-exporter --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="sparki-exporter" \
      org.opencontainers.image.description="Prometheus exporter for PostgreSQL, MySQL/MariaDB, Redis/Valkey, Memcached, S3/MinIO, etcd, NATS and embedded LSM stores" \
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
# (for --web.config.file with TLS) and counts a 401 (basic auth on) as alive. It imports
# only the standard library (tens of milliseconds, a few MB), as it runs every 30 s.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["sparki-exporter", "healthcheck", "--web.listen-address", ":9840"]
ENTRYPOINT ["sparki-exporter"]
