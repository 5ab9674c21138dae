#!/usr/bin/env bash
# Preemption (issue 18, Note [Preemption] in worker/train/preemption.h): SIGTERM to ONE rank of a
# distributed attempt (a deleted pod, scancel) stops every rank after the same round; trainer 0
# writes that round's checkpoint (off the checkpoint_every schedule) and every rank exits 75
# within the agent's 10 s kill grace. The next attempt resumes from exactly that round and the
# finished job passes the distributed quality bar. The same for --standalone, and a rank that
# cannot reach a round boundary (stuck in the rendezvous) exits 75 by its watchdog. A kill -9 with
# no notice (attempt 2) makes the others exit 3 at once naming a gone peer; the run resumes from
# the last scheduled checkpoint (this replaced distributed_kill_test.sh).
# Before: SIGTERM killed the signalled rank, its peers failed with exit 3 after the
# process-group timeout, and every round since the last scheduled checkpoint was lost.
# usage: preempt_rank_test.sh PATH/TO/vsdm-train SOURCE_DIR  (the cluster-level case, the coordinator
# not counting the restart, is preempt_test.sh)
set -euo pipefail
BIN=$1; SRC=$2
work=$(mktemp -d)
cleanup() {
  local pids; pids=$(pgrep -f -- "--out $work/" || true)
  [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$work"/*.log "$work"/*/logs/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }; done; exit 1; }
spec=$SRC/examples/spiral.yaml
ids=(--job-uid=uid-preempt-test --spec-hash=hash-preempt-test)
sets=(--set train.rounds=30 --set sample.n=5000 --set train.checkpoint_every=10)
GRACE=10  # the agent's default kill grace (s)

# ---- 1. distributed: SIGTERM to trainer 1, then (next attempt) to the variational rank ----------
out=$work/dist
launch() {  # attempt -> runs the ranks in the background, sets $runner
  # A grace longer than any round here, so the watchdog (part 3) never preempts the stop under test.
  VSDM_PREEMPT_GRACE_SECONDS=120 VSDM_TRAIN=$BIN VSDM_THREADS=1 VSDM_ATTEMPT=$1 bash "$SRC/scripts/run-distributed.sh" "$spec" "$out" \
    --quiet --pg-timeout 300 "${ids[@]}" "${sets[@]}" > "$work/attempt-$1.log" 2>&1 &
  runner=$!
}
wait_for_round() {  # round -> waits until trainer 0's progress.json is at or past it
  for _ in $(seq 2400); do
    r=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["round"])' "$out/progress.json" 2>/dev/null || echo 0)
    [ "$r" -ge "$1" ] && return 0
    kill -0 "$runner" 2>/dev/null || fail "the ranks exited before round $1"
    sleep 0.25
  done
  fail "no progress to round $1 after 600 s"
}
preempt_rank_and_expect_exit_75() {  # attempt rank -> sets $stopped (the round every rank stopped after)
  local pid; pid=$(pgrep -f -- "--out $out --rank $2 ") || fail "rank $2 not running"
  # The stop comes at the end of the round the signal falls in: allow the rest of a round (the
  # last one's time, from progress.json; a few seconds unloaded) and the checkpoint.
  local round_sec; round_sec=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["round_seconds"])' "$out/progress.json")
  local bound; bound=$(python3 -c "print(max($GRACE, 1.5 * $round_sec + 5))")
  kill -TERM "$pid"
  local t0; t0=$(date +%s.%N)
  local rc=0; wait "$runner" || rc=$?
  local took; took=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
  [ "$rc" -eq 75 ] || fail "attempt $1: SIGTERM to rank $2: run exited $rc, want 75 (preempted)"
  stopped=$(sed -n 's/.*stopping after round \([0-9]*\)\/30.*/\1/p' "$out/logs/rank-0.log" | tail -n 1)
  [ -n "$stopped" ] || fail "attempt $1: trainer 0 logged no stop"
  for r in 0 1 2; do  # every rank, not only the signalled one, stopped after the same round with 75
    grep -q "preempted: after round $stopped/30: a preemption notice (SIGTERM) to .*; exit 75" "$out/logs/rank-$r.log" ||
      fail "attempt $1: rank $r did not stop after round $stopped with exit 75"
  done
  [ -f "$(printf "%s/checkpoint/ckpt-%08d.pt" "$out" "$stopped")" ] || fail "attempt $1: no checkpoint of round $stopped"
  if pgrep -f -- "--out $out --rank" > /dev/null; then fail "attempt $1: ranks still running"; fi
  python3 -c "import sys; sys.exit(0 if $took <= $bound else 1)" || fail "attempt $1: took ${took}s > ${bound}s"
  echo "attempt $1: SIGTERM to rank $2 during round $((stopped)) or before; all 3 ranks stopped after round $stopped," \
       "checkpoint ckpt-$stopped written, exit 75 in ${took}s (round time ${round_sec}s)"
}

