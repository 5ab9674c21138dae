"""Unit tests of the vsdm Python client that need no server: specs (dict / YAML / file to JobSpec,
coercion, overrides, sweep grids), address and token resolution, error conversion, and the
stream-following logic of watch() and logs() against a fake stub.

    bash scripts/gen-python-stubs.sh
    PYTHONPATH=python /usr/bin/python3 -m unittest discover -s tests/python -p 'test_spec.py'
"""

import io
import os
import pathlib
import re
import subprocess
import tempfile
import unittest
from unittest import mock

import grpc

import vsdm
from vsdm import _channel, errors, spec
from vsdm.client import _LogReader
from vsdm.v1 import job_pb2, service_pb2

SRC = pathlib.Path(__file__).resolve().parents[2]
SPIRAL = SRC / "examples" / "spiral.yaml"


class SpecConversionTest(unittest.TestCase):
    def test_yaml_file_text_and_dict_give_the_same_spec(self):
        from_path = vsdm.to_job_spec(str(SPIRAL))
        self.assertEqual(from_path, vsdm.to_job_spec(SPIRAL))  # a pathlib.Path too
        self.assertEqual(from_path, vsdm.to_job_spec(SPIRAL.read_text()))
        import yaml
        self.assertEqual(from_path, vsdm.to_job_spec(yaml.safe_load(SPIRAL.read_text())))
        self.assertEqual(from_path.name, "spiral-vsdm")
        self.assertEqual(from_path.method, "vsdm")
        self.assertEqual(list(from_path.problem.scale), [1.0, 8.0])
        self.assertEqual(from_path.train.rounds, 100)
        self.assertAlmostEqual(from_path.train.lr, 0.001)
        self.assertEqual(from_path.resources.trainers, 2)
        self.assertFalse(from_path.HasField("priority"))  # unset stays unset: the server's default

    def test_a_spec_message_is_taken_as_it_is(self):
        s = vsdm.to_job_spec(str(SPIRAL))
        self.assertEqual(vsdm.to_job_spec(s), s)

    def test_exponent_strings_are_numbers(self):
        # PyYAML (YAML 1.1) reads 1e-3 as the string "1e-3": the field's type decides.
        s = vsdm.to_job_spec("train:\n  lr: 1e-3\n  rounds: 1e3\nvariational:\n  async: 'true'\n")
        self.assertEqual(s.train.lr, 0.001)
        self.assertEqual(s.train.rounds, 1000)
        self.assertTrue(s.variational.HasField("async"))
        self.assertTrue(getattr(s.variational, "async"))

    def test_ints_are_taken_for_doubles_and_scalars_for_lists(self):
        s = vsdm.to_job_spec({"train": {"lr": 1}, "problem": {"scale": 2}})
        self.assertEqual(s.train.lr, 1.0)
        self.assertEqual(list(s.problem.scale), [2.0])

    def test_string_fields_keep_the_yaml_text(self):
        s = vsdm.to_job_spec("problem:\n  test_start: 2020-01-01\n  log1p: true\n")
        self.assertEqual(s.problem.test_start, "2020-01-01")
        self.assertEqual(s.problem.log1p, "true")

    def test_unknown_field_names_its_path_and_the_fields_there(self):
        with self.assertRaises(vsdm.SpecError) as cm:
            vsdm.to_job_spec({"train": {"lrr": 0.1}})
        self.assertEqual(cm.exception.field, "train.lrr")
        self.assertTrue(str(cm.exception).startswith("train.lrr: no such field"), str(cm.exception))
        self.assertIn("did you mean lr?", str(cm.exception))
        self.assertIn("fields of train: rounds, steps_per_round", str(cm.exception))
        with self.assertRaises(vsdm.SpecError) as cm:
            vsdm.to_job_spec("trian:\n  lr: 1\n")
        self.assertEqual(cm.exception.field, "trian")
        self.assertIn("fields of the spec: name", str(cm.exception))
        self.assertIsInstance(cm.exception, ValueError)

    def test_wrong_types_name_the_field(self):
        cases = [
            ({"train": {"rounds": "many"}}, "train.rounds", "want an integer"),
            ({"train": {"rounds": 2.5}}, "train.rounds", "want an integer"),
            ({"train": {"lr": True}}, "train.lr", "want a number"),
            ({"train": {"lr": [1, 2]}}, "train.lr", "want a single number"),
            ({"problem": {"scale": [1, "x"]}}, "problem.scale[1]", "want a number"),
            ({"variational": {"async": "maybe"}}, "variational.async", "want true or false"),
            ({"train": 3}, "train", "want a mapping"),
            ({"name": {"a": 1}}, "name", "want a single string"),
            ({"train": {"seed": 2 ** 70}}, "train.seed", "out of range"),
        ]
        for data, field, why in cases:
            with self.subTest(field=field):
                with self.assertRaises(vsdm.SpecError) as cm:
                    vsdm.to_job_spec(data)
                self.assertEqual(cm.exception.field, field)
                self.assertIn(why, str(cm.exception))

    def test_a_missing_path_is_named(self):
        with self.assertRaises(vsdm.SpecError) as cm:
            vsdm.to_job_spec("examples/no-such.yaml")
        self.assertIn("no file 'examples/no-such.yaml'", str(cm.exception))
        with self.assertRaises(vsdm.SpecError) as cm:
            vsdm.to_job_spec("train: [1,\n")
        self.assertIn("not valid YAML", str(cm.exception))

    def test_empty_values_stay_unset(self):
        s = vsdm.to_job_spec("name: x\ntrain:\n  lr:\n")
        self.assertTrue(s.HasField("train"))
        self.assertFalse(s.train.HasField("lr"))


