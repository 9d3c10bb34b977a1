#!/usr/bin/env bash
# Build oiflow's container images with Podman, without any container registry.
#
#   containers/build.sh [IMAGE...]        IMAGE: base worker amber pndrs-standin pndrs (default: base worker amber pndrs-standin)
#
# base           Debian 12 (bookworm) minbase + python3, made by debootstrap and `podman import`.
#                The rootfs tarball is cached in $OIFLOW_CONTAINER_CACHE (default ~/.cache/oiflow-containers)
#                so later local builds skip debootstrap; delete it to refresh. CI starts clean.
# worker         base + a virtual environment with oiflow and its dependencies, installed from a wheelhouse
#                made here on the host (`pip wheel`), so the image build itself needs no network; the
#                versions are those installed in $OIFLOW_PYTHON's environment (pip freeze as constraints).
#                BASE build argument: defaults to the local base; with a registry, python:3.11-slim works:
#                  OIFLOW_WORKER_BASE=docker.io/library/python:3.11-slim containers/build.sh worker
# amber          base + Debian's esorex and cpl-plugin-amber (ESO's AMBER pipeline on amdlib), installed by
#                apt during the build (the build container uses the host's network for apt only).
# pndrs-standin  worker + a stand-in `pndrsReduce` for contract tests. It says it is a stand-in; it is not pndrs.
# pndrs          base + yorick + yorick-yeti (Debian) + pndrs and yoco from their authors' release tarballs,
#                whose URL, version and SHA-256 are build arguments (see containers/pndrs/Containerfile).
#                Needs those sources to be reachable: not built by default.
#
# Environment: CONTAINERS_CONF (default: containers/containers.conf: runc, lowered ulimits),
# OIFLOW_PODMAN_ROOT (a Podman store of its own: see env.sh),
# OIFLOW_DEBIAN_MIRROR (default http://deb.debian.org/debian), OIFLOW_PYTHON (python for `pip wheel`,
# default python3), OIFLOW_IMAGE_PREFIX (default localhost/oiflow-), PNDRS_* (pndrs build arguments).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
source "$HERE/env.sh"   # CONTAINERS_CONF, and a store of its own with OIFLOW_PODMAN_ROOT
CACHE="${OIFLOW_CONTAINER_CACHE:-$HOME/.cache/oiflow-containers}"
MIRROR="${OIFLOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PY="${OIFLOW_PYTHON:-python3}"
PREFIX="${OIFLOW_IMAGE_PREFIX:-localhost/oiflow-}"
BASE_INCLUDE="python3,ca-certificates"
BASE_TARBALL="$CACHE/base-bookworm-minbase.tar"

log() { printf '[build.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

need() {
    command -v "$1" >/dev/null 2>&1 || { echo "build.sh: '$1' is missing (apt-get install podman runc debootstrap)" >&2; exit 2; }
}

build_base() {
    need podman
    if [[ ! -s "$BASE_TARBALL" ]]; then
        need debootstrap
        mkdir -p "$CACHE"
        local root
        root="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
        log "debootstrap --variant=minbase --include=$BASE_INCLUDE bookworm (about a minute)"
        debootstrap --variant=minbase --include="$BASE_INCLUDE" bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -20 "$CACHE/debootstrap.log" >&2; rm -rf "$root"; exit 1; }
        # slimmer image: no apt lists or downloaded packages
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        tar -C "$root" --numeric-owner -cf "$BASE_TARBALL.part" .
        mv "$BASE_TARBALL.part" "$BASE_TARBALL"
        rm -rf "$root"
    else
        log "base rootfs from the cache: $BASE_TARBALL"
    fi
    podman import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
        --message "oiflow base: Debian bookworm minbase + python3 (debootstrap)" \
        "$BASE_TARBALL" "${PREFIX}base:latest" >/dev/null
    log "built ${PREFIX}base:latest"
}

