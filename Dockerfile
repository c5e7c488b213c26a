# One image for every process of the containerised deployments: the code location (gRPC), the
# run workers (DockerRunLauncher / K8sRunLauncher start one container per run from it), the
# daemon and the web process (Dagster UI + admin page + trigger). Build it with
#
#   deploy/docker/build.sh          # makes the local base image first; see deploy/README.md
#
# which runs: docker build --network host --build-arg BASE_IMAGE=local/debian:bookworm-minbase \
#               -t moodle-integration:0.1.0 .
#
# The base is a Debian 12 minbase made on the build host (debootstrap + docker import), so no
# image registry is needed; any Debian 12 image works as BASE_IMAGE (e.g. debian:bookworm-slim).
# Python is Debian's 3.11. The venv holds exactly uv.lock without the dev group, plus the locked
# `docker` and `k8s` extras (the run launchers), and the project as a wheel (non-editable): the
# shipped image contains no source tree, no tests, no build tools and no build-time CA bundle.
ARG BASE_IMAGE=local/debian:bookworm-minbase

# --- runtime: what every process needs --------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

# --- build: uv, the locked dependencies, the project wheel ------------------------------------
FROM runtime AS build
ARG UV_VERSION=0.13.9
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
# The build host's CA bundle, if deploy/docker/build.sh put one there (a TLS-intercepting proxy
# between this build and PyPI). Used by pip and uv in this stage only.
COPY deploy/docker/build-ca/ /build-ca/
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=/usr/bin/python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1
RUN if [ -s /build-ca/ca-certificates.crt ]; then export PIP_CERT=/build-ca/ca-certificates.crt SSL_CERT_FILE=/build-ca/ca-certificates.crt; fi \
 && python3 -m venv /opt/uv \
 && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
WORKDIR /src
# Dependencies first (a cached layer while uv.lock is unchanged).
COPY pyproject.toml uv.lock README.md ./
RUN if [ -s /build-ca/ca-certificates.crt ]; then export SSL_CERT_FILE=/build-ca/ca-certificates.crt; fi \
 && /opt/uv/bin/uv sync --frozen --no-dev --extra docker --extra k8s --no-install-project
# Then the project itself, built as a wheel by its build backend: the packages that go into the
# image are the ones pyproject.toml names for the wheel, nothing of the layout is repeated here.
COPY . ./
RUN if [ -s /build-ca/ca-certificates.crt ]; then export SSL_CERT_FILE=/build-ca/ca-certificates.crt; fi \
 && /opt/uv/bin/uv sync --frozen --no-dev --extra docker --extra k8s --no-editable \
 && /opt/venv/bin/python -c "import dagster_docker, dagster_k8s, dagster_postgres, moodle_assets.definitions"

# --- the shipped image ------------------------------------------------------------------------
FROM runtime
LABEL org.opencontainers.image.title="moodle-integration" \
      org.opencontainers.image.description="Moodle courses, users and enrollments synced into a SQL database by Dagster: code location, run worker, daemon and web process" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    MOODLE_INTEGRATION_DATA_DIR=/opt/dagster/data \
    MOODLE_THROTTLE_DIR=/var/lib/moodle-throttle
# uid 10001 owns only what it writes: the Dagster home, the data dir and the throttle directory.
# The throttle directory exists in the image so that a named volume mounted there starts out
# owned by uid 10001 (Docker copies the mount point's owner into an empty volume); otherwise
# Docker creates it root-owned and every run falls back to throttling itself alone.
RUN groupadd --gid 10001 dagster \
 && useradd --uid 10001 --gid 10001 --home-dir /opt/dagster --no-create-home --shell /usr/sbin/nologin dagster \
 && mkdir -p "$DAGSTER_HOME" "$MOODLE_INTEGRATION_DATA_DIR" "$MOODLE_THROTTLE_DIR" \
 && chown 10001:10001 /opt/dagster "$DAGSTER_HOME" "$MOODLE_INTEGRATION_DATA_DIR" "$MOODLE_THROTTLE_DIR" \
 && chmod 0750 "$MOODLE_THROTTLE_DIR"
COPY --from=build /opt/venv /opt/venv
# The instance and workspace files the containers use (deploy/README.md).
COPY deploy/dagster.*.yaml deploy/workspace.*.yaml /opt/moodle-integration/deploy/
WORKDIR /opt/moodle-integration
USER 10001
EXPOSE 3000 4266
ENTRYPOINT ["/usr/bin/tini", "--"]
# Default: the code location. The web process and the daemon override the command
# (deploy/docker-compose.yaml):
#   moodle-integration serve --no-daemon --host 127.0.0.1 --port 3000 --workspace deploy/workspace.grpc.yaml
#   dagster-daemon run -w deploy/workspace.grpc.yaml
CMD ["dagster", "code-server", "start", "-m", "moodle_assets.definitions", "--location-name", "moodle_integration", "-h", "0.0.0.0", "-p", "4266"]
