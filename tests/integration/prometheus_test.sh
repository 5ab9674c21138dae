#!/usr/bin/env bash
# Observability against a real Prometheus server (Debian's `prometheus`) on loopback, scraping a
# local cluster (coordinator + 3 agents) while a short job runs:
#  - promtool accepts the shipped alert rules and the local scrape config;
#  - through the HTTP query API: training steps rise, the job-state gauge moves to succeeded, and
#    trainer 0's round-time breakdown (compute + all-reduce + broadcast + wait-for-A) sums to
#    about its round time;
#  - after the job: broadcast bytes, ODE straightness, the attempt's start-up phases and the
#    checkpoint timestamp were exported with sensible values;
#  - every vsdm_ metric the Grafana dashboard and the alert rules use exists in the scrapes;
#  - the job board's round-time breakdown over the job, queried back from Prometheus, rendered
#    as a PNG (build/test-artifacts/round_time_breakdown.png) by vsdm-promfigure.
# usage: prometheus_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=$1; SRC=$2
PY=/usr/bin/python3
work=$(mktemp -d)
ctl() { "$BIN/vsdmctl" --state-dir "$work/state" "$@"; }
cleanup() { [ -n "${prom:-}" ] && kill "$prom" 2>/dev/null; ctl local down > /dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

promtool check rules "$SRC/deploy/prometheus/alerts.yml"
ctl local up --workers 3
sed "s#STATE_DIR#$work/state#" "$SRC/deploy/prometheus/local.yml" > "$work/prometheus.yml"
cp "$SRC/deploy/prometheus/alerts.yml" "$work/alerts.yml"
promtool check config "$work/prometheus.yml"
port=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$port" > "$work/prometheus.log" 2>&1 &
prom=$!
api() { curl -sf --get "http://127.0.0.1:$port/api/v1/$1" "${@:2}"; }
for _ in $(seq 100); do api query --data-urlencode 'query=up' > /dev/null 2>&1 && break; sleep 0.2; done
t_submit=$(date +%s)
job=$(ctl submit -f "$SRC/examples/spiral.yaml" --set train.rounds=15 --set sample.n=2000 | awk '{print $1}')
# Sample the running job through Prometheus a few times.
$PY - "$port" "$job" <<'PY'
import json, sys, time, urllib.parse, urllib.request
port, job = sys.argv[1], sys.argv[2]
def q(expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    r = json.load(urllib.request.urlopen(url))
    assert r["status"] == "success", r
    return [(s["metric"], float(s["value"][1])) for s in r["data"]["result"]]
steps, ratios = [], []
deadline = time.time() + 240
while time.time() < deadline and len(steps) < 4:
    up = q('up{job="vsdm"}')
    s = q(f'vsdm_train_steps_total{{job_id="{job}"}}')
    r = q(f'sum(vsdm_train_round_phase_seconds{{job_id="{job}"}}) / sum(vsdm_train_round_duration_seconds{{job_id="{job}"}})')
    if s and (not steps or s[0][1] > steps[-1]):
        steps.append(s[0][1])
        if r: ratios.append(r[0][1])
        print(f"steps {s[0][1]:.0f}  breakdown/round {r[0][1] if r else float('nan'):.3f}  targets up {sum(v for _, v in up):.0f}/{len(up)}")
    time.sleep(1)
assert len(steps) >= 3 and steps == sorted(steps) and steps[-1] > steps[0], steps
assert len(up) == 4 and all(v == 1 for _, v in up), up
assert ratios and all(0.85 <= x <= 1.05 for x in ratios), ratios
print("ok: steps rise, the round-time breakdown sums to the round time")
PY
ctl watch "$job" | tail -1
sleep 4  # a few more scrapes after the end
$PY - "$port" "$SRC" "$job" <<'PY'
import json, re, sys, time, urllib.parse, urllib.request
port, src, job = sys.argv[1], sys.argv[2], sys.argv[3]
def q(expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    return [(s["metric"], float(s["value"][1])) for s in json.load(urllib.request.urlopen(url))["data"]["result"]]
assert q('vsdm_jobs{state="succeeded"}')[0][1] == 1, q('vsdm_jobs')
assert q('max_over_time(vsdm_jobs{state="running"}[5m])')[0][1] == 1
def mx(name, extra=""):
    r = q(f'max_over_time({name}{{job_id="{job}"{extra}}}[10m])')
    assert r, f"{name} was never scraped for {job}"
    return r[0][1]
bb, st = mx("vsdm_train_broadcast_bytes_total"), mx("vsdm_job_ode_straightness")
rdv, ck = mx("vsdm_attempt_startup_seconds", ',phase="rendezvous"'), mx("vsdm_checkpoint_last_success_timestamp_seconds")
print(f"broadcast {bb:.0f} B, straightness {st:.3f}, rendezvous {rdv:.2f} s, last checkpoint {time.time() - ck:.0f} s ago")
assert bb > 10 * 4 * 1000, bb                # at least the EMA net (~100k floats) once a round
assert 1.0 <= st < 2.0, st                   # measured at the round-10 checkpoint
assert 0 < rdv < 60, rdv
assert 0 < time.time() - ck < 600, ck
names = set(json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/label/__name__/values"))["data"])
used = set()
for f in ("deploy/grafana/vsdm-dashboard.json", "deploy/prometheus/alerts.yml"):
    used |= set(re.findall(r"vsdm_[a-z0-9_]+", open(f"{src}/{f}").read()))
missing = sorted(n for n in used if n not in names)
print(f"{len(used)} metric names used by the dashboard and the alerts; scraped: {len(names)} names")
assert not missing, f"used but never scraped: {missing}"
print("ok: the job state moved to succeeded; every dashboard/alert metric exists")
PY
# The job board's key figure from what Prometheus stored: trainer 0's round-time breakdown.
figs=$BIN/../test-artifacts; mkdir -p "$figs"
range() { api query_range --data-urlencode "query=$1" --data-urlencode "start=$t_submit" \
            --data-urlencode "end=$(date +%s)" --data-urlencode "step=1"; }
range "vsdm_train_round_phase_seconds{job_id=\"$job\"}" > "$work/breakdown.json"
range "vsdm_train_round_duration_seconds{job_id=\"$job\"}" > "$work/round.json"
"$BIN/vsdm-promfigure" --in "$work/breakdown.json" --label phase --line "$work/round.json" \
  --line-name "round time" --ylabel s --out "$figs/round_time_breakdown.png" \
  --title "$job (spiral, 15 rounds, 2 trainers): round time by phase, trainer 0, from Prometheus"
$PY -c 'import sys; b = open(sys.argv[1], "rb").read(); assert b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) > 5000, len(b)' \
  "$figs/round_time_breakdown.png"
echo ok
