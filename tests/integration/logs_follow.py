#!/usr/bin/env python3
"""`vsdmctl logs -f` on a running job, against the ranks' log files it reads from afar.

usage: logs_follow.py BIN_DIR STATE_DIR JOB_ID

Runs `vsdmctl logs -f JOB` until it exits (the job has ended) while polling the job's rank log
files on the agents' disk (the local cluster: STATE_DIR/work/jobs/JOB/logs/) every 20 ms. Each
line the CLI prints is matched to the line in the file; its lag is when the CLI printed it minus
when it first appeared in the file. Asserts that every line of every rank's attempt-1 log was
printed, in order per rank, and that the lag is small (median < 2 s, max < 6 s: the agent
forwards every turn, <= 0.5 s, and the CLI polls every 0.5 s); prints the figures.
"""
import glob
import os
import re
import statistics
import subprocess
import sys
import threading
import time

bin_dir, state_dir, job = sys.argv[1:4]
logs_dir = os.path.join(state_dir, "work", "jobs", job, "logs")
seen = {}  # (rank, line index) -> first time it was in the file
stop = threading.Event()


def poll_files():
    while not stop.is_set():
        now = time.monotonic()
        for path in glob.glob(os.path.join(logs_dir, "attempt-1-rank-*.log")):
            rank = int(re.search(r"rank-(\d+)\.log$", path).group(1))
            with open(path, "rb") as f:
                data = f.read()
            for i, _ in enumerate(data.split(b"\n")[:-1]):  # whole lines only
                seen.setdefault((rank, i), now)
        time.sleep(0.02)


poller = threading.Thread(target=poll_files, daemon=True)
poller.start()
cli = subprocess.Popen([os.path.join(bin_dir, "vsdmctl"), "--state-dir", state_dir, "logs", "-f", job],
                       stdout=subprocess.PIPE, text=True)
printed = []  # (time, rank, text)
for line in cli.stdout:
    m = re.match(r"\[(?:rank|var) (\d+)\] (.*)$", line.rstrip("\n"))
    if m:
        printed.append((time.monotonic(), int(m.group(1)), m.group(2)))
rc = cli.wait()
time.sleep(0.1)
stop.set()
poller.join()
assert rc == 0, f"vsdmctl logs -f exited {rc}"

def first_difference(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


lags, missing = [], []
for path in sorted(glob.glob(os.path.join(logs_dir, "attempt-1-rank-*.log"))):
    rank = int(re.search(r"rank-(\d+)\.log$", path).group(1))
    with open(path) as f:
        lines = f.read().split("\n")[:-1]
    got = [(t, text) for t, r, text in printed if r == rank]
    texts = [text for _, text in got]
    if texts != lines:
        missing.append(f"rank {rank}: file has {len(lines)} lines, the CLI printed {len(texts)}; "
                       f"first difference at line {first_difference(lines, texts)}")
        continue
    lags += [t - seen[(rank, i)] for i, (t, _) in enumerate(got) if (rank, i) in seen]
assert not missing, "; ".join(missing)
assert lags, "no line was timed"
med, worst = statistics.median(lags), max(lags)
print(f"logs -f: {len(printed)} lines of {len(set(r for _, r, _ in printed))} ranks; "
      f"lag from the rank's file to the CLI: median {med:.2f} s, p90 {sorted(lags)[int(0.9 * (len(lags) - 1))]:.2f} s, "
      f"max {worst:.2f} s")
assert med < 2.0 and worst < 6.0, f"lag median {med:.2f} s / max {worst:.2f} s"
print("logs follow ok")
