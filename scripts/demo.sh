#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, trains the spiral VSDM job
# (examples/spiral.yaml) and writes its samples, picture, metrics and TorchScript model to
# ./out/spiral/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
spec=${1:-examples/spiral.yaml}
out=${2:-out/$(basename "$spec" .yaml)}
./build/bin/vsdm-train --standalone --spec "$spec" --out "$out"
echo
echo "picture: $out/samples.png   metrics: $out/metrics.json   model: $out/model.pt (torch.jit.load)"
