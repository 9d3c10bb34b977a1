#!/usr/bin/env bash
# A one-node OAR 2.5 cluster (this machine; server, node, PostgreSQL) for the scheduler tests
# (tests/test_scheduler_oar.py), shaped like Grenoble's Ciment machines: one resource per core with
# the cpu/core/cpuset/memcore properties, jobs submitted with oarsub by an ordinary user.
# Usage: eval "$(.ci/oar.sh)"     (as root; installs Debian's oar-server oar-node oar-user and
#                                   postgresql if absent)
# Idempotent: a running PostgreSQL/OAR server/node is kept. Prints the `export` lines a test needs:
#   OIFLOW_TEST_OAR_USER   the ordinary user that submits (OAR refuses jobs from root and oar);
#                          its home is where runs must write (when its last job on this node ends,
#                          OAR's cleanup deletes that user's files under /tmp, /dev/shm and /var/tmp)
#   OIFLOW_TEST_OAR_LOG    the server's log (job starts and ends)
# Stop: .ci/oar.sh stop      (OAR's daemons by their PID files; PostgreSQL's cluster is left running)
# The pitfalls behind each step: shared/docs/HPC.md.
set -euo pipefail
OAR_USER=${OAR_USER:-oiflowci}
HOST=$(hostname)
SERVER_PID=/var/run/oar-server.pid
NODE_PID=/var/run/oar-node_sshd.pid

if [ "${1:-}" = stop ]; then
  for pid in "$SERVER_PID" "$NODE_PID"; do
    [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
  done
  exit 0
fi

# stdout carries only the lines the caller evaluates (below the block); every command's own output
# (apt, pg_ctlcluster's "Removed stale pid file.", OAR's tools) goes to stderr
{
log() { echo "oar.sh: $*" >&2; }
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

missing=()
command -v oarsub >/dev/null || missing+=(oar-user oar-user-pgsql)
[ -x /usr/sbin/oar-server ] || missing+=(oar-server oar-server-pgsql)
[ -x /etc/init.d/oar-node ] || missing+=(oar-node)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >&2
fi
getent hosts "$HOST" >/dev/null || echo "127.0.0.1 $HOST" >> /etc/hosts

# the ordinary user that submits
id "$OAR_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$OAR_USER"

# PostgreSQL: Debian's cluster, started without systemd
PGVER=$(ls /usr/lib/postgresql | sort -V | tail -1)
pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$PGVER main" || pg_createcluster "$PGVER" main >&2
pg_ctlcluster "$PGVER" main status >/dev/null 2>&1 || pg_ctlcluster "$PGVER" main start
PGPORT=$(pg_lsclusters -h | awk -v v="$PGVER" '$1 == v && $2 == "main" {print $3}')

# oar.conf: database passwords (empty ones make PostgreSQL refuse OAR's TCP login), port, host
set_conf() { sed -i "s|^#*$1=.*|$1=\"$2\"|" /etc/oar/oar.conf; grep -q "^$1=" /etc/oar/oar.conf || echo "$1=\"$2\"" >> /etc/oar/oar.conf; }
set_conf DB_BASE_PASSWD oar-ci
set_conf DB_BASE_PASSWD_RO oar-ci-ro
set_conf DB_PORT "$PGPORT"
set_conf SERVER_HOSTNAME "$HOST"
if ! oar-database --check >/dev/null 2>&1; then
  oar-database --create --db-is-local -y >&2
fi

# node side: the oar user's sshd on port 6667, then the server (Almighty on port 6666)
running "$NODE_PID" || /etc/init.d/oar-node start >&2
for _ in $(seq 50); do
  su oar -s /bin/bash -c "ssh -p 6667 -o BatchMode=yes -o StrictHostKeyChecking=no $HOST true" >/dev/null 2>&1 && break
  sleep 0.2
done
running "$SERVER_PID" || /etc/init.d/oar-server start >&2

# resources: one per core, with the memory per core (MiB) that dask-jobqueue's memcore filter reads
if [ -z "$(oarnodes -l 2>/dev/null)" ]; then
  for p in cpu core memcore; do oarproperty -a "$p" >/dev/null 2>&1 || true; done
  oarproperty -a host -c >/dev/null 2>&1 || true
  ncores=2
  memcore=$(awk -v n=$ncores '/MemTotal/ {print int($2 / 1024 * 3 / 4 / n)}' /proc/meminfo)
  for core in $(seq 0 $((ncores - 1))); do
    oarnodesetting -a -h "$HOST" -p host="$HOST" -p cpu=0 -p core="$core" -p cpuset="$core" -p memcore="$memcore" >&2
  done
fi
oarnodesetting -s Alive -h "$HOST" >/dev/null 2>&1 || true
state=""
for _ in $(seq 100); do
  state=$(oarnodes -s 2>/dev/null | awk 'NF == 3 {print $3}' | sort -u | tr '\n' ' ')
  [ "$state" = "Alive " ] && break
  sleep 0.2
done
[ "$state" = "Alive " ] || { log "resources of $HOST are '$state'"; tail -5 /var/log/oar.log >&2; exit 1; }
log "node $HOST Alive; submit as $OAR_USER"
} >&2
echo "export OIFLOW_TEST_OAR_USER=$OAR_USER"
echo "export OIFLOW_TEST_OAR_LOG=/var/log/oar.log"
