#!/usr/bin/env python3
"""The reference code's DSM step, eager PyTorch, for a side-by-side figure (a benchmark, not a test).

What the paper's public code runs per DSM iteration on the toy problems
(shared/spec/official-code-notes.md §2 and §5.2): 200 spiral points x 200 grid times = 40 000
pairs, the `toy` ToyPolicy net (hidden 256) called on x [B_x, B_t, 2] with t [B_t] (the time
branch runs on the B_t times and broadcasts), the policy target sqrt(beta) (-L^-T eps - A x_t),
F.mse_loss, AdamW (lr 1e-3, wd 0) with StepLR, and an EMA of the weights (torch_ema style, with
the num_updates warm-up). The same Debian LibTorch and BLAS as vsdm's C++ step, and the same
thread count (--threads), so the ratio measures the code, not the backend.

usage: reference_step.py [--threads N] [--steps 9] [--warmup 2] [--precision fp32|bf16] [--hidden 256]
Prints one line: `reference <precision>: median S s/step (P steps/s) over K steps [min .. max]`.
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_embedding(t, dim=128, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, hid):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hid, hid), nn.SiLU(), nn.Linear(hid, hid), nn.SiLU(),
                                 nn.Linear(hid, hid), nn.SiLU())

    def forward(self, x):
        return (x + self.net(x)) / math.sqrt(2.0)


class ToyPolicy(nn.Module):
    """models/toy_model/Toy.py: t-branch, x-branch with 3 residual blocks, head on their sum."""

    def __init__(self, data_dim=2, hid=256, time_embed_dim=128):
        super().__init__()
        self.time_embed_dim = time_embed_dim
        self.t_module = nn.Sequential(nn.Linear(time_embed_dim, hid), nn.SiLU(), nn.Linear(hid, hid))
        self.x_module = nn.Sequential(nn.Linear(data_dim, hid), ResBlock(hid), ResBlock(hid), ResBlock(hid))
        self.out_module = nn.Sequential(nn.Linear(hid, hid), nn.SiLU(), nn.Linear(hid, data_dim))

    def forward(self, x, t):
        # x [B_x, B_t, d], t [B_t] (grid index t * N): the time branch broadcasts over axis 0.
        t_out = self.t_module(timestep_embedding(t, self.time_embed_dim))
        x_out = self.x_module(x)
        return self.out_module(x_out + t_out)


class Ema:
    """torch_ema.ExponentialMovingAverage with use_num_updates."""

    def __init__(self, params, decay):
        self.decay = decay
        self.num_updates = 0
        self.params = list(params)
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self):
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for s, p in zip(self.shadow, self.params):
            s.sub_((1.0 - decay) * (s - p))


def spiral(n, y_scalar=8.0):
    """data.py Spiral: a noisy 2-D spiral, y stretched."""
    theta = torch.sqrt(torch.rand(n)) * 3 * math.pi
    r = 2 * theta + math.pi
    x = torch.stack([torch.cos(theta) * r, torch.sin(theta) * r], 1) / 3.0
    x = x + 0.1 * torch.randn(n, 2)
    return x * torch.tensor([1.0, y_scalar])


def kernel_tables(n=100, t0=1e-3, beta_min=0.1, beta_max=10.0):
    """M_k, L_k, L_k^-T and sqrt(beta_k) for A = 0 (the first stage): VP kernel, float32."""
    ts = torch.linspace(t0, 1.0, n + 1, dtype=torch.float64)
    beta = beta_min + ts * (beta_max - beta_min)
    integral = beta_min * ts + 0.5 * (beta_max - beta_min) * ts ** 2
    m = torch.exp(-0.5 * integral)
    s = torch.sqrt(1 - m ** 2)
    eye = torch.eye(2, dtype=torch.float64)
    M = m[:, None, None] * eye
    L = s[:, None, None] * eye
    Linv_t = (1 / s)[:, None, None] * eye
    return ts.float(), M.float(), L.float(), Linv_t.float(), beta.sqrt().float()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all cores)")
    ap.add_argument("--steps", type=int, default=9, help="timed steps (the median is reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    a = ap.parse_args()
    import os
    torch.set_num_threads(a.threads if a.threads > 0 else os.cpu_count())
    torch.manual_seed(0)
    net = ToyPolicy(hid=a.hidden)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1000, gamma=0.99)
    ema = Ema(net.parameters(), 0.99)
    ts, Ms, Ls, Linv_ts, sqrt_beta = kernel_tables()
    A = torch.zeros(2, 2)
    bx = bt = 200
    interval = 100

    def step():
        x0 = spiral(bx)                                     # [B_x, d]
        j = torch.randint(0, interval, (bt,))               # grid indices [B_t]
        eps = torch.randn(bx, bt, 2)
        M, L, Li = Ms[j], Ls[j], Linv_ts[j]                 # [B_t, d, d]
        xt = torch.einsum("tij,bj->bti", M, x0) + torch.einsum("tij,btj->bti", L, eps)
        label = -torch.einsum("tij,btj->bti", Li, eps)
        target = sqrt_beta[j][None, :, None] * (label - xt @ A.T)
        t_idx = ts[j] * interval
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            out = net(xt, t_idx)
        loss = F.mse_loss(out.float(), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        ema.update()
        return loss.item()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"reference {a.precision}: median {med:.3f} s/step ({1 / med:.3f} steps/s) over {a.steps} steps "
          f"[{min(times):.3f} .. {max(times):.3f}], threads {torch.get_num_threads()}", flush=True)


if __name__ == "__main__":
    main()
