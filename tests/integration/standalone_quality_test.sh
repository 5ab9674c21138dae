#!/usr/bin/env bash
# A reduced-budget version of the paper's point, run in CI: on spiral y x 8 at beta_max = 10,
# VSDM (learned A) reaches a clearly lower energy distance than plain DSM (A = 0) with the same
# budget, and moves A away from 0. (The full-budget figures are in the README.)
# usage: standalone_quality_test.sh PATH/TO/vsdm-train SOURCE_DIR
set -euo pipefail
BIN=$1; SRC=$2
PY=/usr/bin/python3
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
for m in vsdm dsm; do
  "$BIN" --standalone --quiet --spec "$SRC/examples/spiral.yaml" --set method=$m --set train.rounds=30 \
    --set sample.n=5000 --out "$work/$m" | tail -2
done
$PY - "$work" <<'PY'
import json, sys
w = sys.argv[1]
v = json.load(open(f"{w}/vsdm/metrics.json")); d = json.load(open(f"{w}/dsm/metrics.json"))
ev, ed = v["energy_distance"], d["energy_distance"]
a = v["A"]
print(f"energy distance: vsdm {ev:.3f}  dsm {ed:.3f}  (floor {v['energy_distance_floor']:.4f}); A_vsdm = {a}")
assert ev < 0.8, f"vsdm energy {ev} >= 0.8"
assert ed > 2 * ev, f"dsm {ed} not clearly worse than vsdm {ev}"
assert a[1][1] < -0.2, f"A_yy = {a[1][1]} did not move to carry the stretched axis"
print("ok: VSDM beats DSM on the stretched spiral")
PY
