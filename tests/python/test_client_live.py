"""The Python client against a real local cluster (`vsdmctl local up --workers 3`, 3 slots: one
job runs at a time). Run through the wrapper, which starts and stops the cluster:

    bash tests/python/client_live_test.sh BUILD/bin SOURCE_DIR

It sets VSDM_HOME (the cluster's state dir: the client finds the coordinator and its admin token
there, as vsdmctl does), VSDM_BIN (vsdmctl, to cross-check the sweep table) and VSDM_SRC.
Without them every test fails, saying so: this test is never skipped.

Budget (2 cores): the main job (spiral, 6 rounds, 1000 samples) ~1 min while the sweep (2x2
members of 4 short rounds) queues behind it, then the sweep ~2 min; the rest takes seconds.
Timings are printed at the end.
"""

import glob
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

import vsdm
from vsdm.v1 import job_pb2

SRC = pathlib.Path(os.environ.get("VSDM_SRC") or pathlib.Path(__file__).resolve().parents[2])
SPIRAL = SRC / "examples" / "spiral.yaml"
MAIN_OVERRIDES = {"train.rounds": 6, "sample.n": 1000}
# Each member: 4 rounds of 25 or 50 steps and 500 samples (the base spec has 100 x 100).
SWEEP_BASE = {"train.rounds": 4, "sample.n": 500}
SWEEP_GRID = {"train.lr": [1e-3, 3e-4], "train.steps_per_round": [25, 50]}
PAGING_JOBS = 120
# 3 trainers + the variational rank need 4 slots; the cluster has 3, so these only ever queue
# ("never fits", which does not hold the queue for the jobs behind them).
NEVER_FITS = {"train.rounds": 2, "resources.trainers": 3}

TIMINGS = {}  # phase -> seconds, printed by tearDownClass


class _Timer:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        TIMINGS[self.name] = time.monotonic() - self.t0


def _log(msg):
    print(f"[live] {msg}", file=sys.stderr, flush=True)


class FileLines(threading.Thread):
    """Polls the job's rank log files on the agents' disk (the local cluster shares this machine)
    every 20 ms and records when each whole line first appeared (rank, index) -> monotonic time."""

    def __init__(self, logs_dir):
        super().__init__(daemon=True)
        self.logs_dir = logs_dir
        self.seen = {}
        self.preexisting = set()  # lines already there on the first pass: their lag is unknown
        self.stop = threading.Event()

    def run(self):
        first = True
        while not self.stop.is_set():
            now = time.monotonic()
            for path in glob.glob(os.path.join(self.logs_dir, "attempt-1-rank-*.log")):
                rank = int(re.search(r"rank-(\d+)\.log$", path).group(1))
                with open(path, "rb") as f:
                    data = f.read()
                for i, _ in enumerate(data.split(b"\n")[:-1]):
                    if (rank, i) not in self.seen:
                        self.seen[(rank, i)] = now
                        if first:
                            self.preexisting.add((rank, i))
            first = False
            time.sleep(0.02)

    def lines(self, rank):
        path = os.path.join(self.logs_dir, f"attempt-1-rank-{rank}.log")
        with open(path, "rb") as f:
            return [l.decode("utf-8", "replace") for l in f.read().split(b"\n")[:-1]]


