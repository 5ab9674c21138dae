#!/usr/bin/env bash
# The container images and the compose cluster on a real Docker engine (Debian's docker.io 20.10,
# started here on its own socket and data root; another dockerd on the machine is not touched):
#  - the base image debian:bookworm-slim made offline (docker/make-base-image.sh; its debootstrap
#    tarball is cached in build/docker-base/, so only the first run pays for debootstrap);
#  - the coordinator and worker images built with BuildKit from the binaries in BIN_DIR
#    (VSDM_BINARIES=prebuilt: the ones CI just built and tested); the build context's size; no
#    compiler in either image, a non-root user, no LibTorch in the coordinator's, every library
#    resolved, OpenBLAS as the worker's libblas.so.3;
#  - dockerfilelint (npm) reports 0 issues on docker/Dockerfile and docker/Dockerfile.cuda;
#  - docker/compose.yaml (coordinator + 3 agents on a user network, tokens, TLS with mTLS for the
#    agents, named volumes) comes up healthy; vsdmctl on the host reaches it through the published
#    port (TLS; no token and plaintext are refused), submits the shortened spiral, the gang is
#    placed on the 3 agents with the store on one of them, the job is SUCCEEDED and its artifacts
#    download; every container's health is `healthy`; `down -v` removes containers and volumes.
# Prints the wall time of each phase and the image sizes. Everything it started (dockerd and its
# containerd, containers, networks, volumes, the data root, staged binaries) is removed on exit.
# The from-source `build` stage is not built here (about 25 min on 2 cores; docker/README.md).
# usage: docker_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
source "$SRC/tests/deploy/lib.sh"
cd "$SRC"
bash scripts/install-deploy-deps.sh
DOCKER=/usr/bin/docker  # Debian's 20.10 client: BuildKit through the engine (the 28.x one has no buildx)
export DOCKER_BUILDKIT=1
unset VSDM_TOKEN VSDM_COORDINATOR
for b in vsdm-coordinator vsdm-worker vsdm-train vsdmctl; do [ -x "$BIN/$b" ] || die "$BIN/$b missing"; done
"$BIN/vsdmctl" health --help > /dev/null || die "$BIN/vsdmctl has no health subcommand (the images' HEALTHCHECK)"
declare -A secs  # phase -> wall seconds
phase() { secs[$1]=$(($SECONDS - $2)); }

# --- the engine: its own socket, data root and exec root in a short temp dir (socket paths)
work=$(mktemp -d /tmp/vsdm-docker.XXXXXX)
on_exit "rm -rf '$work'"
stop_dockerd() {
  local pid
  pid=$(cat "$work/dockerd.pid" 2> /dev/null || true)
  if [ -n "$pid" ] && kill "$pid" 2> /dev/null; then
    for _ in $(seq 60); do kill -0 "$pid" 2> /dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2> /dev/null || true
  fi
  # mounts the daemon leaves when it dies or fails to start (its data root is a bind mount of
  # itself; overlay layers, netns, shm), deepest first; always, or rm -rf cannot remove them
  awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | xargs -r umount -l 2> /dev/null || true
}
t=$SECONDS
mkdir -p "$work/data" "$work/exec"
dockerd --data-root "$work/data" --exec-root "$work/exec" -H "unix://$work/docker.sock" \
  --pidfile "$work/docker.pid" --iptables=false --ip-forward=false --ip-masq=false --bridge=none \
  > "$work/dockerd.log" 2>&1 &
echo $! > "$work/dockerd.pid"
on_exit stop_dockerd
export DOCKER_HOST="unix://$work/docker.sock"
wait_for 60 "$DOCKER" version > /dev/null 2>&1 || { tail -20 "$work/dockerd.log"; die "dockerd did not start"; }
phase dockerd $t
log "dockerd $("$DOCKER" version -f '{{.Server.Version}}') up in ${secs[dockerd]} s (data root $work/data)"

# --- base image
t=$SECONDS
DOCKER=$DOCKER docker/make-base-image.sh --cache build/docker-base
phase base $t

# --- the runtime images from BIN_DIR
bindir=build/bin
if [ "$BIN" != "$SRC/build/bin" ]; then  # the context holds build/bin/* or build/docker-bin/ only
  bindir=build/docker-bin
  mkdir -p "$bindir"
  on_exit "rm -rf '$SRC/$bindir'"
  cp "$BIN"/{vsdm-coordinator,vsdm-worker,vsdm-train,vsdmctl} "$bindir/"
