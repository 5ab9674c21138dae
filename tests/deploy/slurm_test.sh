#!/usr/bin/env bash
# deploy/slurm/vsdm-agents.sbatch on a real Slurm 22.05 (munged + slurmctld + three slurmd
# "nodes" n1..n3 on this host, tests/deploy/slurm_cluster.sh):
#  1. external coordinator (loopback, --auth-tokens with tokens made here): `sbatch -N 3` the
#     launcher, 3 workers n1..n3 register, the shortened spiral example ends SUCCEEDED;
#  2. a second job RUNNING with a checkpoint, `scancel` the allocation: within 15 s (under
#     KillWait = 30 s, so the agents' own SIGTERM handling did it, not Slurm's SIGKILL) no
#     vsdm-worker or vsdm-train of the allocation is left, the Slurm job is CANCELLED, and the vsdm
#     job is back to QUEUED (requeued after the lease), not FAILED;
#  3. the job wiped from every node's work dir (a later allocation may get other nodes), `sbatch`
#     again: rank 0's agent fetches the checkpoint from the coordinator, the job resumes from it in
#     attempt 2 and ends SUCCEEDED; scancel that allocation too;
#  4. --start-coordinator and --gpus-per-node=2 (gres/gpu on fake devices): the launcher runs
#     vsdm-coordinator on the first node, the agents offer 2 slots and 2 devices each (the node's
#     GPUs, not its CPU), a small CPU job ends SUCCEEDED; `scancel -b -s TERM` (what the
#     launcher's --signal=B:TERM@120 sends before the time limit) stops agents and coordinator
#     through the batch shell's trap; the Slurm job ends COMPLETED and nothing of it is left.
# Cost: about 100 s of wall time (2-core machine, shared), almost all of it the three training
# jobs; Slurm starts in ~1 s and stops in ~4 s.
# Munge, not auth/none: it is what a real cluster runs, and starting it costs well under a second.
# usage: slurm_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=$(cd "$1" && pwd -P)
SRC=$(cd "$2" && pwd -P)
source "$SRC/tests/deploy/lib.sh"
source "$SRC/tests/deploy/slurm_cluster.sh"
trap 'exit 143' TERM  # a killed test still runs its cleanups (lib.sh's EXIT trap)
trap 'exit 130' INT
LAUNCHER=$SRC/deploy/slurm/vsdm-agents.sbatch
PY=/usr/bin/python3

bash "$SRC/scripts/install-deploy-deps.sh"
for b in vsdm-coordinator vsdm-worker vsdm-train vsdmctl; do [ -x "$BIN/$b" ] || die "no $BIN/$b"; done
[ "$(id -u)" = 0 ] || die "needs root (slurmd, munged as user munge)"

W=$(mktemp -d /tmp/vsdm-slurm-test.XXXXXX)
on_exit 'rm -rf "'"$W"'"'
# Whatever of ours is still running at the end (a failed run), by id: processes whose command
# line names this test's temp dir.
# shellcheck disable=SC2016  # expanded when the cleanup runs
on_exit 'for p in $(pgrep -f -- "'"$W"'/"); do kill -9 $p; done'

t_slurm=$SECONDS
slurm_cluster_up "$W/slurm"
log "Slurm up in $((SECONDS - t_slurm)) s (ports $SLURM_PORTS): $(sinfo -h -N -o '%N:%t' | tr '\n' ' ')"

# --- tokens: an admin for the test, one worker token (its principal registers n1..n3).
tok() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
umask 077
mkdir -p "$W/auth"
admin=$(tok) worker=$(tok)
printf '%s slurm-test-admin admin\n%s slurm-agents worker\n' "$admin" "$worker" > "$W/auth/tokens"
echo "$admin" > "$W/auth/admin.token"
echo "$worker" > "$W/auth/worker.token"
umask 022

# --- the external coordinator (outside Slurm, loopback); short lease so a cancel requeues soon.
sp=$(free_ports 16) || die "no free TCPStore port range"
"$BIN/vsdm-coordinator" --listen 127.0.0.1:0 --metrics-listen "" --data-dir "$W/coord" \
  --port-file "$W/coord.ports" --auth-tokens "$W/auth/tokens" --lease-seconds 6 \
  --restart-backoff-seconds 1 --store-port-range "$sp-$((sp + 15))" > "$W/coordinator.log" 2>&1 &
