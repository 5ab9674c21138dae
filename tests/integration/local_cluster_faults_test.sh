#!/usr/bin/env bash
# Faults of the whole system on loopback (label fault):
#  1. kill -9 one agent mid-job: the coordinator notices within its lease, aborts the rest of the
#     gang and requeues; the job finishes on the remaining agents from its last checkpoint, with
#     attempt count 2, and still passes the quality bar.
#  2. kill -9 the coordinator mid-job and start it again on the same data dir and port: the
#     training processes keep running, the agents register again, and the job ends SUCCEEDED in
#     its first attempt.
# usage: local_cluster_faults_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=$1; SRC=$2
work=$(mktemp -d)
st=$work/state
ctl() { "$BIN/vsdmctl" --state-dir "$st" "$@"; }
cleanup() { ctl local down > /dev/null 2>&1 || true; pkill -9 -f -- "$st" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
field() { ctl get "$1" -o json | /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin); p=j.get('progress',{}); print(j['state'], p.get('round',0), j.get('attempts',0))"; }
wait_round() {  # job round
  for _ in $(seq 600); do
    read -r s r a < <(field "$1")
    [ "$s" = JOB_STATE_RUNNING ] && [ "$r" -ge "$2" ] && return 0
    sleep 0.5
  done
  echo "$1 never reached round $2 ($s $r)"; exit 1
}
submit() { ctl submit -f "$SRC/examples/spiral.yaml" --set train.rounds=30 --set sample.n=5000 \
             --set train.checkpoint_every=5 | awk '{print $1}'; }

echo "== 1. kill -9 an agent mid-job"
ctl local up --workers 4
job=$(submit)
wait_round "$job" 8
victim=$(ctl workers -o json | /usr/bin/python3 -c '
import json, sys
for w in json.load(sys.stdin)["workers"]:
    if any(r.get("rank", 0) == 1 for r in w.get("ranks", [])): print(w["worker_id"])')
n=${victim#local-}
pid=$(sed -n "$((n + 2))p" "$st/pids")
kill -9 "$pid"
t0=$SECONDS
echo "killed agent $victim (pid $pid) at round $(field "$job" | cut -d' ' -f2)"
until ctl logs "$job" | grep -q "\[requeued\]"; do
  [ $((SECONDS - t0)) -le 25 ] || { echo "not requeued 25 s after the kill (lease 10 s)"; ctl logs "$job"; exit 1; }
  sleep 0.5
done
echo "requeued $((SECONDS - t0)) s after the kill: $(ctl logs "$job" | grep '\[requeued\]')"
ctl watch "$job" | tail -2
read -r s r a < <(field "$job")
[ "$s" = JOB_STATE_SUCCEEDED ] && [ "$a" = 2 ] || { echo "expected SUCCEEDED in attempt 2, got $s attempt $a"; exit 1; }
ctl artifacts "$job" --out "$work/out1" > /dev/null
/usr/bin/python3 - "$work/out1" <<'PY'
import json, sys
m = json.load(open(f"{sys.argv[1]}/metrics.json"))
print(f"after the agent kill: resumed from round {m['resumed_from_round']}, energy {m['energy_distance']:.3f}")
assert m["resumed_from_round"] >= 5, m["resumed_from_round"]
assert m["energy_distance"] < 0.8 and m["A"][1][1] < -0.2
PY
ctl local down > /dev/null
pkill -9 -f -- "$st/work" 2>/dev/null || true  # the dead agent's orphaned rank, if still there

echo "== 2. kill -9 the coordinator mid-job"
ctl local up --workers 3
addr=$(cat "$st/coordinator")
job=$(submit)
wait_round "$job" 5
coord=$(head -1 "$st/pids")
# Restart it exactly as `local up` started it (its TCPStore port range included).
ports=$(ps -o args= -p "$coord" | sed -n 's/.*--store-port-range \([0-9]*-[0-9]*\).*/\1/p')
[ -n "$ports" ] || { echo "no --store-port-range on the coordinator: $(ps -o args= -p "$coord")"; exit 1; }
trains_before=$(pgrep -f -- "$st/work/jobs/$job" | sort | tr '\n' ' ')
kill -9 "$coord"
echo "killed the coordinator (pid $coord); training processes: $trains_before"
sleep 3
trains_during=$(pgrep -f -- "$st/work/jobs/$job" | sort | tr '\n' ' ')
[ "$trains_before" = "$trains_during" ] || { echo "training processes changed: $trains_before -> $trains_during"; exit 1; }
"$BIN/vsdm-coordinator" --listen "$addr" --metrics-listen 127.0.0.1:0 --data-dir "$st/data" \
  --lease-seconds 10 --restart-backoff-seconds 1 --store-port-range "$ports" >> "$st/logs/coordinator.log" 2>&1 &
newcoord=$!
sed -i "1s/.*/$newcoord/" "$st/pids"
ctl watch "$job" | tail -2
read -r s r a < <(field "$job")
[ "$s" = JOB_STATE_SUCCEEDED ] && [ "$a" = 1 ] || { echo "expected SUCCEEDED in attempt 1, got $s attempt $a"; ctl logs "$job"; exit 1; }
grep -c "registered" "$st"/logs/worker-*.log | tr '\n' ' '
echo
echo ok