fi
tag=test$$
build() {  # build TARGET
  local t0=$SECONDS
  if ! "$DOCKER" build --network host --progress plain -f docker/Dockerfile --target "$1" \
    --build-arg VSDM_BINARIES=prebuilt --build-arg VSDM_BIN_DIR="$bindir" -t "vsdm-$1:$tag" . \
    > "$work/build-$1.log" 2>&1; then
    tail -30 "$work/build-$1.log"
    die "docker build --target $1 failed"
  fi
  phase "build $1" $t0
  local size
  size=$("$DOCKER" image inspect -f '{{.Size}}' "vsdm-$1:$tag")
  log "image vsdm-$1: built in ${secs["build $1"]} s, $((size / 1000000)) MB"
}
build coordinator
build worker
# What the legacy builder would send (the whole context after .dockerignore): it must stay small.
ctx=$(DOCKER_BUILDKIT=0 "$DOCKER" build -f - . <<< 'FROM debian:bookworm-slim' 2>&1 | tr '\r' '\n' |
      sed -n 's/^Sending build context to Docker daemon *//p' | tail -1)
log "full build context after .dockerignore: $ctx"
case $ctx in *kB | [0-9]MB | [0-9].*MB | [1-4][0-9]MB | [1-4][0-9].*MB) ;; *) die ".dockerignore lets a ${ctx:-?} context through (limit 50 MB)" ;; esac

