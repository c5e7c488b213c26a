#!/usr/bin/env bash
# Build the images of the Docker deployment on this host from Debian's apt mirror and the
# Python package index alone; no container registry is needed (none may be reachable):
#
#   1. BASE_IMAGE  (local/debian:bookworm-minbase): `debootstrap --variant=minbase bookworm`,
#      imported with `docker import`. Skipped when the image exists (delete it to refresh).
#   2. APP_IMAGE   (moodle-integration:0.1.0): ../../Dockerfile, on BASE_IMAGE.
#   3. PG_IMAGE    (moodle-integration-postgres:15): postgres/Dockerfile, Debian's PostgreSQL 15
#      on BASE_IMAGE, for the compose trial (use your managed PostgreSQL in production).
#
# Steps 2 and 3 use Docker's layer cache: an unchanged tree rebuilds in seconds.
#
# Behind a TLS-intercepting proxy the image's fresh CA store does not trust PyPI. The host's
# bundle (BUILD_CA_BUNDLE, default $SSL_CERT_FILE or /etc/ssl/certs/ca-certificates.crt; set
# it empty to skip) is copied into deploy/docker/build-ca/ for the duration of the build; the
# Dockerfile uses it in its build stage only, so it is in no layer of the shipped image.
#
# Runs as root (debootstrap) on a Debian/Ubuntu host with docker and debootstrap installed.
# Env: BASE_IMAGE APP_IMAGE PG_IMAGE DEBIAN_MIRROR DEBIAN_SECURITY_MIRROR BUILD_CA_BUNDLE
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
BASE_IMAGE="${BASE_IMAGE:-local/debian:bookworm-minbase}"
APP_IMAGE="${APP_IMAGE:-moodle-integration:0.1.0}"
PG_IMAGE="${PG_IMAGE:-moodle-integration-postgres:15}"
# The host's own Debian mirror when it has one (its apt sources), else deb.debian.org.
host_mirror() {  # $1: "main" or "security"
  grep -q '^ID=debian' /etc/os-release 2>/dev/null || return 0
  { sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null
    awk '$1 == "deb" && $2 ~ /^https?:/ {print $2}' /etc/apt/sources.list 2>/dev/null; } \
    | tr ' ' '\n' | { if [ "$1" = security ]; then grep -- '-security'; else grep -v -- '-security'; fi; } | head -1 \
    || true
}
DEBIAN_MIRROR="${DEBIAN_MIRROR:-$(host_mirror main)}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-$(host_mirror security)}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
BUILD_CA_BUNDLE="${BUILD_CA_BUNDLE-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
export DOCKER_BUILDKIT=0   # the classic builder: no buildx on the hosts this is made for

log() { echo "==> $*" >&2; }

build_base() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE exists (docker rmi it to rebuild)"
    return
  fi
  command -v debootstrap >/dev/null || { echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
  rootfs="$(mktemp -d /tmp/moodle-base-rootfs.XXXXXX)"
  trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
  log "debootstrap --variant=minbase bookworm from $DEBIAN_MIRROR"
  debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$rootfs.log" 2>&1 \
    || { tail -20 "$rootfs.log" >&2; exit 1; }
  # Security and point-release updates, as in Debian's own images; nothing of this host
  # (resolv.conf, hostname) and no package caches go into the image.
  cat >"$rootfs/etc/apt/sources.list" <<LIST
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb $DEBIAN_SECURITY_MIRROR bookworm-security main
LIST
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/90-no-recommends"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
  : >"$rootfs/etc/resolv.conf"; : >"$rootfs/etc/hostname"
  log "docker import -> $BASE_IMAGE"
  tar -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs" "$rootfs.log"
  trap - EXIT
}

build_images() {
  local ca_dir="$here/build-ca"
  rm -f "$ca_dir/ca-certificates.crt"
  if [ -n "$BUILD_CA_BUNDLE" ] && [ -s "$BUILD_CA_BUNDLE" ]; then
    cp "$BUILD_CA_BUNDLE" "$ca_dir/ca-certificates.crt"
  fi
  trap 'rm -f "'"$ca_dir"'/ca-certificates.crt"' EXIT
  # The two builds in parallel: mostly downloads and package installs, they overlap well.
  local logs; logs="$(mktemp -d /tmp/moodle-build-logs.XXXXXX)"
  log "docker build $APP_IMAGE and $PG_IMAGE (in parallel)"
  docker build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$APP_IMAGE" -f "$repo/Dockerfile" "$repo" \
    >"$logs/app.log" 2>&1 &
  local app=$!
  docker build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$PG_IMAGE" "$here/postgres" \
    >"$logs/postgres.log" 2>&1 &
  local pg=$!
  local rc=0
  wait "$app" || rc=1
  wait "$pg" || rc=1
  cat "$logs/app.log" "$logs/postgres.log"
  rm -rf "$logs"
  [ "$rc" = 0 ] || { echo "error: docker build failed (output above)" >&2; exit 1; }
}

build_base
build_images
