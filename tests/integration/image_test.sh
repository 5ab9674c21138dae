#!/usr/bin/env bash
# The image path end to end with the real vsdm-train binary (budget: about 3 minutes):
#  1. bad image data is refused before anything is written: exit 2, the message names
#     problem.dataset and the file (a truncated IDX file, an int64 .npy, mixed PNG sizes), and a
#     unet on a point set is refused naming model.arch;
#  2. examples/digits.yaml through 2 trainers + the variational rank (real Gloo): the feature net
#     it trains reaches 90 %, FD is clearly better than the Gaussian baseline's, the class
#     histogram is near uniform, samples are not copies of training images, A is a per-pixel
#     vector above the PD floor, samples.npy is [n, 1, 8, 8] in [0, 1], and model.pt loads in
#     Python: sample(16) gives [16, 1, 8, 8] images in [0, 1] and forward keeps the image shape.
# usage: image_test.sh PATH/TO/vsdm-train SOURCE_DIR
set -euo pipefail
BIN=$1; SRC=$2
PY=/usr/bin/python3
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

# 1. refusals
$PY - "$work" <<'PY'
import gzip, struct, sys, zlib
import numpy as np
d = sys.argv[1]
with gzip.open(f"{d}/short-images-idx3-ubyte.gz", "wb") as f:
    f.write(struct.pack(">IIII", 0x803, 10, 28, 28) + bytes(784 * 3))
np.save(f"{d}/ints.npy", np.zeros((4, 8, 8), dtype=np.int64))
import os
os.makedirs(f"{d}/pngs")
def png(path, w, h):
    raw = b"".join(b"\x00" + bytes(w) for _ in range(h))
    chunk = lambda t, b: struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xFFFFFFFF)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
png(f"{d}/pngs/a.png", 8, 8)
png(f"{d}/pngs/b.png", 6, 8)
PY
REFUSE_SPEC="$SRC/examples/digits.yaml"
source "$SRC/tests/integration/refuse.sh"
refuse "problem.dataset: $work/short-images-idx3-ubyte.gz: truncated" --set "problem.dataset=images:$work/short-images-idx3-ubyte.gz"
refuse "problem.dataset: $work/ints.npy" --set "problem.dataset=images:$work/ints.npy"
refuse "mixed sizes" --set "problem.dataset=images:$work/pngs"
refuse "model.arch: unet needs an image dataset" --set problem.dataset=spiral
echo "ok: refusals"

# 2. digits, distributed
VSDM_TRAIN=$BIN VSDM_THREADS=1 bash "$SRC/scripts/run-distributed.sh" "$SRC/examples/digits.yaml" "$work/dist" --quiet \
  --cache-dir "$work/cache"
$PY - "$work/dist" <<'PY'
import json, sys
import numpy as np, torch
d = sys.argv[1]
m = json.load(open(f"{d}/metrics.json"))
q = m["quality"]
print(f"digits: FD {q['fd']:.2f} (floor {q['fd_floor']:.2f}, Gaussian {q['fd_gaussian']:.2f}, blurred {q['fd_blur']:.2f}); "
      f"confident {q['samples']['confident_fraction']:.2f} (real {q['test']['confident_fraction']:.2f}); "
      f"class TV {q['samples']['tv_from_uniform']:.3f}; memorisation ratio {q['memorisation_ratio']:.2f}; "
      f"classifier {m['classifier']['test_accuracy']:.3f}; wall {m['wall_seconds']:.0f}s (eval {m['eval_seconds']:.0f}s)")
assert m["classifier"]["test_accuracy"] >= 0.9, m["classifier"]
assert q["fd"] < 0.8 * q["fd_gaussian"], "FD not clearly better than the Gaussian baseline"
assert q["fd_floor"] < q["fd"], "FD below its floor: the figures are inconsistent"
assert q["samples"]["tv_from_uniform"] < 0.3, q["samples"]
assert q["memorisation_ratio"] > 0.8, q["memorisation_ratio"]
a = np.array(m["a"])
assert a.shape == (64,) and np.all(1 - 2 * a >= m["spec"]["variational"]["d_min"] - 1e-9) and np.abs(a).max() > 1e-3, a
assert sorted(s["steps"] for s in m["steps_sweep"]) == [10, 20, 50, 100], m["steps_sweep"]
assert m["distributed"]["trainers"] == 2 and m["distributed"]["async"]
x = np.load(f"{d}/samples.npy")
assert x.dtype == np.float32 and x.shape == (500, 1, 8, 8) and x.min() >= 0 and x.max() <= 1, (x.dtype, x.shape)
mod = torch.jit.load(f"{d}/model.pt")
s = mod.sample(16)
assert tuple(s.shape) == (16, 1, 8, 8) and float(s.min()) >= 0 and float(s.max()) <= 1, s.shape
y = mod(torch.randn(4, 1, 8, 8), torch.full([4], 0.5))
assert tuple(y.shape) == (4, 1, 8, 8) and bool(torch.isfinite(y).all())
print(f"python torch {torch.__version__}: sample(16) {tuple(s.shape)} in [0, 1]; score keeps the image shape")
import os
assert os.path.getsize(f"{d}/samples.png") > 10000
print("ok: digits")
PY
