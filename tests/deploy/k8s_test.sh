#!/usr/bin/env bash
# deploy/k8s, checked offline (no cluster or API server can be had on these machines):
#  1. every overlay (cpu, gpu; cpu + components/plaintext, gpu + components/shared-work-dir)
#     renders with `kubectl kustomize`
#     from Secrets made by deploy/k8s/make-secrets.sh in a temp copy of deploy/k8s;
#  2. every object passes tests/deploy/k8s_validate.mjs: the Kubernetes schema (kubernetes-models),
#     a strict unknown-field check, and the cross-object checks (selectors, ports, Secrets, mounts,
#     NetworkPolicy paths, deploy/prometheus/kubernetes.yml relabeling, TLS names, tokens, GPU
#     limits, Pod Security "restricted"); it prints the objects' count by kind;
#  3. the fixture is broken on purpose, one way at a time, and each break must be reported with
#     the object and field it concerns;
#  4. the real binaries run with the command lines and Secret files of the rendered cpu overlay
#     (paths under a temp root, loopback ports): the coordinator starts with TLS and tokens, the
#     agent registers over TLS verifying the name it dials (vsdm-coordinator), vsdmctl lists it,
#     the probes' port (--health-listen) answers grpc.health.v1 SERVING in plaintext while the
#     API port speaks TLS only, and /metrics answers.
# Usage: tests/deploy/k8s_test.sh BIN_DIR SOURCE_DIR      (ctest: deploy_k8s_manifests)
set -euo pipefail
BIN=$(cd "${1:?BIN_DIR}" && pwd)
SRC=$(cd "${2:?SOURCE_DIR}" && pwd)
source "$SRC/tests/deploy/lib.sh"

bash "$SRC/scripts/install-deploy-deps.sh"
for t in kubectl node npm openssl curl; do command -v $t > /dev/null || die "$t is not installed"; done
NPM="$SRC/build/deploy-npm"
need_npm=0
for p in kubernetes-models @kubernetes-models/validate js-yaml; do
  [ -f "$NPM/node_modules/$p/package.json" ] || need_npm=1
done
if [ $need_npm -eq 1 ]; then
  log "npm install kubernetes-models @kubernetes-models/validate js-yaml into $NPM"
  mkdir -p "$NPM"
  npm install --prefix "$NPM" --no-audit --no-fund --loglevel=error \
    kubernetes-models@5.1.0 @kubernetes-models/validate@5.0.2 js-yaml@5.5.0 > /dev/null
fi
t0=$SECONDS
VALIDATE=(node "$SRC/tests/deploy/k8s_validate.mjs" --npm "$NPM" --prometheus deploy/prometheus/kubernetes.yml)

tmp=$(mktemp -d /tmp/vsdm-k8s-test.XXXXXX)
on_exit rm -rf "$tmp"
K="$tmp/k8s"
cp -r "$SRC/deploy/k8s" "$K"
rm -rf "$K/secrets/files"    # never the source tree's own (real) secrets
mkdir -p "$tmp/deploy" && cp -r "$SRC/deploy/prometheus" "$tmp/deploy/"
cd "$tmp"

# --- nothing secret is committed; make-secrets.sh makes what the Secrets need ------------------
if git -C "$SRC" rev-parse --git-dir > /dev/null 2>&1; then
  committed=$(git -C "$SRC" ls-files deploy/k8s | grep -E '(^|/)secrets/files/' || true)
  [ -z "$committed" ] || die "secret inputs are committed: $committed"
  if git -C "$SRC" grep -l -E 'PRIVATE KEY|^[0-9a-f]{64} ' -- deploy/k8s > /dev/null 2>&1; then
    die "deploy/k8s has a committed key or token: $(git -C "$SRC" grep -l -E 'PRIVATE KEY|^[0-9a-f]{64} ' -- deploy/k8s)"
  fi
fi
"$K/make-secrets.sh" --out "$K/secrets/files" > "$tmp/make-secrets.log"
if "$K/make-secrets.sh" --out "$K/secrets/files" > /dev/null 2>&1; then die "make-secrets.sh overwrote existing files without --force"; fi
log "make-secrets.sh: $(cd "$K/secrets/files" && echo *)"

# The variants users make by adding a component to an overlay's components: (as the README says).
variant() {  # variant NEW FROM COMPONENT
  cp -r "$K/overlays/$2" "$K/overlays/$1"
  sed -i "s|^  - ../../secrets$|  - ../../secrets\n  - ../../components/$3|" "$K/overlays/$1/kustomization.yaml"
  grep -q "components/$3" "$K/overlays/$1/kustomization.yaml" || die "could not add components/$3 to a copy of overlays/$2"
}
variant cpu-plaintext cpu plaintext
variant gpu-shared-work-dir gpu shared-work-dir

