#!/usr/bin/env bash
# Runs one attempt of a job as separate processes on this machine: W trainer ranks and the
# variational rank of `vsdm-train`, rendezvousing over a TCPStore on 127.0.0.1 (a free port).
# Each rank's output goes to OUT/logs/rank-R.log; trainer 0's also to this terminal, and the
# tail of any rank that fails. Started again
# on the same OUT, the attempt resumes from the newest checkpoint.
#
# usage: scripts/run-distributed.sh SPEC.yaml OUT [extra vsdm-train flags...]
#   env: VSDM_TRAIN (binary; default build/bin/vsdm-train), VSDM_ATTEMPT (default 0),
#        VSDM_THREADS (per rank; default cores / ranks, at least 1),
#        VSDM_RANK_DEVICES (a GPU per rank, e.g. "0,1,2": rank R runs with CUDA_VISIBLE_DEVICES set to
#        the R-th entry, as an agent slot gives it, so NCCL sees one distinct GPU per rank; unset: the
#        environment as it is)
# exit: 0 when every rank finished; otherwise the first failing rank's exit code.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
spec=${1:?usage: run-distributed.sh SPEC.yaml OUT [flags...]}
out=${2:?usage: run-distributed.sh SPEC.yaml OUT [flags...]}
shift 2
bin=${VSDM_TRAIN:-$here/build/bin/vsdm-train}
[ -x "$bin" ] || { echo "run-distributed: $bin not built (bash scripts/build.sh)" >&2; exit 2; }
# vsdm-train itself reads the spec (and any --set in the extra flags): trainers + 1 ranks.
ranks=$("$bin" --spec "$spec" "$@" --print-world-size) || exit 2
threads=${VSDM_THREADS:-$(( $(nproc) / ranks ))}
[ "$threads" -ge 1 ] || threads=1
devices=()
if [ -n "${VSDM_RANK_DEVICES:-}" ]; then
  IFS=, read -r -a devices <<< "$VSDM_RANK_DEVICES"
  [ "${#devices[@]}" -ge "$ranks" ] || {
    echo "run-distributed: VSDM_RANK_DEVICES=$VSDM_RANK_DEVICES names ${#devices[@]} GPUs for $ranks ranks" >&2
    exit 2
  }
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$out/logs"
pids=()
for ((r = 0; r < ranks; r++)); do
  log="$out/logs/rank-$r.log"
  # One GPU per rank when asked for; otherwise nothing is added (the CPU behaviour is unchanged).
  rank_env=()
  [ "${#devices[@]}" -eq 0 ] || rank_env=(env "CUDA_VISIBLE_DEVICES=${devices[$r]}")
  if [ "$r" -eq 0 ]; then
    "${rank_env[@]}" "$bin" --spec "$spec" --out "$out" --rank "$r" --store "127.0.0.1:$port" --threads "$threads" \
      --attempt "${VSDM_ATTEMPT:-0}" "$@" > >(tee "$log") 2>&1 &
  else
    "${rank_env[@]}" "$bin" --spec "$spec" --out "$out" --rank "$r" --store "127.0.0.1:$port" --threads "$threads" \
      --attempt "${VSDM_ATTEMPT:-0}" "$@" > "$log" 2>&1 &
  fi
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
rc=0
for ((r = 0; r < ranks; r++)); do
  code=0
  wait "${pids[$r]}" || code=$?
  if [ "$code" -ne 0 ]; then
    [ "$r" -eq 0 ] || { echo "--- rank $r exited $code; end of $out/logs/rank-$r.log:"; tail -n 5 "$out/logs/rank-$r.log"; } >&2
    [ "$rc" -ne 0 ] || rc=$code
  fi
done
exit "$rc"
