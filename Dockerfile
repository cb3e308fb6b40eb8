# syntax=docker/dockerfile:1
# The platform's image: wework-server (ENTRYPOINT) and wework-admin, the server extra only.
# Build from the repository root:  docker build -t wework-platform:0.1.0 .
# The Helm chart's default image is wework-platform:<appVersion> (charts/wework, docs/helm.md).
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: wheels of the platform and of every server dependency, at the pinned versions ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest out of the context).
COPY pyproject.toml constraints.txt README.md ./
COPY clients ./clients
COPY servers ./servers
COPY persistence ./persistence
RUN pip wheel '.[server]' -c constraints.txt --wheel-dir /wheels

# --- runtime ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# `wework-admin restore --until` (point-in-time recovery) replays binlogs with mariadb-binlog
# and mariadb from this package; set to false for an image without them.
ARG INSTALL_MARIADB_CLIENT=true
# The embedded mode binds loopback by default; in a container only published ports are reachable,
# so the image listens on every interface of the container (as before; the chart sets it too).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    WEWORK_DATA_DIR=/tmp/wework \
    WEWORK_SERVER__HOST=0.0.0.0 \
    WEWORK_OBSERVABILITY__METRICS_HOST=0.0.0.0
RUN if [ "$INSTALL_MARIADB_CLIENT" = "true" ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends mariadb-client \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
    && groupadd --system --gid 10001 wework \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
         --shell /usr/sbin/nologin wework
# The wheels are bind-mounted, not copied: they never become a layer of the final image.
# Bytecode is compiled here because the root filesystem is read-only at run time.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --find-links /wheels 'wework-platform[server]' \
    && /opt/venv/bin/python -m compileall -q /opt/venv \
    && /opt/venv/bin/pip uninstall -y pip
# Nothing is written outside /tmp (an emptyDir in the chart) or mounted volumes.
WORKDIR /tmp
# Numeric, so Kubernetes can check runAsNonRoot; the chart's securityContext uses the same ids.
USER 10001:10001
# gRPC, Prometheus metrics, the provider's callback HTTP ingress.
EXPOSE 50051 9464 8080
ENTRYPOINT ["wework-server"]
