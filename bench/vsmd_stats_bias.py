#!/usr/bin/env python3
"""Bias of the VSMD variational statistics from the integrator of the backward trajectories.

Gaussian data x0 ~ N(0, s2) with v0 ~ N(0, 1) has an exact velocity score at every t, so the
round's minimiser c* (core/momentum.cc's objective, a = a(c)) of statistics simulated with that
score should sit at the current c (= 0 here) up to Monte-Carlo noise. Prints c* for
Euler-Maruyama and stochastic Heun at N steps: EM's O(h) bias is what moved c in the runs
(Note [Stochastic Heun for the VSMD statistics] in core/momentum.h).
usage: python3 bench/vsmd_stats_bias.py   (numpy only; a few seconds)"""
import numpy as np

BETA, GAM, U, TMIN = 10.0, 2.0, 1.0, 1e-3


def a_of(c):
    return (1 - GAM**2 * (1 - 2 * c) ** 2 / (4 * U)) / (2 * GAM)


def expm(m):  # scaling and squaring with a Taylor series; plenty for 4x4 at these norms
    a = m / 2**10
    e, t = np.eye(len(m)), np.eye(len(m))
    for k in range(1, 20):
        t = t @ a / k
        e = e + t
    for _ in range(10):
        e = e @ e
    return e


def kernel(c, t):
    a = a_of(c)
    f = 0.5 * BETA * np.array([[0, 1.0], [-(1 - 2 * GAM * a), -GAM * (1 - 2 * c)]])
    p = np.zeros((4, 4))
    p[:2, :2], p[2:, 2:], p[1, 3] = f * t, -(f * t).T, GAM * BETA * t
    e = expm(p)
    m = e[:2, :2]
    s = e[:2, 2:] @ m.T
    return m, 0.5 * (s + s.T)


def c_star(s2, n_steps, heun, c0=0.0, k=8000, seed=1):
    rng = np.random.default_rng(seed)
    a, g2 = a_of(c0), GAM * BETA
    g = np.sqrt(g2)
    ts = TMIN + np.arange(n_steps + 1) * (1 - TMIN) / n_steps
    h = (1 - TMIN) / n_steps
    prec = []
    for t in ts:
        m, s = kernel(c0, t)
        prec.append(np.linalg.inv(m @ np.diag([s2, 1.0]) @ m.T + s))
    z = rng.multivariate_normal([0, 0], kernel(c0, 1.0)[1], size=k)  # adaptive prior N(0, Sigma_T)

    def drift(z, i):
        sv = -(z @ prec[i].T)[:, 1]
        x, v = z[:, 0], z[:, 1]
        return np.stack([0.5 * BETA * v, 0.5 * BETA * (-x - GAM * v + 2 * GAM * (a * x + c0 * v) - 2 * GAM * sv)], 1), sv

    sxx, r, sb, n = np.zeros((2, 2)), np.zeros(2), 0.0, 0
    for i in range(n_steps, 0, -1):
        f0, sv = drift(z, i)
        x, v = z[:, 0], z[:, 1]
        w = np.stack([x, v], 1)
        sxx += g2 * w.T @ w
        r += g * ((g * (sv - (a * x + c0 * v)))[:, None] * w).sum(0)
        sb += g2 * k
        n += k
        dw = np.zeros_like(z)
        dw[:, 1] = np.sqrt(g2 * h) * rng.standard_normal(k)
        if heun:
            z = z - 0.5 * h * (f0 + drift(z - h * f0 + dw, i - 1)[0]) + dw
        else:
            z = z - h * f0 + dw
    sxx, r, sb = sxx * h / n, r * h / n, sb * h / n
    cs = np.linspace(-2, 0.475, 20001)
    aa = a_of(cs)
    loss = 0.5 * (aa * aa * sxx[0, 0] + 2 * aa * cs * sxx[0, 1] + cs * cs * sxx[1, 1]) + aa * r[0] + cs * r[1] + sb * cs
    return cs[loss.argmin()]


if __name__ == "__main__":
    print("round minimiser c* from c = 0 with the exact score (should be ~0; MC noise ~0.003)")
    print(f"{'var x0':>8} {'EM N=100':>10} {'Heun N=100':>11} {'EM N=1600':>10}")
    for s2 in (1.0, 5.0, 300.0):
        print(f"{s2:8.0f} {c_star(s2, 100, False):10.4f} {c_star(s2, 100, True):11.4f} "
              f"{c_star(s2, 1600, False, k=2000):10.4f}")
