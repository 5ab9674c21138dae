#!/usr/bin/env bash
# scripts/gpu-check.sh where there is no GPU (label unit, seconds): it parses (and passes shellcheck
# when that is installed), and it refuses with exit 2 and a message naming the reason when the
# driver, the GPU or a CUDA LibTorch is missing, before it writes anything. Also the per-rank GPU
# hook it uses in scripts/run-distributed.sh (VSDM_RANK_DEVICES), through a stand-in vsdm-train.
# The checks themselves need a GPU: scripts/gpu-check.sh on a GPU machine.
# usage: gpu_check_test.sh SOURCE_DIR
set -euo pipefail
SRC=$(cd "${1:?usage: gpu_check_test.sh SOURCE_DIR}" && pwd)
script=$SRC/scripts/gpu-check.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

bash -n "$script" || fail "bash -n scripts/gpu-check.sh"
if command -v shellcheck > /dev/null; then
  shellcheck "$script" "$SRC/scripts/run-distributed.sh" || fail "shellcheck"
fi

# expect_refusal NAME TEXT CMD...: CMD exits 2 and says TEXT; nothing of build-gpu/ appears.
had_build_gpu=$([ -e "$SRC/build-gpu" ] && echo 1 || echo 0)
expect_refusal() {
  local name=$1 text=$2 code=0
  shift 2
  "$@" > "$work/out" 2>&1 || code=$?
  [ "$code" -eq 2 ] || fail "$name: exit $code, want 2; output: $(cat "$work/out")"
  grep -qF "$text" "$work/out" || fail "$name: no '$text' in: $(cat "$work/out")"
  [ "$had_build_gpu" -eq 1 ] || [ ! -e "$SRC/build-gpu" ] || fail "$name: created build-gpu/"
  echo "ok: $name"
}

# A PATH with bash and the coreutils the script needs, but no nvidia-smi.
mkdir -p "$work/nodriver"
for tool in bash env dirname cat head cut sed tr grep tail find id timeout python3 ls mkdir; do
  p=$(command -v "$tool") && ln -s "$p" "$work/nodriver/$tool"
done
expect_refusal "no driver" "nvidia-smi not found" env -u CUDA_VISIBLE_DEVICES PATH="$work/nodriver" bash "$script"

# A driver that sees no GPU (nvidia-smi's own exit code for that is 6).
mkdir -p "$work/nogpu"
printf '#!/bin/sh\necho "No devices were found"\nexit 6\n' > "$work/nogpu/nvidia-smi"
chmod +x "$work/nogpu/nvidia-smi"
expect_refusal "no GPU" "nvidia-smi sees no GPU" env PATH="$work/nogpu:$PATH" bash "$script"

# One H200, then no usable LibTorch.
mkdir -p "$work/h200"
printf '#!/bin/sh\necho "0, NVIDIA H200"\n' > "$work/h200/nvidia-smi"
chmod +x "$work/h200/nvidia-smi"
expect_refusal "not a LibTorch" "neither a libtorch folder nor a Torch_DIR" \
  env -u CUDA_VISIBLE_DEVICES PATH="$work/h200:$PATH" bash "$script" "$work"
mkdir -p "$work/cpu-libtorch/share/cmake/Torch" "$work/cpu-libtorch/lib"
echo 'set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=1")' > "$work/cpu-libtorch/share/cmake/Torch/TorchConfig.cmake"
expect_refusal "a CPU LibTorch" "has no CUDA" \
  env -u CUDA_VISIBLE_DEVICES PATH="$work/h200:$PATH" bash "$script" "$work/cpu-libtorch"
expect_refusal "a CPU \$Torch_DIR" "has no CUDA" \
  env -u CUDA_VISIBLE_DEVICES PATH="$work/h200:$PATH" Torch_DIR="$work/cpu-libtorch/share/cmake/Torch" bash "$script"
expect_refusal "a bad \$Torch_DIR" "holds no TorchConfig.cmake" \
  env -u CUDA_VISIBLE_DEVICES PATH="$work/h200:$PATH" Torch_DIR="$work" bash "$script"

# run-distributed.sh: VSDM_RANK_DEVICES gives rank R the R-th GPU; unset, the environment is left as
# it is; too few GPUs for the ranks is exit 2.
fake=$work/fake-train
cat > "$fake" << 'EOF'
#!/usr/bin/env bash
for a in "$@"; do [ "$a" = --print-world-size ] && { echo 3; exit 0; }; done
echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"
EOF
chmod +x "$fake"
VSDM_TRAIN=$fake VSDM_RANK_DEVICES=4,5,6 bash "$SRC/scripts/run-distributed.sh" spec.yaml "$work/run" > /dev/null
for r in 0 1 2; do
  grep -qx "CUDA_VISIBLE_DEVICES=$((r + 4))" "$work/run/logs/rank-$r.log" || fail "rank $r: $(cat "$work/run/logs/rank-$r.log")"
done
env -u CUDA_VISIBLE_DEVICES VSDM_TRAIN="$fake" bash "$SRC/scripts/run-distributed.sh" spec.yaml "$work/run2" > /dev/null
grep -qx "CUDA_VISIBLE_DEVICES=unset" "$work/run2/logs/rank-1.log" || fail "unset hook: $(cat "$work/run2/logs/rank-1.log")"
code=0
VSDM_TRAIN=$fake VSDM_RANK_DEVICES=0,1 bash "$SRC/scripts/run-distributed.sh" spec.yaml "$work/run3" > /dev/null 2>&1 ||
  code=$?
[ "$code" -eq 2 ] || fail "2 GPUs for 3 ranks: exit $code, want 2"
echo "ok: run-distributed.sh VSDM_RANK_DEVICES"
echo "ok: gpu-check.sh refuses clearly without a GPU or a CUDA LibTorch"
