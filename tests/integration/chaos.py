#!/usr/bin/env python3
"""Chaos test driver (issue 18, "Must show 2"); chaos_test.sh runs it. Python 3 stdlib only.

One spiral job on a local cluster with spare capacity takes CHAOS_FAULTS (default 20) kill -9
faults at seeded random moments across its trainer ranks, its variational rank, the agents that
host its ranks (restarted 2-5 s later with the same command line, as a supervisor would) and the
coordinator (restarted 2-5 s later on the same data dir and port). The last two faults land during
trainer 0's final evaluation: the agent hosting rank 0, then the coordinator (the two cases the
issue saw hang or fail). After each fault the driver waits until the job has recovered (RUNNING
again and its progress round past the round it had at the fault) and records the recovery time.

It then requires: the job SUCCEEDED; no coordinator restart cost an attempt; no training process
of the job is left running; quality within 10 % of a clean run of the same spec (energy distance;
see Note [quality slack]); median recovery < 15 s. It prints the fault table, the median and max
recovery time, the goodput (the job's own Progress.goodput_ratio and clean wall / chaos wall) and
the total cost. Any violation is listed and the exit status is 1; a job that stops recovering is
reported with its events, its ranks' logs and the processes still alive, and the run stops there.

usage: chaos.py BIN_DIR SOURCE_DIR WORK_DIR
env: CHAOS_FAULTS (20), CHAOS_SEED (random, printed), CHAOS_FAULT_TIMEOUT (90 s),
     CHAOS_ROUNDS (64), CHAOS_WORKERS (5), CHAOS_FINAL (agent,coordinator: the faults of the final
     evaluation, in order, counted in CHAOS_FAULTS; "" for none), CHAOS_KINDS (trainer,agent,
     variational,coordinator,trainer,agent: the kinds of the other faults, cycled), CHAOS_DEADLINE (840 s)
"""
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time

BIN, SRC, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
FAULTS = int(os.environ.get("CHAOS_FAULTS", "20"))
SEED = int(os.environ.get("CHAOS_SEED", str(random.SystemRandom().randrange(1 << 31))))
FAULT_TIMEOUT = float(os.environ.get("CHAOS_FAULT_TIMEOUT", "90"))
ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "64"))
WORKERS = int(os.environ.get("CHAOS_WORKERS", "5"))
# Cycled over the faults before the final ones: of 18, trainer 6, agent 6, variational 3, coordinator 3.
KINDS = [k for k in os.environ.get(
    "CHAOS_KINDS", "trainer,agent,variational,coordinator,trainer,agent").split(",") if k]
FINAL = [k for k in os.environ.get("CHAOS_FINAL", "agent,coordinator").split(",") if k]
TRAINERS = 2
# ~2-3 s a round on 2 busy cores (at 361d6f7: the clean run 213 s, the chaos run 349 s). Rounds
# are many and short because each fault needs the job to move past its round before the next one
# (a coordinator outage lets it run on 4-9 rounds, see COST); a checkpoint every round keeps the recovery
# time the system's own rather than recomputation; 2000 samples keep the final evaluation,
# which the last faults repeat, short (the energy distance's noise floor is then ~0.01).
# The round time the plan's COST assumes. On a faster machine a coordinator outage (11-17 s) runs
# the job on through many more rounds: in the CI run of 986e41d rounds of 30 steps took ~1 s, one
# outage used 19 rounds and only 13 of the 20 faults fitted. So calibrate() first measures this
# machine's round and sets steps_per_round (30..150) for rounds of about ROUND_S; the chaos and the
# clean run then share that spec.
ROUND_S = float(os.environ.get("CHAOS_ROUND_SECONDS", "2.5"))
STEPS = 30
SPEC_SETS = [f"train.rounds={ROUNDS}", f"train.steps_per_round={STEPS}", "train.checkpoint_every=1",
             "sample.n=2000", "resources.max_restarts=40", f"resources.trainers={TRAINERS}"]
