#!/usr/bin/env bash
# Round-time breakdown of the distributed runtime (not a test): the spiral job for a few rounds
# with W = 1 and W = 2 trainer processes, sync and async A, all ranks on this machine over
# loopback Gloo. Prints, per configuration, the mean per-round seconds of the trainers (compute,
# all-reduce, broadcast, wait-for-A) and of the variational rank (update, waiting for the
# trainers), and the trainers' wait-for-A as a fraction of round time (async goal: < 2 %).
# usage: bench/distributed_rounds.sh [ROUNDS=12] [BIN=build/bin/vsdm-train]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-12}
bin=${2:-$here/build/bin/vsdm-train}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores; every rank 1 thread (VSDM_THREADS=1); $rounds rounds of 100 steps, batch 1024"
for W in 1 2; do
  for mode in sync async; do
    async=$([ $mode = async ] && echo true || echo false)
    VSDM_TRAIN=$bin VSDM_THREADS=1 bash "$here/scripts/run-distributed.sh" "$here/examples/spiral.yaml" "$work/$W-$mode" \
      --quiet --set train.rounds="$rounds" --set sample.n=2000 --set resources.trainers=$W \
      --set variational.async=$async > /dev/null
  done
done
/usr/bin/python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
print(f"{'W':>2} {'mode':>5} | {'round':>6} {'compute':>7} {'allred':>7} {'bcast':>6} {'wait-A':>7} {'wait-A %':>8} | "
      f"{'var upd':>7} {'var idle':>8} | {'steps/s':>7}")
for W in (1, 2):
    for mode in ("sync", "async"):
        m = json.load(open(f"{w}/{W}-{mode}/metrics.json"))
        ranks = m["distributed"]["ranks"]
        def mean(rank, key):  # skip the first 2 rounds (warm-up; async has no A update yet)
            xs = [r[key] for r in rank["rounds"][2:]]
            return sum(xs) / len(xs)
        tr = ranks[:W]
        var = ranks[W]
        rt = sum(mean(r, "round_sec") for r in tr) / W
        f = lambda k: sum(mean(r, k) for r in tr) / W
        wa = f("wait_for_a_sec")
        print(f"{W:>2} {mode:>5} | {rt:6.2f} {f('compute_sec'):7.2f} {f('allreduce_sec'):7.2f} {f('broadcast_sec'):6.2f} "
              f"{wa:7.3f} {100 * wa / rt:7.1f}% | {mean(var, 'variational_sec'):7.2f} {mean(var, 'wait_for_trainers_sec'):8.2f} | "
              f"{100 / rt:7.1f}")
PY