# --- render and validate every overlay ----------------------------------------------------------
render() {  # render OVERLAY_DIR OUT: kubectl kustomize, its error in OUT.err
  kubectl kustomize "$1" > "$2" 2> "$2.err"
}
total=0
good=()
overlays=(cpu gpu cpu-plaintext gpu-shared-work-dir)
for o in "${overlays[@]}"; do
  expect=cpu; [[ $o == gpu* ]] && expect=gpu
  render "$K/overlays/$o" "$tmp/$o.yaml" || die "kubectl kustomize overlays/$o: $(cat "$tmp/$o.yaml.err")"
  good+=(--case "$o:$expect:$tmp/$o.yaml")
  total=$((total + $(grep -c '^kind: ' "$tmp/$o.yaml")))
done
"${VALIDATE[@]}" --out-dir "$tmp/valid" "${good[@]}"
for o in "${overlays[@]}"; do
  [ "$(cat "$tmp/valid/$o.rc")" = 0 ] || { cat "$tmp/valid/$o.out"; die "overlays/$o does not validate"; }
  log "$(tail -1 "$tmp/valid/$o.out")"
done
cp "$tmp/valid/cpu.out" "$tmp/cpu.out"
grep '  prometheus: \|  note: ' "$tmp/cpu.out" | sed 's/^/    /'
grep -q 'nvidia.com/gpu' "$tmp/cpu.yaml" && die "the cpu render mentions nvidia.com/gpu"
grep -q 'nvidia.com/gpu: 1' "$tmp/gpu.yaml" || die "the gpu render has no nvidia.com/gpu: 1"
for o in cpu cpu-plaintext; do
  [ "$(grep -A1 -E '^ +grpc:$' "$tmp/$o.yaml" | grep -cE '^ +port: 50052$')" = 3 ] &&
    grep -q -- '--health-listen=0.0.0.0:50052' "$tmp/$o.yaml" || die "the $o render has no native gRPC probes on --health-listen 50052"
done
grep -q -- '--tls-cert' "$tmp/cpu-plaintext.yaml" && die "the plaintext render still has --tls-cert"
[ "$(grep -c '^kind: Secret' "$tmp/cpu-plaintext.yaml")" = 2 ] || die "the plaintext render should have 2 Secrets (no vsdm-tls)"
grep -q 'claimName: vsdm-work' "$tmp/gpu-shared-work-dir.yaml" || die "the shared-work-dir render does not mount the claim"
log "${#overlays[@]} overlays rendered and validated ($total objects) in $((SECONDS - t0)) s"

# --- break the fixture on purpose: each break must be caught, naming object and field -----------
t1=$SECONDS
cases=()       # --case NAME:EXPECT:FILE for the validator, run once over all of them
wants=()       # NAME=TEXT that its output must contain
caught() {  # caught NAME RENDERED EXPECT_TEXT cpu|gpu: the validator must report EXPECT_TEXT
  cases+=(--case "$1:$4:$2")
  wants+=("$1=$3")
}
also() {  # also NAME EXPECT_TEXT: a further line the validator must report for case NAME
  wants+=("$1=$2")
}
broken() {  # broken NAME BASE_OVERLAY KIND OBJ EXPECT_TEXT JSON_PATCH_OPS...: patch BASE_OVERLAY
  local name=$1 base=$2 kind=$3 obj=$4 want=$5; shift 5
  local d="$K/overlays/broken-$name"
  mkdir -p "$d"
  {
    echo "resources: [../$base]"
    echo "patches:"
    echo "  - target: {kind: $kind, name: $obj}"
    echo "    patch: |-"
    for op in "$@"; do echo "      - $op"; done
  } > "$d/kustomization.yaml"
  render "$d" "$tmp/broken-$name.yaml" || die "break '$name' did not render: $(cat "$tmp/broken-$name.yaml.err")"
  caught "$name" "$tmp/broken-$name.yaml" "$want" "$([ "$base" = gpu ] && echo gpu || echo cpu)"
}
log "broken fixtures (what the validator prints):"
broken type-error cpu StatefulSet vsdm-coordinator \
  'StatefulSet/vsdm-coordinator spec.replicas: must be integer' \
  '{op: replace, path: /spec/replicas, value: "two"}'
