#!/usr/bin/env bash
# The GPU checks of vsdm, for a machine with an NVIDIA GPU and a CUDA LibTorch. Builds build-gpu/
# (-DVSDM_WITH_CUDA=ON; the other dependencies from the system) and runs, each under its own
# timeout and all within 10 minutes end to end:
#   a. gpu-tests  ctest -L gpu: NCCL broadcast / all-reduce, Gloo on CUDA tensors, a trainer's step
#                 on cuda with CUDA's sync debug mode at "error" (no host sync), fp32 and bf16
#   b. spiral     examples/spiral.yaml, 2 trainers + the variational rank on the GPU through
#                 scripts/run-distributed.sh, 30 rounds: energy distance < 0.8, the CPU bar of
#                 tests/integration/standalone_quality_test.sh; fp32 and bf16. Backend gloo when
#                 fewer than 3 GPUs are visible (NCCL refuses two ranks on one GPU), else nccl with a
#                 GPU per rank (VSDM_RANK_DEVICES)
#   c. unet-step  the training step of examples/fashion-mnist.yaml's UNet (vsdm_unet_bench): images/s
#                 and achieved TFLOP/s against the GPU's bf16 dense peak; fp32 and bf16
#   d. dsm-step   vsdm_bench's DSM step on cuda (its `DSM step` line), fp32 and bf16
# and prints one line per check, `gpu-check: <name>: PASS|FAIL <figures>`. Logs: build-gpu/gpu-check/.
#
# usage: scripts/gpu-check.sh [LIBTORCH_DIR | TORCH_DIR]
#   LibTorch: the argument (a libtorch folder, or its share/cmake/Torch), else $Torch_DIR, else
#   python3's torch when it is a CUDA build (torch.utils.cmake_prefix_path).
#   env: VSDM_GPU_CHECK_BUDGET (seconds for everything, default 600), VSDM_GPU_UNET_BATCH (the
#   UNet step's batch; default the example's train.batch_points)
# exit: 0 when every check passed; 1 when one failed; 2 when they cannot run here (no GPU, no CUDA
#   LibTorch, the configure or the build failed).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 2

budget=${VSDM_GPU_CHECK_BUDGET:-600}
build="build-gpu"
logs=$build/gpu-check
say() { echo "gpu-check: $*"; }
refuse() {
  say "cannot run: $*" >&2
  exit 2
}
# within LIMIT CMD...: CMD under timeout(1), at most LIMIT seconds and never past the budget (124 as
# timeout's own exit when out of time). timeout signals its whole process group: every rank too.
within() {
  local limit=$1 rest=$((budget - SECONDS))
  shift
  [ "$rest" -ge "$limit" ] || limit=$rest
  if [ "$limit" -lt 5 ]; then
    echo "gpu-check: out of the ${budget}s budget before: $*"
    return 124
  fi
  timeout --kill-after=10 "$limit" "$@"
}
# tail_of LOG: its last lines, indented, for a FAIL.
tail_of() { tail -n "${2:-15}" "$1" | sed 's/^/    /' >&2; }

# ---- 1. The GPU ----------------------------------------------------------------------------------
command -v nvidia-smi > /dev/null || refuse "nvidia-smi not found: no NVIDIA driver on this machine"
gpu_list=$(nvidia-smi --query-gpu=index,name --format=csv,noheader 2> /dev/null) || refuse "nvidia-smi sees no GPU"
[ -n "$gpu_list" ] || refuse "nvidia-smi lists no GPU"
# The GPUs this process may use: $CUDA_VISIBLE_DEVICES when set, else every one nvidia-smi lists.
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
  IFS=, read -r -a visible <<< "$CUDA_VISIBLE_DEVICES"
else
  mapfile -t visible < <(cut -d, -f1 <<< "$gpu_list" | tr -d ' ')
fi
gpu_name=$(head -n 1 <<< "$gpu_list" | cut -d, -f2- | sed 's/^ *//')
# The bf16 dense tensor-core peak in TFLOP/s (no sparsity), by GPU name; unknown: no ratio.
peak_tflops() {
  case "$1" in
    *"H200 NVL"* | *"H100 NVL"*) echo 835 ;;
    *H200* | *"H100 SXM"* | *"H100 80GB HBM3"*) echo 989 ;; # GH200 too
    *"H100 PCIe"*) echo 756 ;;
    *A100*) echo 312 ;;
    *L40S*) echo 362 ;;
    *" L4") echo 121 ;;
    *) echo "" ;;
  esac
}
peak=$(peak_tflops "$gpu_name")
say "GPU: ${#visible[@]} visible (${visible[*]}), $gpu_name, bf16 dense peak ${peak:-unknown} TFLOP/s;" \
  "budget ${budget}s"

