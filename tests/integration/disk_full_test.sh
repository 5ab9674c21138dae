#!/usr/bin/env bash
# A full disk under a running coordinator (issue 18, Must show 3; review M5) and the instance
# lock (review H8). The data dir is a 2 MiB tmpfs (a loop-mounted ext4 image if tmpfs cannot be
# mounted; exit 77 = skipped when neither can, e.g. not root). Submits with request ids run while
# a filler grows until the filesystem is full; then every submit is refused UNAVAILABLE (exit 3,
# "not submitted; retry") and health is NOT_SERVING on the main port and on --health-listen.
# The filler is deleted: health is SERVING again by itself within 5 s and submits work. Then
# kill -9 and a restart on the same data dir: every acknowledged submit is there, exactly those.
# A second coordinator on the data dir is refused (exit 2, naming the holder's pid), and an
# online backup of the running coordinator, restored into a fresh data dir, lists the same jobs.
# usage: disk_full_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=$(cd "$1" && pwd)
SRC=$2
t0=$(date +%s.%N)
work=$(mktemp -d)
mnt=$work/mnt
mkdir -p "$mnt"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2> /dev/null || true; done
  if mountpoint -q "$mnt"; then umount "$mnt" 2> /dev/null || umount -l "$mnt" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if mount -t tmpfs -o size=2m tmpfs "$mnt" 2> /dev/null; then
  fs_kind="tmpfs 2 MiB"
else
  truncate -s 8M "$work/fs.img"
  if mkfs.ext4 -q -m 0 "$work/fs.img" 2> /dev/null && mount -o loop "$work/fs.img" "$mnt" 2> /dev/null; then
    fs_kind="loop ext4 8 MiB"
  else
    echo "SKIP: cannot mount a tmpfs or a loop device here (needs root)"
    exit 77
  fi
fi
data=$mnt/data
echo "data dir $data on $fs_kind"

start_coordinator() {  # start_coordinator NAME DATA_DIR FLAGS... ; sets $port and $cpid
  rm -f "$work/$1.ports"
  "$BIN/vsdm-coordinator" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --data-dir "$2" --port-file "$work/$1.ports" \
    "${@:3}" > "$work/$1.log" 2>&1 &
  cpid=$!
  pids+=("$cpid")
  for _ in $(seq 100); do [ -s "$work/$1.ports" ] && break; sleep 0.1; done
  port=$(awk '/grpc/ {print $2}' "$work/$1.ports" 2> /dev/null || true)
  mport=$(awk '/metrics/ {print $2}' "$work/$1.ports" 2> /dev/null || true)
  [ -n "$port" ] || { cat "$work/$1.log"; echo "FAIL: coordinator $1 did not start"; exit 1; }
}
ctl() { "$BIN/vsdmctl" --coordinator "127.0.0.1:$port" "$@"; }
store_writable() {  # the vsdm_store_writable gauge of the coordinator started last
  python3 -c 'import sys, urllib.request
for line in urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode().splitlines():
    if line.startswith("vsdm_store_writable "): print(int(float(line.split()[1])))' "$mport"
}
health_is() {  # health_is ADDR WANT: vsdmctl health at ADDR prints WANT
  "$BIN/vsdmctl" --coordinator "$1" health > "$work/health.txt" 2>&1 || true
  grep -qw "$2" "$work/health.txt"
}
wait_health() {  # wait_health ADDR WANT SECONDS: seconds until it did (fails after SECONDS)
  local start now
  start=$(date +%s.%N)
  for _ in $(seq $(($3 * 10))); do
    if health_is "$1" "$2"; then
      now=$(date +%s.%N)
      awk -v a="$start" -v b="$now" 'BEGIN {printf "%.1f", b - a}'
      return 0
    fi
    sleep 0.1
  done
  cat "$work/health.txt" >&2
  echo "FAIL: health at $1 not $2 within $3 s" >&2
  return 1
}
: > "$work/acked"    # request-id job-id, one line per acknowledged submit
: > "$work/refused"  # request-id, one line per refused submit
submit() {  # submit REQUEST_ID: records the outcome; returns vsdmctl's exit code
  local rc=0
  ctl submit -f "$SRC/examples/spiral.yaml" --request-id "$1" > "$work/submit.txt" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then
    echo "$1 $(awk '{print $1}' "$work/submit.txt")" >> "$work/acked"
  else
    if [ "$rc" != 3 ] || ! grep -q "not submitted; retry" "$work/submit.txt"; then
      cat "$work/submit.txt"
      echo "FAIL: a submit on a full disk must be refused UNAVAILABLE (exit 3), got exit $rc"
      exit 1
    fi
    echo "$1" >> "$work/refused"
  fi
  return "$rc"
}

hport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_coordinator c1 "$data" --health-listen "127.0.0.1:$hport"
c1=$cpid
wait_health "127.0.0.1:$port" SERVING 5 > /dev/null
wait_health "127.0.0.1:$hport" SERVING 5 > /dev/null

# --- H8: a second coordinator on the same data dir is refused, naming the first.
rc=0
"$BIN/vsdm-coordinator" --listen 127.0.0.1:0 --metrics-listen "" --data-dir "$data" > "$work/second.log" 2>&1 || rc=$?
grep -q "data dir $data is in use by another vsdm-coordinator (pid $c1, started .*); refusing to start" \
  "$work/second.log" && [ "$rc" = 2 ] || { cat "$work/second.log"; echo "FAIL: second coordinator: exit $rc"; exit 1; }
echo "ok: a second coordinator on the data dir exits 2: $(cat "$work/second.log")"