broken unknown-field cpu DaemonSet vsdm-worker \
  'DaemonSet/vsdm-worker spec.template.spec.containers[0].ports[0].protocl: unknown field "protocl" (did you mean "protocol"?)' \
  '{op: add, path: /spec/template/spec/containers/0/ports/0/protocl, value: TCP}'
broken selector-matches-nothing cpu Service vsdm-coordinator \
  'Service/vsdm-coordinator spec.selector: {"app.kubernetes.io/component":"coordinator","app.kubernetes.io/name":"vsdm-coordinatr"} selects no pods' \
  '{op: replace, path: /spec/selector/app.kubernetes.io~1name, value: vsdm-coordinatr}'
broken missing-secret cpu DaemonSet vsdm-worker \
  'DaemonSet/vsdm-worker spec.template.spec.volumes[1](worker-token).secret.secretName: Secret "vsdm-worker-tokn" is not rendered' \
  '{op: replace, path: /spec/template/spec/volumes/1/secret/secretName, value: vsdm-worker-tokn}'
broken probe-port cpu DaemonSet vsdm-worker \
  'DaemonSet/vsdm-worker spec.template.spec.containers[0](worker).livenessProbe.httpGet.port: 9999 is not a containerPort' \
  '{op: replace, path: /spec/template/spec/containers/0/livenessProbe/httpGet/port, value: 9999}'
broken grpc-probe-on-tls cpu StatefulSet vsdm-coordinator \
  'StatefulSet/vsdm-coordinator spec.template.spec.containers[0](coordinator).readinessProbe.grpc: port 50051 speaks TLS' \
  '{op: replace, path: /spec/template/spec/containers/0/readinessProbe, value: {grpc: {port: 50051}}}'
broken grpc-probe-not-health-port cpu StatefulSet vsdm-coordinator \
  'StatefulSet/vsdm-coordinator spec.template.spec.containers[0](coordinator).startupProbe.grpc.port: 50053 is not the --health-listen port 50052' \
  '{op: replace, path: /spec/template/spec/containers/0/startupProbe/grpc/port, value: 50053}'
also grpc-probe-not-health-port \
  'StatefulSet/vsdm-coordinator spec.template.spec.containers[0](coordinator).startupProbe.grpc.port: 50053 is not a containerPort of coordinator'
broken health-listen-moved cpu StatefulSet vsdm-coordinator \
  'StatefulSet/vsdm-coordinator spec.template.spec.containers[0](coordinator).args(--health-listen): port 50053 is not a containerPort' \
  '{op: test, path: /spec/template/spec/containers/0/args/4, value: "--health-listen=0.0.0.0:50052"}' \
  '{op: replace, path: /spec/template/spec/containers/0/args/4, value: "--health-listen=0.0.0.0:50053"}'
also health-listen-moved \
  'StatefulSet/vsdm-coordinator spec.template.spec.containers[0](coordinator).livenessProbe.grpc.port: 50052 is not the --health-listen port 50053'
broken health-port-open cpu NetworkPolicy vsdm-coordinator \
  "NetworkPolicy/vsdm-coordinator spec.ingress[0]: opens StatefulSet/vsdm-coordinator's plaintext health port 50052 (--health-listen) to pods" \
  '{op: add, path: /spec/ingress/0/ports/-, value: {protocol: TCP, port: 50052}}'
broken not-scraped cpu DaemonSet vsdm-worker \
  'DaemonSet/vsdm-worker spec.template.metadata: deploy/prometheus/kubernetes.yml job vsdm: relabel_configs[1] keeps __meta_kubernetes_pod_annotation_prometheus_io_scrape =~ true, got "yes": not scraped' \
  '{op: replace, path: /spec/template/metadata/annotations/prometheus.io~1scrape, value: "yes"}'
broken rendezvous-range cpu NetworkPolicy vsdm-worker \
  'NetworkPolicy/vsdm-worker spec.ingress: does not admit DaemonSet/vsdm-worker into DaemonSet/vsdm-worker on TCP 46883 (Gloo/NCCL, ip_local_port_range)' \
  '{op: replace, path: /spec/ingress/0/ports/1/endPort, value: 40000}'
broken loopback-metrics cpu DaemonSet vsdm-worker \
  'DaemonSet/vsdm-worker spec.template.spec.containers[0](worker).args(--metrics-listen): 127.0.0.1:9465 is loopback' \
  '{op: replace, path: /spec/template/spec/containers/0/args/7, value: "--metrics-listen=127.0.0.1:9465"}'
