#!/usr/bin/env bash
# A real single-node SLURM cluster with accounting on this machine, without systemd:
# munge, MariaDB, slurmdbd, slurmctld and slurmd on 127.0.0.1, one node, one partition.
# For tests and CI (tests/test_slurm.py starts it) and for trying `snakemake --profile slurm` by hand.
#
#   sudo tools/slurm-cluster.sh [start]   install (apt, once), start what is not running, wait until
#                                         the node is idle (a drained node is resumed)
#   tools/slurm-cluster.sh status         what runs, and sinfo
#   sudo tools/slurm-cluster.sh stop      stop the daemons (by the PIDs in their pidfiles only)
#
# Idempotent: skips what is installed and running, restarts what died, rewrites a config file only
# when its content changed (and then restarts the daemons that read it).
# Why accounting: the Snakemake SLURM executor asks `sacct` for job states and failure reasons;
# without slurmdbd `sacct` fails and Snakemake can wait forever for jobs that have long finished.
# Settings: VITNAS_SLURM_CLUSTER (vitnas), VITNAS_SLURM_PARTITION (debug), VITNAS_SLURM_WAIT (60 s).
set -euo pipefail

CLUSTER=${VITNAS_SLURM_CLUSTER:-vitnas}
PARTITION=${VITNAS_SLURM_PARTITION:-debug}
PACKAGES=(munge slurm-wlm slurmctld slurmd slurm-client slurmdbd mariadb-server)
ETC=/etc/slurm
LOG=/var/log/slurm
RUN=/run/slurm
DB_PASS_FILE=$ETC/slurmdbd.pass
MUNGE_PID=/run/munge/munged.pid
MYSQL_PID=/run/mysqld/mysqld.pid
DBD_PID=$RUN/slurmdbd.pid
CTLD_PID=$RUN/slurmctld.pid
SLURMD_PID=$RUN/slurmd.pid
WAIT=${VITNAS_SLURM_WAIT:-60}  # seconds to wait for each daemon

say() { echo "slurm-cluster: $*"; }
die() { echo "slurm-cluster: error: $*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" = 0 ] || die "must run as root to $1 the cluster (try: sudo $0 $1)"
}

