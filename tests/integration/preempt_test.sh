#!/usr/bin/env bash
# Preemption notice (label fault; issue 18): SIGTERM (not -9) to trainer rank 1 of a running
# spiral job on a local cluster, as a preemption notice, `scancel` or a k8s pod deletion sends it.
# The ranks agree, trainer 0 writes a checkpoint and every rank exits 75 (TrainExit::kPreempted);
# the coordinator requeues the job without spending a restart. The job runs with
# resources.max_restarts=0, so a preemption counted as a failure ends it FAILED; it must instead
# resume from the preemption checkpoint (metrics.json resumed_from_round >= the round at the
# signal, which is no multiple of checkpoint_every: a regular checkpoint cannot satisfy it), end
# SUCCEEDED in attempt 2 with Job.preemptions == 1 and a "preempted" requeued event, and pass the
# spiral quality bar (energy distance < 0.8, A[1][1] < -0.2). About 4 minutes.
# usage: preempt_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=$1; SRC=$2
work=$(mktemp -d /tmp/vsdm-preempt.XXXXXX)
st=$work/state
ctl() { "$work/bin/vsdmctl" --state-dir "$st" "$@"; }
cleanup() { ctl local down > /dev/null 2>&1 || true; pkill -9 -f -- "$work/" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# A snapshot of the binaries, so that a rebuild during the run does not swap one under a rank.
mkdir "$work/bin"
for b in vsdmctl vsdm-coordinator vsdm-worker vsdm-train; do
  for _ in $(seq 60); do
    [ -x "$BIN/$b" ] && cp "$BIN/$b" "$work/bin/$b" 2>/dev/null && "$work/bin/$b" --help > /dev/null 2>&1 && break
    rm -f "$work/bin/$b"; sleep 5
  done
  [ -x "$work/bin/$b" ] || { echo "$BIN/$b not found (build first)"; exit 1; }
done
t_start=$SECONDS
job_json() { ctl get "$1" -o json; }
field() { job_json "$1" | /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin); p=j.get('progress',{}); print(j['state'], p.get('round',0), j.get('attempts',0), j.get('preemptions',0))"; }
attempt_pids() {  # job attempt [rank] -> pids of those vsdm-train processes still alive
  pgrep -af -- "$st/work/jobs/$1" | grep -E "vsdm-train .*--attempt[ =]$2( |$)" |
    { if [ -n "${3:-}" ]; then grep -E -- "--rank[ =]$3( |$)"; else cat; fi; } | awk '{print $1}' || true
}

ctl local up --workers 4
job=$(ctl submit -f "$SRC/examples/spiral.yaml" --set train.rounds=30 --set sample.n=5000 \
        --set train.checkpoint_every=10 --set resources.max_restarts=0 | awk '{print $1}')
for _ in $(seq 600); do
  read -r s r a p < <(field "$job")
  [ "$s" = JOB_STATE_RUNNING ] && [ "$r" -ge 12 ] && break
  sleep 0.5
done
[ "$s" = JOB_STATE_RUNNING ] && [ "$r" -ge 12 ] || { echo "$job never reached round 12 ($s $r)"; exit 1; }
pid=$(attempt_pids "$job" 1 1 | head -1)
[ -n "$pid" ] || { echo "no rank 1 of attempt 1 running"; ps -eo pid,args | grep "[v]sdm-train"; exit 1; }
read -r s r a p < <(field "$job")
sig_round=$r
kill -TERM "$pid"
t0=$SECONDS
echo "SIGTERM to trainer rank 1 (pid $pid) at round $sig_round"
# Every rank of the preempted attempt exits (trainer 0 after its checkpoint) within the grace.
until [ -z "$(attempt_pids "$job" 1)" ]; do
  [ $((SECONDS - t0)) -le 60 ] || { echo "ranks of attempt 1 still alive 60 s after SIGTERM:"; pgrep -af -- "$st/work/jobs/$job"; exit 1; }
  sleep 0.5
done
echo "every rank of attempt 1 exited $((SECONDS - t0)) s after the signal"
ctl watch "$job" | tail -2 || true
ctl logs --events "$job"
for f in "$st/work/jobs/$job/logs"/attempt-1-rank-*.log; do echo "== $(basename "$f"): $(tail -2 "$f" | tr '\n' ' ')"; done
job_json "$job" > "$work/job.json"
ctl logs --events "$job" > "$work/events.txt"
/usr/bin/python3 - "$work/job.json" "$work/events.txt" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
events = open(sys.argv[2]).read()
requeued = [l for l in events.splitlines() if "[requeued]" in l]
print(f"state {j['state']}, attempts {j.get('attempts')}, preemptions {j.get('preemptions', 0)}; requeued: {requeued}")
bad = []
if j["state"] != "JOB_STATE_SUCCEEDED":
    bad.append(f"job ended {j['state']} ({j.get('message', '')}): a preemption must not spend max_restarts=0")
if j.get("preemptions", 0) != 1:
    bad.append(f"Job.preemptions is {j.get('preemptions', 0)}, not 1")
if j.get("attempts") != 2:
    bad.append(f"attempts {j.get('attempts')}, not 2")
if len(requeued) != 1 or "preempted" not in requeued[0]:
    bad.append("expected one requeued event that says preempted")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
ctl artifacts "$job" --out "$work/out" > /dev/null
/usr/bin/python3 - "$work/out" "$sig_round" <<'PY'
import json, sys
m = json.load(open(f"{sys.argv[1]}/metrics.json"))
sig = int(sys.argv[2])
ev, a = m["energy_distance"], m["A"]
print(f"after the preemption: resumed from round {m['resumed_from_round']} (signal at round {sig}), "
      f"energy distance {ev:.3f}, A[1][1] {a[1][1]:.3f}")
assert m["resumed_from_round"] >= sig, f"resumed from {m['resumed_from_round']} < round {sig} at the signal"
assert ev < 0.8 and a[1][1] < -0.2, "misses the spiral quality bar (energy < 0.8, A[1][1] < -0.2)"
PY
echo "ok ($((SECONDS - t_start)) s)"