broken gpu-limit-missing gpu DaemonSet vsdm-worker \
  'DaemonSet/vsdm-worker spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]: not set' \
  '{op: remove, path: /spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu}' \
  '{op: remove, path: /spec/template/spec/containers/0/resources/requests/nvidia.com~1gpu}'
# Breaks of the inputs rather than the objects, in a second copy of the tree.
K2="$tmp/k8s-2"
cp -r "$K" "$K2"
openssl rand -hex 32 > "$K2/secrets/files/worker-token"
render "$K2/overlays/cpu" "$tmp/broken-token.yaml" || die "break 'token' did not render"
caught worker-token-unknown "$tmp/broken-token.yaml" \
  "DaemonSet/vsdm-worker spec.template.spec.containers[0].args(--token-file): its token is not in the coordinator's --auth-tokens file" cpu
"$K2/make-secrets.sh" --out "$tmp/other" --namespace other > /dev/null
(cd "$tmp/other" && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=elsewhere \
  -keyout tls.key -out tls.csr 2> /dev/null &&
  openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -days 2 -out tls.crt \
    -extfile <(echo subjectAltName=DNS:elsewhere) 2> /dev/null)
cp "$tmp/other/tls.crt" "$tmp/other/tls.key" "$K2/secrets/files/"
render "$K2/overlays/cpu" "$tmp/broken-tls.yaml" || die "break 'tls' did not render"
caught tls-wrong-name "$tmp/broken-tls.yaml" \
  "StatefulSet/vsdm-coordinator spec.template.spec.containers[0].args(--tls-cert): the certificate's SANs (elsewhere) do not name \"vsdm-coordinator\"" cpu
caught tls-wrong-ca "$tmp/broken-tls.yaml" \
  "StatefulSet/vsdm-coordinator spec.template.spec.containers[0].args(--tls-cert): the certificate is not signed by the agents' --tls-ca" cpu
"${VALIDATE[@]}" --out-dir "$tmp/broken" "${cases[@]}"
ncase=0
prev=""
for w in "${wants[@]}"; do
  name=${w%%=*} want=${w#*=}
  out=$(cat "$tmp/broken/$name.out")
  [ "$(cat "$tmp/broken/$name.rc")" = 1 ] || die "break '$name' was not caught: $out"
  grep -qF -- "$want" <<< "$out" || die "break '$name': no line with '$want' in: $out"
  [ "$name" = "$prev" ] || ncase=$((ncase + 1))
  prev=$name
  echo "  [$name] $(grep -F -- "$want" <<< "$out" | head -1)"
done
# The patches that edit flags by index are guarded: move a flag in the base and they refuse.
sed -i 's|            - --tls-cert=/etc/vsdm/tls/tls.crt|            - --tls-cert=/etc/vsdm/tls/tls.crt\n            - --priority-ceiling=100|' \
  "$K2/base/coordinator.yaml"
if render "$K2/overlays/cpu-plaintext" "$tmp/broken-drift.yaml"; then
  die "break 'arg-drift': components/plaintext applied to a base whose args moved"
fi
grep -q 'testing value /spec/template/spec/containers/0/args/9 failed' "$tmp/broken-drift.yaml.err" ||
  die "break 'arg-drift': unexpected error: $(cat "$tmp/broken-drift.yaml.err")"
ncase=$((ncase + 1))
echo "  [arg-drift] kubectl kustomize: $(grep -o 'testing value [^:]* failed' "$tmp/broken-drift.yaml.err" | head -1)"
log "$ncase broken fixtures caught in $((SECONDS - t1)) s"

# --- the real binaries with the rendered command lines and Secret files -------------------------
t2=$SECONDS
R="$tmp/run"
"${VALIDATE[@]}" --name cpu --expect cpu --materialize "$R" "$tmp/cpu.yaml" > /dev/null
mapfile -t cargv < "$R/coordinator.argv"
mapfile -t wargv < "$R/worker.argv"
if [ "${cargv[0]}" != vsdm-coordinator ] || [ "${wargv[0]}" != vsdm-worker ]; then die "unexpected commands ${cargv[0]} ${wargv[0]}"; fi
dial=""
# --health-listen's port is not in the port file: take a free one.
hport=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
hrendered=""
for i in "${!cargv[@]}"; do
  case ${cargv[$i]} in
    --listen=*) cargv[i]=--listen=127.0.0.1:0 ;;
    --metrics-listen=*) cargv[i]=--metrics-listen=127.0.0.1:0 ;;
    --health-listen=*) hrendered=${cargv[$i]#--health-listen=}; cargv[i]=--health-listen=127.0.0.1:$hport ;;
  esac
done
[ -n "$hrendered" ] || die "the rendered coordinator has no --health-listen"
cargv[0]="$BIN/vsdm-coordinator"
"${cargv[@]}" --port-file="$R/coordinator.ports" > "$R/coordinator.log" 2>&1 &
cpid=$!
on_exit "kill $cpid; wait $cpid"
wait_for 20 test -s "$R/coordinator.ports" || die "the coordinator did not start with the rendered flags: $(cat "$R/coordinator.log")"
gport=$(awk '$1 == "grpc" {print $2}' "$R/coordinator.ports")
cmport=$(awk '$1 == "metrics" {print $2}' "$R/coordinator.ports")
for i in "${!wargv[@]}"; do
  case ${wargv[$i]} in
    --coordinator=*) dial=${wargv[$i]#--coordinator=}; wargv[i]=--coordinator=127.0.0.1:$gport ;;
    --metrics-listen=*) wargv[i]=--metrics-listen=127.0.0.1:0 ;;
  esac
