#!/usr/bin/env python3
"""The Python client end to end, against a running cluster (`vsdmctl local up --workers 3`):
submits examples/spiral.yaml, watches it with progress, downloads its artifacts, loads the model
and draws 1000 samples; then the same for a 4-member sweep (train.lr x model.hidden) and its
summary table.

usage: PYTHONPATH=python /usr/bin/python3 examples/python_client.py [--rounds N] [--sweep-rounds M] [--out DIR]
(--rounds 0 keeps the spec's 100 rounds.)
"""
import argparse
import pathlib
import time

import numpy as np

import vsdm

SPEC = pathlib.Path(__file__).with_name("spiral.yaml")


def one_job(c: vsdm.Client, rounds: int, out: pathlib.Path) -> None:
    t0 = time.monotonic()
    job = c.submit(SPEC, overrides={"train.rounds": rounds} if rounds else None)
    print("submitted:", vsdm.job_summary(job))
    done = c.wait(job.job_id, progress=True)  # the rounds on stderr; JobFailed unless SUCCEEDED
    m = done.progress.metrics
    print(f"{done.job_id} SUCCEEDED in {time.monotonic() - t0:.0f} s: energy distance {m['energy_distance']:.4f} "
          f"(data floor {m['energy_distance_floor']:.4f})")
    for p in c.artifacts(done.job_id, out / done.job_id):
        print(f"  {p} ({p.stat().st_size} bytes)")
    x = c.load_model(done.job_id).sample(1000).numpy()
    print(f"model.sample(1000): shape {x.shape}, finite {np.isfinite(x).all()}, "
          f"std x {x[:, 0].std():.2f}, std y {x[:, 1].std():.2f} (the data's y axis is stretched 8x)")


def sweep(c: vsdm.Client, rounds: int, out: pathlib.Path) -> None:
    t0 = time.monotonic()
    s = c.submit_sweep(SPEC, {"train.lr": [1e-3, 3e-4], "model.hidden": [128, 256]},
                       overrides={"train.rounds": rounds, "sample.n": 2000})
    print(f"{s.group_id}: {len(s.jobs)} jobs in one request")
    for j in s.jobs:
        print(f"  {j.job_id}  {' '.join(j.overrides)}")
    for j in s.jobs:
        c.wait(j.job_id, progress=True)
    summary = c.summary(s.group_id)
    print(vsdm.format_summary(summary), end="")
    print(f"sweep done in {time.monotonic() - t0:.0f} s")
    best = summary.best
    x = c.load_model(best.job_id).sample(1000).numpy()
    c.artifacts(best.job_id, out / best.job_id)
    print(f"best member {best.job_id}: model.sample(1000) shape {x.shape}; artifacts in {out / best.job_id}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=0, help="rounds of the single job (0: the spec's)")
    ap.add_argument("--sweep-rounds", type=int, default=30, help="rounds of each sweep member")
    ap.add_argument("--out", default="out/python-client", help="where the artifacts go")
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    with vsdm.Client() as c:
        print(f"coordinator {c.address}")
        one_job(c, a.rounds, out)
        sweep(c, a.sweep_rounds, out)


if __name__ == "__main__":
    main()