class OverridesTest(unittest.TestCase):
    def test_dict_and_set_strings_apply_over_the_file(self):
        a = vsdm.to_job_spec(str(SPIRAL), overrides={"train.rounds": 6, "sample.n": 1000, "train.lr": 3e-4})
        b = vsdm.to_job_spec(str(SPIRAL), overrides=["train.rounds=6", "sample.n=1000", "train.lr=3e-4"])
        self.assertEqual(a, b)
        self.assertEqual(a.train.rounds, 6)
        self.assertEqual(a.sample.n, 1000)
        self.assertAlmostEqual(a.train.lr, 3e-4)
        self.assertEqual(a.train.steps_per_round, 100)  # the rest of the file stays

    def test_later_wins_sections_are_created_and_lists_parse(self):
        s = vsdm.to_job_spec({"name": "x"}, overrides=["momentum.beta=0.5", "momentum.beta=0.7",
                                                       "problem.scale=[1, 4]"])
        self.assertEqual(s.momentum.beta, 0.7)
        self.assertEqual(list(s.problem.scale), [1.0, 4.0])

    def test_none_removes_a_field(self):
        s = vsdm.to_job_spec(str(SPIRAL), overrides={"train.lr": None})
        self.assertFalse(s.train.HasField("lr"))

    def test_unknown_override_key_names_its_path(self):
        with self.assertRaises(vsdm.SpecError) as cm:
            vsdm.to_job_spec(str(SPIRAL), overrides=["train.batch_pointz=3"])
        self.assertEqual(cm.exception.field, "train.batch_pointz")

    def test_malformed_overrides(self):
        for bad in (["train.lr"], ["=3"], ["train..lr=3"], "train.lr=3"):
            with self.subTest(bad=bad):
                with self.assertRaises(vsdm.SpecError) as cm:
                    vsdm.to_job_spec({}, overrides=bad)
                self.assertEqual(cm.exception.field, "overrides")


