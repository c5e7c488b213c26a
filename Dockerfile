# One image for every process of a scaled-out deployment: the code location (gRPC), the run
# workers it launches, the daemon and the web process (Dagster UI + admin page + trigger).
# NOT built on the machine this was written on (no Docker engine there); see deploy/README.md.
#
#   docker build -t moodle-integration:0.1.0 .
#   docker build --build-arg LAUNCHER_PACKAGE=dagster-k8s==0.29.27 -t moodle-integration:0.1.0-k8s .
#
# The launcher package matches the pinned dagster 1.13.27 family (dagster-postgres 0.29.27).
FROM python:3.11-slim-bookworm

ARG UV_VERSION=0.13.9
ARG LAUNCHER_PACKAGE=dagster-docker==0.29.27

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    MOODLE_INTEGRATION_DATA_DIR=/opt/dagster/data

WORKDIR /opt/moodle-integration

# Dependencies first (cached layer): exactly uv.lock, without the dev group.
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project \
 && uv pip install --python /opt/venv/bin/python "${LAUNCHER_PACKAGE}"

COPY moodle_assets ./moodle_assets
COPY resources ./resources
COPY schedules ./schedules
COPY sensors ./sensors
COPY workspace.yaml dagster.yaml ./
COPY deploy ./deploy
RUN uv sync --frozen --no-dev \
 && useradd --system --uid 10001 --home-dir /opt/dagster dagster \
 && mkdir -p "$DAGSTER_HOME" "$MOODLE_INTEGRATION_DATA_DIR" \
 && chown -R dagster "$DAGSTER_HOME" "$MOODLE_INTEGRATION_DATA_DIR"

USER dagster
EXPOSE 3000 4266

# Default: the code location. The web process and the daemon override the command:
#   moodle-integration serve --no-daemon --host 0.0.0.0 --port 3000 --workspace deploy/workspace.grpc.yaml
#   dagster-daemon run -w deploy/workspace.grpc.yaml
CMD ["dagster", "code-server", "start", "-m", "moodle_assets.definitions", "--location-name", "moodle_integration", "-h", "0.0.0.0", "-p", "4266"]
