#!/usr/bin/env bash
# Build the user-code and control-plane images on a machine with no container registry.
#
# Production builds deploy/docker/Dockerfile.* on the official python:3.11-slim-bookworm and
# pip installs from PyPI. Where no image can be pulled (and containers cannot reach PyPI:
# here TLS to pypi.org from a container fails, the host's egress CA is not theirs), this
# script builds the same Dockerfiles on a local base:
#   1. base       Debian bookworm from Debian's packages (debootstrap --variant=minbase),
#                 `docker import`ed as $UNDE_BASE_IMAGE: Debian's CPython 3.11 as a venv at
#                 /usr/local, so `python`, `python3`, `pip` are /usr/local/bin/* and
#                 site-packages is /usr/local/lib/python3.11/site-packages, as in the official
#                 image; ca-certificates, tzdata; docs, man pages, locales and apt lists cut.
#                 Skipped when the image exists with the same recipe hash (label).
#   2. wheelhouse cp311 manylinux x86_64 wheels of both pinned requirement files (+ a
#                 setuptools build backend), downloaded on the host while the base builds.
#                 Reused while the requirement files and this recipe are unchanged.
#   3. images     docker build --build-arg PYTHON_IMAGE=<base>, pip pointed at the wheelhouse
#                 served on 127.0.0.1 for the build (--network host; PIP_NO_INDEX=1,
#                 PIP_FIND_LINKS). The wheels are never COPY'd, so the layers are what a
#                 production build makes; the docker layer cache does the rest.
# A second run with nothing changed takes seconds.
#
# Usage (from anywhere, as a user who may run docker; the base step needs root):
#   deploy/images/build.sh                 # base (if needed) + wheelhouse (if needed) + both images
#   deploy/images/build.sh --rebuild-base  # debootstrap again (e.g. for Debian security updates)
#   deploy/images/build.sh --base python:3.11-slim-bookworm   # an existing base: no debootstrap
# Environment: UNDE_BASE_IMAGE (unde/bookworm-python:3.11), UNDE_USER_CODE_IMAGE
# (unde-dagster:local), UNDE_CONTROL_IMAGE (unde-dagster-control:local), DEBIAN_MIRROR
# (http://deb.debian.org/debian), UNDE_WHEELHOUSE_PORT (38123), UNDE_IMAGES_WORK (work folder,
# deploy/images/.build, gitignored and outside the build context).
# With BuildKit (docker buildx) the docker driver is needed: a docker-container builder cannot
# see the locally imported base and would try to pull it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${UNDE_IMAGES_WORK:-$ROOT/deploy/images/.build}"
BASE_IMAGE="${UNDE_BASE_IMAGE:-unde/bookworm-python:3.11}"
USER_IMAGE="${UNDE_USER_CODE_IMAGE:-unde-dagster:local}"
CONTROL_IMAGE="${UNDE_CONTROL_IMAGE:-unde-dagster-control:local}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PORT="${UNDE_WHEELHOUSE_PORT:-38123}"

# The base recipe. Any change here (or in build_base below) changes the recipe hash and so
# rebuilds the base on the next run.
SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,ca-certificates,tzdata
# pip/setuptools/wheel as the official python:3.11 image carries them (ensurepip's pip,
# setuptools 65.5.1, wheel <0.46), instead of Debian's pip 23.0.1/setuptools 66.1.1.
BASE_PIP=(pip==24.0 setuptools==65.5.1 wheel==0.45.1)
# Wheelhouse: the pinned runtime sets, plus a build backend for `pip install .` should pip
# build the project in an isolated environment (pip >= 25.3 always does; pyproject.toml asks
# for setuptools>=68). pip 24.0 with only setup.py in the image uses the base's setuptools.
REQUIREMENTS=(deploy/docker/requirements-user-code.txt deploy/docker/requirements-control-plane.txt)
BUILD_REQUIREMENTS=(setuptools==84.2.1)

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

REBUILD_BASE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rebuild-base) REBUILD_BASE=1 ;;
    --base) BASE_IMAGE="${2:?--base needs an image}"; EXTERNAL_BASE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}s')" "$1" "$(now)"; }
TIMES=()

# One build at a time per work folder: two at once share its rootfs and wheelhouse (two
# debootstraps into one rootfs fail as "Invalid Release signature"). A second waits.
mkdir -p "$WORK"
exec 9>"$WORK/.lock"
if ! flock -n 9; then
  log "another build.sh is using $WORK: waiting for it"
  flock 9
fi

