#!/usr/bin/env bash
# local-slurm.sh: a real single-node SLURM cluster on this machine, for tests.
#
# Usage:
#   scripts/local-slurm.sh start   install the packages if needed, start the
#                                  daemons, wait until a test job has run, print
#                                  "local SLURM up: SLURM_CONF=..., partition
#                                  debug, N cpus, accounting on|off".
#                                  Idempotent: a cluster that is up is left
#                                  running; one that is only partly up gets its
#                                  SLURM daemons restarted.
#   scripts/local-slurm.sh stop    scancel every job still queued, then stop the
#                                  daemons that `start` started (SIGTERM via
#                                  their pid files, SIGKILL after 20 s). The
#                                  state directory is kept: job ids, the
#                                  accounting database and the munge key persist.
#   scripts/local-slurm.sh status  "local SLURM up: ..." plus sinfo and squeue
#                                  (exit 0), or which daemons are down (exit 1).
#   scripts/local-slurm.sh env     print `export SLURM_CONF=...`, so that after
#                                  eval "$(scripts/local-slurm.sh env)"
#                                  sbatch/srun/squeue/scancel/sinfo/scontrol/sacct
#                                  (and submitit) use this cluster; SLURM_CONF is
#                                  all they need, and jobs inherit it.
#   Clean slate: stop, then rm -rf the state directory.
#
# Exit codes: 0 ok; 1 failure (start: the last log lines of the daemons follow
#   the error; a failed start leaves what did start running, `stop` ends it;
#   status: down); 2 usage;
#   3 SLURM is unavailable here: not root, or its programs are missing and
#     there is no apt-get or `apt-get install` failed (no network, ...). The
#     last stderr line, "local-slurm: unavailable: <reason>", says why, so a
#     test suite can skip with that reason.
#
# What it sets up (Debian 12: slurm-wlm 22.05.8, munge 0.5.15, MariaDB 10.11):
#   * Packages: slurm-wlm munge, plus slurmdbd mariadb-server for accounting,
#     installed with `apt-get install --no-install-recommends` (non-interactive,
#     output in $STATE_DIR/apt.log; `apt-get update` only if that fails) when
#     one of their programs is missing. The only thing written outside the
#     state directory. No /etc/slurm/slurm.conf: clients need SLURM_CONF.
#   * State, all under ${LOCAL_SLURM_DIR:-/tmp/rnn-sparsity-slurm}:
#       slurm.conf slurmdbd.conf  regenerated on every start (edits are lost)
#       munge/          the cluster's own munge key and munged socket (named in
#                       slurm.conf AuthInfo, so daemons and clients use it)
#       state/ spool/   slurmctld StateSaveLocation, slurmd spool
#       mysql/          MariaDB data directory, socket, the slurm DB password
#       run/ log/       pid files; munged, mariadbd, slurmdbd, slurmctld and
#                       slurmd logs
#   * One node, NodeName=localhost NodeAddr=127.0.0.1, the controller at
#     localhost(127.0.0.1), slurmd started with -N localhost, so the
#     container's hostname plays no part. CPUs=$(nproc), RealMemory 5% below
#     MemTotal, one partition `debug` (Default=YES MaxTime=INFINITE State=UP).
#   * No cgroups: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none.
#     SelectType=select/cons_tres with CR_CPU (memory is no consumable, so N
#     1-CPU jobs run at once on N cores; --mem above RealMemory is refused),
#     EnforcePartLimits=ALL (a job that could never run, e.g. -c 3 on 2 CPUs,
#     is refused at submission instead of pending forever), sched/backfill,
#     SlurmUser=root, JobRequeue=1, ReturnToService=2, KillWait=5, MinJobAge=60.
#   * Requeue: SLURM holds a requeued job for AuthInfo cred_expire seconds
#     (default 120) before it may start again; here cred_expire=10 and the
#     scheduler runs every 2 s, so after `scontrol requeue` the job runs again
#     in ~11-13 s.
#   * Time limits: slurmctld checks them every ~30 s, so a --time=1 job ends
#     (TIMEOUT) after ~60-90 s, and --signal=SIG@N (submitit's USR2 before the
#     time limit) can come up to ~60 s early, as SLURM documents.
#   * Accounting, on by default, because submitit learns job states ONLY from
#     `sacct -o JobID,State,NodeList --parsable2 -j ID`. Without it sacct says
#     "Slurm accounting storage is disabled" (exit 1); submitit logs that as a
#     warning on each poll and goes on, so job.result() still works for a job
#     that writes its result, but job.state stays "UNKNOWN" and done()/result()
#     of a job that ends WITHOUT a result (scancel, killed, failed to start)
#     never return. SLURM 22.05 feeds sacct only from slurmdbd, which needs
#     MySQL/MariaDB: `start` runs a private mariadbd (127.0.0.1 only, own data
#     dir and socket, ~100 MB RSS) and slurmdbd; no associations are enforced.
#     LOCAL_SLURM_ACCOUNTING=0 runs without both (accounting_storage/none;
#     nothing extra installed; then `scontrol show job ID` gives final states
#     for MinJobAge=60 s).
#
# Environment:
#   LOCAL_SLURM_DIR          state directory (default /tmp/rnn-sparsity-slurm)
#   LOCAL_SLURM_PORT         slurmctld port (default 6817); slurmd uses +1,
#                            slurmdbd +2, mariadbd +4, all on 127.0.0.1; `start`
#                            refuses ports that something else listens on
#   LOCAL_SLURM_ACCOUNTING   1 (default): slurmdbd + MariaDB, sacct works; 0: none
#   LOCAL_SLURM_WAIT_S       how long `start` waits for each step (default 60)
#   LOCAL_SLURM_CRED_EXPIRE  cred_expire, the requeue hold in s (default 10, >= 5)
#
# Timings on a 2-core Debian 12 container (root, no systemd): `start` with
# the packages installed: ~3.3-4.3 s (also on an empty state dir; once 9 s), ~0.7 s
# with LOCAL_SLURM_ACCOUNTING=0; with nothing installed: ~13 s (9 s of apt-get);
# `start` on a running cluster: ~0.05 s; `stop`: ~3 s.
set -Eeuo pipefail

PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"
export PATH

STATE_DIR="${LOCAL_SLURM_DIR:-/tmp/rnn-sparsity-slurm}"
[[ $STATE_DIR == /* ]] || STATE_DIR="$PWD/$STATE_DIR"
STATE_DIR="${STATE_DIR%/}"
CONF="$STATE_DIR/slurm.conf"
DBD_CONF="$STATE_DIR/slurmdbd.conf"
MUNGE_DIR="$STATE_DIR/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"
MUNGE_KEY="$MUNGE_DIR/munge.key"
MYSQL_DIR="$STATE_DIR/mysql"
MYSQL_SOCKET="$MYSQL_DIR/mysqld.sock"
RUN_DIR="$STATE_DIR/run"
LOG_DIR="$STATE_DIR/log"
NODE=localhost
PARTITION=debug
CTLD_PORT="${LOCAL_SLURM_PORT:-6817}"
WAIT_S="${LOCAL_SLURM_WAIT_S:-60}"
CRED_EXPIRE="${LOCAL_SLURM_CRED_EXPIRE:-10}"
ACCOUNTING="${LOCAL_SLURM_ACCOUNTING:-1}"

say() { printf 'local-slurm: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
# Exit code 3: SLURM cannot be had on this machine; tests skip on it.
unavailable() { say "unavailable: $*"; exit 3; }

usage() {
  sed -n '2,/^set -E/{/^set -E/d;s/^# \{0,1\}//;p}' "$0" >&2
  exit 2
}

[[ $CTLD_PORT =~ ^[0-9]+$ ]] || die "LOCAL_SLURM_PORT must be a number, got '$CTLD_PORT'"
[[ $WAIT_S =~ ^[0-9]+$ ]] || die "LOCAL_SLURM_WAIT_S must be a number, got '$WAIT_S'"
if ! [[ $CRED_EXPIRE =~ ^[0-9]+$ ]] || ((CRED_EXPIRE < 5)); then
  die "LOCAL_SLURM_CRED_EXPIRE must be a number >= 5, got '$CRED_EXPIRE'"
fi
[[ $ACCOUNTING == [01] ]] || die "LOCAL_SLURM_ACCOUNTING must be 0 or 1, got '$ACCOUNTING'"
SLURMD_PORT=$((CTLD_PORT + 1))
DBD_PORT=$((CTLD_PORT + 2))
MYSQL_PORT=$((CTLD_PORT + 4))
export SLURM_CONF="$CONF"

# ---------------------------------------------------------------- processes

# proc_name PID: print the program name of live process PID; fail if there is
# none. A zombie (exited, not yet reaped by PID 1, which takes ~2 s in some
# containers) counts as gone.
proc_name() {
  local stat comm state
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  comm=${stat#*(}
  comm=${comm%%)*}
  state=${stat##*) }
  state=${state%% *}
  [[ $state != [ZX] ]] || return 1
  printf '%s\n' "$comm"
}

# pid_of PIDFILE NAME: print the pid recorded in PIDFILE if that process is
# alive and is NAME; fail otherwise.
pid_of() {
  local pidfile=$1 name=$2 pid comm
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  pid=${pid//[[:space:]]/}
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  comm=$(proc_name "$pid") || return 1
  [[ $comm == "$name"* ]] || return 1
  printf '%s\n' "$pid"
}

# Daemons are named by their program; each has $RUN_DIR/<name>.pid.
daemon_pid() { pid_of "$RUN_DIR/$1.pid" "$1"; }
is_up() { daemon_pid "$1" >/dev/null; }

# The daemons of the cluster as configured now (accounting is read back from
# slurm.conf, so status/stop follow what `start` set up, not the environment).
conf_has_accounting() { [[ -f $CONF ]] && grep -q '^AccountingStorageType=accounting_storage/slurmdbd' "$CONF"; }
configured_daemons() {
  if conf_has_accounting; then
    echo munged mariadbd slurmdbd slurmctld slurmd
  else
    echo munged slurmctld slurmd
  fi
}
all_up() {
  local d
  for d in $(configured_daemons); do is_up "$d" || return 1; done
}
ALL_DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged) # in stop order

ctld_responds() { timeout 15 scontrol ping 2>/dev/null | grep -q 'is UP'; }

# stop_daemon NAME: SIGTERM, wait up to 20 s, then SIGKILL.
stop_daemon() {
  local name=$1 pid i
  pid=$(daemon_pid "$name") || { rm -f "$RUN_DIR/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    proc_name "$pid" >/dev/null || break
    sleep 0.2
  done
  if proc_name "$pid" >/dev/null; then
    say "$name (pid $pid) did not stop on SIGTERM, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$RUN_DIR/$name.pid"
  say "stopped $name (pid $pid)"
}

# wait_for DESCRIPTION SECONDS COMMAND...: poll COMMAND every 0.5 s.
wait_for() {
  local what=$1 secs=$2 deadline
  shift 2
  deadline=$((SECONDS + secs))
  until "$@"; do
    ((SECONDS < deadline)) || { say "timed out after ${secs}s waiting for $what"; return 1; }
    sleep 0.5
  done
}

show_logs() {
  local d f
  for d in munged mariadbd slurmdbd slurmctld slurmd; do
    for f in "$LOG_DIR/$d.log" "$LOG_DIR/$d.stderr"; do
      [[ -s $f ]] || continue
      say "---- last lines of $f"
      tail -n 15 "$f" >&2
    done
  done
}

fail_start() { say "error: $*"; show_logs; exit 1; }

# wait_daemon NAME SECONDS COMMAND...: poll COMMAND until it succeeds, then
# until NAME's pid file names a live NAME. Fails early when NAME has died: the
# pid in STARTED_PID (if set) has exited, or after a 10 s grace period there
# is no live process in NAME's pid file.
STARTED_PID=""
wait_daemon() {
  local name=$1 secs=$2 deadline grace
  shift 2
  deadline=$((SECONDS + secs))
  grace=$((SECONDS + 10))
  until "$@" && is_up "$name"; do
    if [[ -n $STARTED_PID ]] && ! kill -0 "$STARTED_PID" 2>/dev/null; then
      fail_start "$name exited while starting"
    fi
    if ((SECONDS >= grace)) && ! is_up "$name"; then
      fail_start "$name is not running (no live $name in $RUN_DIR/$name.pid)"
    fi
    ((SECONDS < deadline)) || fail_start "$name did not come up within ${secs}s (waiting for: $*)"
    sleep 0.5
  done
  STARTED_PID=""
}

port_in_use() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
# check_port PORT WHAT: refuse to start WHAT on a port something already listens on.
check_port() {
  if port_in_use "$1"; then
    die "127.0.0.1:$1 (for $2) is already in use, by another SLURM or service? Stop it or set LOCAL_SLURM_PORT (uses it to +4)"
  fi
}
# Report a command that failed unexpectedly (set -e), except SIGPIPE (141),
# which is only the caller closing the pipe, e.g. `status | head -1`.
on_err() {
  (($1 == 141)) || say "error: unexpected failure (exit $1) at line $2: $3"
}
trap 'on_err $? $LINENO "$BASH_COMMAND"' ERR

# ---------------------------------------------------------------- install

have_binaries() {
  local b bins=(slurmctld slurmd munged munge unmunge sbatch srun scontrol sinfo squeue)
  ((ACCOUNTING == 0)) || bins+=(slurmdbd sacct sacctmgr mariadbd mariadb-install-db mariadb)
  for b in "${bins[@]}"; do
    b=$(command -v "$b") && [[ -x $b ]] || return 1
  done
}

install_packages() {
  have_binaries && return 0
  local -a pkgs=(slurm-wlm munge)
  ((ACCOUNTING == 0)) || pkgs+=(slurmdbd mariadb-server)
  [[ $(id -u) -eq 0 ]] ||
    unavailable "SLURM programs missing and not root, so cannot apt-get install ${pkgs[*]}"
  local apt_get
  apt_get=$(command -v apt-get) && [[ -x $apt_get ]] ||
    unavailable "SLURM programs missing and there is no apt-get to install ${pkgs[*]}"
  mkdir -p "$STATE_DIR"
  local log="$STATE_DIR/apt.log" start=$SECONDS
  local -a apt=(apt-get -y -q -o Dpkg::Use-Pty=0 -o Acquire::Retries=1 -o Acquire::http::Timeout=30
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  say "installing ${pkgs[*]} with apt-get (log: $log)"
  if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "${pkgs[@]}" >"$log" 2>&1 9>&-; then
    say "apt-get install failed; running apt-get update and trying again"
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >>"$log" 2>&1 9>&- ||
      ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "${pkgs[@]}" >>"$log" 2>&1 9>&-; then
      local reason
      reason=$(grep -E '^(E|Err):' "$log" | tail -n 1 || true)
      unavailable "apt-get install ${pkgs[*]} failed${reason:+: $reason} (log: $log)"
    fi
  fi
  have_binaries || unavailable "installed ${pkgs[*]} but some of their programs are still missing"
  say "installed ${pkgs[*]} in $((SECONDS - start))s"
}

# ---------------------------------------------------------------- config

write_conf() {
  local cpus mem_kb mem_mb reserve accounting
  cpus=$(nproc)
  mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  mem_mb=$((mem_kb / 1024))
  # slurmd drains a node that has less memory than configured: leave 5% (>= 256 MiB).
  reserve=$((mem_mb / 20 > 256 ? mem_mb / 20 : 256))
  mem_mb=$((mem_mb - reserve > 256 ? mem_mb - reserve : 256))
  if ((ACCOUNTING)); then
    # AccountingStoragePass is, for slurmdbd, the munge socket to authenticate with.
    accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET"
  else
    accounting="AccountingStorageType=accounting_storage/none"
  fi
  cat >"$CONF.tmp" <<CONF
# Generated by scripts/local-slurm.sh on every start; edits are overwritten.
ClusterName=localcluster
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=$CRED_EXPIRE
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool/slurmd
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
ReturnToService=2
JobRequeue=1
MinJobAge=60
KillWait=5
InactiveLimit=0
EnforcePartLimits=ALL
$accounting
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
  mv -f "$CONF.tmp" "$CONF"
}

# ---------------------------------------------------------------- munge

munge_works() {
  munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1
}

start_munged() {
  if is_up munged && munge_works; then return 0; fi
  stop_daemon munged
  if [[ ! -s $MUNGE_KEY ]]; then
    # munged wants a key of 32..1024 bytes readable by its user only
    (umask 077 && head -c 1024 /dev/urandom >"$MUNGE_KEY.tmp") && mv -f "$MUNGE_KEY.tmp" "$MUNGE_KEY"
  fi
  chmod 0400 "$MUNGE_KEY"
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  munged --key-file="$MUNGE_KEY" --socket="$MUNGE_SOCKET" --pid-file="$RUN_DIR/munged.pid" \
    --log-file="$LOG_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed" 9>&- ||
    fail_start "munged failed to start"
  wait_daemon munged 15 munge_works
}

# ---------------------------------------------------------------- accounting

mysql_root() { mariadb --no-defaults --protocol=socket -S "$MYSQL_SOCKET" -u root "$@"; }
mysql_works() { mysql_root -e 'SELECT 1' >/dev/null 2>&1; }
dbd_works() { timeout 15 sacctmgr -n -P list cluster >/dev/null 2>&1; }

start_mariadbd() {
  if is_up mariadbd && mysql_works; then return 0; fi
  stop_daemon mariadbd
  mkdir -p "$MYSQL_DIR"
  chmod 0700 "$MYSQL_DIR"
  local -a opts=(--no-defaults --datadir="$MYSQL_DIR/data" --user=root
    --innodb-log-file-size=16M --innodb-buffer-pool-size=64M --innodb-use-native-aio=0)
  if [[ ! -d $MYSQL_DIR/data/mysql ]]; then
    rm -rf "$MYSQL_DIR/data"
    mariadb-install-db "${opts[@]}" --auth-root-authentication-method=socket --skip-test-db \
      >"$LOG_DIR/mariadb-install-db.log" 2>&1 ||
      fail_start "mariadb-install-db failed (log: $LOG_DIR/mariadb-install-db.log)"
  fi
  rm -f "$MYSQL_SOCKET"
  # mariadbd does not daemonize itself; setsid detaches it from our session
  setsid mariadbd "${opts[@]}" --socket="$MYSQL_SOCKET" --pid-file="$RUN_DIR/mariadbd.pid" \
    --bind-address=127.0.0.1 --port="$MYSQL_PORT" --skip-name-resolve \
    --innodb-lock-wait-timeout=900 --innodb-flush-log-at-trx-commit=2 \
    --log-error="$LOG_DIR/mariadbd.log" </dev/null >>"$LOG_DIR/mariadbd.stderr" 2>&1 9>&- &
  STARTED_PID=$!
  wait_daemon mariadbd "$WAIT_S" mysql_works
}

start_slurmdbd() {
  if is_up slurmdbd && dbd_works; then return 0; fi
  stop_daemon slurmdbd
  local pass_file="$MYSQL_DIR/slurm.pass" pass
  if [[ ! -s $pass_file ]]; then
    (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '+/=\n' >"$pass_file")
  fi
  pass=$(<"$pass_file")
  mysql_root -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
    ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" ||
    fail_start "could not create the slurm database user"
  (
    umask 077
    cat >"$DBD_CONF" <<CONF
# Generated by scripts/local-slurm.sh on every start; edits are overwritten.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN_DIR/slurmdbd.pid
LogFile=$LOG_DIR/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$pass
StorageLoc=slurm_acct_db
CONF
  )
  # slurmdbd reads slurmdbd.conf from the directory of SLURM_CONF
  slurmdbd >>"$LOG_DIR/slurmdbd.stderr" 2>&1 9>&- || fail_start "slurmdbd failed to start"
  wait_daemon slurmdbd "$WAIT_S" dbd_works
}

# ---------------------------------------------------------------- start

node_state() { sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n 1; }

node_usable() {
  local st
  st=$(node_state)
  case $st in
    idle | mixed | allocated | completing) return 0 ;;
    *drain* | *down* | *fail*)
      # stale state from an earlier run (e.g. "Not responding"): bring it back
      scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
      return 1 ;;
    *) return 1 ;;
  esac
}

up_line() {
  local cpus acct=off
  cpus=$(sinfo -h -p "$PARTITION" -o '%C' 2>/dev/null | awk -F/ '{print $4}')
  ! conf_has_accounting || acct="on (sacct via slurmdbd)"
  printf 'local SLURM up: SLURM_CONF=%s, partition %s, %s cpus, accounting %s\n' \
    "$CONF" "$PARTITION" "$cpus" "$acct"
}

sacct_state() { sacct -n -X -P -j "$1" -o State 2>/dev/null | head -n 1; }
sacct_completed() { [[ $(sacct_state "$1") == COMPLETED ]]; }

cmd_start() {
  local t0=$SECONDS
  [[ $(id -u) -eq 0 ]] || unavailable "local-slurm.sh start needs root (SlurmUser=root), running as uid $(id -u)"
  install_packages

  if all_up && ctld_responds && node_usable; then
    say "already running (state dir $STATE_DIR)"
    up_line
    return 0
  fi
  # Half up (some daemon died): restart the SLURM daemons with a fresh config.
  if is_up slurmctld || is_up slurmd || is_up slurmdbd; then
    say "cluster only partly up; restarting the SLURM daemons"
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon slurmdbd
  fi
  ((ACCOUNTING)) || stop_daemon mariadbd

  mkdir -p "$STATE_DIR" "$RUN_DIR" "$LOG_DIR" "$STATE_DIR/state" "$STATE_DIR/spool/slurmd" "$MUNGE_DIR"
  # munged insists on: socket dir o+x, nothing group/world-writable
  chmod 0755 "$STATE_DIR" "$MUNGE_DIR" "$RUN_DIR" "$LOG_DIR"
  ((${#MUNGE_SOCKET} < 100)) || die "LOCAL_SLURM_DIR too long for a unix socket path: $MUNGE_SOCKET"
  ((${#MYSQL_SOCKET} < 100)) || die "LOCAL_SLURM_DIR too long for a unix socket path: $MYSQL_SOCKET"

  # Fail before starting anything if another program holds one of our ports.
  is_up slurmctld || check_port "$CTLD_PORT" slurmctld
  is_up slurmd || check_port "$SLURMD_PORT" slurmd
  if ((ACCOUNTING)); then
    is_up slurmdbd || check_port "$DBD_PORT" slurmdbd
    is_up mariadbd || check_port "$MYSQL_PORT" mariadbd
  fi

  write_conf
  start_munged
  if ((ACCOUNTING)); then
    start_mariadbd
    start_slurmdbd
  fi

  slurmctld -f "$CONF" >>"$LOG_DIR/slurmctld.stderr" 2>&1 9>&- || fail_start "slurmctld failed to start"
  wait_daemon slurmctld "$WAIT_S" ctld_responds
  slurmd -f "$CONF" -N "$NODE" >>"$LOG_DIR/slurmd.stderr" 2>&1 9>&- || fail_start "slurmd failed to start"
  wait_daemon slurmd "$WAIT_S" node_usable

  # A real job end to end, through srun's step launch path.
  local out job host
  # shellcheck disable=SC2016  # $SLURM_JOB_ID is for the job's shell
  if ! out=$(timeout "$WAIT_S" srun -N1 -n1 -t 1 --immediate="$WAIT_S" -p "$PARTITION" \
    sh -c 'echo "$SLURM_JOB_ID $(hostname)"' 2>&1); then
    fail_start "test job (srun -N1 -n1 hostname) failed: $out"
  fi
  read -r job host <<<"$out"
  if ((ACCOUNTING)); then
    # the job record reaches slurmdbd asynchronously
    wait_for "sacct to record test job $job" 30 sacct_completed "$job" ||
      fail_start "sacct does not show test job $job as COMPLETED (got '$(sacct_state "$job")')"
  fi
  say "started in $((SECONDS - t0))s (state dir $STATE_DIR; test job $job ran on $host)"
  up_line
}

# ---------------------------------------------------------------- stop/status/env

cmd_stop() {
  local d ids i any=0
  if is_up slurmctld && ctld_responds; then
    ids=$(squeue -h -o '%A' 2>/dev/null | tr '\n' ' ' || true)
    if [[ -n ${ids// /} ]]; then
      say "cancelling jobs still queued: $ids"
      # shellcheck disable=SC2086  # word splitting of the id list is intended
      scancel $ids 2>/dev/null || true
      for ((i = 0; i < 60; i++)); do
        [[ -n $(squeue -h -o '%A' 2>/dev/null || true) ]] || break
        sleep 0.5
      done
    fi
  fi
  for d in "${ALL_DAEMONS[@]}"; do
    if is_up "$d"; then
      any=1
      stop_daemon "$d"
    fi
  done
  if ((any)); then
    say "local SLURM stopped (state kept in $STATE_DIR)"
  else
    say "not running (state dir $STATE_DIR)"
  fi
}

cmd_status() {
  local d down=() daemons
  read -r -a daemons <<<"$(configured_daemons)"
  for d in "${daemons[@]}"; do is_up "$d" || down+=("$d"); done
  if ((${#down[@]} == 0)) && ctld_responds; then
    up_line
    sinfo
    squeue
    return 0
  fi
  if ((${#down[@]} == ${#daemons[@]})); then
    echo "local SLURM down (state dir $STATE_DIR)"
  else
    echo "local SLURM not healthy: ${down[*]:-slurmctld (not answering)} down (state dir $STATE_DIR; logs in $LOG_DIR)"
  fi
  exit 1
}

cmd_env() {
  printf 'export SLURM_CONF=%q\n' "$CONF"
  all_up || say "warning: local SLURM is not running; run: $0 start"
}

# start and stop take a lock, so concurrent callers (e.g. pytest-xdist workers)
# do not race; the daemons are started with fd 9 closed, so they do not hold it.
lock_state_dir() {
  mkdir -p "$STATE_DIR"
  exec 9>>"$STATE_DIR/.lock"
  flock -w 300 9 || die "could not lock $STATE_DIR/.lock within 300 s"
}

case "${1:-}" in
  start) lock_state_dir; cmd_start ;;
  stop) lock_state_dir; cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) usage ;;
esac