# The PID in a pidfile, if that process is alive; fails otherwise.
alive() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(tr -dc 0-9 <"$1")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Wait until a command succeeds, or fail with a message naming the log to read.
wait_for() {  # wait_for "what" logfile command...
    local what=$1 logfile=$2 i
    shift 2
    for ((i = 0; i < WAIT * 2; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    [ -f "$logfile" ] && tail -n 20 "$logfile" >&2
    die "$what did not come up within ${WAIT}s (log: $logfile)"
}

# Write a file only when its content differs; returns 0 when it was (re)written.
write_if_changed() {  # write_if_changed path owner mode  (content on stdin)
    local path=$1 owner=$2 mode=$3 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$path" ] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
        chown "$owner" "$path"; chmod "$mode" "$path"
        return 1
    fi
    install -o "${owner%%:*}" -g "${owner##*:}" -m "$mode" "$tmp" "$path"
    rm -f "$tmp"
    say "wrote $path"
    return 0
}

# Start a daemon detached from our session and our stdio (a caller capturing our output must not
# wait for the daemon to close it).
launch() {  # launch logfile command...
    local logfile=$1
    shift
    setsid "$@" </dev/null >>"$logfile" 2>&1 &
}

stop_pidfile() {  # stop_pidfile name pidfile
    local pid i
    if pid=$(alive "$2"); then
        say "stopping $1 (pid $pid)"
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 40; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$1 (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
        fi
    else
        say "$1 is not running"
    fi
    rm -f "$2"
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "packages installed"
        return
    fi
    say "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq -o DPkg::Lock::Timeout=300 || die "apt-get update failed"
    apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${PACKAGES[@]}" \
        >/tmp/slurm-cluster-apt.log 2>&1 || { tail -n 20 /tmp/slurm-cluster-apt.log >&2;
                                              die "apt-get install failed (log: /tmp/slurm-cluster-apt.log)"; }
    for p in munged mariadbd slurmdbd slurmctld slurmd sacct; do
        command -v "$p" >/dev/null || die "$p missing after installing ${PACKAGES[*]}"
    done
}

start_munge() {
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 0755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        say "creating /etc/munge/munge.key"
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    if pid=$(alive $MUNGE_PID); then
        say "munged running (pid $pid)"
    else
        say "starting munged"
        rm -f $MUNGE_PID
        runuser -u munge -- /usr/sbin/munged --pid-file=$MUNGE_PID </dev/null >/dev/null 2>&1 \
            || die "munged failed to start (log: /var/log/munge/munged.log)"
    fi
    wait_for "munge" /var/log/munge/munged.log bash -c "munge -n | unmunge"
}

mysql_q() { mariadb --protocol=socket -u root -N -e "$1"; }

start_mariadb() {
    install -d -o mysql -g mysql -m 0755 /run/mysqld /var/log/mysql
    if [ ! -d /var/lib/mysql/mysql ]; then
        say "initialising MariaDB data directory"
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/var/log/mysql/install.log 2>&1 \
            || die "mariadb-install-db failed (log: /var/log/mysql/install.log)"
    fi
    if pid=$(alive $MYSQL_PID); then
        say "mariadbd running (pid $pid)"
    else
        say "starting mariadbd (127.0.0.1 only)"
        rm -f $MYSQL_PID
        launch /var/log/mysql/error.log mariadbd --user=mysql --datadir=/var/lib/mysql \
            --bind-address=127.0.0.1 --socket=/run/mysqld/mysqld.sock --pid-file=$MYSQL_PID
    fi
    wait_for "MariaDB" /var/log/mysql/error.log mysql_q "SELECT 1"
    if [ ! -s $DB_PASS_FILE ]; then
        install -d -m 0755 $ETC
        (umask 077; head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >$DB_PASS_FILE)
    fi
    local pass
    pass=$(cat $DB_PASS_FILE)
    mysql_q "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
             CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
             ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pass';
             GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" \
        || die "could not create the slurm database user in MariaDB"
}

node_line() {
    local hw cpus mem
    # The hardware's count, as slurmd checks it: not nproc, which honours OMP_NUM_THREADS (a test
    # process that set it to 1 once wrote a 1-CPU node, and every 2-task job pended forever).
    hw=$(slurmd -C 2>/dev/null | head -n 1)
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
    [ -n "$cpus" ] && [ -n "$mem" ] || die "slurmd -C did not report CPUs and RealMemory: $hw"
    echo "NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$((mem * 9 / 10)) State=UNKNOWN"
}

write_configs() {
    install -d -o slurm -g slurm -m 0755 $RUN $LOG /var/spool/slurmctld
    install -d -m 0755 /var/spool/slurmd $ETC
    DBD_CHANGED=0
    SLURM_CHANGED=0
    write_if_changed $ETC/slurmdbd.conf slurm:slurm 0600 <<EOF && DBD_CHANGED=1 || true
# Written by tools/slurm-cluster.sh (vitnas): accounting for the single-node test cluster.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
PidFile=$DBD_PID
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$(cat $DB_PASS_FILE)
StorageLoc=slurm_acct_db
EOF
    write_if_changed $ETC/slurm.conf root:root 0644 <<EOF && SLURM_CHANGED=1 || true
# Written by tools/slurm-cluster.sh (vitnas): one node on 127.0.0.1, no cgroups (no systemd).
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=300
KillWait=30
MailProg=/bin/true
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
$(node_line)
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

# ensure_daemon NAME PIDFILE CHANGED: leave NAME running if it is alive and its config is
# unchanged (CHANGED = 0); otherwise stop it by its pidfile and start it again.
ensure_daemon() {
    local name=$1 pidfile=$2 changed=$3 pid
    if pid=$(alive "$pidfile") && [ "$changed" = 0 ]; then
        say "$name running (pid $pid)"
        return 0
    fi
    [ -n "${pid:-}" ] && stop_pidfile "$name" "$pidfile"
    say "starting $name"
    rm -f "$pidfile"
    "$name" </dev/null >>"$LOG/$name.log" 2>&1 || die "$name failed to start (log: $LOG/$name.log)"
}

start_slurmdbd() {
    ensure_daemon slurmdbd $DBD_PID "$DBD_CHANGED"
    wait_for "slurmdbd" $LOG/slurmdbd.log sacctmgr -n list cluster
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        say "registering cluster $CLUSTER in the accounting database"
        sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster $CLUSTER failed"
    fi
}

start_slurmctld() {
    ensure_daemon slurmctld $CTLD_PID "$SLURM_CHANGED"
    wait_for "slurmctld" $LOG/slurmctld.log bash -c "scontrol ping | grep -q 'is UP'"
}

start_slurmd() {
    ensure_daemon slurmd $SLURMD_PID "$SLURM_CHANGED"
}

node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n 1; }

wait_idle() {
    local state i resumed=0
    for ((i = 0; i < WAIT * 2; i++)); do
        state=$(node_state)
        case "$state" in
            idle | mixed | allocated | completing)
                say "node $NODE is $state; partition $PARTITION (default), cluster $CLUSTER"
                return 0 ;;
            drain* | down* | fail*)
                if [ $resumed = 0 ]; then
                    say "node $NODE is $state; resuming it"
                    scontrol update NodeName="$NODE" State=RESUME || true
                    resumed=1
                fi ;;
        esac
        sleep 0.5
    done
    sinfo -N -l >&2 || true
    tail -n 20 $LOG/slurmd.log >&2 || true
    die "node $NODE is '${state:-unknown}', not idle, after ${WAIT}s (logs: $LOG/)"
}

cmd_start() {
    need_root start
    command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian/Ubuntu only"
    local t0=$SECONDS
    install_packages
    NODE=$(hostname -s)
    start_munge
    start_mariadb
    write_configs
    start_slurmdbd
    start_slurmctld
    start_slurmd
    wait_idle
    say "ready in $((SECONDS - t0)) s"
}

cmd_status() {
    local name file pid rc=0
    for name in munged:$MUNGE_PID mariadbd:$MYSQL_PID slurmdbd:$DBD_PID slurmctld:$CTLD_PID \
                slurmd:$SLURMD_PID; do
        file=${name#*:}
        if pid=$(alive "$file"); then
            say "${name%%:*} running (pid $pid)"
        else
            say "${name%%:*} not running"
            rc=1
        fi
    done
    if command -v sinfo >/dev/null; then
        sinfo -N -o "%N %P %T %c %m" 2>&1 || rc=1
    fi
    return $rc
}

cmd_stop() {
    need_root stop
    stop_pidfile slurmd $SLURMD_PID
    stop_pidfile slurmctld $CTLD_PID
    stop_pidfile slurmdbd $DBD_PID
    stop_pidfile mariadbd $MYSQL_PID
    stop_pidfile munged $MUNGE_PID
}

case "${1:-start}" in
    start) cmd_start ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    -h | --help | help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command '$1' (use: start, status, stop)" ;;
esac
