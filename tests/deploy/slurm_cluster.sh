# shellcheck shell=bash
# Sourced by slurm_test.sh (after lib.sh): a real Slurm 22.05 cluster on this one host, in a temp
# dir: munged, slurmctld and three slurmd "nodes" n1..n3 (every NodeAddr 127.0.0.1, each on its
# own port, NodeHostname = this host's short name, 1 CPU and 2 "GPUs" each), all stopped by on_exit.
# The GPUs are gres/gpu over two character devices made here (like /dev/null): enough for Slurm
# to allocate them and set SLURM_GPUS_ON_NODE and CUDA_VISIBLE_DEVICES in a step, nothing more.
#   slurm_cluster_up DIR      starts it; exports SLURM_CONF; sets SLURM_DIR and SLURM_PORTS (for logs)
#   slurm_job_state JOB       JobState of a job (kept MinJobAge = 300 s after it ends)

# free_ports N: the first of N consecutive TCP ports, none listening, picked at random in
# 20000-39999 (clear of the fixed 16817/16818/17001-17003 of DEPLOY-TOOLS.md and of ports other
# tests on this machine pick).
free_ports() {
  local n=$1 base p ok _
  for _ in $(seq 50); do
    base=$((20000 + RANDOM % 20000))
    ok=1
    for ((p = base; p < base + n; p++)); do
      if ss -Htln "sport = :$p" | grep -q .; then ok=0; break; fi
    done
    [ "$ok" = 0 ] || { echo "$base"; return 0; }
  done
  return 1
}

slurm_cluster_up() {
  SLURM_DIR=$1
  local d=$SLURM_DIR host p n
  host=$(hostname -s)
  mkdir -p "$d/munge/sock" "$d/munge/run" "$d/state" "$d/log" "$d/run" "$d/dev"
  mknod "$d/dev/gpu0" c 1 3 || die "mknod of a fake GPU device failed"
  mknod "$d/dev/gpu1" c 1 3 || die "mknod of a fake GPU device failed"
  echo "NodeName=n[1-3] Name=gpu File=$d/dev/gpu[0-1]" > "$d/gres.conf"
  chmod a+x "$(dirname "$d")"  # munged (user munge) must reach its files
  chmod 755 "$d" "$d/munge" "$d/munge/sock"
  # munge: a key of its own, its socket here (not the system one), run as the munge user.
  dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 status=none
  chown -R munge:munge "$d/munge"
  chmod 400 "$d/munge/munge.key"
  chmod 700 "$d/munge/run"
  runuser -u munge -- munged --socket="$d/munge/sock/munge.socket" --key-file="$d/munge/munge.key" \
    --pid-file="$d/munge/run/munged.pid" --log-file="$d/munge/run/munged.log" \
    --seed-file="$d/munge/run/munged.seed" || die "munged did not start"
  on_exit '_stop_pidfiles "'"$d"'/munge/run/munged.pid"'
  p=$(free_ports 4) || die "no 4 free consecutive ports for Slurm"
  # shellcheck disable=SC2034  # read by the caller
  SLURM_PORTS="$p-$((p + 3))"
  cat > "$d/slurm.conf" <<EOF
ClusterName=vsdmslurmtest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$p
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/munge/sock/munge.socket
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool/%n
SlurmctldPidFile=$d/run/slurmctld.pid
SlurmdPidFile=$d/run/slurmd-%n.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobCompType=jobcomp/filetxt
JobCompLoc=$d/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
GresTypes=gpu
# The defaults, written out: the test relies on the agents stopping well within KillWait.
KillWait=30
MinJobAge=300
NodeName=n[1-3] NodeHostname=$host NodeAddr=127.0.0.1 Port=[$((p + 1))-$((p + 3))] CPUs=1 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=n[1-3] Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$d/slurm.conf
  on_exit slurm_cluster_down
  slurmctld -f "$SLURM_CONF" || die "slurmctld did not start: $(tail -5 "$d/log/slurmctld.log")"
  for n in n1 n2 n3; do
    mkdir -p "$d/spool/$n"
    slurmd -f "$SLURM_CONF" -N "$n" || die "slurmd $n did not start: $(tail -5 "$d/log/slurmd-$n.log")"
  done
  # slurmd logs "mpi/pmix: can not load PMIx library" (harmless); wait for 3 idle nodes.
  wait_for 30 _slurm_three_idle || die "Slurm nodes not idle: $(sinfo -N 2>&1)"
}
_slurm_three_idle() { [ "$(sinfo -h -N -t idle -o %N 2> /dev/null | sort -u | wc -l)" = 3 ]; }

# slurm_cluster_down: cancels what still runs (slurmd then signals its steps), stops slurmd and
# slurmctld (those of their pid files that exist).
slurm_cluster_down() {
  local d=$SLURM_DIR
  if [ -n "$(squeue -h -o %i 2> /dev/null)" ]; then
    scancel --full --quiet -u "$(id -un)"
    wait_for 10 _slurm_no_jobs_running
  fi
  _stop_pidfiles "$d"/run/slurmd-n[123].pid "$d/run/slurmctld.pid"
}
_slurm_no_jobs_running() { [ -z "$(squeue -h -t R,CG -o %i 2> /dev/null)" ]; }
# _stop_pidfiles FILE...: SIGTERM the daemons of the pid files, SIGKILL those left after 5 s.
_stop_pidfiles() {
  local f pids=() _
  for f in "$@"; do
    [ -s "$f" ] && pids+=("$(cat "$f")") && rm -f "$f"
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill "${pids[@]}" 2> /dev/null
  for _ in $(seq 50); do kill -0 "${pids[@]}" 2> /dev/null || return 0; sleep 0.1; done
  kill -9 "${pids[@]}" 2> /dev/null
}

slurm_job_state() { scontrol show job "$1" -o 2> /dev/null | tr ' ' '\n' | sed -n 's/^JobState=//p'; }