# ---- 2. A CUDA LibTorch --------------------------------------------------------------------------
# torch_dir_of DIR: the folder holding TorchConfig.cmake, for a libtorch folder or a Torch_DIR.
torch_dir_of() {
  if [ -f "$1/TorchConfig.cmake" ]; then
    (cd "$1" && pwd)
  elif [ -f "$1/share/cmake/Torch/TorchConfig.cmake" ]; then
    (cd "$1/share/cmake/Torch" && pwd)
  fi
}
if [ $# -ge 1 ]; then
  torch_dir=$(torch_dir_of "$1")
  [ -n "$torch_dir" ] || refuse "$1 is neither a libtorch folder nor a Torch_DIR (no TorchConfig.cmake)"
  torch_from="the argument"
elif [ -n "${Torch_DIR:-}" ]; then
  torch_dir=$(torch_dir_of "$Torch_DIR")
  [ -n "$torch_dir" ] || refuse "\$Torch_DIR=$Torch_DIR holds no TorchConfig.cmake"
  torch_from="\$Torch_DIR"
else
  cuda_torch_prefix='import sys, torch; sys.exit(3) if not torch.version.cuda else print(torch.utils.cmake_prefix_path)'
  prefix=$(python3 -c "$cuda_torch_prefix" 2> /dev/null) ||
    refuse "no CUDA LibTorch: pass a libtorch folder or a Torch_DIR, set \$Torch_DIR, or install a CUDA" \
      "build of torch for python3 (python3's torch is missing or CPU-only)"
  torch_dir=$(torch_dir_of "$prefix/Torch")
  [ -n "$torch_dir" ] || refuse "python3's torch has no $prefix/Torch/TorchConfig.cmake"
  torch_from="python3's torch"
fi
# The install's root: a libtorch folder, pip's site-packages/torch (share/cmake/Torch below it).
torch_root=$(cd "$torch_dir/../../.." && pwd)
[ -n "$(find "$torch_root" -maxdepth 2 -name 'libc10_cuda.so*' -print -quit 2> /dev/null)" ] ||
  refuse "the LibTorch of $torch_dir ($torch_from) has no CUDA (no libc10_cuda.so beside it)"
say "LibTorch: $torch_dir (from $torch_from)"
if grep -q "_GLIBCXX_USE_CXX11_ABI=0" "$torch_dir/TorchConfig.cmake"; then
  say "warning: this LibTorch uses the pre-C++11 string ABI; linking with the system's absl/yaml-cpp will" \
    "likely fail (use a cxx11-ABI LibTorch)" >&2
fi

mkdir -p "$logs" || exit 2

# ---- 3. Dependencies (gRPC, absl, yaml-cpp, ...: from the system) --------------------------------
# install-deps.sh is a no-op when everything is there. Without a network (no package archive's name
# resolves) it is not tried; if it fails, the build goes on with what is installed (the configure
# names what is missing).
if [ ! -f scripts/install-deps.sh ] || ! command -v apt-get > /dev/null || ! command -v dpkg-query > /dev/null ||
  ! { [ "$(id -u)" -eq 0 ] || sudo -n true 2> /dev/null; }; then
  say "deps: no usable apt here (or not root), building with what is installed"
elif ! timeout 10 getent hosts deb.debian.org > /dev/null &&
  ! timeout 10 getent hosts archive.ubuntu.com > /dev/null; then
  say "deps: no network (no package archive resolves), install-deps.sh not run; building with what is installed"
else
  if timeout 300 bash scripts/install-deps.sh > "$logs/install-deps.log" 2>&1; then
    say "deps: $(tail -n 1 "$logs/install-deps.log")"
  else
    say "deps: install-deps.sh failed, building with what is installed; $logs/install-deps.log"
  fi
fi

# ---- 4. Configure and build ---------------------------------------------------------------------
cmake_args=(-S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVSDM_WITH_CUDA=ON "-DTorch_DIR=$torch_dir")
# Torch's CMake config looks for the CUDA toolkit (nvcc).
nvcc=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; } || true)
if [ -n "$nvcc" ]; then
  cmake_args+=("-DCMAKE_CUDA_COMPILER=$nvcc" "-DCUDAToolkit_ROOT=$(cd "$(dirname "$nvcc")/.." && pwd)")