ROOTFS="$WORK/rootfs"
# Unmount whatever debootstrap or we left mounted inside the rootfs (deepest first).
unmount_rootfs() {
  [ -d "$ROOTFS" ] || return 0
  local m
  for m in $(awk -v r="$ROOTFS" 'index($2, r"/") == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" || true
  done
}

recipe_hash() {
  { echo "$SUITE $BASE_PACKAGES ${BASE_PIP[*]}"; declare -f build_base; } | sha256sum | cut -c1-16
}

build_base() {
  local hash="$1" pyver
  if [ "$(id -u)" -ne 0 ]; then
    echo "the base image is built with debootstrap and chroot: run as root (or pass --base IMAGE)" >&2
    exit 1
  fi
  if ! command -v debootstrap >/dev/null; then
    apt-get install -y --no-install-recommends debootstrap \
      || { apt-get update && apt-get install -y --no-install-recommends debootstrap; }
  fi
  unmount_rootfs
  rm -rf --one-file-system "$ROOTFS"
  mkdir -p "$WORK"
  # Official pip/setuptools/wheel for the venv, fetched on the host (the chroot has no PyPI).
  rm -rf "$WORK/base-wheels"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$WORK/base-wheels" "${BASE_PIP[@]}"

  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR"

  # Keep later apt-get installs slim and cache-free, as Debian's own container images do.
  cat > "$ROOTFS/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  cat > "$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
Acquire::CompressionTypes::Order:: "gz";
APT::AutoRemove::SuggestsImportant "false";
EOF
  # Point releases plus updates and security, as the official bookworm images list them.
  rm -f "$ROOTFS/etc/apt/sources.list"
  cat > "$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${MIRROR}
Suites: ${SUITE} ${SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: ${SUITE}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  mount -t proc proc "$ROOTFS/proc"
  chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -euc 'apt-get update -qq && apt-get upgrade -y -qq && apt-get clean'
  # The venv at /usr/local: python/pip on PATH and the official image's site-packages path.
  mkdir -p "$ROOTFS/tmp/base-wheels"
  cp "$WORK"/base-wheels/*.whl "$ROOTFS/tmp/base-wheels/"
  chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin sh -euc '
    python3 -m venv /usr/local
    pip install --quiet --no-index --no-cache-dir --disable-pip-version-check --upgrade /tmp/base-wheels/*.whl
    python -c "import ssl, sqlite3, zoneinfo, venv; zoneinfo.ZoneInfo(\"Europe/Berlin\")"
    pip check'
  pyver="$(chroot "$ROOTFS" /usr/local/bin/python -c 'import platform; print(platform.python_version())')"
  umount "$ROOTFS/proc"

  # Slim: what the dpkg excludes above now keep out of later installs, removed from this one.
  (
    cd "$ROOTFS"
    find usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
    find usr/share/doc -mindepth 1 -type d -empty -delete
    rm -rf usr/share/man/* usr/share/groff/* usr/share/info/* usr/share/lintian/* \
      usr/share/linda/* usr/share/locale/*
    rm -rf var/lib/apt/lists/* var/cache/apt/* var/cache/debconf/*-old var/lib/dpkg/*-old \
      tmp/* root/.cache
    find var/log -type f -delete
    # The engine provides these per container.
    rm -f etc/resolv.conf etc/hostname
    : > etc/hosts
  )

  tar -C "$ROOTFS" --numeric-owner --xattrs -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "ENV PYTHON_VERSION=$pyver" \
    --change 'CMD ["python3"]' \
    --change "LABEL unde.base.recipe=$hash" \
    --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase (debootstrap), Debian's CPython $pyver as a venv at /usr/local\"" \
    --message "deploy/images/build.sh: debootstrap $SUITE minbase + $BASE_PACKAGES" \
    - "$BASE_IMAGE" >/dev/null
  rm -rf --one-file-system "$ROOTFS" "$WORK/base-wheels"
}

WHEEL_PID="" HTTP_PID=""
cleanup() {
  if [ -n "$WHEEL_PID" ]; then pkill -P "$WHEEL_PID" 2>/dev/null; kill "$WHEEL_PID" 2>/dev/null; fi || true
  [ -z "$HTTP_PID" ] || kill "$HTTP_PID" 2>/dev/null || true
  unmount_rootfs
}
trap cleanup EXIT
mkdir -p "$WORK"

# Wheelhouse (first: it downloads in the background while the base is built).
WHEELHOUSE="$WORK/wheelhouse"
PLATFORMS=()
for n in $(seq 36 -1 5); do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done  # bookworm: glibc 2.36
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
wheel_hash="$(
  { cd "$ROOT" && cat "${REQUIREMENTS[@]}"; echo "${BUILD_REQUIREMENTS[*]} ${PLATFORMS[*]}"; } \
    | sha256sum | cut -c1-16
)"
download_wheelhouse() {
  local t="$(now)" reqs=() r
  rm -rf "$WHEELHOUSE.tmp"
  mkdir -p "$WHEELHOUSE.tmp"
  for r in "${REQUIREMENTS[@]}"; do reqs+=(-r "$ROOT/$r"); done
  # --no-deps: the files are complete closures; the image builds' pip check proves it.
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --implementation cp --python-version 3.11 --abi cp311 "${PLATFORMS[@]}" \
    -d "$WHEELHOUSE.tmp" "${reqs[@]}" "${BUILD_REQUIREMENTS[@]}"
  echo "$wheel_hash" > "$WHEELHOUSE.tmp/.recipe"
  rm -rf "$WHEELHOUSE"
  mv "$WHEELHOUSE.tmp" "$WHEELHOUSE"
  echo "$(ls "$WHEELHOUSE" | grep -c '\.whl$') wheels, $(du -sh "$WHEELHOUSE" | cut -f1), $(elapsed "$t")"
}
if [ -f "$WHEELHOUSE/.recipe" ] && [ "$(cat "$WHEELHOUSE/.recipe")" = "$wheel_hash" ]; then
  log "wheelhouse: current ($(ls "$WHEELHOUSE" | grep -c '\.whl$') wheels, recipe $wheel_hash)"
  TIMES+=("wheelhouse 0.0s")
else
  log "wheelhouse: downloading cp311 manylinux x86_64 wheels in the background (recipe $wheel_hash, log $WORK/wheelhouse.log)"
  download_wheelhouse >"$WORK/wheelhouse.log" 2>&1 &
  WHEEL_PID=$!
fi

# Base.
t0="$(now)"
if [ "${EXTERNAL_BASE:-0}" = 1 ]; then
  docker image inspect "$BASE_IMAGE" >/dev/null \
    || { echo "base image $BASE_IMAGE is not on this engine" >&2; exit 1; }
  log "base: $BASE_IMAGE (given)"
else
  hash="$(recipe_hash)"
  have="$(docker image inspect --format '{{ index .Config.Labels "unde.base.recipe" }}' "$BASE_IMAGE" 2>/dev/null || true)"
  if [ "$REBUILD_BASE" = 0 ] && [ "$have" = "$hash" ]; then
    log "base: $BASE_IMAGE is current (recipe $hash)"
  else
    log "base: building $BASE_IMAGE (recipe $hash${have:+, was $have}) with debootstrap from $MIRROR"
    build_base "$hash"
  fi
fi
TIMES+=("base $(elapsed "$t0")")

if [ -n "$WHEEL_PID" ]; then
  t0="$(now)"
  status=0; wait "$WHEEL_PID" || status=$?
  WHEEL_PID=""
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$WORK/wheelhouse.log" >&2
    echo "wheelhouse download failed (log: $WORK/wheelhouse.log)" >&2
    exit 1
  fi
  log "wheelhouse: $(tail -n 1 "$WORK/wheelhouse.log") (waited $(elapsed "$t0") after the base)"
  TIMES+=("wheelhouse $(tail -n 1 "$WORK/wheelhouse.log" | sed 's/.*, //') (in parallel with the base)")
fi

# Images, pip reading the wheelhouse over loopback. The URL is a build arg, so it is part
# of the pip layers' cache key: keep the port fixed.
port_free() {
  python3 -c 'import socket, sys; s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}
if ! port_free "$PORT"; then
  echo "port $PORT is taken: set UNDE_WHEELHOUSE_PORT to a free one (the pip layers rebuild once)" >&2
  exit 1
fi
python3 -m http.server --bind 127.0.0.1 --directory "$WHEELHOUSE" "$PORT" >"$WORK/wheelhouse-http.log" 2>&1 9>&- &
HTTP_PID=$!
for _ in $(seq 50); do
  python3 -c 'import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)' \
    "http://127.0.0.1:$PORT/" 2>/dev/null && break
  sleep 0.1
done

build_image() {  # dockerfile tag
  local t="$(now)"
  log "image: $2 ($1 on $BASE_IMAGE)"
  docker build --network host \
    --build-arg PYTHON_IMAGE="$BASE_IMAGE" \
    --build-arg PIP_NO_INDEX=1 \
    --build-arg PIP_FIND_LINKS="http://127.0.0.1:$PORT/" \
    -f "$ROOT/deploy/docker/$1" -t "$2" "$ROOT"
  TIMES+=("$2 $(elapsed "$t")")
}
build_image Dockerfile.user-code "$USER_IMAGE"
build_image Dockerfile.control-plane "$CONTROL_IMAGE"

log "done"
printf '  %s\n' "${TIMES[@]}"
docker image ls --format '  {{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.Size}}' \
  | grep -F -e "$BASE_IMAGE" -e "$USER_IMAGE" -e "$CONTROL_IMAGE" || true
