#!/usr/bin/env bash
# Multi-host with no shared storage: a coordinator and three agents, each in its own network
# namespace with its own IP on a bridge and its own directories (nothing shared: the agents'
# work dirs are disjoint and no path of one is given to another). Checks:
#  1. cross-host rendezvous: the gang of the spiral job (2 trainers + the variational rank) is
#     spread over at least two hosts, and its Gloo/TCPStore connections cross between their IPs;
#  2. partition: once the job has checkpointed, every packet of rank 0's host is dropped
#     (iptables inside its namespace). Its lease runs out, the attempt is aborted and requeued on
#     the two remaining hosts;
#  3. resume on another host from a checkpoint that no shared disk carried: the new rank 0's
#     agent fetched it from the coordinator (its log says which round), the job resumes from that
#     round (metrics.json) and ends SUCCEEDED in attempt 2 with the quality bar met.
# Prints the recovery times (partition -> requeued -> running again -> succeeded). Every
# namespace, link and process it made is removed at exit, also on failure.
# usage: multihost_test.sh BIN_DIR SOURCE_DIR        (root: it makes namespaces)
set -euo pipefail
BIN=$(cd "$1" && pwd); SRC=$(cd "$2" && pwd)
source "$SRC/tests/deploy/lib.sh"
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
bash "$SRC/scripts/install-deploy-deps.sh" > /dev/null

work=$(mktemp -d /tmp/vsdm-multihost.XXXXXX)
on_exit rm -rf "$work"
# Names and a /24 unique to this run, so two runs (or a stale one) never meet.
id=$(( $$ % 200 + 20 ))
net=10.243.$id
br=vsdmmh$id
hosts=(c h1 h2 h3)
declare -A ip=([c]=$net.10 [h1]=$net.1 [h2]=$net.2 [h3]=$net.3)
ns() { echo "vsdmmh$id-$1"; }
inns() { local h=$1; shift; nsenter --net="/run/netns/$(ns "$h")" "$@"; }

# --- the network: a bridge in the root namespace, one veth into each host's namespace
kill_ns_procs() { local p; for p in $(ip netns pids "$(ns "$1")" 2> /dev/null); do kill -9 "$p" 2> /dev/null || true; done; }
on_exit ip link del "$br"
ip link add "$br" type bridge
ip addr add "$net.254/24" dev "$br"
ip link set "$br" up
for h in "${hosts[@]}"; do
  on_exit ip netns del "$(ns "$h")"
  on_exit kill_ns_procs "$h"
  ip netns add "$(ns "$h")"
  ip link add "v$id$h" type veth peer name "v$id${h}p"
  ip link set "v$id${h}p" netns "$(ns "$h")"
  ip -n "$(ns "$h")" link set "v$id${h}p" name eth0
  ip link set "v$id$h" master "$br" up
  ip -n "$(ns "$h")" addr add "${ip[$h]}/24" dev eth0
  ip -n "$(ns "$h")" link set eth0 up
  ip -n "$(ns "$h")" link set lo up
done
inns h1 ping -c1 -W2 "${ip[h2]}" > /dev/null || die "h1 cannot reach h2 over the bridge"
log "network: bridge $br $net.254/24; coordinator ${ip[c]}, hosts ${ip[h1]} ${ip[h2]} ${ip[h3]}"

# --- tokens (auth on: the coordinator listens on a routable address)
umask 077
admin=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
worker=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -p "$work/c/data"
printf '%s ops admin\n%s fleet worker\n' "$admin" "$worker" > "$work/c/tokens"
for h in h1 h2 h3; do mkdir -p "$work/$h/work" "$work/$h/etc"; echo "$worker" > "$work/$h/etc/worker.token"; done
echo "$admin" > "$work/admin.token"
umask 022

# --- the coordinator and three agents, each in its own namespace
coord=${ip[c]}:50051
inns c "$BIN/vsdm-coordinator" --listen "$coord" --auth-tokens "$work/c/tokens" --data-dir "$work/c/data" \
  --metrics-listen "" --lease-seconds 10 --restart-backoff-seconds 1 --store-port-range 29700-29799 \
  > "$work/c/coordinator.log" 2>&1 &
ctl() { "$BIN/vsdmctl" --coordinator "$coord" --token-file "$work/admin.token" "$@"; }
wait_for 30 ctl health > /dev/null 2>&1 || { cat "$work/c/coordinator.log"; die "coordinator not serving"; }
for h in h1 h2 h3; do
  inns "$h" "$BIN/vsdm-worker" --coordinator "$coord" --token-file "$work/$h/etc/worker.token" --id "$h" \
    --host "${ip[$h]}" --slots 2 --work-dir "$work/$h/work" --train-bin "$BIN/vsdm-train" \
    --metrics-listen "" --pg-timeout 30 --kill-grace 2 > "$work/$h/agent.log" 2>&1 &
done
alive() { [ "$(ctl workers -o json | python3 -c 'import json,sys; print(sum(w["state"]=="alive" for w in json.load(sys.stdin).get("workers",[])))')" = "$1" ]; }
wait_for 30 alive 3 || die "3 workers did not register: $(ctl workers)"
log "coordinator and 3 agents up: $(ctl workers | tail -n +2 | awk '{print $1}' | tr '\n' ' ')"