done
wargv[0]="$BIN/vsdm-worker"
# The agent dials 127.0.0.1 here, but verifies the certificate for the name it dials in the pod.
"${wargv[@]}" --tls-server-name="${dial%:*}" --port-file="$R/worker.ports" > "$R/worker.log" 2>&1 &
wpid=$!
on_exit "kill $wpid; wait $wpid"
wait_for 20 grep -qs ': registered' "$R/worker.log" ||
  die "the agent did not register with the rendered flags: $(cat "$R/worker.log") / $(tail -5 "$R/coordinator.log")"
wmport=$(awk '$1 == "metrics" {print $2}' "$R/worker.ports")
listed=$("$BIN/vsdmctl" --coordinator "127.0.0.1:$gport" --tls-ca "$K/secrets/files/ca.crt" \
  --tls-server-name "${dial%:*}" --token-file "$K/secrets/files/admin-token" workers -o json)
grep -q '"node-1"' <<< "$listed" || die "vsdmctl workers does not list node-1: $listed"
if "$BIN/vsdmctl" --coordinator "127.0.0.1:$gport" --tls-ca "$K/secrets/files/ca.crt" \
  --tls-server-name "${dial%:*}" --token-file "$K2/secrets/files/worker-token" workers > /dev/null 2>&1; then
  die "a token missing from the tokens Secret was accepted"
fi
# The probes' port: plaintext grpc.health.v1, no token, nothing else; the API port: TLS only.
health=$("$BIN/vsdmctl" --coordinator "127.0.0.1:$hport" health 2>&1) ||
  die "vsdmctl health over plaintext on the --health-listen port (rendered $hrendered) failed: $health"
[ "$health" = SERVING ] || die "vsdmctl health on the --health-listen port printed '$health', not SERVING"
if out=$("$BIN/vsdmctl" --coordinator "127.0.0.1:$gport" health 2>&1); then
  die "the API port answered a plaintext health check (it should speak TLS only): $out"
fi
tlshealth=$("$BIN/vsdmctl" --coordinator "127.0.0.1:$gport" --tls-ca "$K/secrets/files/ca.crt" --tls-server-name "${dial%:*}" health 2>&1) ||
  die "vsdmctl health over TLS on the API port failed: $tlshealth"
if out=$("$BIN/vsdmctl" --coordinator "127.0.0.1:$hport" --token-file "$K/secrets/files/admin-token" workers 2>&1); then
  die "the --health-listen port served JobService: $out"
fi
grep -q UNIMPLEMENTED <<< "$out" || die "JobService on the --health-listen port: expected UNIMPLEMENTED, got: $out"
for port in "$cmport" "$wmport"; do
  code=$(curl -s -o "$R/metrics.$port" -w '%{http_code}' "http://127.0.0.1:$port/metrics")
  [ "$code" = 200 ] || die "GET /metrics on $port answered $code"
done
log "binaries: the coordinator took the rendered flags (TLS, tokens, data dir, store ports, health port) and" \
  "the agent ${wargv[2]#--id=} registered over TLS as ${dial%:*}; --health-listen (rendered $hrendered) answers" \
  "$health in plaintext, JobService there UNIMPLEMENTED, the API port TLS only ($tlshealth over TLS); /metrics answers 200 ($(grep -c '^vsdm_' "$R/metrics.$cmport") and" \
  "$(grep -c '^vsdm_' "$R/metrics.$wmport") vsdm_ samples) in $((SECONDS - t2)) s"
log "PASS: $total objects in ${#overlays[@]} renders, $ncase breaks caught, $((SECONDS - t0)) s after the npm check"
