#!/bin/bash
# The worker image's HEALTHCHECK (no curl in the image: bash's /dev/tcp). Healthy when the agent's
# /metrics answers on 127.0.0.1:PORT and the last heartbeat the coordinator accepted
# (vsdm_agent_last_heartbeat_timestamp_seconds) is at most MAX_AGE seconds old; an agent that
# never registered, or lost its coordinator, is unhealthy.
# usage: vsdm-agent-health [PORT [MAX_AGE]]   (defaults 9465, 30)
set -euo pipefail
port=${1:-9465}
max_age=${2:-30}
exec 3<> "/dev/tcp/127.0.0.1/$port" || { echo "no /metrics on 127.0.0.1:$port"; exit 1; }
printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
body=$(timeout 4 cat <&3)
exec 3<&-
case $body in
  "HTTP/1."?" 200"*) ;;
  *) echo "/metrics: ${body%%$'\r'*}"; exit 1 ;;
esac
last=$(awk '$1 == "vsdm_agent_last_heartbeat_timestamp_seconds" {print $2}' <<< "$body")
[ -n "$last" ] || { echo "no vsdm_agent_last_heartbeat_timestamp_seconds"; exit 1; }
age=$(awk -v now="$(date +%s)" -v last="$last" 'BEGIN {printf "%d", now - last}')
if [ "$last" = 0 ] || [ "$age" -gt "$max_age" ]; then
  echo "last heartbeat ${age} s ago (limit ${max_age} s)"
  exit 1
fi
echo "ok: heartbeat ${age} s ago"