coord_pid=$!
on_exit "kill $coord_pid; wait $coord_pid"
wait_for 30 test -s "$W/coord.ports" || die "coordinator did not start: $(cat "$W/coordinator.log")"
ADDR=127.0.0.1:$(awk '$1 == "grpc" {print $2}' "$W/coord.ports")
ctl() { "$BIN/vsdmctl" --coordinator "$ADDR" --token-file "$W/auth/admin.token" "$@"; }
log "coordinator at $ADDR (TCPStore ports $sp-$((sp + 15)))"

# field JOB: "STATE ROUND ATTEMPTS" of a vsdm job.
field() {
  "$BIN/vsdmctl" --coordinator "$1" --token-file "$W/auth/admin.token" get "$2" -o json | $PY -c '
import json, sys
j = json.load(sys.stdin)
print(j["state"], j.get("progress", {}).get("round", 0), j.get("attempts", 0))'
}
# alive_workers ADDR: the ids of alive workers, sorted, space separated.
alive_workers() {
  "$BIN/vsdmctl" --coordinator "$1" --token-file "$W/auth/admin.token" workers -o json 2> /dev/null | $PY -c '
import json, sys
print(" ".join(sorted(w["worker_id"] for w in json.load(sys.stdin).get("workers", []) if w.get("state") == "alive")))'
}
# capacity ADDR: "id:slots:devices" of the alive workers, sorted.
capacity() {
  "$BIN/vsdmctl" --coordinator "$1" --token-file "$W/auth/admin.token" workers -o json 2> /dev/null | $PY -c '
import json, sys
ws = [w for w in json.load(sys.stdin).get("workers", []) if w.get("state") == "alive"]
print(" ".join(sorted("%s:%d:%d" % (w["worker_id"], w["resources"].get("slots", 0), w["resources"].get("devices", 0)) for w in ws)))'
}
three_workers() { [ "$(alive_workers "$1")" = "n1 n2 n3" ]; }
# ours: pids of this test's agents and ranks, by the binaries' path and the test's work root.
ours() { pgrep -f -- "^$BIN/vsdm-(worker|train) .*$W/nodes" || true; }
ours_coordinator() { pgrep -f -- "^$BIN/vsdm-coordinator .*$W/" | grep -vx "$coord_pid" || true; }
show_ours() { local p; p=$( (ours; ours_coordinator) | paste -sd, -); [ -z "$p" ] || ps -o pid,args -p "$p"; }
nothing_left() { [ -z "$(ours)" ] && [ -z "$(ours_coordinator)" ]; }
job_ended() { case $(slurm_job_state "$1") in CANCELLED | COMPLETED | FAILED | TIMEOUT) return 0 ;; esac; return 1; }
running_from() {  # running_from ADDR JOB ROUND: RUNNING at ROUND or later
  local s r a
  read -r s r a < <(field "$1" "$2")
  [ "$s" = JOB_STATE_RUNNING ] && [ "$r" -ge "$3" ]
}
state_is() { [ "$(field "$1" "$2" | cut -d' ' -f1)" = "$3" ]; }
watch_to_end() {  # watch_to_end ADDR JOB SECONDS: the job's final state, waited for at most SECONDS
  timeout "$3" "$BIN/vsdmctl" --coordinator "$1" --token-file "$W/auth/admin.token" watch "$2" > /dev/null 2>&1 || true
  field "$1" "$2" | cut -d' ' -f1
}
show_logs() {  # on failure: what the allocation said
  for f in "$W"/alloc-*.out; do echo "--- $f"; tail -20 "$f"; done
}
fail() { show_logs >&2; die "$@"; }