class GridTest(unittest.TestCase):
    def test_cartesian_product_first_key_slowest(self):
        members = spec.expand_grid({"train.lr": [1e-3, 3e-4], "model.hidden": [128, 256]})
        self.assertEqual([[t for _, _, t in m] for m in members], [
            ["train.lr=0.001", "model.hidden=128"],
            ["train.lr=0.001", "model.hidden=256"],
            ["train.lr=0.0003", "model.hidden=128"],
            ["train.lr=0.0003", "model.hidden=256"],
        ])

    def test_cli_form_keeps_the_text_given(self):
        members = spec.expand_grid(["train.lr=1e-3,3e-4", "model.hidden=128"])
        self.assertEqual([[t for _, _, t in m] for m in members], [["train.lr=1e-3", "model.hidden=128"],
                                                                   ["train.lr=3e-4", "model.hidden=128"]])

    def test_format_value_round_trips(self):
        for v, text in [(1e-3, "0.001"), (3e-4, "0.0003"), (1e-5, "1e-05"), (0.1 + 0.2, "0.30000000000000004"),
                        (128, "128"), (True, "true"), ([1.0, 8.0], "[1.0, 8.0]"), ("heun", "heun")]:
            self.assertEqual(spec.format_value(v), text)
        for v in (1e-3, 3e-4, 1e-5, 2.5e10, 0.1 + 0.2):
            self.assertEqual(float(spec.format_value(v)), v)

    def test_members_specs_and_errors(self):
        members = spec.sweep_members(str(SPIRAL), {"train.lr": [1e-3, 3e-4], "train.steps_per_round": [5, 10]},
                                     overrides={"train.rounds": 4})
        self.assertEqual(len(members), 4)
        self.assertEqual([(m.train.lr, m.train.steps_per_round, m.train.rounds) for m, _ in members],
                         [(1e-3, 5, 4), (1e-3, 10, 4), (3e-4, 5, 4), (3e-4, 10, 4)])
        self.assertEqual(members[3][1], ["train.lr=0.0003", "train.steps_per_round=10"])
        with self.assertRaises(vsdm.SpecError) as cm:
            spec.sweep_members(str(SPIRAL), ["train.rounds=4,lots"])
        self.assertEqual(cm.exception.field, "members[1].train.rounds")

    def test_bad_grids(self):
        for grid in ({}, {"train.lr": []}, ["train.lr="], ["train.lr=1,,2"], ["lr"], "train.lr=1,2",
                     {"train.seed": list(range(17)), "train.lr": list(range(16))}):
            with self.subTest(grid=grid):
                with self.assertRaises(vsdm.SpecError) as cm:
                    spec.expand_grid(grid)
                self.assertEqual(cm.exception.field, "grid")


class FakeCluster:
    """A state dir that looks like a running local cluster: our own pid is the coordinator's."""

    def __init__(self, root: pathlib.Path, pid: int = None, addr: str = "127.0.0.1:45678", token: str = "local-admin"):
        self.dir = root
        (root / "auth").mkdir(parents=True)
        (root / "pids").write_text(f"{pid or os.getpid()}\n{os.getpid()}\n")
        (root / "coordinator").write_text(addr + "\n")
        (root / "auth" / "admin.token").write_text(f"  {token}  \nsecond line\n")


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


class ResolutionTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = pathlib.Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_running_local_cluster_gives_its_address_and_admin_token(self):
        FakeCluster(self.root / "state")
        t = _channel.resolve_target(env={"VSDM_HOME": str(self.root / "state")})
        self.assertEqual(t, _channel.Target("127.0.0.1:45678", "local-admin", self.root / "state"))
        # VSDM_HOME empty: the state_dir argument; HOME decides the default dir.
        t = _channel.resolve_target(state_dir=self.root / "state", env={})
        self.assertEqual(t.address, "127.0.0.1:45678")
        FakeCluster(self.root / "home" / ".vsdm" / "local", addr="127.0.0.1:1")
        self.assertEqual(_channel.resolve_target(env={"HOME": str(self.root / "home")}).address, "127.0.0.1:1")

    def test_env_wins_and_the_local_token_is_only_for_the_local_cluster(self):
        FakeCluster(self.root / "state")
        env = {"VSDM_HOME": str(self.root / "state"), "VSDM_COORDINATOR": "10.0.0.1:50051"}
        t = _channel.resolve_target(env=env)
        self.assertEqual((t.address, t.token, t.local_state_dir), ("10.0.0.1:50051", "", None))
        env["VSDM_TOKEN"] = " user-token\n"
        self.assertEqual(_channel.resolve_target(env=env).token, "user-token")
        t = _channel.resolve_target(address="h:1", token="explicit", env=env)
        self.assertEqual((t.address, t.token), ("h:1", "explicit"))
        # Naming the local cluster's own address still counts as talking to it.
        t = _channel.resolve_target(address="127.0.0.1:45678", env={"VSDM_HOME": str(self.root / "state")})
        self.assertEqual(t.token, "local-admin")

    def test_dead_or_absent_cluster_falls_back_to_the_default(self):
        FakeCluster(self.root / "state", pid=dead_pid())
        t = _channel.resolve_target(env={"VSDM_HOME": str(self.root / "state")})
        self.assertEqual((t.address, t.token, t.local_state_dir), ("127.0.0.1:50051", "", None))
        t = _channel.resolve_target(env={"VSDM_HOME": str(self.root / "nothing")})
        self.assertEqual(t.address, "127.0.0.1:50051")

    def test_unreadable_token_is_named(self):
        FakeCluster(self.root / "state")
        (self.root / "state" / "auth" / "admin.token").write_text("\n")
        with self.assertRaisesRegex(ValueError, "admin.token: the first line is empty"):
            _channel.resolve_target(env={"VSDM_HOME": str(self.root / "state")})

    def test_client_uses_the_environment(self):
        FakeCluster(self.root / "state")
        with mock.patch.dict(os.environ, {"VSDM_HOME": str(self.root / "state")}, clear=True):
            with vsdm.Client() as c:
                self.assertEqual(c.address, "127.0.0.1:45678")
                self.assertEqual(c.local_state_dir, self.root / "state")
                self.assertEqual(c._metadata, (("authorization", "Bearer local-admin"),))
        with mock.patch.dict(os.environ, {"VSDM_HOME": str(self.root / "x")}, clear=True):
            with vsdm.Client() as c:
                self.assertEqual((c.address, c._metadata), ("127.0.0.1:50051", ()))

    def test_tls_arguments(self):
        with self.assertRaisesRegex(ValueError, "tls_cert and tls_key go together"):
            vsdm.Client("h:1", tls_ca=self.root / "ca.pem", tls_cert=self.root / "c.pem")
        with self.assertRaisesRegex(ValueError, "tls_ca .*ca.pem: cannot read it"):
            vsdm.Client("h:1", tls_ca=self.root / "ca.pem")
        with self.assertRaisesRegex(ValueError, "need tls_ca"):
            vsdm.Client("h:1", tls_server_name="vsdm")


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details):
        super().__init__(details)
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


class ErrorConversionTest(unittest.TestCase):
    def test_codes_map_to_classes_and_fields(self):
        e = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "train.lr: must be > 0, got -1"))
        self.assertIsInstance(e, vsdm.InvalidArgument)
        self.assertIsInstance(e, vsdm.VsdmError)
        self.assertEqual((e.code, e.field, e.message), (grpc.StatusCode.INVALID_ARGUMENT, "train.lr",
                                                        "train.lr: must be > 0, got -1"))
        self.assertEqual(str(e), "INVALID_ARGUMENT: train.lr: must be > 0, got -1")
        # What the coordinator writes: the request's path; .field is relative to the spec.
        e = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT,
                                               "spec.train.lr: must be in [1e-08, 1], got -1"))
        self.assertEqual((e.path, e.field), ("spec.train.lr", "train.lr"))
        e = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "members[2].spec.train.lr: bad"))
        self.assertEqual((e.path, e.field), ("members[2].spec.train.lr", "members[2].train.lr"))
        e = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "specs.x: bad"))
        self.assertEqual((e.path, e.field), ("specs.x", "specs.x"))
        for code, cls in [(grpc.StatusCode.NOT_FOUND, vsdm.NotFound),
                          (grpc.StatusCode.PERMISSION_DENIED, vsdm.PermissionDenied),
                          (grpc.StatusCode.UNAUTHENTICATED, vsdm.Unauthenticated),
                          (grpc.StatusCode.UNAVAILABLE, vsdm.Unavailable),
                          (grpc.StatusCode.FAILED_PRECONDITION, vsdm.FailedPrecondition),
                          (grpc.StatusCode.RESOURCE_EXHAUSTED, vsdm.ResourceExhausted),
                          (grpc.StatusCode.DATA_LOSS, vsdm.Internal)]:
            e = errors.from_rpc_error(FakeRpcError(code, "x"))
            self.assertIs(type(e), cls)
            self.assertEqual(e.code, code)

    def test_field_paths(self):
        for message, field in [("members[2].train.lr: must be > 0", "members[2].train.lr"),
                               ("problem.dataset: must be one of spiral, ...", "problem.dataset"),
                               ("page_size: must be >= 0, got -1", "page_size"),
                               ("--tls-cert and --tls-key go together", None),
                               ("job job-1: no such job", None), ("", None)]:
            self.assertEqual(errors.field_of_message(message), field, message)


