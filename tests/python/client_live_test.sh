#!/usr/bin/env bash
# The Python client (python/vsdm) against a real local cluster: starts `vsdmctl local up
# --workers 3` in a temp state dir, runs tests/python/test_client_live.py against it (the client
# finds the cluster and its admin token through VSDM_HOME, as vsdmctl does), and always stops the
# cluster and removes the dir. The protobuf stubs are generated into the source tree first when
# missing or older than the protos (what the build does).
# usage: client_live_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BIN_DIR SOURCE_DIR" >&2; exit 2; }
BIN=$(cd "$1" && pwd); SRC=$(cd "$2" && pwd)
[ -x "$BIN/vsdmctl" ] || { echo "$BIN/vsdmctl: not found (BIN_DIR is the build's bin/)" >&2; exit 2; }
stub=$SRC/python/vsdm/v1/service_pb2_grpc.py
if [ ! -f "$stub" ] || [ "$SRC/proto/vsdm/v1/service.proto" -nt "$stub" ] ||
   [ "$SRC/proto/vsdm/v1/job.proto" -nt "$stub" ]; then
  bash "$SRC/scripts/gen-python-stubs.sh"
fi
work=$(mktemp -d)
ctl() { "$BIN/vsdmctl" --state-dir "$work/state" "$@"; }
cleanup() {
  rc=$?
  if [ $rc -ne 0 ] && [ -d "$work/state/logs" ]; then
    for f in "$work"/state/logs/*.log; do echo "--- tail of $f"; tail -5 "$f"; done
  fi
  ctl local down > /dev/null 2>&1 || true
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
t0=$SECONDS
ctl local up --workers 3
echo "local cluster up in $((SECONDS - t0)) s"
cd "$SRC"
# The cluster's own address and token, not one from the caller's environment.
env -u VSDM_COORDINATOR -u VSDM_TOKEN VSDM_HOME="$work/state" VSDM_BIN="$BIN" VSDM_SRC="$SRC" \
  PYTHONPATH="$SRC/python" /usr/bin/python3 -m unittest discover -v -s tests/python -p test_client_live.py
echo "client live test: $((SECONDS - t0)) s in all"
