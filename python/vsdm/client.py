"""The Python client of a vsdm coordinator: JobService (proto/vsdm/v1/service.proto) with typed
results, the same defaults as vsdmctl, and errors as vsdm.errors exceptions.

Jobs are returned as the protobuf `Job` messages (vsdm.v1.job_pb2.Job: job_id, state, spec with
every default filled in, progress with the final metrics, group_id, overrides, ...); events,
log lines and sweep summaries are small dataclasses. A Client is safe to use from several
threads (gRPC channels are); each iterator it returns belongs to one consumer.
"""

from __future__ import annotations

import datetime
import math
import os
import pathlib
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import grpc

from vsdm import _channel
from vsdm.errors import (FailedPrecondition, Internal, JobFailed, JobNotSucceeded, NotFound, VsdmError,
                         from_rpc_error)
from vsdm.spec import Grid, Overrides, SpecLike, sweep_members, to_job_spec
from vsdm.v1 import job_pb2, service_pb2, service_pb2_grpc

Job = job_pb2.Job
JobSpec = job_pb2.JobSpec

# Deadlines of the calls, as vsdmctl's (client/commands.cc).
CALL_TIMEOUT_S = 10.0
SUBMIT_TIMEOUT_S = 30.0
ARTIFACT_TIMEOUT_S = 120.0  # one whole file; model.pt of an image job is tens of MiB

# What rank 0 leaves on success and the agent uploads: common/train_protocol.h kArtifacts, in its
# order (metrics.json first). A job has the ones of its kind (samples.* or forecasts/targets/...).
ARTIFACTS = ("metrics.json", "samples.npy", "samples.png", "model.pt", "forecasts.npy", "targets.npy",
             "contexts.npy", "forecast.png")

# The group table's default metric: the first of these any member has (vsdmctl's GroupMetric).
DEFAULT_METRICS = ("energy_distance", "fd", "crps_sum")
# Figures where higher is better; every other one is compared lower-is-better (job_format.cc).
HIGHER_IS_BETTER = frozenset({"confident_fraction", "accuracy", "classifier_accuracy", "goodput_ratio"})

_FINAL = frozenset({job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED})
StateLike = Union[str, int]


def state_name(state: int) -> str:
    """"RUNNING" for JOB_STATE_RUNNING (the enum value of Job.state or JobEvent.state)."""
    try:
        return job_pb2.JobState.Name(state).replace("JOB_STATE_", "")
    except ValueError:
        return f"STATE_{state}"


def parse_state(state: StateLike) -> int:
    """The JobState value of "running", "RUNNING", "JOB_STATE_RUNNING" or the value itself.

    Raises ValueError naming `state` and the allowed names.
    """
    if isinstance(state, int):
        return state
    name = str(state).strip().upper()
    if not name.startswith("JOB_STATE_"):
        name = "JOB_STATE_" + name
    try:
        return job_pb2.JobState.Value(name)
    except ValueError:
        raise ValueError(f"state: must be queued|running|succeeded|failed|cancelled, got {state!r}") from None


def is_final(state: int) -> bool:
    """True for SUCCEEDED, FAILED and CANCELLED: the job will not change any more."""
    return state in _FINAL


def job_summary(job: Job) -> str:
    """One line about a job: "job-00000003 spiral-vsdm RUNNING round 3/6 loss 0.1234" (or the
    pending reason while queued, the message once ended)."""
    parts = [job.job_id, job.spec.name or "-", state_name(job.state)]
    if job.state == job_pb2.JOB_STATE_QUEUED and job.pending_reason:
        parts.append(job.pending_reason)
    elif job.state == job_pb2.JOB_STATE_RUNNING and job.progress.rounds:
        parts.append(f"round {job.progress.round}/{job.progress.rounds} loss {job.progress.loss:.4f}")
    elif job.message:
        parts.append(job.message)
    if job.overrides:
        parts.append("(" + " ".join(job.overrides) + ")")
    return " ".join(parts)


def _time_of(ts: Any) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=datetime.timezone.utc)