class ArtifactListTest(unittest.TestCase):
    def test_matches_train_protocol_h(self):
        header = (SRC / "common" / "train_protocol.h").read_text()
        names = dict(re.findall(r'inline constexpr char (k\w+)\[\] = "([^"]+)"', header))
        listed = re.search(r"kArtifacts = \{([^}]*)\}", header).group(1)
        self.assertEqual(vsdm.ARTIFACTS, tuple(names[k.strip()] for k in listed.split(",")))


class FakeCall:
    """A server-stream call: iterates its items, raising an exception item."""

    def __init__(self, items):
        self._items = list(items)
        self.cancelled = False

    def __iter__(self):
        for it in self._items:
            if isinstance(it, Exception):
                raise it
            yield it

    def cancel(self):
        self.cancelled = True


def event(seq, kind, state=job_pb2.JOB_STATE_RUNNING, round_=0):
    e = job_pb2.JobEvent(job_id="job-1", sequence=seq, kind=kind, state=state, message=f"{kind} {seq}")
    e.time.seconds = 1700000000 + seq
    e.progress.round, e.progress.rounds, e.progress.loss = round_, 4, 0.5
    return e


def chunk(rank, offset, data, skipped=0):
    return service_pb2.LogChunk(rank=rank, offset=offset, data=data, skipped=skipped)


