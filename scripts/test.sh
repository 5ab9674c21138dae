#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs every test (unit and
# integration) with ctest. Exit 0 only if all pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd build
ctest --output-on-failure --timeout 1800 "$@"
