# Sourced by build.sh, podman-service.sh and ci.sh: the Podman configuration oiflow uses.
#
# CONTAINERS_CONF defaults to containers/containers.conf (runc, lowered ulimits); the machine's own
# configuration is left alone.
#
# OIFLOW_PODMAN_ROOT=DIR (optional) gives Podman a store of its own under DIR (images, containers,
# its database and runtime files), instead of the machine's /var/lib/containers/storage: images
# built there do not replace anyone else's `localhost/oiflow-*` images, and a fresh DIR is a
# clean start (what CI measures). To delete DIR: stop its service (podman-service.sh stop), then
# `umount DIR/storage/overlay` (Podman's overlay driver keeps that directory bind-mounted) and rm -rf DIR.

_OIFLOW_CONTAINERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ -n "${OIFLOW_PODMAN_ROOT:-}" ]]; then
    mkdir -p "$OIFLOW_PODMAN_ROOT"
    OIFLOW_PODMAN_ROOT="$(cd "$OIFLOW_PODMAN_ROOT" && pwd)"
    export OIFLOW_PODMAN_ROOT
    mkdir -p "$OIFLOW_PODMAN_ROOT/storage" "$OIFLOW_PODMAN_ROOT/run" "$OIFLOW_PODMAN_ROOT/tmp"
    cat >"$OIFLOW_PODMAN_ROOT/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$OIFLOW_PODMAN_ROOT/storage"
runroot = "$OIFLOW_PODMAN_ROOT/run"
EOF
    # the repository's settings, plus runtime files (tmp_dir) of this store's own
    if [[ "${CONTAINERS_CONF:-}" != "$OIFLOW_PODMAN_ROOT/containers.conf" ]]; then
        awk -v extra="tmp_dir = \"$OIFLOW_PODMAN_ROOT/tmp\"" '/^tmp_dir/ { next } { print } /^\[engine\]/ { print extra }' \
            "${CONTAINERS_CONF:-$_OIFLOW_CONTAINERS_DIR/containers.conf}" >"$OIFLOW_PODMAN_ROOT/containers.conf.part"
        mv "$OIFLOW_PODMAN_ROOT/containers.conf.part" "$OIFLOW_PODMAN_ROOT/containers.conf"
    fi
    export CONTAINERS_STORAGE_CONF="$OIFLOW_PODMAN_ROOT/storage.conf"
    export CONTAINERS_CONF="$OIFLOW_PODMAN_ROOT/containers.conf"
    export OIFLOW_PODMAN_DIR="${OIFLOW_PODMAN_DIR:-$OIFLOW_PODMAN_ROOT/service}"
else
    export CONTAINERS_CONF="${CONTAINERS_CONF:-$_OIFLOW_CONTAINERS_DIR/containers.conf}"
fi