class FollowTest(unittest.TestCase):
    def client_with(self, **methods):
        c = vsdm.Client("127.0.0.1:1", token="t")
        c._stub = mock.Mock(**{f"{k}.side_effect": v for k, v in methods.items()})
        self.addCleanup(c.close)
        return c

    def test_watch_reconnects_after_the_last_non_progress_event(self):
        unavailable = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "restarting")
        calls = [FakeCall([event(1, "submitted", job_pb2.JOB_STATE_QUEUED), event(2, "running"),
                           event(2, "progress", round_=1), unavailable]),
                 FakeCall([unavailable]),
                 FakeCall([event(2, "running"), event(3, "progress", round_=2),
                           event(4, "succeeded", job_pb2.JOB_STATE_SUCCEEDED)])]
        requests = []

        def watch(req, **kw):
            requests.append(req.after_sequence)
            self.assertEqual(kw["metadata"], (("authorization", "Bearer t"),))
            return calls.pop(0)

        c = self.client_with(WatchJob=watch)
        out = io.StringIO()
        evs = list(c.watch("job-1", progress=True, reconnect_delay_s=0, stream=out))
        self.assertEqual(requests, [0, 2, 2])
        self.assertEqual([(e.sequence, e.kind, e.state) for e in evs],
                         [(1, "submitted", "QUEUED"), (2, "running", "RUNNING"), (2, "progress", "RUNNING"),
                          (3, "progress", "RUNNING"), (4, "succeeded", "SUCCEEDED")])
        self.assertEqual(evs[2].round, 1)
        self.assertEqual(evs[0].time.timestamp(), 1700000001)
        printed = out.getvalue()
        self.assertIn("round 1/4", printed)
        self.assertIn("[succeeded] SUCCEEDED", printed)

    def test_watch_raises_other_errors_and_cancels_when_left(self):
        c = self.client_with(WatchJob=lambda req, **kw: FakeCall([FakeRpcError(grpc.StatusCode.NOT_FOUND, "no job")]))
        with self.assertRaises(vsdm.NotFound):
            list(c.watch("job-9"))
        call = FakeCall([event(1, "submitted"), event(2, "running")])
        c = self.client_with(WatchJob=lambda req, **kw: call)
        for _ in c.watch("job-1"):
            break
        self.assertTrue(call.cancelled)

    def test_logs_lines_partials_gaps_and_attempts(self):
        pages = [
            service_pb2.GetLogsResponse(attempt=1, state=job_pb2.JOB_STATE_RUNNING,
                                        chunks=[chunk(0, 0, b"a1\na2\npar"), chunk(2, 0, b"v1\n")]),
            service_pb2.GetLogsResponse(attempt=1, state=job_pb2.JOB_STATE_RUNNING),
            service_pb2.GetLogsResponse(attempt=1, state=job_pb2.JOB_STATE_RUNNING,
                                        chunks=[chunk(0, 20, b"tial?\nb1\n", skipped=10)]),
            # A newer attempt, read with the old cursors: the rest of the old one first (asked by
            # number), then the new one from its start.
            service_pb2.GetLogsResponse(attempt=2, state=job_pb2.JOB_STATE_RUNNING,
                                        chunks=[chunk(0, 40, b"zz\n")]),
            service_pb2.GetLogsResponse(attempt=1, state=job_pb2.JOB_STATE_RUNNING,
                                        chunks=[chunk(0, 29, b"why\n")]),
            service_pb2.GetLogsResponse(attempt=1, state=job_pb2.JOB_STATE_RUNNING),
            service_pb2.GetLogsResponse(attempt=2, state=job_pb2.JOB_STATE_RUNNING,
                                        chunks=[chunk(0, 0, b"c1\nlast")]),
            service_pb2.GetLogsResponse(attempt=2, state=job_pb2.JOB_STATE_SUCCEEDED),
        ]
        requests = []

        def get_logs(req, **kw):
            requests.append((req.attempt, [(a.rank, a.offset) for a in req.after]))
            return pages.pop(0)

        c = self.client_with(GetLogs=get_logs)
        lines = list(c.logs("job-1", follow=True, poll_interval=0))
        self.assertEqual([(l.rank, l.attempt, l.text) for l in lines], [
            (-1, 1, "--- attempt 1 ---"), (0, 1, "a1"), (0, 1, "a2"), (2, 1, "v1"),
            (0, 1, "par"), (0, 1, "[... 10 bytes skipped ...]"), (0, 1, "tial?"), (0, 1, "b1"),
            (0, 1, "why"), (-1, 2, "--- attempt 2 ---"), (0, 2, "c1"), (0, 2, "last"),
        ])
        self.assertEqual(requests, [(0, []), (0, [(0, 9), (2, 3)]), (0, [(0, 9), (2, 3)]),
                                    (0, [(0, 29), (2, 3)]), (1, [(0, 29), (2, 3)]), (1, [(0, 33), (2, 3)]),
                                    (0, []), (0, [(0, 7)])])

    def test_logs_without_follow_reads_what_there_is(self):
        pages = [service_pb2.GetLogsResponse(attempt=3, state=job_pb2.JOB_STATE_RUNNING,
                                             chunks=[chunk(1, 0, b"x\ny")]),
                 service_pb2.GetLogsResponse(attempt=3, state=job_pb2.JOB_STATE_RUNNING)]
        requests = []

        def get_logs(req, **kw):
            requests.append((req.attempt, req.HasField("rank"), req.rank))
            return pages.pop(0)

        c = self.client_with(GetLogs=get_logs)
        self.assertEqual([l.text for l in c.logs("job-1", rank=1)], ["x", "y"])
        self.assertEqual(requests, [(0, True, 1), (3, True, 1)])

    def test_log_reader_keeps_multibyte_characters_across_chunks(self):
        r = _LogReader(0, follow=False)
        text = "é\n".encode()
        _, a = r.take(service_pb2.GetLogsResponse(attempt=1, chunks=[chunk(0, 0, text[:1])]))
        _, b = r.take(service_pb2.GetLogsResponse(attempt=1, chunks=[chunk(0, 1, text[1:])]))
        self.assertEqual((a, [l.text for l in b]), ([], ["é"]))


