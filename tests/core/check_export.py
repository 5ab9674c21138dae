#!/usr/bin/env python3
"""Loads DIR/model.pt with torch.jit.load and checks its score on DIR/x.npy, DIR/t.npy against
DIR/want.npy (computed in C++). Exit 0 on agreement."""
import sys
import numpy as np
import torch

d = sys.argv[1]
m = torch.jit.load(f"{d}/model.pt")
x = torch.from_numpy(np.load(f"{d}/x.npy"))
t = torch.from_numpy(np.load(f"{d}/t.npy"))
want = np.load(f"{d}/want.npy")
got = m(x, t).detach().numpy()
err = np.abs(got - want).max()
s = m.sample(32, 10)
print(f"python torch {torch.__version__}: max|score - C++| = {err:.2e}; A = {m.A.tolist()}; sample {tuple(s.shape)}")
ok = err < 1e-3 * (1 + np.abs(want).max()) and tuple(s.shape) == (32, 2) and bool(torch.isfinite(s).all())
sys.exit(0 if ok else 1)
