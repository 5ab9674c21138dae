#!/usr/bin/env bash
# vsdm-train --standalone end to end: a refused spec writes nothing; a short job writes every
# artifact; a job killed with SIGKILL resumes from its last checkpoint.
# usage: standalone_cli_test.sh PATH/TO/vsdm-train SOURCE_DIR
set -euo pipefail
BIN=$1; SRC=$2
PY=/usr/bin/python3
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# 1. A bad spec: exit code 2, the message names the key, nothing written.
printf 'train:\n  batch_points: 0\n' > "$work/bad.yaml"
set +e; "$BIN" --standalone --spec "$work/bad.yaml" --out "$work/bad-out" 2> "$work/bad.err"; rc=$?; set -e
[ "$rc" = 2 ] || fail "bad spec exit code $rc, want 2"
grep -q "train.batch_points: must be in \[1, 1048576\], got 0" "$work/bad.err" || fail "message: $(cat "$work/bad.err")"
[ ! -e "$work/bad-out" ] || fail "bad spec created the out dir"
printf 'train:\n  batch_pointz: 5\n' > "$work/bad2.yaml"
set +e; "$BIN" --standalone --spec "$work/bad2.yaml" --out "$work/bad-out" 2> "$work/bad2.err"; rc=$?; set -e
[ "$rc" = 2 ] && grep -q "train.batch_pointz: unknown key" "$work/bad2.err" || fail "unknown key: rc=$rc $(cat "$work/bad2.err")"
# The same for a bad --set: the message a file would get, or the malformed override.
set +e; "$BIN" --standalone --spec "$SRC/examples/spiral.yaml" --set train.batch_pointz=5 --out "$work/bad-out" \
  2> "$work/bad3.err"; rc=$?; set -e
[ "$rc" = 2 ] && grep -q "train.batch_pointz: unknown key" "$work/bad3.err" || fail "--set unknown key: rc=$rc $(cat "$work/bad3.err")"
set +e; "$BIN" --standalone --spec "$SRC/examples/spiral.yaml" --set train.rounds --out "$work/bad-out" \
  2> "$work/bad4.err"; rc=$?; set -e
[ "$rc" = 2 ] && grep -qF -- "--set: want key=value, got 'train.rounds'" "$work/bad4.err" || fail "--set malformed: rc=$rc $(cat "$work/bad4.err")"
[ ! -e "$work/bad-out" ] || fail "bad --set created the out dir"
echo "ok: bad specs and bad --set refused with exit 2, naming the key, writing nothing"

# The world size comes from vsdm-train's own spec parser (scripts/run-distributed.sh asks it):
# a flow-style resources block, and a --set on top of it. (The old sed in run-distributed.sh read
# 2 trainers from this spec and started the wrong number of ranks.)
printf 'resources: {trainers: 3}\n' > "$work/flow.yaml"
ws=$("$BIN" --spec "$work/flow.yaml" --print-world-size) || fail "--print-world-size failed"
[ "$ws" = 4 ] || fail "--print-world-size of a flow-style spec with 3 trainers: $ws, want 4"
ws=$("$BIN" --spec "$work/flow.yaml" --set resources.trainers=5 --print-world-size)
[ "$ws" = 6 ] || fail "--print-world-size with --set resources.trainers=5: $ws, want 6"
"$BIN" --version | grep -q "^vsdm-train [0-9]" || fail "--version: $("$BIN" --version)"
echo "ok: --print-world-size reads the spec as vsdm-train does (flow style, --set): $ws ranks"

# 2. A short job writes every artifact.
cat > "$work/tiny.yaml" <<YAML
name: tiny
problem: {dataset: spiral, scale: [1, 8]}
model: {hidden: 32}
variational: {trajectories: 100}
diffusion: {steps: 20}
train: {rounds: 6, steps_per_round: 15, batch_points: 256, checkpoint_every: 2}
sample: {n: 2000}
YAML
"$BIN" --standalone --threads 1 --spec "$work/tiny.yaml" --out "$work/out" > "$work/run1.log"
grep -q "round 6/6" "$work/run1.log" || fail "no progress lines"
for f in samples.npy samples.png metrics.json model.pt checkpoint/ckpt-00000006.pt; do
  [ -s "$work/out/$f" ] || fail "missing $f"
done
$PY - "$work/out" <<'PY'
import json, sys, numpy as np
d = sys.argv[1]
m = json.load(open(f"{d}/metrics.json"))
s = np.load(f"{d}/samples.npy")
assert s.shape == (2000, 2) and s.dtype == np.float32, (s.shape, s.dtype)
assert np.isfinite(s).all()
for k in ["energy_distance", "energy_distance_floor", "pmf_rmse", "pmf_rmse_floor", "ode_straightness",
          "ode_transport_cost", "A", "wall_seconds", "steps_per_sec"]:
    assert k in m, k
assert len(m["rounds"]) == 6
assert open(f"{d}/samples.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
print("ok: artifacts", sorted(m.keys())[:6], "...")
PY

# 3. Kill -9 mid-run, start again on the same out dir: resumes from the last checkpoint.
long=(--spec "$work/tiny.yaml" --set train.rounds=40)
"$BIN" --standalone --threads 1 "${long[@]}" --out "$work/out2" > "$work/run2.log" &
pid=$!
for _ in $(seq 1 600); do
  [ -e "$work/out2/checkpoint/ckpt-00000004.pt" ] && break
  kill -0 $pid 2>/dev/null || fail "trainer exited early: $(tail -3 "$work/run2.log")"
  sleep 0.1
done
kill -9 $pid; wait $pid 2>/dev/null || true
ls "$work/out2/checkpoint" | grep -q '\.tmp' && fail "temp checkpoint left behind"
last=$(ls "$work/out2/checkpoint" | sort | tail -1 | sed -E 's/ckpt-0*([0-9]+)\.pt/\1/')
"$BIN" --standalone --threads 1 "${long[@]}" --out "$work/out2" > "$work/run3.log"
$PY - "$work/out2" "$last" <<'PY'
import json, sys
m = json.load(open(f"{sys.argv[1]}/metrics.json"))
want = int(sys.argv[2])
assert m["resumed_from_round"] == want and want >= 4, (m["resumed_from_round"], want)
assert [r["round"] for r in m["rounds"]] == list(range(want + 1, 41))
print(f"ok: killed and resumed from round {want}")
PY