@dataclass(frozen=True)
class Event:
    """One event of a job (JobEvent): state is the job's state after it ("RUNNING"); kind is
    submitted | scheduled | running | progress | requeued | succeeded | failed | cancelled; the
    progress fields hold the latest round's figures (0 before the first round)."""

    job_id: str
    sequence: int
    time: datetime.datetime
    state: str
    kind: str
    message: str
    round: int
    rounds: int
    loss: float
    metrics: Dict[str, float]
    eta_seconds: float
    raw: Any = field(default=None, repr=False, compare=False)  # the JobEvent message

    @classmethod
    def from_proto(cls, e: Any) -> "Event":
        p = e.progress
        return cls(job_id=e.job_id, sequence=e.sequence, time=_time_of(e.time), state=state_name(e.state),
                   kind=e.kind, message=e.message, round=p.round, rounds=p.rounds, loss=p.loss,
                   metrics=dict(p.metrics), eta_seconds=p.eta_seconds, raw=e)


@dataclass(frozen=True)
class LogLine:
    """One line of a rank's log (without its newline). rank -1 marks a line of the reader itself:
    "--- attempt N ---" when it moves to attempt N."""

    rank: int
    attempt: int
    text: str


@dataclass
class Sweep:
    """A submitted sweep: its group id and its member jobs, in the order of the grid."""

    group_id: str
    jobs: List[Job]


@dataclass(frozen=True)
class SummaryRow:
    """One member of a sweep: its state ("SUCCEEDED"), overrides and the metric (None if it has none)."""

    job_id: str
    state: str
    overrides: List[str]
    value: Optional[float]


@dataclass
class GroupSummary:
    """A sweep's members compared by `metric` (None when no member has any of DEFAULT_METRICS).
    `best` is the succeeded member with the lowest value (highest for HIGHER_IS_BETTER)."""

    group_id: str
    metric: Optional[str]
    rows: List[SummaryRow]
    best: Optional[SummaryRow]

    @property
    def higher_is_better(self) -> bool:
        return self.metric in HIGHER_IS_BETTER