# --- Fill the filesystem while submitting: a filler grows 64 KiB every 50 ms until ENOSPC.
for i in $(seq 10); do submit "r$i" || { echo "FAIL: submit r$i before the disk filled"; exit 1; }; done
(while dd if=/dev/zero bs=64k count=1 2> /dev/null >> "$mnt/filler"; do sleep 0.05; done) &
filler=$!
pids+=("$filler")
i=10
fails=0
while [ "$fails" -lt 5 ] && [ "$i" -lt 400 ]; do
  i=$((i + 1))
  if submit "r$i"; then fails=0; else fails=$((fails + 1)); fi
done
wait "$filler" || true
dd if=/dev/zero of="$mnt/filler2" bs=4k 2> /dev/null || true  # the last scraps
[ "$fails" -ge 5 ] || { df "$mnt"; echo "FAIL: submits kept succeeding on a full disk"; exit 1; }
for _ in $(seq 5); do  # full for good now: every submit is refused
  i=$((i + 1))
  ! submit "r$i" || { echo "FAIL: submit r$i acknowledged on a full filesystem"; exit 1; }
done
echo "ok: disk full after $(wc -l < "$work/acked") acknowledged submits; $(wc -l < "$work/refused") refused, each UNAVAILABLE (exit 3)"
df -k "$mnt" | tail -1
not_serving=$(wait_health "127.0.0.1:$port" NOT_SERVING 5)
wait_health "127.0.0.1:$hport" NOT_SERVING 5 > /dev/null
echo "ok: health NOT_SERVING while full, on the main port and on --health-listen (within ${not_serving} s of the last refused submit)"
[ "$(store_writable)" = 0 ] || { echo "FAIL: vsdm_store_writable is $(store_writable) while the disk is full"; exit 1; }
echo "ok: /metrics vsdm_store_writable 0 while full"
grep "job store cannot write" "$work/c1.log" || { cat "$work/c1.log"; echo "FAIL: no log line"; exit 1; }

# --- Space returns: health recovers by itself (the probe), submits work again.
rm -f "$mnt/filler" "$mnt/filler2"
recovered=$(wait_health "127.0.0.1:$port" SERVING 5)
wait_health "127.0.0.1:$hport" SERVING 5 > /dev/null
echo "ok: health SERVING again ${recovered} s after the filler was deleted, with nothing else writing"
[ "$(store_writable)" = 1 ] || { echo "FAIL: vsdm_store_writable is $(store_writable) once space returned"; exit 1; }
grep "job store writable again" "$work/c1.log" || { cat "$work/c1.log"; echo "FAIL: no log line"; exit 1; }
first_refused=$(head -1 "$work/refused")
submit "$first_refused" || { echo "FAIL: the retry of refused $first_refused"; exit 1; }
for n in $(seq 5); do submit "after$n" || { echo "FAIL: submit after$n once space returned"; exit 1; }; done
# An acknowledged request id submitted again is the same job (nothing was half-stored).
read -r rid jid < "$work/acked"
again=$(ctl submit -f "$SRC/examples/spiral.yaml" --request-id "$rid" | awk '{print $1}')
[ "$again" = "$jid" ] || { echo "FAIL: request id $rid gave $again, first $jid"; exit 1; }
echo "ok: submits acknowledged again; the retried request id $first_refused went through, $rid is still $jid"

# --- kill -9 and restart on the same data dir: every acknowledged submit is there, only those.
kill -9 "$c1"
wait "$c1" 2> /dev/null || true
start_coordinator c2 "$data"
acked=$(wc -l < "$work/acked")
refused=$(wc -l < "$work/refused")
ctl list > "$work/list.txt"
grep -o '^job-[0-9]*' "$work/list.txt" | sort > "$work/present"
awk '{print $2}' "$work/acked" | sort > "$work/want"
present=$(wc -l < "$work/present")
diff "$work/want" "$work/present" > /dev/null || {
  diff "$work/want" "$work/present" || true
  echo "FAIL: the jobs after the restart are not the acknowledged ones"
  exit 1
}
grep -q "($acked jobs recovered)" "$work/c2.log" || { cat "$work/c2.log"; echo "FAIL: recovered count"; exit 1; }
echo "ok: after kill -9 and restart all $acked acknowledged jobs are present ($present listed), none lost, none extra"

# --- Online backup of the running coordinator, restored into a fresh data dir.
"$BIN/vsdm-coordinator" backup --data-dir "$data" --out "$work/backup.db" > "$work/backup.txt"
cat "$work/backup.txt"
grep -q ": $acked jobs, " "$work/backup.txt" || { echo "FAIL: backup job count"; exit 1; }
mkdir -p "$work/restored"
cp "$work/backup.db" "$work/restored/vsdm.db"
c2port=$port
start_coordinator c3 "$work/restored"
ctl list | grep -o '^job-[0-9]*' | sort > "$work/restored.txt"
diff "$work/want" "$work/restored.txt" > /dev/null || { echo "FAIL: the restored copy's jobs differ"; exit 1; }
echo "ok: a coordinator on the restored backup lists the same $acked jobs"
port=$c2port
health_is "127.0.0.1:$port" SERVING || { echo "FAIL: the backup disturbed the running coordinator"; exit 1; }

wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
echo "disk full ($fs_kind): acknowledged $acked, refused $refused (all UNAVAILABLE), present after kill -9 + restart" \
  "$present, lost 0; NOT_SERVING within ${not_serving} s of the last refused submit, SERVING ${recovered} s after space returned;" \
  "wall ${wall} s"
echo "PASS"
