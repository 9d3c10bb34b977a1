#!/usr/bin/env bash
# A one-node SLURM cluster (this machine) for the scheduler tests (tests/test_scheduler_slurm.py).
# Usage: eval "$(.ci/slurm.sh)"     (as root; installs Debian's slurmctld slurmd slurm-client munge if absent)
# Idempotent: a running munged/slurmctld/slurmd is kept. Prints the `export` lines a test needs:
#   OIFLOW_TEST_SLURM_PARTITION  the partition (debug) whose one node is this machine, idle
#   OIFLOW_TEST_SLURMCTLD_LOG    the controller's log ("Allocate JobId=…" lines; no slurmdbd, so no sacct)
# Stop: .ci/slurm.sh stop     (kills the daemons by their PID files)
# Facts behind the settings (proctrack/linuxproc, task/none: no cgroup plugins here): shared/docs/HPC.md.
set -euo pipefail
BASE=${SLURM_BASE:-/var/lib/oiflow-slurm}
CONF=/etc/slurm/slurm.conf
HOST=$(hostname)
PARTITION=debug

stop() {
  for pid in "$BASE/slurmd.pid" "$BASE/slurmctld.pid" /run/munge/oiflow-munged.pid; do
    [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
  done
}
if [ "${1:-}" = stop ]; then stop; exit 0; fi

# stdout carries only the lines the caller evaluates (below the block); every command's own output
# (apt, pg_ctlcluster's "Removed stale pid file.", OAR's tools) goes to stderr
{
log() { echo "slurm.sh: $*" >&2; }
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sinfo >/dev/null \
   || ! command -v munged >/dev/null; then
  log "installing slurmctld slurmd slurm-client munge"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
     slurmctld slurmd slurm-client munge) >&2
fi
getent hosts "$HOST" >/dev/null || echo "127.0.0.1 $HOST" >> /etc/hosts

# munge: a key of 1024 random bytes, the daemon as the munge user
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- munged --force --pid-file=/run/munge/oiflow-munged.pid
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# slurm.conf: one node (this machine, 2 CPUs, 3/4 of its memory), one partition
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 3 / 4)}' /proc/meminfo)
mkdir -p "$BASE/state" "$BASE/spool" /etc/slurm
want=$(cat <<EOF
# written by oiflow .ci/slurm.sh: a one-node cluster for the scheduler tests
ClusterName=oiflow-ci
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/slurmctld.pid
SlurmdPidFile=$BASE/slurmd.pid
SlurmctldLogFile=$BASE/slurmctld.log
SlurmdLogFile=$BASE/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
KillWait=5
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=2 RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
if [ "$(cat "$CONF" 2>/dev/null)" != "$want" ]; then
  printf '%s\n' "$want" > "$CONF"
  if running "$BASE/slurmctld.pid"; then scontrol reconfigure >&2; fi
fi

if ! running "$BASE/slurmctld.pid"; then slurmctld; fi
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
if ! running "$BASE/slurmd.pid"; then slurmd; fi

# wait until the node is idle (a node left down/drained by an earlier run is resumed)
state=""
for _ in $(seq 150); do
  state=$(sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -1)
  case "$state" in
    idle|mixed|allocated) break ;;
    down*|drain*|drained*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.2
done
case "$state" in
  idle|mixed|allocated) ;;
  *) log "node $HOST is '$state' after 30 s; logs in $BASE"; tail -5 "$BASE/slurmctld.log" "$BASE/slurmd.log" >&2; exit 1 ;;
esac
log "node $HOST $state in partition $PARTITION"
} >&2
echo "export OIFLOW_TEST_SLURM_PARTITION=$PARTITION"
echo "export OIFLOW_TEST_SLURMCTLD_LOG=$BASE/slurmctld.log"
