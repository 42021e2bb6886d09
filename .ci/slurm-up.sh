#!/usr/bin/env bash
# Install and start a single-node Slurm cluster on this machine (for the tests marked `slurm`).
#
# * Debian packages `slurm-wlm` and `munge`; run as root, no systemd and no cgroups needed.
# * One node, `localhost` (127.0.0.1), with this machine's CPUs and memory, in partition `debug`.
# * State and logs under /var/spool/slurm-ci and /var/log/slurm-ci.
# * Idempotent: rerunning it keeps running daemons, rewrites the same configuration and waits
#   until `sinfo` shows the node idle. Exits non-zero (and says why) when Slurm cannot start.
#
# Usage: bash .ci/slurm-up.sh            (then: sinfo; srun hostname)
#        bash .ci/slurm-up.sh --down     (stop the daemons it started)
set -u

log() { echo "slurm-up: $*" >&2; }
die() { log "$*"; exit 1; }

SPOOL=/var/spool/slurm-ci
LOGS=/var/log/slurm-ci
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf

if [ "${1:-}" = "--down" ]; then
    for pidfile in /run/slurm-ci/slurmd.pid /run/slurm-ci/slurmctld.pid; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null && log "stopped $(basename "$pidfile" .pid)"
    done
    exit 0
fi

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts slurmctld/slurmd)"

# 1. packages
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
        || ! command -v sinfo >/dev/null; then
    command -v apt-get >/dev/null || die "apt-get not found: cannot install slurm-wlm and munge"
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed (continuing)"
    apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 || die "apt-get install slurm-wlm munge failed"
fi

# 2. munge: a key and a running daemon
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then mungekey --create --force >/dev/null 2>&1; fi
    [ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
if id munge >/dev/null 2>&1; then
    chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
fi
chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key; chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    if id munge >/dev/null 2>&1; then
        su -s /bin/sh munge -c "munged" 2>/dev/null || munged --force 2>/dev/null || true
    else
        munged --force || true
    fi
    for _ in $(seq 1 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# 3. configuration
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
HOST=$(hostname -s)
mkdir -p "$CONF_DIR" "$SPOOL/ctld" "$SPOOL/d" "$LOGS" /run/slurm-ci
cat > "$CONF.new" <<EOF
# Written by .ci/slurm-up.sh: a single-node cluster on localhost for tests.
ClusterName=ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPidFile=/run/slurm-ci/slurmctld.pid
SlurmdPidFile=/run/slurm-ci/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
MaxArraySize=10001
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
changed=1
if [ -f "$CONF" ] && cmp -s "$CONF" "$CONF.new"; then changed=0; fi
mv "$CONF.new" "$CONF"

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# 4. daemons
if running /run/slurm-ci/slurmctld.pid && [ "$changed" = 1 ]; then scontrol reconfigure 2>/dev/null || true; fi
if ! running /run/slurm-ci/slurmctld.pid; then
    log "starting slurmctld"
    slurmctld -c 2>>"$LOGS/slurmctld.start" || die "slurmctld failed to start (see $LOGS/slurmctld.log)"
fi
if ! running /run/slurm-ci/slurmd.pid; then
    log "starting slurmd"
    slurmd -N localhost 2>>"$LOGS/slurmd.start" || die "slurmd failed to start (see $LOGS/slurmd.log)"
fi

# 5. wait until the node is idle (or mixed/allocated: usable)
state=""
for _ in $(seq 1 60); do
    state=$(sinfo -h -n localhost -o "%t" 2>/dev/null | head -n 1)
    case "$state" in
        idle|mix|alloc|idle\*) [ "$state" = "idle*" ] || break ;;
        down*|drain*|drng*) scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
done
case "$state" in
    idle|mix|alloc) log "node localhost is $state; partition debug ready"; sinfo >&2; exit 0 ;;
    *) die "node localhost did not become idle (state '${state:-none}'; see $LOGS/slurmctld.log and $LOGS/slurmd.log)" ;;
esac
