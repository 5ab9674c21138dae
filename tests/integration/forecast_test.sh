#!/usr/bin/env bash
# The forecasting path end to end with the real vsdm-train binary (budget: about 4 minutes):
#  1. bad CSVs are refused before anything is written: exit 2, the message names problem.dataset,
#     the file, the line and the column (a ragged row, a non-numeric cell, a NaN, too few rows for
#     context + horizon), and a forecast net on a point set is refused naming model.arch;
#  2. examples/var1-forecast.yaml at a reduced budget with variational.prior: conditional (the
#     sampler starts at the context's linear forecast) through 2 trainers + the variational rank
#     (real Gloo): the model's CRPS beats the Gaussian random walk's and comes within 15 % of the
#     true law's (the oracle), A_D is a full 4 x 4 matrix above the PD floor, the artifacts have
#     their shapes, test targets never overlap the training span, and model.pt loads in Python and
#     forecast() returns [n, S, H, D] paths.
# usage: forecast_test.sh PATH/TO/vsdm-train SOURCE_DIR
set -euo pipefail
BIN=$1; SRC=$2
PY=/usr/bin/python3
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

# 1. refusals
$PY - "$work" <<'PY'
import datetime, sys
d = sys.argv[1]
day = lambda i: (datetime.date(2020, 1, 1) + datetime.timedelta(days=i)).isoformat()
rows = ["date,a,b"] + [f"{day(i)},{i},{2 * i}" for i in range(200)]
open(f"{d}/ragged.csv", "w").write("\n".join(rows[:10] + ["2020-02-01,1"] + rows[10:]) + "\n")
bad = list(rows); bad[7] = f"{day(6)},abc,3"
open(f"{d}/text.csv", "w").write("\n".join(bad) + "\n")
nan = list(rows); nan[5] = f"{day(4)},nan,3"
open(f"{d}/nan.csv", "w").write("\n".join(nan) + "\n")
open(f"{d}/short.csv", "w").write("\n".join(rows[:20]) + "\n")
PY
REFUSE_SPEC="$SRC/examples/var1-forecast.yaml"
source "$SRC/tests/integration/refuse.sh"
refuse "problem.dataset: $work/ragged.csv: line 11" --set "problem.dataset=series:$work/ragged.csv"
refuse "problem.dataset: $work/text.csv: line 8" --set "problem.dataset=series:$work/text.csv"
refuse "problem.dataset: $work/nan.csv: line 6" --set "problem.dataset=series:$work/nan.csv"
refuse "problem.dataset: $work/short.csv" --set "problem.dataset=series:$work/short.csv"
refuse "model.arch: forecast needs a time series" --set problem.dataset=spiral
refuse "problem.test_start" --set "problem.dataset=weather" --set "problem.test_start=1999-01-01"
echo "ok: refusals"

# 2. var1, distributed, reduced budget
VSDM_TRAIN=$BIN VSDM_THREADS=1 bash "$SRC/scripts/run-distributed.sh" "$SRC/examples/var1-forecast.yaml" "$work/dist" \
  --quiet --set train.rounds=12 --set variational.prior=conditional
$PY - "$work/dist" <<'PY'
import json, sys
import numpy as np, torch
d = sys.argv[1]
m = json.load(open(f"{d}/metrics.json"))
f = m["forecast"]
print("var1 forecast (CRPS, CRPS-sum, energy CRPS): " + "; ".join(
    f"{k} {v['crps']:.4f} {v['crps_sum']:.4f} {v['energy_crps']:.4f}" for k, v in f.items()))
own = f["vsdm"]
assert own["crps"] < f["random_walk"]["crps"], "the model does not beat the Gaussian random walk"
assert own["energy_crps"] < f["random_walk"]["energy_crps"]
assert own["crps"] < 1.15 * f["oracle"]["crps"], ("model far from the oracle", own["crps"], f["oracle"]["crps"])
assert f["oracle"]["crps"] < f["random_walk"]["crps"] and f["oracle"]["crps"] <= 1.05 * f["var1"]["crps"]
A = np.array(m["A"])
assert A.shape == (4, 4) and np.abs(A - np.diag(np.diag(A))).max() > 1e-4, A
D = np.eye(4) - 2 * A
assert np.linalg.eigvalsh(0.5 * (D + D.T)).min() >= m["spec"]["variational"]["d_min"] - 1e-9
W, H, C = m["windows"], m["data"]["horizon"], m["data"]["context"]
fc, tg, cx = (np.load(f"{d}/{n}.npy") for n in ("forecasts", "targets", "contexts"))
assert fc.dtype == np.float32 and fc.shape == (W, 100, H, 4), fc.shape
assert tg.shape == (W, H, 4) and cx.shape == (W, C, 4), (tg.shape, cx.shape)
assert m["data"]["test_start_row"] + H <= m["data"]["rows"] and W >= 50
assert m["distributed"]["trainers"] == 2 and m["distributed"]["async"]
mod = torch.jit.load(f"{d}/model.pt")
torch.manual_seed(0)  # forecast() draws from the global generator: a fixed draw, not a flaky one
y = mod.forecast(torch.from_numpy(cx[:3]), torch.zeros(3, 0), 20, 20)
assert tuple(y.shape) == (3, 20, H, 4) and bool(torch.isfinite(y).all()), y.shape
# the exported model forecasts like the job did: its mean path is near the job's for window 0
err = float((y[0].mean(0) - torch.from_numpy(fc[0]).mean(0)).abs().mean())
assert err < 0.5, err
# the conditional prior travels with the export: its shift is a nonzero buffer forecast() adds
assert m["spec"]["variational"]["prior"] == "conditional"
assert float(mod.prior_shift.abs().max()) > 1e-3, "model.pt lost the conditional prior's shift"
print(f"python torch {torch.__version__}: forecast(3 contexts, 20 paths) {tuple(y.shape)}; mean-path gap {err:.3f}")
PY
[ -s "$work/dist/forecast.png" ] || { echo "FAIL: no forecast.png"; exit 1; }
echo "ok: var1 forecasting end to end"
