#!/usr/bin/env bash
# Elastic shrink (issue 18, Note [Elastic restarts] in server/job_manager.cc): a spiral job with
# resources.trainers 3 and min_trainers 2 on 4 one-slot agents (3 trainers + the variational
# rank fill them). One node is removed for good mid-job (its agent and its rank killed, never
# restarted): the coordinator notices within the lease, and the restart runs with 2 trainers
# (the cluster holds no more) from the last checkpoint, with the same global batch, ends
# SUCCEEDED and passes the spiral quality bar.
# usage: elastic_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=$1; SRC=$2
work=$(mktemp -d)
st=$work/state
ctl() { "$BIN/vsdmctl" --state-dir "$st" "$@"; }
cleanup() { ctl local down > /dev/null 2>&1 || true; pkill -9 -f -- "$st" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
t_start=$SECONDS
jget() { ctl get "$1" -o json | /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin); p=j.get('progress',{}); print(j['state'], p.get('round',0), j.get('attempts',0), j.get('trainers',0))"; }

ctl local up --workers 4 --slots 1
job=$(ctl submit -f "$SRC/examples/spiral.yaml" --set resources.trainers=3 --set resources.min_trainers=2 \
        --set train.rounds=30 --set train.checkpoint_every=5 --set sample.n=5000 | awk '{print $1}')
for _ in $(seq 600); do
  read -r s r a w < <(jget "$job")
  [ "$s" = JOB_STATE_RUNNING ] && [ "$r" -ge 8 ] && break
  sleep 0.5
done
[ "$s" = JOB_STATE_RUNNING ] && [ "$r" -ge 8 ] || { echo "never reached round 8 ($s $r)"; exit 1; }
[ "$w" = 3 ] || { echo "attempt 1 should run 3 trainers, runs $w"; exit 1; }
# The node of trainer 1 goes away: its agent and its processes, for good.
victim=$(ctl workers -o json | /usr/bin/python3 -c '
import json, sys
for w in json.load(sys.stdin)["workers"]:
    if any(r.get("rank", 0) == 1 for r in w.get("ranks", [])): print(w["worker_id"])')
n=${victim#local-}
pid=$(sed -n "$((n + 2))p" "$st/pids")
kill -9 "$pid"
pkill -9 -f -- "$st/work/jobs/$job/.* --rank 1 --" 2>/dev/null || true  # its rank, if it outlived the agent
t0=$SECONDS
echo "removed node $victim (agent pid $pid) at round $r"
ctl watch "$job" | tail -3
read -r s r a w < <(jget "$job")
echo "ended $s after $a attempts, last with $w trainers, $((SECONDS - t0)) s after the removal"
[ "$s" = JOB_STATE_SUCCEEDED ] || { ctl logs --events "$job"; echo "expected SUCCEEDED"; exit 1; }
[ "$w" = 2 ] || { ctl logs --events "$job"; echo "expected the restart to run 2 trainers, it ran $w"; exit 1; }
ctl logs --events "$job" | grep -q "elastic: 2 of 3 trainers" || { ctl logs --events "$job"; echo "no elastic event"; exit 1; }
ctl artifacts "$job" --out "$work/out" > /dev/null
/usr/bin/python3 - "$work/out" <<'PY'
import json, sys
m = json.load(open(f"{sys.argv[1]}/metrics.json"))
print(f"elastic 3 -> 2 trainers: resumed from round {m['resumed_from_round']}, energy distance "
      f"{m['energy_distance']:.3f}, A[1][1] {m['A'][1][1]:.3f}")
assert m["resumed_from_round"] >= 5, m["resumed_from_round"]
assert m["energy_distance"] < 0.8 and m["A"][1][1] < -0.2, "below the spiral quality bar"
PY
echo "ok ($((SECONDS - t_start)) s)"
