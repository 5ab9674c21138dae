#!/usr/bin/env bash
# Configures and builds vsdm into build/ (Release, Ninja, ccache when present).
# usage: scripts/build.sh [extra cmake -D options]
#   VSDM_TARGETS="a b" builds only those targets (the main command builds just its binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
  mkdir -p build
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" > build/configure.log 2>&1 || { cat build/configure.log; exit 1; }
fi
# Two cores here: one LibTorch translation unit needs ~1 GB and ~20 s; -j2 is the sweet spot.
targets=()
for t in ${VSDM_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build build -j "${VSDM_BUILD_JOBS:-2}" "${targets[@]}"
