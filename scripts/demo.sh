#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, trains the spiral VSDM job
# (examples/spiral.yaml) as a distributed attempt on this machine (resources.trainers trainer
# processes + the variational rank over Gloo on loopback) and writes its samples, picture,
# metrics and TorchScript model to ./out/spiral/. VSDM_STANDALONE=1 runs it in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
spec=${1:-examples/spiral.yaml}
out=${2:-out/$(basename "$spec" .yaml)}
if [ "${VSDM_STANDALONE:-0}" = 1 ]; then
  ./build/bin/vsdm-train --standalone --spec "$spec" --out "$out"
else
  bash scripts/run-distributed.sh "$spec" "$out"
fi
echo
echo "picture: $out/samples.png   metrics: $out/metrics.json   model: $out/model.pt (torch.jit.load)"
