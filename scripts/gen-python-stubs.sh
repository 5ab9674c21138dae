#!/usr/bin/env bash
# Generates the Python protobuf and gRPC stubs of proto/vsdm/v1 (job_pb2.py, service_pb2.py,
# service_pb2_grpc.py) under OUT_DIR/vsdm/v1/, default python/: the generated code imports
# `vsdm.v1.job_pb2`, which resolves inside the client package `vsdm` itself. They are build
# outputs (.gitignore), never edited or committed; the build runs this script too.
# usage: gen-python-stubs.sh [OUT_DIR]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$src/python}
# The plugin: $GRPC_PYTHON_PLUGIN (the build passes the one it found), else the one on PATH
# (Debian: protobuf-compiler-grpc).
plugin=${GRPC_PYTHON_PLUGIN:-$(command -v grpc_python_plugin || true)}
[ -x "$plugin" ] || { echo "gen-python-stubs: grpc_python_plugin not found (apt-get install protobuf-compiler-grpc)" >&2; exit 1; }
mkdir -p "$out/vsdm/v1"
cd "$src" && protoc -I proto --python_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python="$plugin" proto/vsdm/v1/job.proto proto/vsdm/v1/service.proto