field() { ctl get "$1" -o json | python3 -c "import json,sys; j=json.load(sys.stdin); p=j.get('progress',{}); print(j['state'], p.get('round',0), j.get('attempts',0))"; }
at_round() { local s r a; read -r s r a < <(field "$1"); [ "$s" = JOB_STATE_RUNNING ] && [ "$r" -ge "$2" ] && [ "$a" -ge "$3" ]; }
# host holding rank R of the job's current attempt
host_of_rank() {
  ctl workers -o json | python3 -c '
import json, sys
job, rank = sys.argv[1], int(sys.argv[2])
for w in json.load(sys.stdin).get("workers", []):
    if w["state"] == "alive" and any(r["attempt_id"].startswith(job + "/") and r.get("rank", 0) == rank for r in w.get("ranks", [])):
        print(w["worker_id"])' "$1" "$2"
}

job=$(ctl submit -f "$SRC/examples/spiral.yaml" --set train.rounds=30 --set sample.n=5000 \
        --set train.checkpoint_every=5 | awk '{print $1}')
log "submitted $job"
wait_for 180 at_round "$job" 1 1 || die "$job never ran: $(ctl logs --events "$job")"

# 1. cross-host rendezvous: where the three ranks are, and TCP between the hosts' IPs
placement=$(for r in 0 1 2; do host_of_rank "$job" "$r"; done | tr '\n' ' ')
read -r -a where <<< "$placement"
[ ${#where[@]} -eq 3 ] || die "expected 3 placed ranks, got: $placement"
distinct=$(printf '%s\n' "${where[@]}" | sort -u | wc -l)
[ "$distinct" -ge 2 ] || die "the gang is on one host ($placement): nothing crosses hosts"
r0=${where[0]}
# (with a state filter ss prints Recv-Q Send-Q Local Peer: the peer is column 4)
conns=$(inns "$r0" ss -tnH state established)
cross=$(echo "$conns" | awk '{print $4}' | grep "^$net\." | grep -vc "^${ip[$r0]}:" || true)
others=$(echo "$conns" | awk '{print $4}' | grep "^$net\." | grep -v "^${ip[$r0]}:" | cut -d: -f1 | sort -u | tr '\n' ' ')
log "placement (rank 0, 1, 2): $placement; rank 0's host $r0 has $cross established TCP connections to other hosts ($others)"
[ "$cross" -ge 1 ] || die "no TCP connection from $r0 to another host"

# 2. partition rank 0's host once a checkpoint has reached the coordinator
ckpt_up() { ls "$work/c/data/artifacts/$job/checkpoint/" 2> /dev/null | grep -q '^ckpt-[0-9]*\.pt$'; }
wait_for 240 ckpt_up || die "no checkpoint reached the coordinator"
log "checkpoint at the coordinator: $(ls "$work/c/data/artifacts/$job/checkpoint/" | tr '\n' ' '); round $(field "$job" | cut -d' ' -f2)"
t0=$SECONDS
inns "$r0" iptables -I INPUT -i eth0 -j DROP
inns "$r0" iptables -I OUTPUT -o eth0 -j DROP
log "partitioned $r0 (${ip[$r0]}): all its traffic dropped"
requeued() { ctl logs --events "$job" | grep -q "\[requeued\]"; }
wait_for 40 requeued || die "not requeued 40 s after the partition (lease 10 s): $(ctl logs --events "$job")"
t_requeue=$((SECONDS - t0))
wait_for 120 at_round "$job" 1 2 || die "attempt 2 never ran: $(ctl logs --events "$job")"
t_running=$((SECONDS - t0))
new0=$(host_of_rank "$job" 0)
log "requeued after ${t_requeue} s; attempt 2 running after ${t_running} s with rank 0 on $new0"
[ -n "$new0" ] && [ "$new0" != "$r0" ] || die "rank 0 of attempt 2 is on '$new0' (the partitioned host was $r0)"

# 3. the job finishes on the remaining hosts from the checkpoint the coordinator carried
ctl watch "$job" > /dev/null || true
t_done=$((SECONDS - t0))
read -r s r a < <(field "$job")
[ "$s" = JOB_STATE_SUCCEEDED ] && [ "$a" = 2 ] || die "expected SUCCEEDED in attempt 2, got $s attempt $a: $(ctl logs --events "$job")"
fetched=$(grep -o "fetched the checkpoint of round [0-9]* of $job ([0-9]* bytes)" "$work/$new0/agent.log" | tail -1)
[ -n "$fetched" ] || die "$new0's agent did not fetch a checkpoint: $(tail -5 "$work/$new0/agent.log")"
round=$(echo "$fetched" | awk '{print $6}')
ctl artifacts "$job" --out "$work/out" > /dev/null
python3 - "$work/out" "$round" <<'PY'
import json, sys
m = json.load(open(f"{sys.argv[1]}/metrics.json"))
fetched = int(sys.argv[2])
print(f"resumed from round {m['resumed_from_round']} (fetched round {fetched}); energy {m['energy_distance']:.3f}, A[1][1] {m['A'][1][1]:.3f}")
assert m["resumed_from_round"] == fetched and fetched >= 5, (m["resumed_from_round"], fetched)
assert m["energy_distance"] < 0.8 and m["A"][1][1] < -0.2, m
PY
# Nothing of the job reached the new host's disk but through the coordinator: its work dir held
# no checkpoint of this job before the fetch (it never ran rank 0 of attempt 1).
log "new rank 0 host $new0: $fetched"
log "recovery: requeued ${t_requeue} s, running again ${t_running} s, SUCCEEDED ${t_done} s after the partition"
echo "ok"