def job(job_id, state, value=None, overrides=(), metric="energy_distance"):
    j = job_pb2.Job(job_id=job_id, state=state, overrides=list(overrides))
    if value is not None:
        j.progress.metrics[metric] = value
    return j


class SummaryTest(unittest.TestCase):
    def test_best_is_the_lowest_succeeded_member(self):
        jobs = [job("job-1", job_pb2.JOB_STATE_SUCCEEDED, 0.30, ["train.lr=0.001"]),
                job("job-2", job_pb2.JOB_STATE_SUCCEEDED, 0.20, ["train.lr=0.0003"]),
                job("job-3", job_pb2.JOB_STATE_FAILED, 0.01, ["train.lr=1"]),
                job("job-4", job_pb2.JOB_STATE_RUNNING, None, ["train.lr=3"])]
        s = vsdm.summarize_group("sweep-1", jobs)
        self.assertEqual(s.metric, "energy_distance")
        self.assertEqual(s.best.job_id, "job-2")
        self.assertEqual([r.value for r in s.rows], [0.30, 0.20, 0.01, None])
        table = vsdm.format_summary(s)
        self.assertIn("* job-2", table)
        self.assertIn("best: job-2 (train.lr=0.0003) energy_distance 0.2000 (lower is better)", table)
        self.assertIn("4 members: 1 FAILED, 1 RUNNING, 2 SUCCEEDED", table)

    def test_higher_is_better_metrics_and_no_metric(self):
        jobs = [job("job-1", job_pb2.JOB_STATE_SUCCEEDED, 0.5, metric="accuracy"),
                job("job-2", job_pb2.JOB_STATE_SUCCEEDED, 0.9, metric="accuracy")]
        self.assertEqual(vsdm.summarize_group("g", jobs, "accuracy").best.job_id, "job-2")
        s = vsdm.summarize_group("g", jobs)  # accuracy is no default metric
        self.assertEqual((s.metric, s.best), (None, None))
        self.assertIn("METRIC", vsdm.format_summary(s))

    def test_states_and_one_line_summary(self):
        self.assertEqual(vsdm.state_name(job_pb2.JOB_STATE_RUNNING), "RUNNING")
        self.assertEqual(vsdm.parse_state("running"), job_pb2.JOB_STATE_RUNNING)
        self.assertEqual(vsdm.parse_state("JOB_STATE_QUEUED"), job_pb2.JOB_STATE_QUEUED)
        with self.assertRaisesRegex(ValueError, "state: must be queued"):
            vsdm.parse_state("sleeping")
        self.assertTrue(vsdm.is_final(job_pb2.JOB_STATE_CANCELLED))
        self.assertFalse(vsdm.is_final(job_pb2.JOB_STATE_RUNNING))
        j = job("job-7", job_pb2.JOB_STATE_RUNNING, overrides=["train.lr=0.1"])
        j.spec.name, j.progress.round, j.progress.rounds, j.progress.loss = "spiral", 2, 6, 0.25
        self.assertEqual(vsdm.job_summary(j), "job-7 spiral RUNNING round 2/6 loss 0.2500 (train.lr=0.1)")
        err = vsdm.JobFailed(job_pb2.Job(job_id="job-8", state=job_pb2.JOB_STATE_FAILED, message="exit 1"))
        self.assertEqual((str(err), err.state), ("job-8 FAILED: exit 1", "FAILED"))


if __name__ == "__main__":
    unittest.main()