def format_summary(summary: GroupSummary) -> str:
    """The sweep table as text (like `vsdmctl list --group`), the best member starred."""
    metric = summary.metric or "METRIC"
    width = max([40] + [len(" ".join(r.overrides)) for r in summary.rows])
    lines = [f"  {'JOB':<14} {'STATE':<10} {'OVERRIDES':<{width}} {metric}"]
    counts: Dict[str, int] = {}
    for r in summary.rows:
        counts[r.state] = counts.get(r.state, 0) + 1
        value = "-" if r.value is None else "(running)" if r.state == "RUNNING" else f"{r.value:.4f}"
        star = "*" if summary.best is not None and r.job_id == summary.best.job_id else " "
        lines.append(f"{star} {r.job_id:<14} {r.state:<10} {' '.join(r.overrides):<{width}} {value}")
    if summary.best is not None:
        b = summary.best
        better = "higher" if summary.higher_is_better else "lower"
        lines.append(f"best: {b.job_id} ({' '.join(b.overrides)}) {summary.metric} {b.value:.4f} ({better} is better)")
    lines.append(f"{len(summary.rows)} members: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return "\n".join(lines) + "\n"


def summarize_group(group_id: str, jobs: Sequence[Job], metric: Optional[str] = None) -> GroupSummary:
    """The GroupSummary of a sweep's member jobs (see Client.summary)."""
    if not metric:
        metric = next((m for m in DEFAULT_METRICS for j in jobs if m in j.progress.metrics), None)
    rows = []
    best: Optional[SummaryRow] = None
    higher = metric in HIGHER_IS_BETTER
    for j in jobs:
        value = j.progress.metrics.get(metric) if metric else None
        row = SummaryRow(j.job_id, state_name(j.state), list(j.overrides), value)
        rows.append(row)
        if j.state != job_pb2.JOB_STATE_SUCCEEDED or value is None or math.isnan(value):
            continue
        if best is None or (value > best.value if higher else value < best.value):
            best = row
    return GroupSummary(group_id, metric, rows, best)


class _ProgressPrinter:
    """What watch(progress=True) shows on `stream`: a tqdm bar of rounds when tqdm is importable,
    else one plain line per new round; other events as "[kind] message" lines."""

    def __init__(self, job_id: str, stream: IO[str]):
        self._job_id = job_id
        self._stream = stream
        self._last_round = -1
        self._bar: Any = None
        try:
            from tqdm import tqdm  # optional: not a dependency
            self._tqdm: Optional[Callable[..., Any]] = tqdm
        except ImportError:
            self._tqdm = None

    def show(self, ev: Event) -> None:
        if ev.kind != "progress":
            self._line(f"{self._job_id} [{ev.kind}] {ev.state}: {ev.message}")
            return
        if ev.round == self._last_round:
            return
        self._last_round = ev.round
        if self._tqdm is not None:
            if self._bar is None:
                self._bar = self._tqdm(total=ev.rounds or None, desc=self._job_id, unit="round", file=self._stream)
            self._bar.update(ev.round - self._bar.n)
            self._bar.set_postfix(loss=f"{ev.loss:.4f}", eta=f"{ev.eta_seconds:.0f}s")
        else:
            self._line(f"{self._job_id} round {ev.round}/{ev.rounds} loss {ev.loss:.4f} ETA {ev.eta_seconds:.0f}s")

    def _line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self._stream)
        else:
            print(text, file=self._stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Client:
    """A connection to one coordinator.

    Args:
        address: HOST:PORT; default $VSDM_COORDINATOR, else the local cluster of `state_dir` when
            it runs, else 127.0.0.1:50051 (as vsdmctl).
        token: the bearer token; default $VSDM_TOKEN, else the local cluster's admin token when
            talking to it, else none.
        tls_ca: the CA (PEM file) of the coordinator's certificate: use TLS. tls_cert/tls_key:
            a client certificate and its key (mTLS). tls_server_name: the name to verify.
        state_dir: the local cluster's state dir; default $VSDM_HOME, else ~/.vsdm/local.

    Raises ValueError for unreadable TLS or token files (naming them). Nothing is contacted
    until the first call.
    """

    def __init__(self, address: Optional[str] = None, token: Optional[str] = None, tls_ca: _channel.PathArg = None,
                 tls_cert: _channel.PathArg = None, tls_key: _channel.PathArg = None,
                 tls_server_name: Optional[str] = None, state_dir: _channel.PathArg = None):
        target = _channel.resolve_target(address, token, state_dir)
        self.address: str = target.address
        self.local_state_dir: Optional[pathlib.Path] = target.local_state_dir  # set when it is the local cluster
        self._metadata = (("authorization", f"Bearer {target.token}"),) if target.token else ()
        self._channel = _channel.make_channel(target.address, tls_ca, tls_cert, tls_key, tls_server_name)
        self._stub = service_pb2_grpc.JobServiceStub(self._channel)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel; running iterators fail with CANCELLED."""
        self._channel.close()

    def __repr__(self) -> str:
        return f"Client(address={self.address!r})"

    # ---- unary calls -------------------------------------------------------------------------

    def _unary(self, method: str, request: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def submit(self, spec: SpecLike, request_id: Optional[str] = None, overrides: Overrides = None) -> Job:
        """Submits one job and returns it (QUEUED).

        `spec`: a dict, a JobSpec, a YAML file path or YAML text (vsdm.spec.load_spec_dict).
        `overrides`: {"train.lr": 1e-3} or ["train.lr=1e-3"], applied over the spec like `--set`.
        `request_id`: idempotency key; a second submit with it returns the first job.
        Raises SpecError before sending for a key the spec has no field for or a value of the
        wrong type; InvalidArgument (with .field) when the server refuses a value.
        """
        req = service_pb2.SubmitJobRequest(spec=to_job_spec(spec, overrides), request_id=request_id or "")
        return self._unary("SubmitJob", req, SUBMIT_TIMEOUT_S)

    def submit_sweep(self, spec: SpecLike, grid: Grid, request_id: Optional[str] = None,
                     overrides: Overrides = None) -> Sweep:
        """Submits every combination of `grid` over `spec` as one group, whole or not at all.

        `grid`: {"train.lr": [1e-3, 3e-4], "model.hidden": [128, 256]} or ["train.lr=1e-3,3e-4", ...]
        (like `--sweep`); members are the cartesian product, first key slowest, and each carries
        its overrides ("train.lr=0.001"). `overrides` apply to every member first (like `--set`).
        Raises SpecError ("members[i].<field>: ...") before sending, InvalidArgument when refused.
        """
        req = service_pb2.SubmitSweepRequest(request_id=request_id or "")
        for member_spec, member_overrides in sweep_members(spec, grid, overrides):
            req.members.add(spec=member_spec, overrides=member_overrides)
        resp = self._unary("SubmitSweep", req, SUBMIT_TIMEOUT_S)
        return Sweep(resp.group_id, list(resp.jobs))

    def get(self, job_id: str) -> Job:
        """The job now. NotFound if there is none (or it is not yours)."""
        return self._unary("GetJob", service_pb2.GetJobRequest(job_id=job_id))

    def list(self, state: Optional[StateLike] = None, owner: Optional[str] = None, group: Optional[str] = None,
             page_size: int = 100) -> Iterator[Job]:
        """Every job matching the filters, newest first, fetched a page at a time as iterated.

        `state`: "queued" | "running" | "succeeded" | "failed" | "cancelled" (or a JobState);
        `owner`; `group`: a sweep's group id. `page_size` is capped at 500 by the server.
        """
        req = service_pb2.ListJobsRequest(page_size=page_size, state=parse_state(state) if state else 0,
                                          owner=owner or "", group_id=group or "")
        while True:
            resp = self._unary("ListJobs", req)
            yield from resp.jobs
            if not resp.next_page_token:
                return
            req.page_token = resp.next_page_token

    def cancel(self, job_id: str) -> Job:
        """Cancels a job and returns it. FailedPrecondition if it has already ended."""
        return self._unary("CancelJob", service_pb2.CancelJobRequest(job_id=job_id))

    def workers(self) -> List[Any]:
        """The registered workers (WorkerStatus messages: worker_id, state, resources, free_slots, ranks)."""
        return list(self._unary("ListWorkers", service_pb2.ListWorkersRequest()).workers)

    # ---- sweeps ------------------------------------------------------------------------------

    def group(self, group_id: str) -> List[Job]:
        """The members of a sweep in submission order. NotFound when it has none you can see."""
        jobs = sorted(self.list(group=group_id, page_size=500), key=lambda j: j.job_id)
        if not jobs:
            raise NotFound(grpc.StatusCode.NOT_FOUND, f"group {group_id}: no such sweep (or none of it is yours)")
        return jobs

    def summary(self, group_id: str, metric: Optional[str] = None) -> GroupSummary:
        """The sweep's members with `metric` from their final figures (progress.metrics, which hold
        the numbers of metrics.json), and the best succeeded member. The default metric is the
        first of energy_distance, fd, crps_sum any member has. Render with format_summary."""
        return summarize_group(group_id, self.group(group_id), metric)

    def cancel_group(self, group_id: str) -> List[Job]:
        """Cancels every member of the sweep that has not ended; returns the cancelled ones."""
        cancelled = []
        for j in self.group(group_id):
            if is_final(j.state):
                continue
            try:
                cancelled.append(self.cancel(j.job_id))
            except FailedPrecondition:  # it ended meanwhile
                pass
        return cancelled

    # ---- following a job ---------------------------------------------------------------------

    def watch(self, job_id: str, progress: bool = False, after_sequence: int = 0, reconnect_tries: int = 60,
              reconnect_delay_s: float = 1.0, timeout: Optional[float] = None,
              stream: Optional[IO[str]] = None) -> Iterator[Event]:
        """The job's events as they happen: first the stored ones after `after_sequence`, then live
        ones; the iterator ends after the event that puts the job in a final state.

        When the coordinator is UNAVAILABLE (restarting) it reconnects, up to `reconnect_tries` in a
        row `reconnect_delay_s` apart, resuming after the last non-progress event seen (progress
        events are not replayed). `progress=True` also shows the rounds on `stream` (stderr):
        a tqdm bar when tqdm is installed, else a line per round. `timeout` (seconds, overall)
        raises TimeoutError. Leaving the loop early cancels the stream.
        """
        printer = _ProgressPrinter(job_id, stream or sys.stderr) if progress else None
        deadline = None if timeout is None else time.monotonic() + timeout
        after, failures = after_sequence, 0
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"watch {job_id}: not ended after {timeout:g} s")
                call = self._stub.WatchJob(service_pb2.WatchJobRequest(job_id=job_id, after_sequence=after),
                                           timeout=remaining, metadata=self._metadata)
                try:
                    for e in call:
                        failures = 0
                        if e.kind != "progress":
                            if e.sequence <= after:
                                continue  # replayed after a reconnect
                            after = e.sequence
                        ev = Event.from_proto(e)
                        if printer is not None:
                            printer.show(ev)
                        yield ev
                    return
                except grpc.RpcError as err:
                    if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                        raise TimeoutError(f"watch {job_id}: not ended after {timeout:g} s") from None
                    if err.code() != grpc.StatusCode.UNAVAILABLE or failures >= reconnect_tries:
                        raise from_rpc_error(err) from None
                    failures += 1
                finally:
                    call.cancel()
                time.sleep(reconnect_delay_s)  # the coordinator may be restarting
        finally:
            if printer is not None:
                printer.close()

    def wait(self, job_id: str, progress: bool = True, timeout: Optional[float] = None) -> Job:
        """Follows the job (watch) to its end and returns the final Job.

        Raises JobFailed (with .job) unless it SUCCEEDED; TimeoutError after `timeout` seconds.
        """
        for _ in range(3):  # the stream ends at the final event; a non-final job here is a cut stream
            for _ev in self.watch(job_id, progress=progress, timeout=timeout):
                pass
            job = self.get(job_id)
            if is_final(job.state):
                break
        if job.state != job_pb2.JOB_STATE_SUCCEEDED:
            raise JobFailed(job)
        return job

    def logs(self, job_id: str, rank: Optional[int] = None, attempt: Optional[int] = None, follow: bool = False,
             poll_interval: float = 0.5, reconnect_tries: int = 60) -> Iterator[LogLine]:
        """The lines of the job's rank logs (Note [Live rank logs] in service.proto).

        Reads the coordinator's tail of each rank's log with a cursor per rank; bytes are cut
        into lines per rank, a partial last line held until its newline comes (or the reading
        ends). A gap the coordinator does not have yields "[... N bytes skipped ...]". `attempt`
        None reads the newest attempt; following, a newer attempt is switched to when it starts,
        marked by LogLine(rank=-1, text="--- attempt N ---") (the first one too). `follow=True`
        polls every `poll_interval` s until the job has ended and a poll brings nothing new,
        riding out UNAVAILABLE like watch.
        """
        reader = _LogReader(attempt or 0, follow)
        failures = 0
        while True:
            req = reader.request(job_id, rank)
            try:
                resp = self._stub.GetLogs(req, timeout=CALL_TIMEOUT_S, metadata=self._metadata)
            except grpc.RpcError as err:
                retryable = err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                if not follow or not retryable or failures >= reconnect_tries:
                    raise from_rpc_error(err) from None
                failures += 1
                time.sleep(1.0)  # the coordinator may be restarting
                continue
            failures = 0
            got, lines = reader.take(resp)
            yield from lines
            if got:
                continue  # there may be more at once
            if not follow or is_final(resp.state):
                break
            time.sleep(poll_interval)
        yield from reader.flush()

    # ---- artifacts ---------------------------------------------------------------------------

    def artifacts(self, job_id: str, out_dir: Union[str, os.PathLike],
                  names: Sequence[str] = ARTIFACTS) -> List[pathlib.Path]:
        """Downloads the job's artifacts (those of `names` it has) into `out_dir` (created).

        Each file is written to a hidden temp file beside it and renamed into place only when
        whole (as many bytes as the server announced), so a failed download leaves nothing under
        the name. Returns the paths written. Raises JobNotSucceeded unless the job SUCCEEDED,
        NotFound for no such job.
        """
        self._require_succeeded(job_id)
        out = pathlib.Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in names:
            try:
                self._download(job_id, name, out / name)
            except NotFound:
                continue  # not one of this kind of job's files
            written.append(out / name)
        return written

    def load_model(self, job_id: str, map_location: Any = "cpu") -> Any:
        """The job's exported model (model.pt, TorchScript) loaded with torch.jit.load; it has
        `.sample(n)` -> a [n, ...] tensor of samples. Needs PyTorch (ImportError otherwise);
        raises JobNotSucceeded unless the job SUCCEEDED, NotFound if it exported no model."""
        try:
            import torch
        except ImportError as e:
            raise ImportError("load_model needs PyTorch (`import torch` failed; on Debian: apt-get install "
                              "python3-torch); artifacts() downloads model.pt without it") from e
        self._require_succeeded(job_id)
        with tempfile.TemporaryDirectory(prefix="vsdm-model-") as d:
            path = pathlib.Path(d) / "model.pt"
            try:
                self._download(job_id, "model.pt", path)
            except NotFound as e:
                raise NotFound(e.code, f"job {job_id} has no model.pt: {e.message}") from None
            return torch.jit.load(str(path), map_location=map_location)

    def _require_succeeded(self, job_id: str) -> None:
        job = self.get(job_id)
        if job.state != job_pb2.JOB_STATE_SUCCEEDED:
            raise JobNotSucceeded(grpc.StatusCode.FAILED_PRECONDITION,
                                  f"job {job_id} is {state_name(job.state)}: it has artifacts only once SUCCEEDED")

    def _download(self, job_id: str, name: str, path: pathlib.Path) -> int:
        """Artifact `name` into `path`, whole or not at all; its size."""
        tmp = path.parent / f".{path.name}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        call = self._stub.GetArtifact(service_pb2.GetArtifactRequest(job_id=job_id, path=name),
                                      timeout=ARTIFACT_TIMEOUT_S, metadata=self._metadata)
        total, got = -1, 0
        try:
            with open(tmp, "xb") as f:
                try:
                    for i, chunk in enumerate(call):
                        if i == 0:
                            total = chunk.total_bytes
                        f.write(chunk.data)
                        got += len(chunk.data)
                except grpc.RpcError as err:
                    e = from_rpc_error(err)
                    if isinstance(e, FailedPrecondition):
                        raise JobNotSucceeded(e.code, e.message) from None
                    raise e from None
                if got != total:
                    raise Internal(grpc.StatusCode.DATA_LOSS,
                                   f"artifact {name}: received {got} of "
                                   f"{total if total >= 0 else 'an unknown number of'}"
                                   f" bytes; {path} not written")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            call.cancel()
            if tmp.exists():
                tmp.unlink()
        return got


class _LogReader:
    """The state of one logs() reader: the attempt read, a cursor and a partial line per rank
    (client/log_commands.cc LogPrinter, line for line)."""

    def __init__(self, attempt: int, follow: bool):
        self._wanted = attempt  # 0 = the newest
        self._follow = follow
        self._attempt = 0
        self._draining = False  # reading the rest of self._attempt before a newer one
        self._cursors: Dict[int, int] = {}
        self._partial: Dict[int, bytes] = {}

    def request(self, job_id: str, rank: Optional[int]) -> Any:
        req = service_pb2.GetLogsRequest(job_id=job_id, attempt=self._wanted or self._attempt)
        if self._follow and self._wanted == 0 and not self._draining:
            req.attempt = 0  # the newest, so a newer attempt is seen when it starts
        if rank is not None:
            req.rank = rank
        for r, offset in sorted(self._cursors.items()):
            req.after.add(rank=r, offset=offset)
        return req

    def take(self, resp: Any) -> "tuple[bool, List[LogLine]]":
        """(whether to read again at once, the whole lines of `resp`). A newer attempt seen while
        reading one with cursors: first the rest of the old one (asked by number: its ranks' last
        lines, such as why it failed), then the new one from its start."""
        lines: List[LogLine] = []
        if self._draining:
            lines += self._chunks(resp)
            if resp.chunks:
                return True, lines
            self._draining = False
            lines += self.flush()
            self._cursors.clear()  # the next read is of the newest attempt, from its start
            return True, lines
        if resp.attempt != 0 and resp.attempt != self._attempt:
            if self._cursors:  # read with the old attempt's cursors
                self._draining = True
                return True, lines
            lines += self.flush()
            if self._attempt != 0 or self._follow:
                lines.append(LogLine(-1, resp.attempt, f"--- attempt {resp.attempt} ---"))
            self._attempt = resp.attempt
        lines += self._chunks(resp)
        return bool(resp.chunks), lines

    def _chunks(self, resp: Any) -> List[LogLine]:
        lines: List[LogLine] = []
        for c in resp.chunks:
            buf = self._partial.get(c.rank, b"")
            if c.skipped > 0:  # what came before the gap is a line of its own
                if buf:
                    lines.append(self._line(c.rank, buf))
                buf = b""
                lines.append(LogLine(c.rank, self._attempt, f"[... {c.skipped} bytes skipped ...]"))
            buf += c.data
            *whole, buf = buf.split(b"\n")
            lines += [self._line(c.rank, w) for w in whole]
            self._partial[c.rank] = buf
            self._cursors[c.rank] = c.offset + len(c.data)
        return lines

    def flush(self) -> List[LogLine]:
        """The partial last lines, as they are (the rank has ended or the reader stops)."""
        lines = [self._line(r, b) for r, b in sorted(self._partial.items()) if b]
        self._partial.clear()
        return lines

    def _line(self, rank: int, data: bytes) -> LogLine:
        return LogLine(rank, self._attempt, data.decode("utf-8", errors="replace"))
