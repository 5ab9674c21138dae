"""Checks a finished distributed run's metrics.json: the standalone quality bar, identical A on
every rank in every round, and the per-round timing breakdown.
usage: check_distributed.py OUT_DIR ROUNDS [MIN_RESUMED_ROUND]"""
import json
import os
import sys

out, rounds = sys.argv[1], int(sys.argv[2])
min_resumed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
m = json.load(open(os.path.join(out, "metrics.json")))
for f in ("samples.npy", "samples.png", "model.pt"):
    assert os.path.getsize(os.path.join(out, f)) > 0, f"missing {f}"
dist = m["distributed"]
ranks = dist["ranks"]
W = dist["trainers"]
assert len(ranks) == W + 1, f"{len(ranks)} rank summaries for {W} trainers"
assert [r["role"] for r in ranks] == ["trainer"] * W + ["variational"]
# Every rank saw the same A (bit-identical checksum) in every round of this attempt.
sums = [[x["a_checksum"] for x in r["rounds"]] for r in ranks]
done = rounds - m["resumed_from_round"]
assert all(len(s) == done for s in sums), f"round counts {[len(s) for s in sums]} != {done}"
assert all(s == sums[0] for s in sums), "ranks disagree on A"
assert len(set(sums[0])) > done // 2, "A did not change across rounds"
for r in ranks[:W]:
    for x in r["rounds"]:
        for k in ("compute_sec", "allreduce_sec", "broadcast_sec", "wait_for_a_sec", "round_sec"):
            assert x[k] >= 0, (k, x)
        assert x["compute_sec"] > 0 and x["round_sec"] >= x["compute_sec"]
assert ranks[W]["totals"]["variational_sec"] > 0
assert m["resumed_from_round"] >= min_resumed, f"resumed from {m['resumed_from_round']} < {min_resumed}"
ev, a = m["energy_distance"], m["A"]
frac = dist["wait_for_a_fraction"]
print(f"energy distance {ev:.3f} (floor {m['energy_distance_floor']:.4f}), A = {a}, "
      f"resumed from round {m['resumed_from_round']}, trainer wait-for-A {100 * frac:.1f}% "
      f"({'async' if dist['async'] else 'sync'})")
# The standalone quality bar for this budget (tests/integration/standalone_quality_test.sh).
assert ev < 0.8, f"energy distance {ev} >= 0.8"
assert a[1][1] < -0.2, f"A_yy = {a[1][1]} did not move to carry the stretched axis"
print("ok")