T_START = time.monotonic()
DEADLINE = T_START + float(os.environ.get("CHAOS_DEADLINE", "840"))  # under ctest's 900 s
RUNNING, SUCCEEDED = "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"
FINAL_STATES = {SUCCEEDED, "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}


class Abort(Exception):
    """The job did not recover: the message says how; diagnostics were printed."""


def log(msg):
    print(f"[{time.monotonic() - T_START:6.1f}s] {msg}", flush=True)


class Cluster:
    """A `vsdmctl local up` cluster, its pids file, and the processes this driver restarted."""

    def __init__(self, state):
        self.state = state
        self.children = {}  # pid -> Popen of the processes this driver restarted (to reap them)

    def ctl(self, *args, timeout=15, check=False):
        try:
            r = subprocess.run([f"{BIN}/vsdmctl", "--state-dir", self.state, *args],
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            r = subprocess.CompletedProcess(args, 124, "", f"no answer within {timeout} s")
        if check and r.returncode != 0:
            raise Abort(f"vsdmctl {' '.join(args)}: rc {r.returncode}: {r.stderr.strip()}")
        return r

    def up(self, workers):
        r = self.ctl("local", "up", "--workers", str(workers), timeout=60, check=True)
        log(r.stdout.strip())
        with open(f"{self.state}/coordinator") as f:
            self.addr = f.read().strip()

    def down(self):
        self.ctl("local", "down", timeout=30)
        for p in self.children.values():
            p.poll()

    def pids(self):
        with open(f"{self.state}/pids") as f:
            return [int(x) for x in f.read().split()]

    def set_pid(self, index, pid):  # index 0: coordinator, w + 1: agent w (as `local up` writes it)
        pids = self.pids()
        pids[index] = pid
        tmp = f"{self.state}/pids.tmp"
        with open(tmp, "w") as f:
            f.write("".join(f"{p}\n" for p in pids))
        os.replace(tmp, f"{self.state}/pids")

    def submit(self, extra=()):
        args = ["submit", "-f", f"{SRC}/examples/spiral.yaml"]
        for s in SPEC_SETS + list(extra):
            args += ["--set", s]
        return self.ctl(*args, check=True).stdout.split()[0]

    def job(self, job):
        """The job as `vsdmctl get -o json` shows it, or None while the coordinator cannot answer."""
        r = self.ctl("get", job, "-o", "json", timeout=5)
        if r.returncode != 0:
            return None
        j = json.loads(r.stdout)
        p = j.get("progress", {})
        return {"state": j["state"], "round": int(p.get("round", 0)), "rounds": int(p.get("rounds", 0)),
                "steps_per_second": float(p.get("steps_per_second", 0)),
                "attempts": int(j.get("attempts", 0)), "goodput": float(p.get("goodput_ratio", 0)),
                "preemptions": int(j.get("preemptions", 0)), "message": j.get("message", "")}

    def workers(self):
        r = self.ctl("workers", "-o", "json", timeout=5)
        return json.loads(r.stdout).get("workers", []) if r.returncode == 0 else []

    def kill9(self, pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if pid in self.children:
            self.children.pop(pid).wait()

    def restart(self, index, argv, name):
        """Starts `argv` again as `local up` does (own session, stdin /dev/null, appending to its log)."""
        with open(f"{self.state}/logs/{name}.log", "ab") as out:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        self.children[p.pid] = p
        self.set_pid(index, p.pid)
        return p.pid


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode() for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def flag(argv, name):
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a[len(name) + 1:]
    return None


def train_procs(state, job):
    """[(pid, attempt, rank)] of every live vsdm-train of `job` under `state` (its --out is the
    job's dir, or an attempt dir in it)."""
    out_dir = f"{state}/work/jobs/{job}"
    procs = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        argv = cmdline(int(d))
        out = flag(argv, "--out") if argv and argv[0].endswith("vsdm-train") else None
        if out and (out == out_dir or out.startswith(out_dir + "/")):
            procs.append((int(d), int(flag(argv, "--attempt") or 0), int(flag(argv, "--rank") or -1)))
    return procs


def diagnose(c, job, why):
    """Prints what an operator would look at when the job is stuck, then raises Abort(why)."""
    log(f"FAILURE: {why}")
    print("---- vsdmctl get:", c.job(job))
    print("---- vsdmctl logs:\n" + c.ctl("logs", "--events", job).stdout)
    print("---- workers:", json.dumps(c.workers()))
    print("---- live vsdm-train (pid, attempt, rank):", train_procs(c.state, job))
    logs = f"{c.state}/work/jobs/{job}/logs"
    names = sorted(os.listdir(logs), key=lambda n: os.path.getmtime(f"{logs}/{n}")) if os.path.isdir(logs) else []
    for n in names[-4:]:
        print(f"---- tail {n}:")
        print(subprocess.run(["tail", "-8", f"{logs}/{n}"], capture_output=True, text=True).stdout)
    for n in sorted(os.listdir(f"{c.state}/logs")):
        print(f"---- tail logs/{n}:")
        print(subprocess.run(["tail", "-6", f"{c.state}/logs/{n}"], capture_output=True, text=True).stdout)
    raise Abort(why)


def wait_for(c, job, pred, timeout, what, poll=0.2):
    """Polls the job until pred(j) is true; the last j. A final state pred does not accept aborts."""
    until = min(time.monotonic() + timeout, DEADLINE)
    j = None
    while time.monotonic() < until:
        j = c.job(job) or j
        if j and pred(j):
            return j
        if j and j["state"] in FINAL_STATES:
            diagnose(c, job, f"{what}: the job ended {j['state']} ({j['message']})")
        time.sleep(poll)
    late = " (the test's deadline CHAOS_DEADLINE passed)" if time.monotonic() >= DEADLINE else ""
    diagnose(c, job, f"{what}: not within {timeout:.0f} s{late} (last seen {j})")


def pick_target(c, job, kind, rng, rank0_agent):
    """(pid, description, pids index or None, restart argv or None) of the process to kill."""
    j = c.job(job)
    cur = [p for p in train_procs(c.state, job) if p[1] == j["attempts"]]
    if kind == "coordinator":
        pid = c.pids()[0]
        argv = cmdline(pid)
        argv[argv.index("--listen") + 1] = c.addr  # the same port (local up asked for port 0)
        return pid, "coordinator", 0, argv
    if kind in ("trainer", "variational"):
        ranks = list(range(TRAINERS)) if kind == "trainer" else [TRAINERS]
        cands = [p for p in cur if p[2] in ranks]
        if not cands:
            return None
        pid, attempt, rank = rng.choice(sorted(cands))
        return pid, f"rank {rank} (attempt {attempt})", None, None
    want = 0 if rank0_agent else rng.randrange(TRAINERS + 1)
    attempt_id = f"{job}/{j['attempts']}"
    for w in c.workers():
        if any(r.get("attempt_id") == attempt_id and r.get("rank", 0) == want for r in w.get("ranks", [])):
            n = int(w["worker_id"].rsplit("-", 1)[1])
            pid = c.pids()[n + 1]
            return pid, f"{w['worker_id']} (host of rank {want})", n + 1, cmdline(pid)
    return None


def rank0_round(c, job, attempt):
    """The last round trainer 0 of `attempt` has logged (0 if none)."""
    try:
        with open(f"{c.state}/work/jobs/{job}/logs/attempt-{attempt}-rank-0.log") as f:
            rounds = re.findall(r"^\[trainer 0\] round (\d+)/", f.read(), re.M)
    except OSError:
        return 0
    return int(rounds[-1]) if rounds else 0


def in_final_eval(c, job, j):
    """True when the job's current attempt is in trainer 0's final evaluation: every round is
    reported and rank 0's log of this attempt has reached (or resumed at) the last round."""
    if j["state"] != RUNNING or j["rounds"] <= 0 or j["round"] < j["rounds"]:
        return False
    try:
        with open(f"{c.state}/work/jobs/{job}/logs/attempt-{j['attempts']}-rank-0.log") as f:
            text = f.read()
    except OSError:
        return False
    n = j["rounds"]
    return (f"round {n}/{n}" in text or f"resumed from checkpoint at round {n}\n" in text) and "done in" not in text


def fault(c, job, rng, kind, final, rank0_agent, target_round):
    """Waits for `target_round` (or the final evaluation), delivers one fault, waits for recovery;
    the fault's table row."""
    if final:  # during trainer 0's final evaluation: the last round is reported, the job not done
        wait_for(c, job, lambda j: in_final_eval(c, job, j), FAULT_TIMEOUT, "waiting for the final evaluation",
                 poll=0.1)
        time.sleep(rng.uniform(0.0, 0.5))
    else:
        wait_for(c, job, lambda j: j["state"] == RUNNING and j["round"] >= target_round, FAULT_TIMEOUT,
                 f"waiting for round {target_round}")
        time.sleep(rng.uniform(0.0, 1.5))  # a random moment within the round
    until = time.monotonic() + 10
    while (tgt := pick_target(c, job, kind, rng, rank0_agent)) is None:
        if time.monotonic() > until:
            diagnose(c, job, f"no {kind} of the job's current attempt to kill")
        time.sleep(0.2)
    j = c.job(job)
    if j is None or j["state"] != RUNNING:
        diagnose(c, job, f"the job is not RUNNING at the fault: {j}")
    if not final and j["round"] > ROUNDS - 2:  # too close to the end to tell it from a final fault
        log(f"no room for a {kind} fault at round {j['round']} of {ROUNDS}: the plan did not fit")
        return None
    pid, desc, index, argv = tgt
    c.kill9(pid)
    t0 = time.monotonic()
    log(f"fault: kill -9 {kind} {desc} pid {pid} at round {j['round']}/{j['rounds']} attempt {j['attempts']}"
        + (" (final evaluation)" if final else ""))
    if argv:
        time.sleep(rng.uniform(2.0, 5.0))  # the supervisor's restart delay
        new = c.restart(index, argv, "coordinator" if index == 0 else f"worker-{index - 1}")
        log(f"restarted {desc.split(' ')[0]} as pid {new} after {time.monotonic() - t0:.1f} s")
    r0, a0 = j["round"], j["attempts"]
    if final and kind != "coordinator":  # recovered: the job redid its work and is back at its end
        ok = lambda j: j["state"] == SUCCEEDED or (j["attempts"] > a0 and in_final_eval(c, job, j))
    else:  # past r0 as the job shows it, and (after a restart) in the new attempt's own log: the
        # job's progress may still show the failed attempt's last report
        ok = lambda j: j["state"] == SUCCEEDED or (j["state"] == RUNNING and j["round"] > r0 and (
            j["attempts"] == a0 or rank0_round(c, job, j["attempts"]) > r0))
    marks = {}  # when the driver first saw: the attempt fail, the next one placed

    def ok_marking(j):
        now = time.monotonic() - t0
        if j["state"] not in (RUNNING, SUCCEEDED) or j["attempts"] > a0:
            marks.setdefault("failed", now)
        if j["state"] == RUNNING and j["attempts"] > a0:
            marks.setdefault("placed", now)
        return ok(j)

    j = wait_for(c, job, ok_marking, FAULT_TIMEOUT, f"recovery from kill -9 {kind} {desc} at round {r0}")
    rec = time.monotonic() - t0
    stale = [p for p in train_procs(c.state, job) if p[1] < j["attempts"]]
    log(f"recovered in {rec:.1f} s: {j['state']} round {j['round']} attempt {j['attempts']}"
        + (f"; older attempts' ranks still alive: {stale}" if stale else ""))
    return {"kind": kind, "target": desc, "round": r0, "final": final, "recovery": rec,
            "attempt_before": a0, "attempt_after": j["attempts"], "stale": len(stale),
            "failed": marks.get("failed"), "placed": marks.get("placed")}


def plan(rng):
    """[(kind, final, rank0_agent)]: FAULTS - len(FINAL) faults of KINDS (cycled, then shuffled) at
    rounds chosen as the job goes (see next_target), then those of FINAL during the final
    evaluation (by default the agent of rank 0, then the coordinator)."""
    final = FINAL[:FAULTS]
    n = FAULTS - len(final)
    kinds = (KINDS * FAULTS)[:n]
    rng.shuffle(kinds)
    return [(k, False, False) for k in kinds] + [(k, True, k == "agent") for k in final]


# Rounds a fault uses up before the next can be told apart from it: a rank or agent fault stops the
# job, which is recovered once it is 1 round past the fault; the job runs on through a coordinator
# outage (11-16 s until the new coordinator shows its progress: 4-5 rounds here, 7-9 in the CI
# run of stop 25, whose faster rounds ran past a fixed plan).
COST = {"coordinator": 10}
LAST_ROUND = ROUNDS - 3  # a later fault could not be told from one in the final evaluation


def next_target(rng, now, pending):
    """The round for the next of `pending` (kinds, in order): a random one within the room the rest
    leaves. A fixed plan of random rounds did not fit when outages ran the job on further than
    assumed (CI: three coordinator faults used 25 rounds and the job ended before fault 15)."""
    need = sum(COST.get(k, 2) for k in pending)
    slack = max(0, LAST_ROUND - now - need) // len(pending)
    # Not before round 1: a coordinator killed before the first attempt's ranks have even been
    # handed to their agents (seed 1800854655: 1 s after the submit) leaves an attempt no agent
    # knows of, which fails after the recovery grace; this test is about jobs that are running.
    return max(1, now + rng.randint(0, slack))


def artifacts(c, job, out):
    c.ctl("artifacts", job, "--out", out, timeout=120, check=True)
    with open(f"{out}/metrics.json") as f:
        return json.load(f)


def chaos_run(rng, rows):
    """The job under faults; (wall seconds, final job, metrics, training processes left)."""
    c = Cluster(f"{WORK}/chaos")
    c.up(WORKERS)
    try:
        job = c.submit()
        t0 = time.monotonic()
        log(f"chaos job {job}: spiral {' '.join(SPEC_SETS)}")
        faults = plan(rng)
        for i, (kind, final, rank0) in enumerate(faults):
            pending = [k for k, f, _ in faults[i:] if not f]
            target = ROUNDS if final else next_target(rng, (c.job(job) or {"round": 0})["round"], pending)
            row = fault(c, job, rng, kind, final, rank0, target)
            if row:
                rows.append(row)
        j = wait_for(c, job, lambda j: j["state"] == SUCCEEDED, 300, "the job to succeed after the faults")
        wall = time.monotonic() - t0
        until = time.monotonic() + 15  # kill grace 5 s; the lease 10 s
        while (left := train_procs(c.state, job)) and time.monotonic() < until:
            time.sleep(0.5)
        log(f"chaos job SUCCEEDED in {wall:.1f} s, attempts {j['attempts']}; "
            f"training processes left 15 s after: {left}")
        return wall, j, artifacts(c, job, f"{WORK}/chaos-out"), left
    finally:
        c.down()


def calibrate():
    """Sets STEPS (and SPEC_SETS) for rounds of about ROUND_S on this machine, from a 3-round job of
    the same spec at 30 steps a round (its last round's steps/s as rank 0 measured them)."""
    global STEPS, SPEC_SETS
    c = Cluster(f"{WORK}/calibrate")
    c.up(WORKERS)
    try:
        job = c.submit(["train.rounds=3", "sample.n=200"])
        j = wait_for(c, job, lambda j: j["state"] == SUCCEEDED, 300, "the calibration job to succeed", poll=1)
    finally:
        c.down()
    round_s = 30 / j["steps_per_second"] if j["steps_per_second"] > 0 else ROUND_S
    STEPS = max(30, min(150, round(30 * ROUND_S / round_s)))
    SPEC_SETS = [s if not s.startswith("train.steps_per_round=") else f"train.steps_per_round={STEPS}"
                 for s in SPEC_SETS]
    log(f"calibration: a round of 30 steps takes {round_s:.2f} s here: {STEPS} steps a round for ~{ROUND_S:g} s")


def clean_run():
    c = Cluster(f"{WORK}/clean")
    c.up(WORKERS)
    try:
        job = c.submit()
        t0 = time.monotonic()
        j = wait_for(c, job, lambda j: j["state"] == SUCCEEDED, 600, "the clean job to succeed", poll=1)
        wall = time.monotonic() - t0
        log(f"clean job SUCCEEDED in {wall:.1f} s, attempts {j['attempts']}")
        return wall, j, artifacts(c, job, f"{WORK}/clean-out")
    finally:
        c.down()


def print_table(rows):
    mark = lambda t: "-" if t is None else f"{t:.1f}s"
    print(f"{'#':>3} {'kind':<12} {'target':<30} {'round':>5} {'attempt':>8} {'failed':>7} {'placed':>7} "
          f"{'recovery':>8} {'stale':>5}")
    for i, r in enumerate(rows, 1):
        rnd = f"{r['round']}{'F' if r['final'] else ''}"
        att = f"{r['attempt_before']}->{r['attempt_after']}"
        print(f"{i:>3} {r['kind']:<12} {r['target']:<30} {rnd:>5} {att:>8} {mark(r['failed']):>7} "
              f"{mark(r['placed']):>7} {r['recovery']:>7.1f}s {r['stale']:>5}")
    print("(round F: during the final evaluation; failed / placed: seconds after the kill until the job\n"
          " showed the attempt failed / the next attempt running; recovery: until its round was past the\n"
          " round at the fault; stale: ranks of older attempts alive at recovery)")


def quality(name, m):
    """Prints the figures; the spiral bar of the full-budget tests (energy < 0.8, A[1][1] < -0.2)
    is shown, not required: this spec trains for STEPS x ROUNDS steps (1920 at 30) to fit the time budget."""
    ed, a = m["energy_distance"], m["A"]
    bar = "meets" if ed < 0.8 and a[1][1] < -0.2 else "misses"
    log(f"{name}: energy distance {ed:.4f} (floor {m['energy_distance_floor']:.4f}), A[1][1] {a[1][1]:.3f} "
        f"({bar} the full-budget spiral bar), resumed from round {m.get('resumed_from_round')}")


def main():
    log(f"chaos: {FAULTS} faults, seed {SEED} (CHAOS_SEED={SEED} repeats the plan), {WORKERS} agents")
    rng = random.Random(SEED)
    rows, bad = [], []
    calibrate()
    try:
        wall, j, m, left = chaos_run(rng, rows)
    except Abort as e:
        print_table(rows)
        if rows:
            recs = [r["recovery"] for r in rows]
            print(f"recovery so far: median {statistics.median(recs):.1f} s, max {max(recs):.1f} s")
        print(f"FAIL after {len(rows)} of {FAULTS} faults: {e}; seed {SEED}; cost {time.monotonic() - T_START:.0f} s")
        return 1
    clean_wall, _, cm = clean_run()
    print_table(rows)
    recs = [r["recovery"] for r in rows]
    med, worst = statistics.median(recs), max(recs)
    counts = ", ".join(f"{k} {sum(r['kind'] == k for r in rows)}" for k in ("trainer", "variational", "agent", "coordinator"))
    print(f"recovery: median {med:.1f} s, max {worst:.1f} s over {len(rows)} faults ({counts})")
    print(f"goodput: job's own goodput_ratio {j['goodput']:.2f}; clean wall / chaos wall = "
          f"{clean_wall:.0f} s / {wall:.0f} s = {clean_wall / wall:.2f}; attempts {j['attempts']}")
    quality("chaos run", m)
    quality("clean run", cm)
    # Note [quality slack]: 10 % of the clean run's energy distance, or twice the larger noise floor
    # (energy distance between two samples of the true distribution of the same size, as
    # metrics.json reports it) when that is larger: below the floor a difference is sampling noise.
    ed, ced = m["energy_distance"], cm["energy_distance"]
    tol = max(0.10 * ced, 2 * max(abs(m["energy_distance_floor"]), abs(cm["energy_distance_floor"])))
    print(f"quality: chaos energy distance {ed:.4f} vs clean {ced:.4f} (|diff| {abs(ed - ced):.4f}, allowed {tol:.4f})")
    if abs(ed - ced) > tol:
        bad.append(f"energy distance {ed:.4f} not within {tol:.4f} of the clean run's {ced:.4f}")
    if len(rows) < FAULTS:
        bad.append(f"only {len(rows)} of {FAULTS} faults delivered")
    if med >= 15:
        bad.append(f"median recovery {med:.1f} s >= 15 s")
    for i, r in enumerate(rows, 1):
        if r["kind"] == "coordinator" and r["attempt_after"] != r["attempt_before"]:
            bad.append(f"fault {i}: the coordinator restart at round {r['round']} cost an attempt")
    if left:
        bad.append(f"training processes still alive 15 s after SUCCEEDED (pid, attempt, rank): {left}")
    print(f"cost: {time.monotonic() - T_START:.0f} s in all (chaos job {wall:.0f} s, clean job {clean_wall:.0f} s)")
    for b in bad:
        print(f"FAIL: {b}")
    print("ok" if not bad else f"FAIL ({len(bad)} violations; seed {SEED})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
