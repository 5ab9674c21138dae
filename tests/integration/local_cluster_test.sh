#!/usr/bin/env bash
# End to end, what the README's main command does, on loopback: `vsdmctl local up` (coordinator +
# 3 agents), submit the reduced-budget spiral, watch it to SUCCEEDED, download the artifacts, and
# check the downloaded samples against the standalone quality bar of the same spec; meanwhile
# `vsdmctl logs -f` follows its ranks' output (tests/integration/logs_follow.py: every line, lag);
# then check_distributed.py on the downloaded metrics.json (identical A on every rank, timings).
# usage: local_cluster_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=$1; SRC=$2
work=$(mktemp -d)
ctl() { "$BIN/vsdmctl" --state-dir "$work/state" "$@"; }
follow=""
trap 'if [ -n "$follow" ]; then kill "$follow" 2> /dev/null || true; fi; ctl local down > /dev/null 2>&1 || true; rm -rf "$work"' EXIT
ctl local up --workers 3
job=$(ctl submit -f "$SRC/examples/spiral.yaml" --set train.rounds=30 --set sample.n=5000 | awk '{print $1}')
# Its ranks' output followed from afar while it runs (Note [Live rank logs]), with the lag.
/usr/bin/python3 "$SRC/tests/integration/logs_follow.py" "$BIN" "$work/state" "$job" > "$work/follow.txt" 2>&1 &
follow=$!
ctl watch "$job" | tail -4
wait "$follow" || { cat "$work/follow.txt"; echo "logs -f failed"; exit 1; }
tail -2 "$work/follow.txt"
[ "$(ctl get "$job" -o json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')" = JOB_STATE_SUCCEEDED ]
ctl artifacts "$job" --out "$work/out"
/usr/bin/python3 - "$work/out" <<'PY'
import json, sys
import numpy as np
out = sys.argv[1]
x = np.load(f"{out}/samples.npy")
m = json.load(open(f"{out}/metrics.json"))
assert x.shape == (5000, 2) and np.isfinite(x).all(), x.shape
# The y axis is stretched 8x: the samples must spread much wider in y than in x.
assert np.std(x[:, 1]) > 4 * np.std(x[:, 0]), (np.std(x[:, 0]), np.std(x[:, 1]))
ev, a = m["energy_distance"], m["A"]
print(f"downloaded {x.shape[0]} samples: energy distance {ev:.3f} (floor {m['energy_distance_floor']:.4f}), A = {a}")
assert ev < 0.8, f"energy distance {ev} >= 0.8 (the standalone bar)"
assert a[1][1] < -0.2, a
assert m["distributed"]["trainers"] == 2 and len(m["distributed"]["ranks"]) == 3
print("ok")
PY
# The distributed checks on what the cluster ran: every rank held the same A in every round,
# the per-round timing breakdown, the same quality bar.
/usr/bin/python3 "$SRC/tests/integration/check_distributed.py" "$work/out" 30
