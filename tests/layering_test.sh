#!/usr/bin/env bash
# The layers' include arrows (STYLE.md, DESIGN.md): each folder may include only the folders
# listed for it. A #include "<dir>/..." of any other project folder fails here.
# usage: layering_test.sh SOURCE_DIR
set -euo pipefail
cd "$1"
declare -A allowed=(
  [common]="common"
  [proto]="proto common vsdm grpc"
  [core]="core common"
  [server]="server common proto vsdm grpc"
  [client]="client common proto vsdm grpc"
  [tools]="tools common"
  [worker/agent]="worker/agent common proto vsdm grpc"
  [worker/train]="worker/train common core"
)
project_dirs="common proto core server client tools worker vsdm grpc"
bad=0
for layer in "${!allowed[@]}"; do
  [ -d "$layer" ] || continue
  while IFS=: read -r file line inc; do
    dir=${inc#*\"}; dir=${dir%%/*}
    case " $project_dirs " in *" $dir "*) ;; *) continue ;; esac  # a system or third-party header
    path=${inc#*\"}; path=${path%\"*}
    ok=0
    for a in ${allowed[$layer]}; do
      case "$path" in "$a"/*) ok=1 ;; esac
    done
    if [ "$ok" = 0 ]; then echo "layering: $file:$line includes \"$path\" (${layer}/ may include only: ${allowed[$layer]})"; bad=1; fi
  done < <(grep -rn --include='*.h' --include='*.cc' '^#include "' "$layer" | sed 's/^\([^:]*\):\([0-9]*\):/\1:\2:/')
done
# The LibTorch-free layers must not include torch either.
for layer in common proto server client tools worker/agent; do
  [ -d "$layer" ] || continue
  if grep -rn --include='*.h' --include='*.cc' -E '^#include <(torch|c10|ATen)/' "$layer"; then
    echo "layering: ${layer}/ includes LibTorch"; bad=1
  fi
done
[ "$bad" = 0 ] && echo "layering: ok (${#allowed[@]} layers)"
exit $bad