fi
# A pip torch loads its CUDA libraries from site-packages/nvidia/*/lib: let the linker find them.
if [ -d "$torch_root/../nvidia" ]; then
  link_dirs=$(find "$torch_root/../nvidia" -maxdepth 3 -type d -name lib | paste -sd: -)
  [ -z "$link_dirs" ] || cmake_args+=("-DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,$link_dirs")
fi
if ! within 120 cmake "${cmake_args[@]}" > "$logs/configure.log" 2>&1; then
  # The first CMake error, on one line (a missing package names itself there).
  first_error=$(grep -m 1 -A 4 "CMake Error" "$logs/configure.log" | tail -n +2 | sed '/^ *$/,$d' | tr -s ' ' |
    paste -sd' ' -)
  say "configure: FAIL${first_error:+:$first_error}; $logs/configure.log"
  tail_of "$logs/configure.log" 20
  exit 2
fi
targets=(vsdm-train vsdm_gpu_tests vsdm_bench vsdm_unet_bench)
build_start=$SECONDS
if ! within 420 cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" > "$logs/build.log" 2>&1; then
  say "build: FAIL after $((SECONDS - build_start))s; $logs/build.log"
  grep -E "error|FAILED" "$logs/build.log" | head -n 15 | sed 's/^/    /' >&2
  exit 2
fi
say "build: ${targets[*]} in $((SECONDS - build_start))s"
bin=$build/bin

failed=0
pass_or_fail() { # pass_or_fail NAME OK(0|1) FIGURES
  if [ "$2" -eq 0 ]; then say "$1: PASS $3"; else say "$1: FAIL $3"; failed=$((failed + 1)); fi
}

# ---- a. ctest -L gpu -----------------------------------------------------------------------------
check_gpu_tests() {
  local log=$logs/ctest.log ok=0 summary
  (cd "$build" && within 240 ctest -L gpu --output-on-failure) > "$log" 2>&1 || ok=1
  summary=$(grep -E "tests passed|No tests were found" "$log" | tail -n 1)
  # No test with the label is a failure too.
  grep -qE "tests passed, 0 tests failed out of [1-9]" "$log" || ok=1
  local failed_tests
  failed_tests=$(sed -n '/The following tests FAILED/,$p' "$log" | grep -E '^[[:space:]]*[0-9]+ - ' |
    sed -E 's/^[[:space:]]*[0-9]+ - ([^ ]+).*/\1/' | head -n 4 | paste -sd' ' -)
  pass_or_fail gpu-tests "$ok" "${summary:-no summary (timed out?)}${failed_tests:+; failed: $failed_tests}; $log"
  [ "$ok" -eq 0 ] || tail_of "$log"
}

# ---- b. The spiral job on the GPU, 2 trainers + the variational rank -----------------------------
# One GPU (or two) carries every rank over Gloo; with one GPU per rank they use NCCL.
if [ "${#visible[@]}" -ge 3 ]; then
  backend=nccl
  rank_devices=$(IFS=,; echo "${visible[*]:0:3}")
else
  backend=gloo
  rank_devices=""
fi
# spiral_run PRECISION: runs the job; prints "ENERGY SECONDS GPU_MIB" of its metrics and progress.
spiral_run() {
  local precision=$1 out=$logs/spiral-$1 t0=$SECONDS
  rm -rf "$out"
  within 240 env VSDM_TRAIN="$bin/vsdm-train" VSDM_RANK_DEVICES="$rank_devices" \
    bash scripts/run-distributed.sh examples/spiral.yaml "$out" --quiet --backend "$backend" \
    --set resources.device=cuda --set resources.trainers=2 --set train.rounds=30 --set sample.n=5000 \
    --set "train.precision=$precision" > "$out.log" 2>&1 || return 1
  python3 - "$out" "$((SECONDS - t0))" << 'PY'
import json, sys
out, seconds = sys.argv[1], sys.argv[2]
m = json.load(open(f"{out}/metrics.json"))
p = json.load(open(f"{out}/progress.json"))
mem = p.get("device_memory_used_bytes", -1)
print(f"{m['energy_distance']:.3f} {seconds}", f"{mem / 2**20:.0f}" if mem >= 0 else "-")
PY
}
check_spiral() {
  local ok=0 figures="" precision r energy seconds mib
  for precision in fp32 bf16; do
    if r=$(spiral_run "$precision"); then
      read -r energy seconds mib <<< "$r"
      figures+="$precision energy $energy (${seconds}s"
      [ "$mib" = - ] || figures+=", GPU memory in use ${mib} MiB"
      figures+="), "
      python3 -c "import sys; sys.exit(0 if float('$energy') < 0.8 else 1)" || ok=1
    else
      figures+="$precision did not finish ($logs/spiral-$precision.log), "
      ok=1
      tail_of "$logs/spiral-$precision.log"
    fi
  done
  pass_or_fail spiral "$ok" "${figures}bar < 0.8; backend $backend, ${#visible[@]} GPU(s)"
}