class LiveClusterTest(unittest.TestCase):
    client = None
    main_job = None
    sweep = None

    @classmethod
    def setUpClass(cls):
        missing = [v for v in ("VSDM_BIN", "VSDM_HOME") if not os.environ.get(v)]
        if missing:
            raise AssertionError(
                f"{' and '.join(missing)} unset: this test needs a running local cluster; run "
                "`bash tests/python/client_live_test.sh BUILD_DIR/bin SOURCE_DIR`, which starts one")
        cls.bin = pathlib.Path(os.environ["VSDM_BIN"])
        cls.client = vsdm.Client()
        # Submitted at once so the cluster never idles: the sweep's members queue behind the job.
        cls.main_submitted = time.monotonic()
        cls.main_job = cls.client.submit(str(SPIRAL), overrides=MAIN_OVERRIDES).job_id
        with _Timer("submit sweep (4 members)"):
            cls.sweep = cls.client.submit_sweep(str(SPIRAL), SWEEP_GRID, overrides=SWEEP_BASE,
                                                request_id=f"live-sweep-{uuid.uuid4().hex}")
        cls.sweep_submitted = time.monotonic()
        _log(f"submitted {cls.main_job} and sweep {cls.sweep.group_id}: "
             f"{' '.join(j.job_id for j in cls.sweep.jobs)}")

    @classmethod
    def tearDownClass(cls):
        if cls.client is not None:
            cls.client.close()
        if TIMINGS:
            print("\ntimings:")
            for name, secs in TIMINGS.items():
                print(f"  {name:<48} {secs:7.2f} s")

    def test_1_finds_the_local_cluster_like_vsdmctl(self):
        c = self.client
        self.assertEqual(c.local_state_dir, pathlib.Path(os.environ["VSDM_HOME"]))
        self.assertTrue(c._metadata, "the local cluster's admin token was not picked up")
        workers = c.workers()
        self.assertEqual(len(workers), 3, [w.worker_id for w in workers])
        self.assertTrue(all(w.state == "alive" for w in workers))
        with vsdm.Client(token="not-a-token") as bad:
            with self.assertRaises(vsdm.Unauthenticated):
                bad.get(self.main_job)
        with self.assertRaises(vsdm.NotFound):
            c.get("job-99999999")

    def test_2_invalid_argument_names_the_field(self):
        with self.assertRaises(vsdm.InvalidArgument) as cm:
            self.client.submit(str(SPIRAL), overrides={"train.lr": -1})
        self.assertEqual(cm.exception.field, "train.lr", cm.exception.message)  # .path: "spec.train.lr"
        _log(f"refused: {cm.exception.message}")
        with self.assertRaises(vsdm.InvalidArgument) as cm:
            self.client.submit_sweep(str(SPIRAL), {"train.lr": [1e-3, -1]})
        self.assertEqual(cm.exception.field, "members[1].train.lr", cm.exception.message)
        _log(f"refused: {cm.exception.message}")
        with self.assertRaises(vsdm.SpecError) as cm:  # refused before sending
            self.client.submit(str(SPIRAL), overrides={"train.lrr": 1})
        self.assertEqual(cm.exception.field, "train.lrr")

    def test_3_watch_and_follow_logs_to_success(self):
        job = self.main_job
        files = FileLines(str(pathlib.Path(os.environ["VSDM_HOME"]) / "work" / "jobs" / job / "logs"))
        files.start()
        received = []  # (monotonic time, LogLine)
        follow_error = []

        def follow():
            try:
                for line in self.client.logs(job, follow=True):
                    received.append((time.monotonic(), line))
            except Exception as e:  # reported by the main thread
                follow_error.append(e)

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        events, arrival = [], {}
        for ev in self.client.watch(job, progress=True, timeout=300):
            events.append(ev)
            arrival.setdefault(ev.kind, time.monotonic())
        TIMINGS["main job: submit to SUCCEEDED (6 rounds)"] = time.monotonic() - self.main_submitted
        follower.join(timeout=30)
        time.sleep(0.1)
        files.stop.set()
        files.join()
        self.assertFalse(follower.is_alive(), "logs(follow=True) did not end after the job ended")
        self.assertFalse(follow_error, follow_error)

        kinds = [e.kind for e in events]
        self.assertEqual(kinds[0], "submitted")
        self.assertTrue({"scheduled", "running"} & set(kinds), kinds)
        rounds = sorted({e.round for e in events if e.kind == "progress"})
        self.assertGreaterEqual(len(rounds), 2, rounds)
        self.assertEqual(rounds[-1], 6, rounds)
        self.assertEqual((events[-1].kind, events[-1].state), ("succeeded", "SUCCEEDED"))
        self.assertEqual(self.client.get(job).state, job_pb2.JOB_STATE_SUCCEEDED)
        times = [e.time for e in events]
        self.assertEqual(times, sorted(times))
        seqs = [e.sequence for e in events if e.kind != "progress"]
        self.assertEqual(seqs, sorted(set(seqs)))

        # Every line of every rank's log, in order, and soon after it was written.
        ranks = sorted({r for r, _ in files.seen})
        self.assertEqual(len(ranks), 3, ranks)  # 2 trainers + the variational rank
        lags = []
        for rank in ranks:
            got = [(t, l.text) for t, l in received if l.rank == rank]
            self.assertEqual([text for _, text in got], files.lines(rank), f"rank {rank}")
            lags += [t - files.seen[(rank, i)] for i, (t, _) in enumerate(got)
                     if (rank, i) in files.seen and (rank, i) not in files.preexisting]
        self.assertTrue(all(l.attempt == 1 for _, l in received))
        self.assertEqual([l.text for _, l in received if l.rank == -1], ["--- attempt 1 ---"])
        # The job is RUNNING from its "scheduled" event (a "running" one, if any, comes later); the
        # ranks then start (the agent's next heartbeat, process and LibTorch start-up) before they
        # write a line, which the client should have within ~1 s (agent turn <= 0.5 s + our poll).
        running = arrival.get("scheduled", arrival.get("running"))
        first_received = min(t for t, l in received if l.rank >= 0)
        first_written = min(files.seen.values())
        self.assertTrue(lags, "no line was timed")
        med, p90, worst = statistics.median(lags), sorted(lags)[int(0.9 * (len(lags) - 1))], max(lags)
        print(f"\nlogs: {len(received)} lines of {len(ranks)} ranks; the first written {first_written - running:.2f} s "
              f"after the job was scheduled (rank start-up) and received {first_received - first_written:.2f} s later; "
              f"lag from the rank's file to the client: median {med:.2f} s, p90 {p90:.2f} s, max {worst:.2f} s "
              f"({len(lags)} lines timed)")
        TIMINGS["logs: scheduled -> first line written by a rank"] = first_written - running
        TIMINGS["logs: first line written -> received"] = first_received - first_written
        TIMINGS["logs: lag file -> client, median"] = med
        TIMINGS["logs: lag file -> client, max"] = worst
        self.assertLess(first_received - first_written, 3.0)
        self.assertLess(first_received - running, 60.0)
        self.assertLess(med, 2.0)
        self.assertLess(worst, 6.0)

    def test_4_artifacts_and_model(self):
        import numpy as np
        import torch

        job = self.main_job
        with tempfile.TemporaryDirectory() as d:
            with _Timer("artifacts download"):
                paths = self.client.artifacts(job, d)
            names = sorted(p.name for p in paths)
            for want in ("metrics.json", "model.pt", "samples.npy", "samples.png"):
                self.assertIn(want, names)
            self.assertEqual(sorted(os.listdir(d)), names)  # no temp files left
            x = np.load(os.path.join(d, "samples.npy"))
            self.assertEqual(x.shape, (1000, 2))
            self.assertTrue(np.isfinite(x).all())
        with _Timer("load_model + sample(1000)"):
            model = self.client.load_model(job)
            s = model.sample(1000)
        self.assertEqual(tuple(s.shape), (1000, 2))
        self.assertTrue(bool(torch.isfinite(s).all()))
        _log(f"model sample: mean {s.mean(0).tolist()}, std {s.std(0).tolist()}")

    def test_5_cancel_while_watching(self):
        job = self.client.submit(str(SPIRAL), overrides={"train.rounds": 6, "sample.n": 1000}).job_id
        with _Timer("cancel: submit, first event, cancel, watch to end"):
            first = None
            for ev in self.client.watch(job):
                first = ev
                break  # leaving the loop cancels the stream
            self.assertEqual(first.kind, "submitted")
            self.assertEqual(vsdm.state_name(self.client.cancel(job).state), "CANCELLED")
            events = list(self.client.watch(job, timeout=60))  # a final job's stream ends
        self.assertEqual((events[-1].kind, events[-1].state), ("cancelled", "CANCELLED"))
        self.assertEqual(vsdm.state_name(self.client.get(job).state), "CANCELLED")
        with self.assertRaises(vsdm.FailedPrecondition):
            self.client.cancel(job)
        with self.assertRaises(vsdm.JobNotSucceeded):
            self.client.artifacts(job, tempfile.gettempdir())
        with self.assertRaises(vsdm.JobFailed) as cm:
            self.client.wait(job, progress=False, timeout=30)
        self.assertEqual(cm.exception.state, "CANCELLED")

    def test_6_list_pages_over_many_jobs(self):
        tag = uuid.uuid4().hex[:8]
        with _Timer(f"paging: submit {PAGING_JOBS} queued jobs"):
            ids = [self.client.submit(str(SPIRAL), request_id=f"page-{tag}-{i}", overrides=NEVER_FITS).job_id
                   for i in range(PAGING_JOBS)]
        try:
            again = self.client.submit(str(SPIRAL), request_id=f"page-{tag}-7", overrides=NEVER_FITS)
            self.assertEqual(again.job_id, ids[7])  # idempotent
            with _Timer("paging: list(page_size=50) over every job"):
                jobs = list(self.client.list(page_size=50))
            listed = [j.job_id for j in jobs]
            submitted = [(j.submit_time.seconds, j.submit_time.nanos) for j in jobs]
            self.assertEqual(submitted, sorted(submitted, reverse=True), "not newest first")
            self.assertEqual(len(listed), len(set(listed)), "a job listed twice across pages")
            self.assertGreaterEqual(len(listed), PAGING_JOBS + 6)
            self.assertTrue(set(ids) <= set(listed))
            self.assertEqual(listed, sorted(listed, reverse=True), "not newest first")
            queued = {j.job_id for j in self.client.list(state="queued", page_size=50)}
            self.assertTrue(set(ids) <= queued)
        finally:
            with _Timer(f"paging: cancel {PAGING_JOBS} jobs"):
                for job_id in ids:
                    self.client.cancel(job_id)
        queued = {j.job_id for j in self.client.list(state="queued")}
        self.assertFalse(set(ids) & queued)

    def test_7_sweep_to_completion(self):
        c, sweep = self.client, self.sweep
        self.assertEqual(len(sweep.jobs), 4)
        self.assertEqual([list(j.overrides) for j in sweep.jobs], [
            ["train.lr=0.001", "train.steps_per_round=25"], ["train.lr=0.001", "train.steps_per_round=50"],
            ["train.lr=0.0003", "train.steps_per_round=25"], ["train.lr=0.0003", "train.steps_per_round=50"]])
        self.assertTrue(all(j.group_id == sweep.group_id for j in sweep.jobs))
        self.assertEqual([j.spec.train.steps_per_round for j in sweep.jobs], [25, 50, 25, 50])
        for j in sweep.jobs:
            with _Timer(f"sweep: waited for {j.job_id} ({j.spec.train.steps_per_round} steps/round)"):
                c.wait(j.job_id, progress=True, timeout=300)
        TIMINGS["sweep: submit to all 4 SUCCEEDED"] = time.monotonic() - self.sweep_submitted
        self.assertEqual([j.job_id for j in c.group(sweep.group_id)], [j.job_id for j in sweep.jobs])
        summary = c.summary(sweep.group_id)
        table = vsdm.format_summary(summary)
        print("\n" + table)
        self.assertEqual(summary.metric, "energy_distance")
        self.assertTrue(all(r.state == "SUCCEEDED" and r.value is not None for r in summary.rows), table)
        self.assertIsNotNone(summary.best)
        self.assertEqual(summary.best.value, min(r.value for r in summary.rows))
        # vsdmctl's table picks the same member.
        out = subprocess.run([str(self.bin / "vsdmctl"), "--state-dir", os.environ["VSDM_HOME"], "list", "--group",
                              sweep.group_id], capture_output=True, text=True, timeout=30, check=True).stdout
        self.assertIn(f"best: {summary.best.job_id} ", out, out)
        self.assertEqual(c.cancel_group(sweep.group_id), [])  # nothing left to cancel


if __name__ == "__main__":
    unittest.main()
