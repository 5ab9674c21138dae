#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every test in lanes:
#   1. the g++ build (-Wall -Wextra -Werror), then `ctest -L unit` (fails in minutes)
#   2. scripts/check-build.sh: the LibTorch-free build with clang -Wthread-safety -Werror and
#      VSDM_BUILD_TRAINING=OFF (no Torch in its configure, none in ldd), its unit tests
#   3. the integration tests (`ctest -LE unit`: real processes, clusters, Prometheus)
# Exit 0 only if all pass. Extra arguments go to both ctest calls (e.g. -R regex).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
t0=$SECONDS
lane() { echo; echo "==== $1 ($((SECONDS - t0)) s after the build)"; }

lane "unit tests (ctest -L unit)"
(cd build && ctest --output-on-failure --timeout 600 -L unit "$@")
lane "LibTorch-free clang build with -Wthread-safety -Werror"
bash scripts/check-build.sh
lane "integration tests (ctest -LE unit)"
(cd build && ctest --output-on-failure --timeout 1800 -LE unit "$@")