# --- what is (not) in the images
inimage() {  # inimage IMAGE SCRIPT: runs SCRIPT with bash in IMAGE, no network
  "$DOCKER" run --rm --network none --entrypoint bash "$1" -c "$2"
}
declare -A bins=([coordinator]="vsdm-coordinator vsdmctl" [worker]="vsdm-worker vsdm-train vsdmctl")
for img in coordinator worker; do
  user=$("$DOCKER" image inspect -f '{{.Config.User}}' "vsdm-$img:$tag")
  [ "$(inimage "vsdm-$img:$tag" 'id -u')" = 10001 ] || die "vsdm-$img runs as $(inimage "vsdm-$img:$tag" 'id -un')"
  compilers=$(inimage "vsdm-$img:$tag" 'for c in gcc cc c++ g++ clang clang++ cpp as ld; do command -v $c; done;
    dpkg-query -W -f "\${Package}\n"' | grep -E '^(/|(gcc|g\+\+|cpp|clang)(-[0-9]+)?$|binutils|lib(gcc|stdc\+\+)-[0-9]+-dev)' || true)
  [ -z "$compilers" ] || die "vsdm-$img has a compiler: $compilers"
  missing=$(inimage "vsdm-$img:$tag" "for b in ${bins[$img]}; do ldd /usr/local/bin/\$b | grep 'not found' || true; done" 2>&1)
  [ -z "$missing" ] || die "vsdm-$img: unresolved libraries: $missing"
  health=$("$DOCKER" image inspect -f '{{join .Config.Healthcheck.Test " "}}' "vsdm-$img:$tag")
  log "vsdm-$img: ${bins[$img]} (all libraries resolved), user $user, no compiler, HEALTHCHECK $health"
done
torch=$(inimage "vsdm-coordinator:$tag" 'ldd /usr/local/bin/vsdm-coordinator /usr/local/bin/vsdmctl | grep -i torch;
  dpkg-query -W -f "\${Package}\n" "libtorch*" 2> /dev/null' || true)
[ -z "$torch" ] || die "the coordinator image has LibTorch: $torch"
blas=$(inimage "vsdm-worker:$tag" 'readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3')
[[ $blas == *openblas* ]] || die "the worker's libblas.so.3 is $blas, not OpenBLAS"
inimage "vsdm-worker:$tag" 'vsdm-train --version && ldd /usr/local/bin/vsdm-train | grep -q libtorch' > /dev/null ||
  die "vsdm-train does not run in the worker image"
log "coordinator image: no LibTorch; worker image: libblas.so.3 -> $blas"

# --- lint
t=$SECONDS
lint=build/deploy-npm/node_modules/.bin/dockerfilelint
[ -x "$lint" ] || npm install --prefix build/deploy-npm --no-audit --no-fund dockerfilelint@1.8.0 > /dev/null 2>&1
for f in docker/Dockerfile docker/Dockerfile.cuda; do
  rc=0
  out=$("$lint" "$f") || rc=$?  # exit code = number of issues
  echo "$out" | grep -v '^$'
  [ "$rc" = 0 ] || die "dockerfilelint: $rc issues in $f"
done
phase lint $t

# --- the compose cluster
export VSDM_SECRETS="$work/secrets" VSDM_TAG=$tag VSDM_PUBLISH=127.0.0.1:
docker/make-secrets.sh "$VSDM_SECRETS" 3 2 > /dev/null
project=vsdmtest$$
compose() { docker-compose -f docker/compose.yaml -p "$project" "$@"; }
t=$SECONDS
on_exit "compose down -v --timeout 5"
compose up -d > "$work/up.log" 2>&1 || { cat "$work/up.log"; compose logs --tail 20; die "compose up failed"; }
services=(coordinator agent-1 agent-2 agent-3)
health_of() { "$DOCKER" inspect -f '{{.State.Health.Status}}' "$(compose ps -q "$1")"; }
all_healthy() {
  local s
  for s in "${services[@]}"; do [ "$(health_of "$s")" = healthy ] || return 1; done
}
wait_for 120 all_healthy || { compose ps; compose logs --tail 20; die "the cluster did not become healthy"; }
phase up $t
addr=$(compose port coordinator 50051)
log "compose up: ${services[*]} healthy in ${secs[up]} s; coordinator published at $addr"
ctl() { "$BIN/vsdmctl" --state-dir "$work/no-local" --coordinator "$addr" --tls-ca "$VSDM_SECRETS/ca.pem" "$@"; }
expect_exit() {  # expect_exit CODE WHAT CMD...
  local want=$1 what=$2 rc=0
  shift 2
  "$@" > "$work/out.txt" 2>&1 || rc=$?
  [ "$rc" = "$want" ] || { cat "$work/out.txt"; die "$what: exit $rc, want $want"; }
}
expect_exit 2 "no token" ctl list
expect_exit 3 "plaintext to the TLS port" "$BIN/vsdmctl" --state-dir "$work/no-local" --coordinator "$addr" --token-file "$VSDM_SECRETS/admin.token" list
[ "$(ctl --token-file "$VSDM_SECRETS/admin.token" workers | grep -c ' alive ')" = 3 ] ||
  { ctl --token-file "$VSDM_SECRETS/admin.token" workers; die "not 3 workers alive"; }
log "TLS + tokens: no token refused (2), plaintext refused (3); 3 agents alive"

t=$SECONDS
user=(--token-file "$VSDM_SECRETS/user.token")
job=$(ctl "${user[@]}" submit -f examples/spiral.yaml --set train.rounds=10 --set sample.n=2000 | awk '{print $1}')
ctl "${user[@]}" watch "$job" | tail -3 || true
state=$(ctl "${user[@]}" get "$job" -o json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
phase job $t
[ "$state" = JOB_STATE_SUCCEEDED ] || { ctl "${user[@]}" logs --events "$job"; compose logs --tail 30; die "$job is $state"; }
placed=$(ctl "${user[@]}" logs --events "$job" | grep -m1 'placed:') || die "no placement event"
echo "$placed"
hosts=$(grep -o '[0-9]@agent-[0-9]' <<< "$placed" | cut -d@ -f2 | sort -u | wc -l)
[ "$hosts" = 3 ] || die "the gang is on $hosts agents, want 3"
grep -q 'store agent-[0-9]:' <<< "$placed" || die "the store is not on an agent's network name"
ctl "${user[@]}" artifacts "$job" --out "$work/out" > /dev/null
/usr/bin/python3 - "$work/out" << 'PY'
import json, sys
import numpy as np
x = np.load(f"{sys.argv[1]}/samples.npy")
m = json.load(open(f"{sys.argv[1]}/metrics.json"))
assert x.shape == (2000, 2) and np.isfinite(x).all(), x.shape
assert m["distributed"]["trainers"] == 2 and len(m["distributed"]["ranks"]) == 3, m["distributed"].keys()
print(f"artifacts: samples {x.shape}, energy distance {m['energy_distance']:.3f}, 3 ranks")
PY
log "$job SUCCEEDED in ${secs[job]} s on 3 agents; artifacts downloaded"
for s in "${services[@]}"; do
  [ "$(health_of "$s")" = healthy ] || die "$s is $(health_of "$s") after the job"
done
[ "$(compose exec -T agent-1 id -u)" = 10001 ] || die "agent-1 runs as root"
log "after the job: ${services[*]} healthy (docker inspect), agents run as uid 10001"

t=$SECONDS
compose down -v --timeout 10 > /dev/null 2>&1
phase down $t
left=$("$DOCKER" ps -aq; "$DOCKER" volume ls -q --filter "label=com.docker.compose.project=$project")
[ -z "$left" ] || die "down -v left: $left"
log "compose down -v: containers and volumes removed in ${secs[down]} s"
for k in dockerd base "build coordinator" "build worker" lint up job down; do printf '%s=%ss ' "${k// /-}" "${secs[$k]}"; done
echo
log "PASS in $((SECONDS - t_start)) s"