launch 0
wait_for_round 12
preempt_rank_and_expect_exit_75 0 1  # a trainer
first=$stopped
[ $((first % 10)) -ne 0 ] || echo "(round $first is a scheduled checkpoint round too)"
launch 1
wait_for_round $((first + 4))
grep -q "resumed from checkpoint at round $first" "$out/logs/rank-0.log" || fail "attempt 1 did not resume from round $first"
preempt_rank_and_expect_exit_75 1 2  # the variational rank
second=$stopped
# Attempt 2: kill -9 (no notice) of trainer 1 past the next scheduled checkpoint: the other ranks
# see the peer gone and exit 3 with a clear error, not after the 300 s process-group timeout.
kept=$(( (second / 10 + 1) * 10 ))
[ "$kept" -lt 30 ] || fail "attempt 1 stopped after round $second: no scheduled checkpoint left before the end"
launch 2
wait_for_round $((kept + 1))
grep -q "resumed from checkpoint at round $second" "$out/logs/rank-0.log" || fail "attempt 2 did not resume from round $second"
pid=$(pgrep -f -- "--out $out --rank 1 ") || fail "rank 1 not running"
kill -9 "$pid"
t0=$SECONDS; rc=0; wait "$runner" || rc=$?
[ "$rc" -eq 3 ] || fail "attempt 2: kill -9 of rank 1: run exited $rc, want 3 (a peer is gone)"
[ $((SECONDS - t0)) -le 30 ] || fail "attempt 2: the other ranks took $((SECONDS - t0))s to exit after the kill"
for r in 0 2; do
  grep -q "a peer rank is gone or stuck" "$out/logs/rank-$r.log" || fail "attempt 2: rank $r logged no clear error"
done
if pgrep -f -- "--out $out --rank" > /dev/null; then fail "attempt 2: ranks still running"; fi
echo "attempt 2: kill -9 of rank 1 after round $kept; ranks 0 and 2 exited 3 in $((SECONDS - t0))s naming a gone peer"
launch 3
wait "$runner" || fail "attempt 3 failed"
grep -q "resumed from checkpoint at round $kept" "$out/logs/rank-0.log" || fail "attempt 3 did not resume from round $kept"
python3 - "$out/metrics.json" "$kept" <<'EOF' || fail "metrics"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["resumed_from_round"] == int(sys.argv[2]), (m["resumed_from_round"], sys.argv[2])
assert m["checkpoints_skipped"] == 0, m["checkpoint_skips"]
EOF
/usr/bin/python3 "$SRC/tests/integration/check_distributed.py" "$out" 30 "$kept" || fail "quality bar"
grep -h "preemption check \[5\]" "$out/logs/rank-0.log" | tail -n 1

# ---- 2. standalone: SIGTERM, exit 75 after a checkpoint of that round, resume, quality --------
sout=$work/standalone
VSDM_PREEMPT_GRACE_SECONDS=120 "$BIN" --standalone --spec "$spec" --out "$sout" --threads 2 "${ids[@]}" "${sets[@]}" \
  > "$work/standalone-0.log" 2>&1 &
pid=$!
for _ in $(seq 2400); do
  grep -q "^round 8/30" "$work/standalone-0.log" && break
  kill -0 "$pid" 2>/dev/null || fail "standalone exited before round 8"
  sleep 0.25
done
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
[ "$rc" -eq 75 ] || fail "standalone: exit $rc after SIGTERM, want 75"
sr=$(sed -n 's/.*preempted: after round \([0-9]*\)\/30 (SIGTERM); resume from ckpt-.*; exit 75/\1/p' "$work/standalone-0.log")
[ -n "$sr" ] || fail "standalone: no preemption line"
[ -f "$(printf "%s/checkpoint/ckpt-%08d.pt" "$sout" "$sr")" ] || fail "standalone: no checkpoint of round $sr"
"$BIN" --standalone --spec "$spec" --out "$sout" --threads 2 --quiet "${ids[@]}" "${sets[@]}" > "$work/standalone-1.log" 2>&1 ||
  fail "standalone resume failed"
python3 - "$sout/metrics.json" "$sr" <<'EOF' || fail "standalone metrics"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["resumed_from_round"] == int(sys.argv[2]), (m["resumed_from_round"], sys.argv[2])
ev, a = m["energy_distance"], m["A"]
print(f"standalone: SIGTERM -> exit 75 after round {sys.argv[2]}; resumed there: energy distance {ev:.3f}, A_yy {a[1][1]:.3f}")
assert ev < 0.8 and a[1][1] < -0.2, (ev, a)  # the bar check_distributed.py applies to this budget
EOF

# ---- 3. the watchdog: a rank that never reaches a round boundary still exits 75 in its grace ---
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
VSDM_PREEMPT_GRACE_SECONDS=2 "$BIN" --spec "$spec" --out "$work/lone" --rank 1 --store "127.0.0.1:$port" \
  --pg-timeout 120 "${sets[@]}" > "$work/lone.log" 2>&1 &
pid=$!
# Once it is up (its first line): before main installs the handler, SIGTERM still kills outright.
for _ in $(seq 240); do grep -q "store 127.0.0.1:$port" "$work/lone.log" && break; sleep 0.25; done
sleep 1
kill -TERM "$pid"
t0=$SECONDS; rc=0; wait "$pid" || rc=$?
[ "$rc" -eq 75 ] || fail "lone rank: exit $rc after SIGTERM, want 75"
[ $((SECONDS - t0)) -le 5 ] || fail "lone rank: took $((SECONDS - t0))s, want about the 2 s grace"
grep -q "preempted: not stopped 2 s after SIGTERM" "$work/lone.log" || fail "lone rank: no watchdog message"
echo "lone rank (waiting for its peers): exit 75 by the watchdog $((SECONDS - t0))s after SIGTERM"
echo "ok"