# ---- c. The image example's UNet step ------------------------------------------------------------
# The UNet options of examples/fashion-mnist.yaml (as worker/train/job_setup.cc builds them); the
# batch is the job's train.batch_points (what its trainers take together in a step).
unet_args=$(python3 - << 'PY'
import os, yaml
s = yaml.safe_load(open("examples/fashion-mnist.yaml"))
m, t = s["model"], s["train"]
mult = ",".join(str(v) for v in m.get("channel_mult", [1, 2, 2]))
attention = "--attention" if m.get("attention", True) else "--no-attention"
batch = os.environ.get("VSDM_GPU_UNET_BATCH") or t["batch_points"]
print(f"--batch {batch} --base {m['channels']} --mult {mult} --res-blocks {m.get('res_blocks', 1)} "
      f"{attention} --dropout {m.get('dropout', 0.1)} --groups {min(8, m['channels'])}")
PY
) || unet_args="--batch ${VSDM_GPU_UNET_BATCH:-64} --base 16 --mult 1,2,2 --res-blocks 1 --attention --groups 8"
check_unet_step() {
  local ok=0 figures="" precision log line images tflops ratio
  for precision in fp32 bf16; do
    log=$logs/unet-$precision.log
    local flags=()
    [ "$precision" = fp32 ] || flags=(--bf16)
    # shellcheck disable=SC2086  # unet_args is a list of flags
    if within 90 "$bin/vsdm_unet_bench" $unet_args --size 28 --channels 1 --device cuda --steps 20 --warmup 3 \
      "${flags[@]}" > "$log" 2>&1 && line=$(grep -E "images/s" "$log" | tail -n 1) && [ -n "$line" ]; then
      images=$(grep -oE '[0-9.]+ images/s' <<< "$line" | cut -d' ' -f1)
      tflops=$(grep -oE '[0-9.]+ TFLOP/s' <<< "$line" | cut -d' ' -f1)
      ratio=""
      [ -z "$peak" ] || ratio=$(python3 -c "print(f'{100 * $tflops / $peak:.3g}% of $peak')")
      figures+="$precision ${images} images/s, ${tflops} TFLOP/s${ratio:+ ($ratio)}, "
    else
      figures+="$precision failed ($log), "
      ok=1
      tail_of "$log"
    fi
  done
  pass_or_fail unet-step "$ok" "${figures}$(grep -oE 'batch [0-9]+' <<< "$unet_args" | tail -n 1)"
}

# ---- d. vsdm_bench's DSM step on cuda ------------------------------------------------------------
check_dsm_step() {
  local ok=0 figures="" precision log line only=()
  "$bin/vsdm_bench" --help 2>&1 | grep -q -- "--step-only" && only=(--step-only)
  for precision in fp32 bf16; do
    log=$logs/dsm-$precision.log
    if within 120 "$bin/vsdm_bench" --device cuda --precision "$precision" --steps 20 "${only[@]}" > "$log" 2>&1 &&
      line=$(grep -E "^DSM step" "$log" | tail -n 1) && [ -n "$line" ]; then
      figures+="$precision $(grep -oE 'median [0-9.]+ s/step' <<< "$line" | cut -d' ' -f2) s/step"
      figures+=" ($(grep -oE '[0-9.]+ GFLOP/s' <<< "$line" | tail -n 1)), "
    else
      figures+="$precision failed ($log), "
      ok=1
      tail_of "$log"
    fi
  done
  pass_or_fail dsm-step "$ok" "${figures%, }"
}

check_gpu_tests
check_spiral
check_unet_step
check_dsm_step
if [ "$failed" -eq 0 ]; then
  say "all 4 checks passed in ${SECONDS}s"
  exit 0
fi
say "$failed of 4 checks failed (${SECONDS}s); logs in $logs"
exit 1
