#!/usr/bin/env bash
# Configures and builds vsdm into build/ (Release, Ninja, ccache when present).
# usage: scripts/build.sh [extra cmake -D options]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" > build-configure.log 2>&1 || { cat build-configure.log; exit 1; }
  rm -f build-configure.log
fi
# Two cores here: one LibTorch translation unit needs ~1 GB and ~20 s; -j2 is the sweet spot.
cmake --build build -j "${VSDM_BUILD_JOBS:-2}"
