#!/usr/bin/env bash
# The build that checks the layering and the locks: configures the LibTorch-free part
# (-DVSDM_BUILD_TRAINING=OFF) with clang and -Wthread-safety -Werror into build-clang/, builds the
# coordinator, vsdmctl and the agent with their unit tests, and checks that
#   - the configure never looked for Torch (its log does not mention it),
#   - ldd of vsdm-coordinator, vsdmctl and vsdm-worker lists no torch library,
#   - the clang-built unit tests pass.
# usage: scripts/check-build.sh      (CI runs it after the unit lane; ~2 min with a warm ccache)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build-clang
log=$dir/configure.log
mkdir -p "$dir"
if [ ! -f "$dir/build.ninja" ]; then
  CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVSDM_BUILD_TRAINING=OFF \
    -DVSDM_THREAD_SAFETY=ON -DVSDM_BUILD_BENCH=OFF > "$log" 2>&1 || { cat "$log"; exit 1; }
fi
if grep -qi torch "$log"; then
  echo "check-build: the VSDM_BUILD_TRAINING=OFF configure mentions Torch:"; grep -i torch "$log"; exit 1
fi
echo "check-build: configure with VSDM_BUILD_TRAINING=OFF (clang, -Wthread-safety -Werror): no mention of Torch"
targets=(vsdm-coordinator vsdmctl vsdm-worker vsdm_common_tests vsdm_proto_tests vsdm_server_tests vsdm_handler_pool_tests
         vsdm_service_stall_tests vsdm_agent_tests vsdm_client_tests)
args=(); for t in "${targets[@]}"; do args+=(--target "$t"); done
cmake --build "$dir" -j "${VSDM_BUILD_JOBS:-2}" "${args[@]}"
for b in vsdm-coordinator vsdmctl vsdm-worker; do
  if ldd "$dir/bin/$b" | awk '{print $1}' | grep -E '^lib(torch|c10|gloo)'; then echo "check-build: $b links LibTorch"; exit 1; fi
done
echo "check-build: ldd vsdm-coordinator vsdmctl vsdm-worker: no torch, c10 or gloo library"
for t in vsdm_common_tests vsdm_proto_tests vsdm_server_tests vsdm_handler_pool_tests vsdm_service_stall_tests \
         vsdm_agent_tests vsdm_client_tests; do
  "$dir/bin/$t" --gtest_brief=1 > "$dir/$t.log" 2>&1 || { cat "$dir/$t.log"; echo "check-build: $t (clang) failed"; exit 1; }
  echo "check-build: $t (clang build): $(grep -E '^\[  PASSED  \]' "$dir/$t.log")"
done
