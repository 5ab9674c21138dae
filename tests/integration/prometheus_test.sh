#!/usr/bin/env bash
# Observability against a real Prometheus server (Debian's `prometheus`) on loopback, scraping a
# local cluster (coordinator + 3 agents) while a short job runs:
#  - promtool accepts the shipped alert rules and the local scrape config;
#  - through the HTTP query API: training steps rise, the job-state gauge moves to succeeded, and
#    trainer 0's round-time breakdown (compute + all-reduce + broadcast + wait-for-A) sums to
#    about its round time;
#  - every vsdm_ metric the Grafana dashboard and the alert rules use exists in the scrapes.
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
sed -e 's/rounds: 100/rounds: 15/' -e 's/  n: 10000/  n: 2000/' "$SRC/examples/spiral.yaml" > "$work/spec.yaml"
job=$(ctl submit -f "$work/spec.yaml" | awk '{print $1}')
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
$PY - "$port" "$SRC" <<'PY'
import json, re, sys, urllib.parse, urllib.request
port, src = sys.argv[1], sys.argv[2]
def q(expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    return [(s["metric"], float(s["value"][1])) for s in json.load(urllib.request.urlopen(url))["data"]["result"]]
assert q('vsdm_jobs{state="succeeded"}')[0][1] == 1, q('vsdm_jobs')
assert q('max_over_time(vsdm_jobs{state="running"}[5m])')[0][1] == 1
names = set(json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/label/__name__/values"))["data"])
used = set()
for f in ("deploy/grafana/vsdm-dashboard.json", "deploy/prometheus/alerts.yml"):
    used |= set(re.findall(r"vsdm_[a-z0-9_]+", open(f"{src}/{f}").read()))
missing = sorted(n for n in used if n not in names)
print(f"{len(used)} metric names used by the dashboard and the alerts; scraped: {len(names)} names")
assert not missing, f"used but never scraped: {missing}"
print("ok: the job state moved to succeeded; every dashboard/alert metric exists")
PY
echo ok