build_worker() {
    local ctx wheels
    ctx="$(mktemp -d)"
    wheels="$ctx/wheels"
    mkdir -p "$wheels"
    log "wheelhouse for oiflow and its dependencies (pip wheel, on the host)"
    # The same versions (the same wheels: numpy with its bundled OpenBLAS, scipy, astropy, …) as the
    # environment of $PY, so that the native reducer gives byte-identical products in the image and
    # in-process there: `pip freeze` of that environment constrains the wheelhouse.
    # OIFLOW_WORKER_PIN=0 lets pip choose the newest versions instead.
    local pin=()
    if [[ "${OIFLOW_WORKER_PIN:-1}" != 0 ]]; then
        "$PY" -m pip freeze --exclude-editable 2>/dev/null | grep -v -e ' @ ' -e '^-e ' -e '^oiflow==' >"$ctx/constraints.txt" || true
        pin=(--constraint "$ctx/constraints.txt")
    fi
    # async-timeout: a dependency of redis (via prefect) only below Python 3.11.3, and Debian 12's python3
    # is 3.11.2: listed explicitly so the wheelhouse has it when the host's Python is newer.
    "$PY" -m pip wheel "${pin[@]}" --wheel-dir "$wheels" "$REPO" pip "async-timeout>=4.0.3" >"$ctx/pip-wheel.log" 2>&1 \
        || { tail -20 "$ctx/pip-wheel.log" >&2; exit 1; }
    cp "$HERE/worker/Containerfile" "$ctx/Containerfile"
    # the wheelhouse's digest is a build argument: Podman's layer cache does not look into the bind
    # mount, so without it a rebuild would keep the previous oiflow
    local digest
    digest="$(cd "$wheels" && sha256sum -- *.whl | sha256sum | cut -c1-16)"
    podman build --quiet --network=none \
        --build-arg "BASE=${OIFLOW_WORKER_BASE:-${PREFIX}base:latest}" --build-arg "WHEELHOUSE=$digest" \
        -t "${PREFIX}worker:latest" "$ctx" >/dev/null
    rm -rf "$ctx"
    log "built ${PREFIX}worker:latest (wheelhouse $digest)"
}

build_amber() {
    podman build --quiet --network=host --build-arg "BASE=${PREFIX}base:latest" \
        -t "${PREFIX}amber:latest" "$HERE/amber" >/dev/null
    log "built ${PREFIX}amber:latest ($(podman run --rm --network=none "${PREFIX}amber:latest" esorex --version 2>&1 | grep -m1 -o "version [0-9.]*"))"
}

build_pndrs_standin() {
    podman build --quiet --network=none --build-arg "BASE=${PREFIX}worker:latest" \
        -t "${PREFIX}pndrs-standin:latest" "$HERE/pndrs-standin" >/dev/null
    log "built ${PREFIX}pndrs-standin:latest (a stand-in, not pndrs)"
}

build_pndrs() {
    local args=(--build-arg "BASE=${PREFIX}base:latest")
    for v in PNDRS_VERSION PNDRS_URL PNDRS_SHA256 YOCO_VERSION YOCO_URL YOCO_SHA256; do
        [[ -n "${!v:-}" ]] && args+=(--build-arg "$v=${!v}")
    done
    podman build --network=host "${args[@]}" -t "${PREFIX}pndrs:latest" "$HERE/pndrs"
    log "built ${PREFIX}pndrs:latest"
}

main() {
    local targets=("$@")
    [[ ${#targets[@]} -eq 0 ]] && targets=(base worker amber pndrs-standin)
    need podman
    for t in "${targets[@]}"; do
        local t0=$SECONDS
        case "$t" in
            base) build_base ;;
            worker) build_worker ;;
            amber) build_amber ;;
            pndrs-standin) build_pndrs_standin ;;
            pndrs) build_pndrs ;;
            *) echo "build.sh: unknown image '$t'" >&2; exit 2 ;;
        esac
        log "$t: $((SECONDS - t0)) s"
    done
}

main "$@"
