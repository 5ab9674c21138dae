#!/usr/bin/env bash
# 2 trainer ranks + 1 variational rank as separate vsdm-train processes on 127.0.0.1 (real
# TCPStore, real Gloo) run the reduced-budget spiral to the end: the result passes the same
# quality bar as the standalone run with the same budget, and every rank held the same A in
# every round.
# usage: distributed_quality_test.sh PATH/TO/vsdm-train SOURCE_DIR
set -euo pipefail
BIN=$1; SRC=$2
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
VSDM_TRAIN=$BIN VSDM_THREADS=1 bash "$SRC/scripts/run-distributed.sh" "$SRC/examples/spiral.yaml" "$work/out" \
  --quiet --set train.rounds=30 --set sample.n=5000
/usr/bin/python3 "$SRC/tests/integration/check_distributed.py" "$work/out" 30