# sbatch_agents NAME [SBATCH_OPTS...] -- LAUNCHER_ARGS...: submits the launcher for 3 nodes;
# prints the Slurm job id.
sbatch_agents() {
  local name=$1 opts=()
  shift
  while [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  VSDM_BIN=$BIN VSDM_TOKEN_FILE=$W/auth/worker.token VSDM_WORK_ROOT=$W/nodes VSDM_AGENT_METRICS=127.0.0.1:0 \
    sbatch --parsable -N 3 -J "vsdm-$name" -o "$W/alloc-$name-%j.out" "${opts[@]}" "$LAUNCHER" "$@"
}
# The spiral example, cut to seconds of compute (this test is about the launcher, not quality):
# 20 steps of 256 points a round, 100 trajectories per A update, 1000 samples, a checkpoint
# every 2 rounds; job 1 runs 8 rounds, job 2 24 (it is cancelled at round 3 or later).
spiral() {  # spiral ROUNDS: sets SP, the submit arguments
  SP=(-f "$SRC/examples/spiral.yaml" --set train.rounds="$1" --set train.steps_per_round=20 \
    --set train.batch_points=256 --set variational.trajectories=100 --set sample.n=1000 --set train.checkpoint_every=2)
}

# ---------------------------------------------------------------- 1. sbatch -> SUCCEEDED
t1=$SECONDS
alloc1=$(sbatch_agents a -- --coordinator "$ADDR")
log "sbatch -N 3: Slurm job $alloc1"
wait_for 60 three_workers "$ADDR" || fail "3 workers did not register: '$(alive_workers "$ADDR")'"
t_reg=$((SECONDS - t1))
caps=$(capacity "$ADDR")
[ "$caps" = "n1:1:0 n2:1:0 n3:1:0" ] || fail "want 1 slot (the node's CPU) and no device each, got $caps"
log "workers registered $t_reg s after sbatch (id:slots:devices): $caps"
t_job1=$SECONDS
spiral 8
job1=$(ctl submit "${SP[@]}" | awk '{print $1}')
s=$(watch_to_end "$ADDR" "$job1" 240)
[ "$s" = JOB_STATE_SUCCEEDED ] || { ctl logs --events "$job1" >&2; fail "$job1 ended $s, want SUCCEEDED"; }
t_job1=$((SECONDS - t_job1))
hosts=$(ctl logs --events "$job1" | grep -o 'ranks [0-9]@n.*;' | head -1 || true)
log "$job1 SUCCEEDED in $t_job1 s (spiral, 8 rounds, $hosts)"
for n in n1 n2 n3; do
  [ -d "$W/nodes/$n/jobs/$job1" ] || fail "no rank of $job1 ran in $n's work dir"
done

# ---------------------------------------------------------------- 2. scancel mid-job
spiral 24
job2=$(ctl submit "${SP[@]}" | awk '{print $1}')
wait_for 180 running_from "$ADDR" "$job2" 3 || fail "$job2 never reached round 3: $(field "$ADDR" "$job2")"
before=$(ours | wc -l)
[ "$before" = 6 ] || fail "want 3 agents + 3 ranks of the allocation before scancel, found $before: $(show_ours)"
ls "$W"/nodes/n1/jobs/"$job2"/attempt-*/checkpoint/ckpt-* > /dev/null 2>&1 || fail "no checkpoint of $job2 in n1's work dir"
read -r _ r2 _ < <(field "$ADDR" "$job2")
t_cancel=$SECONDS
scancel "$alloc1"
wait_for 15 nothing_left || fail "still running $((SECONDS - t_cancel)) s after scancel: $(show_ours)"
t_gone=$((SECONDS - t_cancel))
wait_for 30 job_ended "$alloc1" || fail "Slurm job $alloc1 did not end: $(slurm_job_state "$alloc1")"
[ "$(slurm_job_state "$alloc1")" = CANCELLED ] || fail "Slurm job $alloc1 ended $(slurm_job_state "$alloc1"), want CANCELLED"
out=$W/alloc-a-$alloc1.out
grep -q "stopping (SIGTERM)" "$out" || fail "the batch shell's trap did not run"
# Each agent got SIGTERM and stopped by its handler (then ~PosixProcessSupervisor SIGKILLs each
# rank's process group), rather than dying by Slurm's SIGKILL after KillWait.
n=$(grep -c "stopping, killing 1 ranks" "$out" || true)
[ "$n" = 3 ] || fail "want 3 agents stopping on SIGTERM with 1 rank each, found $n"
wait_for 30 state_is "$ADDR" "$job2" JOB_STATE_QUEUED || fail "$job2 is $(field "$ADDR" "$job2"), want QUEUED after the lease"
t_requeue=$((SECONDS - t_cancel))
ctl logs --events "$job2" | grep -q '\[requeued\]' || fail "no [requeued] event for $job2"
log "scancel at round $r2: $before processes gone in $t_gone s (KillWait 30 s), Slurm job CANCELLED," \
  "$job2 QUEUED after $t_requeue s: $(ctl get "$job2" -o json | $PY -c 'import json,sys; print(json.load(sys.stdin).get("pending_reason",""))')"

# ---------------------------------------------------------------- 3. sbatch again -> resumes
# The next allocation may get other nodes, whose disks never saw the job: wipe the job from every
# node's work dir, so rank 0's agent has to fetch the checkpoint the coordinator carried.
rm -rf "$W"/nodes/n[123]/jobs/"$job2"
t3=$SECONDS
alloc2=$(sbatch_agents b -- --coordinator "$ADDR")
wait_for 60 three_workers "$ADDR" || fail "3 workers did not register again: '$(alive_workers "$ADDR")'"
s=$(watch_to_end "$ADDR" "$job2" 240)
read -r s _ a < <(field "$ADDR" "$job2")
if [ "$s" != JOB_STATE_SUCCEEDED ] || [ "$a" != 2 ]; then
  ctl logs --events "$job2" >&2
  fail "$job2: $s in attempt $a, want SUCCEEDED in attempt 2"
fi
ctl artifacts "$job2" --out "$W/out2" > /dev/null
resumed=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["resumed_from_round"])' "$W/out2/metrics.json")
[ "$resumed" -ge 2 ] || fail "$job2 resumed from round $resumed, want >= 2 (a checkpoint every 2 rounds)"
fetched=$(grep -h -m1 -o 'vsdm-worker n[0-9]: fetched the checkpoint.*' "$W"/alloc-b-"$alloc2".out || true)
[ -n "$fetched" ] || fail "rank 0's agent did not fetch the checkpoint from the coordinator"
log "allocation $alloc2 (node work dirs wiped): $job2 resumed from round $resumed and SUCCEEDED in attempt 2" \
  "($((SECONDS - t3)) s); $fetched"
