#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every test in lanes:
#   1. the g++ build (-Wall -Wextra -Werror), then `ctest -L unit` (fails in minutes)
#   2. scripts/fuzz.sh 20: the libFuzzer targets of fuzz/ (clang, ASan + UBSan), 20 s each
#   3. scripts/check-build.sh: the LibTorch-free build with clang -Wthread-safety -Werror and
#      VSDM_BUILD_TRAINING=OFF (no Torch in its configure, none in ldd), its unit tests
#   4. the integration tests (`ctest -LE 'unit|deploy'`: real processes, clusters, Prometheus)
#   5. the deployment tests (`ctest -L deploy`, tests/deploy/): Kubernetes manifests rendered and
#      validated offline, container images and compose on a real Docker engine, a real Slurm,
#      and a multi-host cluster in network namespaces (installs scripts/install-deploy-deps.sh)
# Exit 0 only if all pass. Extra arguments go to both ctest calls (e.g. -R regex).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
t0=$SECONDS
lane() { echo; echo "==== $1 ($((SECONDS - t0)) s after the build)"; }

lane "unit tests (ctest -L unit)"
(cd build && ctest --output-on-failure --timeout 600 -L unit "$@")
# What fuzzing adds: every parser of untrusted bytes (the YAML spec, the wire JobSpec, the IDX,
# NPY, PNG-folder and CSV loaders, the checkpoint reader) run on thousands of mutated inputs under
# ASan and UBSan, so a crash, an overflow or a broken postcondition fails CI with its reproducer
# (build-fuzz/artifacts/). Measured on the 2-core machine: 203 s with a warm ccache (7 targets x
# 20 s plus 35 s of build); 492 s the first time, when clang builds build-fuzz/ cold (core/ for the
# checkpoint target is most of it; ccache makes every later run warm).
lane "fuzzing (scripts/fuzz.sh 20: 7 libFuzzer targets, 20 s each)"
bash scripts/fuzz.sh 20
lane "LibTorch-free clang build with -Wthread-safety -Werror"
bash scripts/check-build.sh
lane "integration tests (ctest -LE 'unit|deploy')"
(cd build && ctest --output-on-failure --timeout 1800 -LE 'unit|deploy' "$@")
# What the deploy lane adds, measured in a fresh-clone run of this script at 99596de on the
# 2-core machine (451 s in all): k8s manifests 17 s, Docker images + compose 205 s (cold
# debootstrap included), Slurm 81 s, multi-host namespaces 148 s; each test's ctest timeout
# (tests/CMakeLists.txt) is its budget.
lane "deployment tests (ctest -L deploy)"
bash scripts/install-deploy-deps.sh
(cd build && ctest --output-on-failure --timeout 1800 -L deploy "$@")

