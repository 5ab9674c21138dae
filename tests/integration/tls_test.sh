#!/usr/bin/env bash
# TLS and mutual TLS with a CA and certificates made by openssl here: vsdmctl reaches a TLS
# coordinator only with the right CA; with --tls-client-ca a worker with a certificate signed by
# that CA registers and one without a certificate (or with a certificate of another CA) does
# not; --tls-require-client-cert refuses any client without one; and the secure default: no
# routable --listen without --auth-tokens unless --insecure.
# usage: tls_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=$1
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2> /dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
BIN=$(cd "$BIN" && pwd)
cd "$work"

# --- certificates: a CA, the coordinator's (SANs 127.0.0.1, localhost), a worker's (CN worker-1),
# and a rogue CA with a client certificate of its own.
ca() {  # ca NAME
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$1" \
    -keyout "$1.key" -out "$1.pem" 2> /dev/null
}
cert() {  # cert NAME CN CA EXT
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
    -keyout "$1.key" -out "$1.csr" 2> /dev/null
  printf '%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 2 \
    -extfile "$1.ext" -out "$1.pem" 2> /dev/null
}
ca ca
ca rogue
cert server vsdm-coordinator ca "subjectAltName=IP:127.0.0.1,DNS:localhost"
cert worker worker-1 ca "extendedKeyUsage=clientAuth"
cert stranger worker-9 rogue "extendedKeyUsage=clientAuth"
openssl verify -CAfile ca.pem server.pem worker.pem > /dev/null

printf 'admin-token-0123456789abcdef root admin\nworker-token-0123456789abcd worker-1 worker\nstranger-token-0123456789ab worker-9 worker\n' > tokens
echo admin-token-0123456789abcdef > admin.token
echo worker-token-0123456789abcd > worker.token
echo stranger-token-0123456789ab > stranger.token

start_coordinator() {  # start_coordinator NAME FLAGS... ; sets $port
  rm -f "$1.ports"
  "$BIN/vsdm-coordinator" --listen 127.0.0.1:0 --metrics-listen "" --data-dir "$1.data" --port-file "$1.ports" \
    --auth-tokens tokens --tls-cert server.pem --tls-key server.key "${@:2}" > "$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$1.ports" ] && break; sleep 0.1; done
  port=$(awk '/grpc/ {print $2}' "$1.ports")
  [ -n "$port" ] || { cat "$1.log"; echo "coordinator $1 did not start"; exit 1; }
}
ctl() { "$BIN/vsdmctl" --coordinator "127.0.0.1:$port" "$@"; }
expect_exit() {  # expect_exit CODE WHAT CMD...
  local want=$1 what=$2 rc=0
  shift 2
  "$@" > out.txt 2>&1 || rc=$?
  [ "$rc" = "$want" ] || { cat out.txt; echo "FAIL: $what: exit $rc, want $want"; exit 1; }
  echo "ok: $what (exit $rc)"
}

# --- TLS
start_coordinator tls
expect_exit 0 "TLS with the right CA" ctl --tls-ca ca.pem --token-file admin.token list
expect_exit 3 "plaintext to a TLS port" ctl --token-file admin.token list
expect_exit 3 "TLS with another CA" ctl --tls-ca rogue.pem --token-file admin.token list
expect_exit 2 "no token (UNAUTHENTICATED)" ctl --tls-ca ca.pem list
grep -q "UNAUTHENTICATED\|credentials" out.txt || { cat out.txt; exit 1; }

# --- --health-listen: a plaintext port with nothing but gRPC health (kubelet gRPC probes)
hport=$(( 20000 + $$ % 20000 ))
start_coordinator health --health-listen "127.0.0.1:$hport"
expect_exit 0 "health on the plaintext --health-listen port" "$BIN/vsdmctl" --coordinator "127.0.0.1:$hport" health
grep -q SERVING out.txt || { cat out.txt; exit 1; }
expect_exit 2 "JobService is not on the --health-listen port (UNIMPLEMENTED)" \
  "$BIN/vsdmctl" --coordinator "127.0.0.1:$hport" --token-file admin.token list
grep -q "UNIMPLEMENTED" out.txt || { cat out.txt; exit 1; }
expect_exit 0 "health over TLS on the main port" ctl --tls-ca ca.pem health

# --- mTLS for workers: worker-1 with its certificate registers; without one, or with the rogue
# CA's, it does not.
start_coordinator mtls --tls-client-ca ca.pem
worker() {  # worker ID FLAGS...
  "$BIN/vsdm-worker" --coordinator "127.0.0.1:$port" --id "$1" --work-dir "work-$1" --metrics-listen "" \
    --tls-ca ca.pem "${@:2}" > "worker-$1.log" 2>&1 &
  pids+=($!)
}
worker worker-1 --token-file worker.token --tls-cert worker.pem --tls-key worker.key
worker no-cert --token-file worker.token
worker worker-9 --token-file stranger.token --tls-cert stranger.pem --tls-key stranger.key
registered=""
for _ in $(seq 100); do
  registered=$(ctl --tls-ca ca.pem --token-file admin.token workers -o json 2> /dev/null |
    /usr/bin/python3 -c 'import json,sys; print(" ".join(sorted(w["worker_id"] for w in json.load(sys.stdin).get("workers", []))))' || true)
  [ "$registered" = worker-1 ] && break
  sleep 0.1
done
sleep 2  # give the others time to (fail to) register
registered=$(ctl --tls-ca ca.pem --token-file admin.token workers -o json |
  /usr/bin/python3 -c 'import json,sys; print(" ".join(sorted(w["worker_id"] for w in json.load(sys.stdin).get("workers", []))))')
[ "$registered" = worker-1 ] || { tail -n 5 worker-*.log; echo "FAIL: registered workers: '$registered', want worker-1"; exit 1; }
echo "ok: mTLS: only worker-1 (certificate from the CA) registered"
expect_exit 0 "mTLS port: a user without a certificate still reaches JobService" \
  ctl --tls-ca ca.pem --token-file admin.token list

# --- --tls-require-client-cert: no certificate, no connection.
start_coordinator strict --tls-client-ca ca.pem --tls-require-client-cert
expect_exit 3 "require-client-cert: vsdmctl without a certificate" ctl --tls-ca ca.pem --token-file admin.token list
expect_exit 0 "require-client-cert: vsdmctl with one" \
  ctl --tls-ca ca.pem --tls-cert worker.pem --tls-key worker.key --token-file admin.token list

# --- the secure default
rc=0
"$BIN/vsdm-coordinator" --listen 0.0.0.0:0 --metrics-listen "" --data-dir open.data > open.log 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "without --auth-tokens" open.log || { cat open.log; echo "FAIL: routable listen without tokens: exit $rc"; exit 1; }
echo "ok: a routable --listen without --auth-tokens is refused: $(head -c 120 open.log)"
rm -f insecure.ports
"$BIN/vsdm-coordinator" --listen 0.0.0.0:0 --insecure --metrics-listen "" --data-dir insecure.data \
  --port-file insecure.ports > insecure.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s insecure.ports ] && break; sleep 0.1; done
[ -s insecure.ports ] || { cat insecure.log; echo "FAIL: --insecure did not start"; exit 1; }
echo "ok: --insecure starts on 0.0.0.0"
echo ok
