#!/usr/bin/env bash
# Cancel while running: the job's training processes are gone within the agents' kill grace, the
# job is CANCELLED, its slots are free again, and the job queued behind it then runs to the end.
# usage: local_cluster_cancel_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=$1; SRC=$2
work=$(mktemp -d)
ctl() { "$BIN/vsdmctl" --state-dir "$work/state" "$@"; }
trap 'ctl local down > /dev/null 2>&1 || true; rm -rf "$work"' EXIT
state() { ctl get "$1" -o json | /usr/bin/python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["state"], j.get("progress", {}).get("round", 0))'; }
spec=$SRC/examples/spiral.yaml
ctl local up --workers 3
long=$(ctl submit -f "$spec" --set sample.n=1000 | awk '{print $1}')
short=$(ctl submit -f "$spec" --set train.rounds=3 --set sample.n=1000 | awk '{print $1}')
for _ in $(seq 300); do
  read -r st round < <(state "$long")
  [ "$st" = JOB_STATE_RUNNING ] && [ "$round" -ge 1 ] && break
  sleep 0.5
done
[ "$st" = JOB_STATE_RUNNING ] || { echo "long job never ran: $st"; exit 1; }
[ "$(state "$short" | cut -d' ' -f1)" = JOB_STATE_QUEUED ]
pgrep -f -- "jobs/$long" > /dev/null
t0=$SECONDS
ctl cancel "$long"
# The abort reaches each agent with its next heartbeat (lease/3 = 3.3 s here); the ranks then
# stop at their next round boundary (SIGTERM: checkpoint, exit 75), SIGKILL after the 10 s kill
# grace at the latest.
while pgrep -f -- "jobs/$long" > /dev/null; do
  [ $((SECONDS - t0)) -le 15 ] || { echo "ranks of $long still running after 15 s"; exit 1; }
  sleep 0.2
done
echo "cancelled $long: its ranks were gone after $((SECONDS - t0)) s"
[ "$(state "$long" | cut -d' ' -f1)" = JOB_STATE_CANCELLED ]
ctl watch "$short" | tail -2
[ "$(state "$short" | cut -d' ' -f1)" = JOB_STATE_SUCCEEDED ]
ctl workers
echo ok
