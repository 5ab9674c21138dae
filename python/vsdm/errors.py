"""The exceptions of the vsdm client, and the one place gRPC errors are turned into them.

Every grpc.RpcError a call raises becomes a VsdmError subclass chosen by its status code, with
the code kept as `.code` (grpc.StatusCode). INVALID_ARGUMENT messages of the coordinator start
with the request's field path ("spec.train.lr: must be in [1e-08, 1], got -1"); `.path` holds
it as written and `.field` relative to the spec ("train.lr", "members[2].train.lr"). Local input
errors (a bad spec dict or YAML) are SpecError, a ValueError.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional, Type

import grpc

# A leading field path: snake_case names joined by dots, each optionally indexed ("members[2]").
# Messages that start otherwise ("--tls-cert and --tls-key go together") carry no field.
_FIELD_PATH = re.compile(r"^([a-z_][a-z0-9_]*(?:\[\d+\])?(?:\.[a-z_][a-z0-9_]*(?:\[\d+\])?)*): ")


# The request fields that hold a JobSpec: SubmitJobRequest.spec, SubmitSweepRequest.members[i].spec.
_SPEC_IN_REQUEST = re.compile(r"^((?:members\[\d+\]\.)?)spec\.")


def field_of_message(message: str) -> Optional[str]:
    """The dotted field path a message starts with ("spec.train.lr" of "spec.train.lr: must be > 0"), or None."""
    m = _FIELD_PATH.match(message or "")
    return m.group(1) if m else None


def spec_relative(path: Optional[str]) -> Optional[str]:
    """A request field path with the request's `spec.` dropped: "spec.train.lr" -> "train.lr",
    "members[2].spec.train.lr" -> "members[2].train.lr" (the paths SpecError uses, and the keys of
    the YAML spec); any other path as it is."""
    return _SPEC_IN_REQUEST.sub(r"\1", path) if path else path


class VsdmError(Exception):
    """A call to the coordinator failed.

    Attributes:
        code: the grpc.StatusCode of the failure.
        message: the server's message (names the field for INVALID_ARGUMENT).
        path: the request field path the message starts with, as the server wrote it
            ("spec.train.lr", "members[2].spec.train.lr", "page_size"), else None.
        field: the same path relative to the job spec, the way the spec YAML (and SpecError)
            name it: "train.lr", "members[2].train.lr"; other paths as they are.
    """

    def __init__(self, code: grpc.StatusCode, message: str, field: Optional[str] = None):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.path = field_of_message(message)
        self.field = field if field is not None else spec_relative(self.path)


class InvalidArgument(VsdmError):
    """INVALID_ARGUMENT: the request (usually the spec) was refused; `.field` names what."""


class NotFound(VsdmError):
    """NOT_FOUND: no such job, group or artifact (or none of it is yours)."""


class AlreadyExists(VsdmError):
    """ALREADY_EXISTS."""


class PermissionDenied(VsdmError):
    """PERMISSION_DENIED: the token is valid but not allowed this call or this job."""


class Unauthenticated(VsdmError):
    """UNAUTHENTICATED: no token, or one the coordinator does not know."""


class Unavailable(VsdmError):
    """UNAVAILABLE: the coordinator cannot be reached (not running, restarting, wrong address)."""


class DeadlineExceeded(VsdmError):
    """DEADLINE_EXCEEDED: the call took longer than its deadline."""


class FailedPrecondition(VsdmError):
    """FAILED_PRECONDITION: e.g. cancelling a finished job, or artifacts of an unfinished one."""


class JobNotSucceeded(FailedPrecondition):
    """The job has no artifacts because it has not succeeded (it is queued, running, or ended otherwise)."""


class ResourceExhausted(VsdmError):
    """RESOURCE_EXHAUSTED: a quota or a server limit (e.g. too many queued jobs)."""


class Cancelled(VsdmError):
    """CANCELLED: the call itself was cancelled."""


class Internal(VsdmError):
    """INTERNAL (also used for DATA_LOSS, UNKNOWN and other codes without a class of their own)."""


_BY_CODE: Dict[grpc.StatusCode, Type[VsdmError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.CANCELLED: Cancelled,
}


def from_rpc_error(err: grpc.RpcError) -> VsdmError:
    """The VsdmError subclass for a grpc.RpcError (which must be a grpc.Call, as raised errors are)."""
    code_fn = getattr(err, "code", None)
    details_fn = getattr(err, "details", None)
    code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    message = (details_fn() if callable(details_fn) else None) or str(err)
    return _BY_CODE.get(code, Internal)(code, message)


class SpecError(ValueError):
    """A job spec (dict, YAML, overrides or sweep grid) that cannot be turned into a JobSpec.

    Attributes:
        field: the dotted path of the offending key ("train.lr", "members[1].train.lr"), or the
            input it is about ("spec", "overrides", "grid", a file name).
        reason: what is wrong with it.
    """

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class JobFailed(Exception):
    """A waited-for job ended in a state other than SUCCEEDED; `.job` is its final Job message."""

    def __init__(self, job: Any):
        from vsdm.v1 import job_pb2  # late: the stubs are only needed once a job exists

        self.job = job
        self.state = job_pb2.JobState.Name(job.state).replace("JOB_STATE_", "")
        why = f": {job.message}" if job.message else ""
        super().__init__(f"{job.job_id} {self.state}{why}")