scancel "$alloc2"
wait_for 15 nothing_left || fail "allocation $alloc2 left: $(show_ours)"
wait_for 30 job_ended "$alloc2" || fail "Slurm job $alloc2 did not end"

# ---------------------------------------------------------------- 4. --start-coordinator
t4=$SECONDS
cargs="--metrics-listen 127.0.0.1:0 --lease-seconds 6 --store-port-range $sp-$((sp + 15))"
alloc3=$(VSDM_AUTH_TOKENS=$W/auth/tokens VSDM_COORDINATOR_ARGS=$cargs sbatch_agents c --gpus-per-node=2 -- \
  --start-coordinator --port 0 --data-dir "$W/coord-in-slurm" --address-file "$W/coord-in-slurm.addr")
wait_for 60 test -s "$W/coord-in-slurm.addr" || fail "the started coordinator did not report its address"
ADDR3=$(cat "$W/coord-in-slurm.addr")
[ -n "$(ours_coordinator)" ] || fail "no vsdm-coordinator of allocation $alloc3 running"
wait_for 60 three_workers "$ADDR3" || fail "3 workers did not register with $ADDR3: '$(alive_workers "$ADDR3")'"
caps=$(capacity "$ADDR3")
[ "$caps" = "n1:2:2 n2:2:2 n3:2:2" ] || fail "with --gpus-per-node=2: want 2 slots and 2 devices each, got $caps"
spiral 2
job3=$("$BIN/vsdmctl" --coordinator "$ADDR3" --token-file "$W/auth/admin.token" submit "${SP[@]}" | awk '{print $1}')
s=$(watch_to_end "$ADDR3" "$job3" 120)
[ "$s" = JOB_STATE_SUCCEEDED ] || fail "$job3 at the started coordinator ended $s"
t_stop=$SECONDS
scancel -b -s TERM "$alloc3"  # only the batch shell, as --signal=B:TERM@120 before the time limit
wait_for 30 nothing_left || fail "left after scancel -b -s TERM: $(show_ours)"
t_stop=$((SECONDS - t_stop))
wait_for 30 job_ended "$alloc3" || fail "Slurm job $alloc3 did not end"
[ "$(slurm_job_state "$alloc3")" = COMPLETED ] || fail "Slurm job $alloc3 ended $(slurm_job_state "$alloc3"), want COMPLETED"
out=$W/alloc-c-$alloc3.out
grep -q "coordinator stopped" "$out" || fail "the batch shell did not stop its coordinator"
n=$(grep -c "vsdm-worker n[123]: stopping" "$out" || true)
[ "$n" = 3 ] || fail "want the 3 agents stopped by the SIGTERM the trap sent to the step, found $n"
log "--start-coordinator at $ADDR3, --gpus-per-node=2 (workers $caps): $job3 SUCCEEDED;" \
  "scancel -b -s TERM: agents and coordinator gone in $t_stop s, Slurm job COMPLETED ($((SECONDS - t4)) s)"
log "ok: $((SECONDS - t_start)) s wall in all"
