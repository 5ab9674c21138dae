#!/usr/bin/env bash
# The DSM step of vsdm (C++, vsdm_bench --step-only) beside the reference code's eager PyTorch
# step (bench/reference_step.py), side by side in one run on this machine: same network
# (toy_resnet / ToyPolicy, width 256), batch (200 points x 200 times), loss, optimiser, the same
# Debian LibTorch and BLAS and the same number of threads. Each figure is a median over --steps
# timed steps; the pairs run interleaved (C++, reference, C++, reference ...) for `rounds` rounds
# so that a noisy neighbour hits both, and the ratio is taken of the medians of all rounds.
# The reference runs twice a round: as its users run it (glibc's malloc defaults), and with the
# allocator setting vsdm-train makes (core/threading.h, Note [Large tensors and the allocator]),
# to show what part of the ratio is that setting.
# A benchmark, not a test: it prints figures.
#
# usage: bench/step_vs_reference.sh [BUILD_DIR] [rounds=2] [steps=9]
#   env THREADS (default: all cores), PRECISIONS (default "fp32 bf16")
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
rounds=${2:-2}
steps=${3:-9}
threads=${THREADS:-$(nproc)}
bench=$build/bin/vsdm_bench
[ -x "$bench" ] || { echo "step_vs_reference: $bench not built (bash scripts/build.sh)" >&2; exit 2; }
py=/usr/bin/python3
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); threads $threads;" \
  "commit $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?')"
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for prec in ${PRECISIONS:-fp32 bf16}; do
  cpp=() ref=() refa=()
  for ((r = 1; r <= rounds; r++)); do
    # vsdm_bench as vsdm-train runs: idle OpenMP threads sleep (train_main.cc sets it too).
    line=$(OMP_WAIT_POLICY=PASSIVE "$bench" --step-only --threads "$threads" --steps "$steps" --precision "$prec" | grep '^DSM step')
    echo "  vsdm      $line"
    cpp+=("$(sed -E 's/.*median ([0-9.]+) s\/step.*/\1/' <<<"$line")")
    # The reference as its users run it: torch's default threads (= cores) and OpenBLAS's default.
    line=$("$py" "$here/bench/reference_step.py" --threads "$threads" --steps "$steps" --precision "$prec")
    echo "  reference $line"
    ref+=("$(sed -E 's/.*median ([0-9.]+) s\/step.*/\1/' <<<"$line")")
    line=$(MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647 \
      "$py" "$here/bench/reference_step.py" --threads "$threads" --steps "$steps" --precision "$prec")
    echo "  ref+alloc $line"
    refa+=("$(sed -E 's/.*median ([0-9.]+) s\/step.*/\1/' <<<"$line")")
  done
  c=$(printf '%s\n' "${cpp[@]}" | median)
  p=$(printf '%s\n' "${ref[@]}" | median)
  a=$(printf '%s\n' "${refa[@]}" | median)
  awk -v c="$c" -v p="$p" -v a="$a" -v prec="$prec" 'BEGIN {
    printf "%s: vsdm %.3f s/step (%.3f steps/s), reference %.3f s/step (%.3f steps/s): ratio %.2fx; " \
           "reference with vsdm'"'"'s allocator setting %.3f s/step: ratio %.2fx\n",
           prec, c, 1 / c, p, 1 / p, p / c, a, a / c }'
done
