#!/usr/bin/env bash
# Fault test of one attempt: kill -9 the variational rank mid-run, then (in the next
# attempt) a trainer. Each time every other rank must exit with a clear error (exit 3) well
# within the process-group timeout instead of hanging; starting the ranks again on the same out
# dir resumes from the last checkpoint, and the finished job passes the quality bar.
# usage: distributed_kill_test.sh PATH/TO/vsdm-train SOURCE_DIR
set -euo pipefail
BIN=$1; SRC=$2
TIMEOUT=20
work=$(mktemp -d)
cleanup() { pkill -9 -f -- "--out $work/out" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# Sync A, so that the same quality bar as the standalone run applies (an async resume is
# checked to reproduce the uninterrupted run exactly in tests/worker/train/distributed_test.cc).
spec=$SRC/examples/spiral.yaml
sets=(--set train.rounds=30 --set sample.n=5000 --set train.checkpoint_every=5)
out=$work/out
launch() {  # attempt -> runs the ranks in the background, sets $runner
  VSDM_TRAIN=$BIN VSDM_THREADS=1 VSDM_ATTEMPT=$1 bash "$SRC/scripts/run-distributed.sh" "$spec" "$out" \
    --quiet --pg-timeout $TIMEOUT "${sets[@]}" > "$work/attempt-$1.log" 2>&1 &
  runner=$!
}
wait_for_checkpoint() {  # round -> waits until ckpt-<round> exists
  local f; f=$(printf "%s/checkpoint/ckpt-%08d.pt" "$out" "$1")
  for _ in $(seq 600); do [ -f "$f" ] && return 0; sleep 0.5; done
  echo "no checkpoint $f after 300 s"; cat "$work"/attempt-*.log; exit 1
}
kill_rank_and_expect_clean_failure() {  # attempt rank
  local pid; pid=$(pgrep -f -- "--out $out --rank $2 ")
  kill -9 "$pid"
  local t0=$SECONDS rc=0
  wait "$runner" || rc=$?
  local took=$((SECONDS - t0))
  echo "attempt $1: killed rank $2; the others exited with $rc after ${took}s"
  [ "$rc" -eq 3 ] || { echo "expected exit 3 (collective failure), got $rc"; cat "$work/attempt-$1.log" "$out"/logs/*; exit 1; }
  [ "$took" -le $((TIMEOUT + 10)) ] || { echo "took ${took}s > timeout ${TIMEOUT}s + 10"; exit 1; }
  for ((r = 0; r <= 2; r++)); do
    [ "$r" -eq "$2" ] && continue
    grep -q "a peer rank is gone or stuck" "$out/logs/rank-$r.log" || { echo "rank $r: no clear error"; cat "$out/logs/rank-$r.log"; exit 1; }
  done
  if pgrep -f -- "--out $out --rank" > /dev/null; then echo "ranks still running"; exit 1; fi
}

launch 0
wait_for_checkpoint 10
kill_rank_and_expect_clean_failure 0 2   # the variational rank
launch 1
wait_for_checkpoint 20
kill_rank_and_expect_clean_failure 1 1   # a trainer
launch 2
wait "$runner" || { echo "attempt 2 failed"; cat "$work/attempt-2.log" "$out"/logs/*; exit 1; }
grep -q "resumed from checkpoint at round" "$out/logs/rank-0.log"
/usr/bin/python3 "$SRC/tests/integration/check_distributed.py" "$out" 30 20
