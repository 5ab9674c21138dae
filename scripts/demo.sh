#!/usr/bin/env bash
# The README's main command. On a fresh machine: installs what is missing, builds, starts a local
# cluster (a coordinator and 3 worker agents on 127.0.0.1: 2 trainer ranks + the variational
# rank), submits examples/spiral.yaml with vsdmctl, watches it with a progress bar, downloads its
# artifacts into ./out/spiral/, and stops the cluster.
#   usage: scripts/demo.sh [SPEC.yaml] [OUT_DIR]
#   VSDM_STANDALONE=1 runs the job in one process instead (vsdm-train --standalone).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
VSDM_TARGETS="vsdm-train vsdm-worker vsdm-coordinator vsdmctl" bash scripts/build.sh
spec=${1:-examples/spiral.yaml}
out=${2:-out/$(basename "$spec" .yaml)}
if [ "${VSDM_STANDALONE:-0}" = 1 ]; then
  ./build/bin/vsdm-train --standalone --spec "$spec" --out "$out"
  exit 0
fi
state=${VSDM_HOME:-$PWD/.vsdm-local}
ctl() { ./build/bin/vsdmctl --state-dir "$state" "$@"; }
ctl local down > /dev/null 2>&1 || true
ctl local up --workers 3
trap 'ctl local down' EXIT
job=$(ctl submit -f "$spec" | awk '{print $1}')
echo "submitted $job; following it (vsdmctl watch $job):"
rc=0
ctl watch "$job" || rc=$?
ctl artifacts "$job" --out "$out" > /dev/null || rc=$?
echo
if [ -e "$out/forecast.png" ]; then  # a forecasting job
  echo "picture: $out/forecast.png   metrics: $out/metrics.json   model: $out/model.pt (torch.jit.load; .forecast(...))"
  echo "forecasts: $out/{forecasts,targets,contexts}.npy   rank logs: $state/work/jobs/$job/logs/"
else
  echo "picture: $out/samples.png   metrics: $out/metrics.json   model: $out/model.pt (torch.jit.load)"
  echo "samples: $out/samples.npy   rank logs: $state/work/jobs/$job/logs/"
fi
exit $rc
