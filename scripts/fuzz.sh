#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, -fsanitize=fuzzer,address,undefined) into
# build-fuzz/ and runs each for a bounded time from its committed seeds (fuzz/corpus/<target>/)
# plus what earlier runs found (build-fuzz/corpus/<target>/, not committed). Prints per target the
# executions and the exit status; exits non-zero if any target crashed (the reproducer is kept as
# build-fuzz/artifacts/<target>-crash-*; replay it with `build-fuzz/fuzz/fuzz_<target> FILE`).
# usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 20 s, every target)
#        scripts/fuzz.sh --seeds    rewrites the proto and checkpoint seeds with the project's writers
#   targets: job_spec_yaml job_spec_proto idx npy png csv checkpoint
#   VSDM_BUILD_LOCK=FILE runs the build under `flock FILE` (a shared machine); VSDM_BUILD_JOBS=N.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build-fuzz
all=(job_spec_yaml job_spec_proto idx npy png csv checkpoint)
lock=()
if [ -n "${VSDM_BUILD_LOCK:-}" ]; then lock=(flock "$VSDM_BUILD_LOCK"); fi

configure() {
  if [ ! -f "$dir/build.ninja" ]; then
    mkdir -p "$dir"
    CXX=clang++ "${lock[@]}" cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVSDM_FUZZ=ON \
      -DVSDM_BUILD_TESTS=OFF -DVSDM_BUILD_BENCH=OFF -DVSDM_WERROR=OFF > "$dir/configure.log" 2>&1 || { cat "$dir/configure.log"; exit 1; }
  fi
}
build() {
  local args=(); for t in "$@"; do args+=(--target "$t"); done
  "${lock[@]}" cmake --build "$dir" -j "${VSDM_BUILD_JOBS:-2}" "${args[@]}"
}

if [ "${1:-}" = "--seeds" ]; then
  configure
  build vsdm_fuzz_write_proto_seeds vsdm_fuzz_write_checkpoint_seed
  python3 fuzz/make_seeds.py fuzz/corpus
  "$dir/fuzz/vsdm_fuzz_write_proto_seeds" fuzz/corpus/job_spec_proto examples/*.yaml
  "$dir/fuzz/vsdm_fuzz_write_checkpoint_seed" fuzz/corpus/checkpoint
  exit 0
fi

seconds=${1:-20}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=("${all[@]}"); fi
configure
bins=(); for t in "${targets[@]}"; do bins+=("fuzz_$t"); done
t_build=$SECONDS
build "${bins[@]}"
echo "fuzz: built ${targets[*]} in $((SECONDS - t_build)) s"

mkdir -p "$dir/logs" "$dir/artifacts"
# LibTorch's own leaks on a refused archive are upstream (fuzz/lsan.supp says which).
export LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$dir/corpus/$t"
  log="$dir/logs/$t.log"
  rc=0
  # -timeout: one input may take 10 s; -rss_limit_mb: LibTorch alone holds ~0.7 GB; the outer
  # timeout only catches a hang of libFuzzer itself.
  timeout $((seconds + 120)) "$dir/fuzz/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2560 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$dir/artifacts/$t-" "$dir/corpus/$t" "fuzz/corpus/$t" > "$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ -z "$execs" ]; then execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#'); fi
  ran=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  if [ "$rc" -eq 0 ]; then
    echo "fuzz $t: ${execs:-?} executions in ${ran:-$seconds} s, exit 0"
  else
    failed+=("$t")
    echo "fuzz $t: ${execs:-?} executions, exit $rc: $(grep -m1 -E 'ERROR:|runtime error|contract violated|terminate called' "$log" || true)"
    grep -E "^artifact_prefix|Test unit written" "$log" | tail -1 || true
    grep -E "^SUMMARY" "$log" | tail -1 || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then echo "fuzz: crashed: ${failed[*]} (logs in $dir/logs/)"; exit 1; fi
echo "fuzz: ${#targets[@]} targets, no crash"
