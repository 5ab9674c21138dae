"""Where the coordinator is, which token to send, and the gRPC channel: the same defaults as
vsdmctl (client/local_cluster.cc ResolveCoordinator, vsdmctl.cc RunJobCommand).

  address: the argument, else $VSDM_COORDINATOR, else the local cluster of the state dir (when
           it runs), else 127.0.0.1:50051.
  state dir: the argument, else $VSDM_HOME, else ~/.vsdm/local.
  token: the argument, else $VSDM_TOKEN, else (only when talking to the local cluster) the first
         line of <state dir>/auth/admin.token.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from typing import List, Mapping, Optional, Tuple, Union

import grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
PathArg = Union[str, os.PathLike, None]


def default_state_dir(state_dir: PathArg = None, env: Optional[Mapping[str, str]] = None) -> pathlib.Path:
    """The local cluster's state dir: `state_dir`, else $VSDM_HOME, else ~/.vsdm/local."""
    env = os.environ if env is None else env
    if state_dir:
        return pathlib.Path(state_dir)
    if env.get("VSDM_HOME"):
        return pathlib.Path(env["VSDM_HOME"])
    return pathlib.Path(env.get("HOME") or os.path.expanduser("~")) / ".vsdm" / "local"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by someone else
        return True
    return True


def local_cluster_address(state_dir: pathlib.Path) -> Optional[str]:
    """HOST:PORT of the local cluster of `state_dir` when it runs (the first pid of <state_dir>/pids,
    the coordinator, is alive and <state_dir>/coordinator holds the address), else None."""
    try:
        pids = (state_dir / "pids").read_text().split()
        addr = (state_dir / "coordinator").read_text().split()
    except OSError:
        return None
    try:
        coordinator_pid = int(pids[0]) if pids else 0
    except ValueError:
        return None
    if not addr or not _pid_alive(coordinator_pid):
        return None
    return addr[0]


@dataclass(frozen=True)
class Target:
    """A resolved coordinator: its address, the bearer token ("" = none) and, when it is the local
    cluster, that cluster's state dir."""

    address: str
    token: str
    local_state_dir: Optional[pathlib.Path]


def resolve_target(address: Optional[str] = None, token: Optional[str] = None, state_dir: PathArg = None,
                   env: Optional[Mapping[str, str]] = None) -> Target:
    """The address and token to use, by vsdmctl's rules (see the module docstring).

    Raises ValueError naming the file when the local cluster's admin.token is unreadable or empty.
    """
    env = os.environ if env is None else env
    sdir = default_state_dir(state_dir, env)
    local = local_cluster_address(sdir)
    resolved = address or env.get("VSDM_COORDINATOR") or local or DEFAULT_ADDRESS
    local_dir = sdir if local is not None and local == resolved else None
    if token is None and env.get("VSDM_TOKEN", "").strip():
        token = env["VSDM_TOKEN"].strip()
    if token is None and local_dir is not None:
        token = read_token_file(local_dir / "auth" / "admin.token")
    return Target(resolved, (token or "").strip(), local_dir)


def read_token_file(path: pathlib.Path) -> str:
    """The first line of a token file, stripped; ValueError naming the file if unreadable or empty."""
    try:
        with open(path, encoding="utf-8") as f:
            line = f.readline().strip()
    except OSError as e:
        raise ValueError(f"{path}: cannot read a token from it: {e.strerror or e}") from e
    if not line:
        raise ValueError(f"{path}: the first line is empty (want the bearer token)")
    return line


def _read_pem(path: PathArg, what: str) -> bytes:
    try:
        with open(os.fspath(path), "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{what} {path}: cannot read it: {e.strerror or e}") from e


def make_channel(address: str, tls_ca: PathArg = None, tls_cert: PathArg = None, tls_key: PathArg = None,
                 tls_server_name: Optional[str] = None) -> grpc.Channel:
    """A channel to `address`: TLS (verifying against the CA file `tls_ca`, with the client
    certificate and key for mTLS when given) when tls_ca is given, else plaintext.

    Raises ValueError when only one of tls_cert/tls_key is given, when TLS files are given without
    tls_ca, or a PEM file cannot be read (naming the argument and the file).
    """
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("tls_cert and tls_key go together")
    options: List[Tuple[str, object]] = [
        # Artifact chunks and log pages are far below this; a big page must not fail the call.
        ("grpc.max_receive_message_length", 64 << 20),
    ]
    if not tls_ca:
        if tls_cert or tls_server_name:
            raise ValueError("tls_cert/tls_key/tls_server_name need tls_ca (the CA of the coordinator's certificate)")
        return grpc.insecure_channel(address, options=options)
    creds = grpc.ssl_channel_credentials(
        root_certificates=_read_pem(tls_ca, "tls_ca"),
        private_key=_read_pem(tls_key, "tls_key") if tls_key else None,
        certificate_chain=_read_pem(tls_cert, "tls_cert") if tls_cert else None,
    )
    if tls_server_name:
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    return grpc.secure_channel(address, creds, options=options)
