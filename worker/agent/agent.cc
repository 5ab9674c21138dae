#include "worker/agent/agent.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <random>
#include <thread>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/retry.h"
#include "common/status_macros.h"
#include "common/train_protocol.h"
#include "nlohmann/json.hpp"
#include "proto/job_spec_proto.h"
#include "worker/agent/rank_state.h"

namespace vsdm::worker {
namespace fs = std::filesystem;
namespace tp = train_protocol;
namespace {

constexpr int kChunksPerTurn = 32;                                  // Note [Uploads in slices]
// Note [Stacks of a hung rank]: a healthy rank checkpoints and exits 75 within a round or two of
// its SIGTERM, so the stacks are taken only 4 s before the SIGKILL is due (at least 2 s after
// the SIGTERM): gdb pauses the rank it attaches to, and doing it early held up the graceful
// exits of every rank of the gang past the kill grace (local_cluster_cancel in CI).
// An abort takes them only from a rank whose log has been silent for kHungAfter (issue 18: a
// rank that makes no progress has its stacks dumped, then is aborted): the coordinator aborts an
// attempt that sent no progress for at least its shortest deadline (--progress-deadline-min-
// seconds, 60 s), while a healthy rank being cancelled has logged within its last round.
constexpr absl::Duration kDumpStacksAfter = absl::Seconds(2);
constexpr absl::Duration kDumpStacksBeforeKill = absl::Seconds(4);
constexpr std::chrono::seconds kHungAfter{60};

// True when the file at `path` exists and was last written `d` or more ago.
bool SilentFor(const std::string& path, std::chrono::seconds d) {
  std::error_code ec;
  const fs::file_time_type t = fs::last_write_time(path, ec);
  return !ec && fs::file_time_type::clock::now() - t >= d;
}
constexpr std::chrono::hours kStaleTempAge{1};                      // L7
constexpr size_t kUidInDirName = 12;                                // hex digits of the job uid

// Progress files may not exist yet, and artifacts may be absent: "" then.
std::string ReadFileOrEmpty(const std::string& path) { return ReadFile(path).value_or(""); }

// A call to try again later rather than give up on: the coordinator is away, or it does not
// know this worker right now (lease lost, or a Register on the heartbeat thread has just
// replaced the credential the call carried) and the heartbeat thread is registering again.
bool RetryLater(const absl::Status& s) {
  return IsRetryable(s) || s.code() == absl::StatusCode::kNotFound || s.code() == absl::StatusCode::kPermissionDenied;
}

// Note [What the agent takes from an assignment]
// The coordinator's Assignment becomes paths and argv here, so a compromised or impersonated
// coordinator must not be able to steer them: the job id names <work dir>/jobs/<job_id>/
// (train_protocol::CheckJobId: no '/', no "..", no hidden names), attempt, rank and the job
// uid name the attempt dir and the log file (bounded integers, bounded hex), the store address
// is one "--store=HOST:PORT" argv element of a checked shape (train_protocol::ParseHostPort),
// the uid and spec hash are argv elements of bounded hex, and the rendezvous secret is hex that
// travels in the rank's environment, never in argv (`ps` shows argv to every local user). All of
// it is checked before anything is created.
constexpr int kMaxAttempt = 1000000;
constexpr int kMaxTrainers = 1 << 16;
constexpr size_t kMaxFencingHex = 64;  // job_uid: 32 hex digits today; spec_hash: 16

absl::Status CheckHex(const std::string& value, const char* field) {
  if (value.size() > kMaxFencingHex)
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": at most ", kMaxFencingHex, " hex digits, got ", value.size(), " characters"));
  for (char c : value)
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)))
      return absl::InvalidArgumentError(absl::StrCat(field, ": must be hex digits"));
  return absl::OkStatus();
}

absl::Status CheckAssignment(const v1::Assignment& a) {
  VSDM_RETURN_IF_ERROR(tp::CheckJobId(a.job_id()));
  if (a.attempt() < 0 || a.attempt() > kMaxAttempt)
    return absl::InvalidArgumentError(absl::StrCat("attempt: must be in [0, ", kMaxAttempt, "], got ", a.attempt()));
  if (a.trainers() < 1 || a.trainers() > kMaxTrainers)
    return absl::InvalidArgumentError(absl::StrCat("trainers: must be in [1, ", kMaxTrainers, "], got ", a.trainers()));
  if (a.rank() < 0 || a.rank() > a.trainers())
    return absl::InvalidArgumentError(absl::StrCat("rank: must be in [0, ", a.trainers(), "], got ", a.rank()));
  VSDM_RETURN_IF_ERROR(tp::ParseHostPort(a.store_addr(), "store_addr").status());
  VSDM_RETURN_IF_ERROR(CheckHex(a.job_uid(), "job_uid"));
  VSDM_RETURN_IF_ERROR(CheckHex(a.spec_hash(), "spec_hash"));
  return tp::CheckRendezvousSecret(a.rendezvous_secret());
}

// Note [Attempt directories]
// Each attempt a rank of this agent runs writes its own directory,
// jobs/<job_id>/attempt-<n>-<first 12 hex digits of the job uid>/ ("attempt-<n>" when the
// coordinator sends no uid): spec.json, progress files, checkpoint/, the artifacts. A stale rank
// of an older attempt (partitioned, or not yet dead) therefore never writes the files its
// replacement reads or prunes, and a job id recycled by a fresh coordinator (another uid) never
// finds the old job's checkpoints (review H3, H4). Logs stay in jobs/<job_id>/logs/, named by
// attempt and rank. Rank 0 of a new attempt starts from the coordinator's newest checkpoint
// (Note [Checkpoints through the coordinator]) or, when the coordinator has nothing newer, from
// the newest checkpoint of an earlier attempt dir of the same uid, hard-linked into the new
// dir (checkpoints are written by rename, never in place, so a link is never written through).
// Every start keeps the newest two attempt dirs of the job (the uid's own before any other
// uid's, then by attempt number) and those a rank of this agent still uses, and removes the rest.
std::string AttemptDirName(const v1::Assignment& a) {
  if (a.job_uid().empty()) return absl::StrCat("attempt-", a.attempt());
  return absl::StrCat("attempt-", a.attempt(), "-", a.job_uid().substr(0, kUidInDirName));
}

struct AttemptDir {
  int attempt = 0;
  std::string uid;  // the prefix in the name; "" for "attempt-<n>"
  fs::path path;
};

std::optional<AttemptDir> ParseAttemptDir(const fs::directory_entry& e) {
  std::error_code ec;
  if (e.symlink_status(ec).type() != fs::file_type::directory) return std::nullopt;  // never a symlink
  const std::string name = e.path().filename().string();
  if (!absl::StartsWith(name, "attempt-")) return std::nullopt;
  const std::string rest = name.substr(8);
  const size_t dash = rest.find('-');
  AttemptDir d;
  d.path = e.path();
  const std::string number = rest.substr(0, dash);
  if (number.empty() || !std::all_of(number.begin(), number.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(number, &d.attempt))
    return std::nullopt;
  if (dash != std::string::npos) {
    d.uid = rest.substr(dash + 1);
    if (d.uid.empty() || d.uid.size() > kUidInDirName || !CheckHex(d.uid, "uid").ok()) return std::nullopt;
  }
  return d;
}

std::vector<AttemptDir> AttemptDirs(const fs::path& job_dir) {
  std::vector<AttemptDir> out;
  std::error_code ec;
  for (fs::directory_iterator it(job_dir, ec), end; !ec && it != end; it.increment(ec))
    if (auto d = ParseAttemptDir(*it)) out.push_back(std::move(*d));
  return out;
}

// Creates `base` (the operator's, trusted: as a plain create_directories), then
// base/parts[0]/parts[1]/... one level at a time. INTERNAL naming the path when a level exists
// as anything but a directory: a symlink planted in a shared work dir is refused, never followed
// (mkdir does not follow one, and each level is checked before the next is made under it).
absl::Status MakeDirsNoFollow(const fs::path& base, const std::vector<std::string>& parts) {
  std::error_code base_ec;
  fs::create_directories(base, base_ec);
  if (base_ec) return absl::InternalError(absl::StrCat("create ", base.string(), ": ", base_ec.message()));
  fs::path p = base;
  for (const std::string& part : parts) {
    p /= part;
    std::error_code ec;
    fs::create_directory(p, ec);
    const fs::file_status st = fs::symlink_status(p, ec);
    if (ec) return absl::InternalError(absl::StrCat("create ", p.string(), ": ", ec.message()));
    if (st.type() != fs::file_type::directory)
      return absl::InternalError(absl::StrCat(p.string(), ": exists and is ",
                                              st.type() == fs::file_type::symlink ? "a symlink" : "not a directory",
                                              "; refused"));
  }
  return absl::OkStatus();
}

// `src` under the name `dst`: a hard link, else a copy renamed into place (never a torn file
// under a checkpoint's name).
absl::Status LinkOrCopy(const fs::path& src, const fs::path& dst) {
  std::error_code ec;
  fs::create_hard_link(src, dst, ec);
  if (!ec) return absl::OkStatus();
  const fs::path tmp = dst.parent_path() / absl::StrCat(".tmp-", dst.filename().string(), "-", getpid());
  fs::copy_file(src, tmp, fs::copy_options::overwrite_existing, ec);
  if (!ec) fs::rename(tmp, dst, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    return absl::InternalError(absl::StrCat("copy ", src.string(), " to ", dst.string(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

std::string RandomInstanceId() {
  std::random_device rd;
  std::string bytes;
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = rd();
    bytes.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  return absl::BytesToHexString(bytes);
}

}  // namespace

Agent::Agent(AgentOptions options, CoordinatorClient& client, ProcessSupervisor& processes, AgentMetrics* metrics,
             const Clock* clock)
    : options_(std::move(options)),
      client_(client),
      processes_(processes),
      metrics_(metrics),
      clock_(clock != nullptr ? *clock : own_clock_) {
  if (options_.instance_id.empty()) options_.instance_id = RandomInstanceId();
  absl::MutexLock lock(&mu_);
  last_answer_ = clock_.Monotonic();  // the fence counts from the start
}

Agent::~Agent() {
  {
    absl::MutexLock lock(&mu_);
    stop_heartbeats_ = true;
  }
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
}

bool Agent::registered() const {
  absl::MutexLock lock(&mu_);
  return registered_;
}

// ---- The heartbeat side ----------------------------------------------------------------------

void Agent::StartHeartbeatThread() {
  if (!heartbeat_thread_.joinable()) heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
}

void Agent::HeartbeatLoop() {
  for (;;) {
    Exchange();
    absl::MutexLock lock(&mu_);
    // Not registered: try again within a second, as the loop did before it had a thread.
    const absl::Duration wait = registered_ ? heartbeat_ : std::min(heartbeat_, absl::Seconds(1));
    if (mu_.AwaitWithTimeout(absl::Condition(&stop_heartbeats_), wait)) return;
  }
}

void Agent::Exchange() {
  std::vector<v1::RunningRank> held;
  bool registered;
  {
    absl::MutexLock lock(&mu_);
    held = held_;
    registered = registered_;
  }
  if (!registered && !Register(held)) return;
  if (Heartbeat(held).code() != absl::StatusCode::kNotFound) return;
  // The lease is lost (or the coordinator restarted without us): register again at once, with
  // what is held; the coordinator aborts what it no longer wants.
  {
    absl::MutexLock lock(&mu_);
    registered_ = false;
  }
  if (Register(held) && Heartbeat(held).code() == absl::StatusCode::kNotFound) {
    absl::MutexLock lock(&mu_);
    registered_ = false;
  }
}

bool Agent::Register(const std::vector<v1::RunningRank>& held) {
  v1::RegisterRequest reg;
  reg.set_worker_id(options_.worker_id);
  reg.set_instance_id(options_.instance_id);
  auto* res = reg.mutable_resources();
  res->set_slots(options_.slots);
  res->set_devices(options_.devices);
  res->set_memory_bytes(options_.memory_bytes);
  res->set_host(options_.host);
  for (const auto& rr : held) *reg.add_running() = rr;
  auto resp = client_.Register(reg);
  if (!resp.ok()) return false;
  absl::MutexLock lock(&mu_);
  registered_ = true;
  // The coordinator's period, within sane bounds (review L8: it is trusted with no more).
  heartbeat_ = absl::Seconds(std::clamp(resp->heartbeat_seconds(), 0.2, 60.0));
  last_answer_ = clock_.Monotonic();
  return true;
}

absl::Status Agent::Heartbeat(const std::vector<v1::RunningRank>& held) {
  v1::HeartbeatRequest hb;
  hb.set_worker_id(options_.worker_id);
  hb.set_instance_id(options_.instance_id);
  for (const auto& rr : held) *hb.add_running() = rr;
  auto resp = client_.Heartbeat(hb);
  if (!resp.ok()) return resp.status();
  if (metrics_) metrics_->HeartbeatOk();
  absl::MutexLock lock(&mu_);
  last_answer_ = clock_.Monotonic();
  answers_.push_back(*std::move(resp));
  return absl::OkStatus();
}

std::vector<v1::RunningRank> Agent::Held() const {
  std::set<std::pair<std::string, int>> seen;
  std::vector<v1::RunningRank> out;
  auto add = [&](const std::string& attempt_id, int rank) {
    if (!seen.emplace(attempt_id, rank).second) return;
    v1::RunningRank rr;
    rr.set_attempt_id(attempt_id);
    rr.set_rank(rank);
    out.push_back(std::move(rr));
  };
  for (const auto& [id, r] : ranks_) add(r.assignment.attempt_id(), r.assignment.rank());
  for (const auto& p : pending_uploads_) add(p.rank.assignment.attempt_id(), p.rank.assignment.rank());
  for (const auto& c : unreported_) add(c.attempt_id(), c.rank());
  return out;
}

void Agent::PublishHeld() {
  std::vector<v1::RunningRank> held = Held();
  absl::MutexLock lock(&mu_);
  held_ = std::move(held);
}

// ---- Recovery and the rank record ------------------------------------------------------------

void Agent::Recover() {
  if (recovered_) return;
  recovered_ = true;
  if (options_.work_dir.empty()) return;
  StopPredecessorRanks();
  RemoveStaleTempFiles();
}

void Agent::StopPredecessorRanks() {
  const std::string path = RankStatePath(options_.work_dir, options_.worker_id);
  auto text = ReadFile(path);
  if (!text.ok()) return;  // no predecessor here
  const std::string me = absl::StrCat("vsdm-worker ", options_.worker_id, ": ");
  auto state = RankStateFromJson(*text);
  if (!state.ok()) {
    std::cerr << me << path << ": " << state.status().message() << "; ignored" << std::endl;
  } else if (state->agent.pid != getpid() && state->agent.start_time != 0 &&
             ProcessStartTime(state->agent.pid) == state->agent.start_time) {
    std::cerr << me << "warning: the agent that wrote " << path << " (pid " << state->agent.pid
              << ") is still running with this worker id and work dir; its ranks are left alone. Two agents must "
                 "not share one --id."
              << std::endl;
    return;  // and its file is left alone too
  } else {
    for (const RankRecord& r : KillLeftoverRanks(state->ranks))
      std::cerr << me << "killed rank " << r.rank << " of attempt " << absl::CHexEscape(r.attempt_id) << " (pid "
                << r.process.pid << ", process group " << r.process.pgid
                << ") that the previous agent on this worker left running" << std::endl;
  }
  WriteRankState();
}

void Agent::WriteRankState() {
  if (options_.work_dir.empty()) return;
  RankState state;
  state.agent = SelfIdentity();
  for (const auto& [id, r] : ranks_)
    if (r.process) state.ranks.push_back({*r.process, r.assignment.attempt_id(), r.assignment.rank()});
  std::string text = RankStateToJson(state);
  if (text == state_written_) return;
  if (absl::Status s = AtomicWriteFile(RankStatePath(options_.work_dir, options_.worker_id), text); !s.ok()) {
    std::cerr << "vsdm-worker " << options_.worker_id << ": " << s.message() << std::endl;
    return;
  }
  state_written_ = std::move(text);
}

void Agent::RemoveStaleTempFiles() {
  const auto cutoff = fs::file_time_type::clock::now() - kStaleTempAge;
  int removed = 0;
  auto sweep = [&](const fs::directory_entry& e) {
    std::error_code ec;
    if (!absl::StartsWith(e.path().filename().string(), ".tmp-") ||
        e.symlink_status(ec).type() != fs::file_type::regular)
      return;
    const auto mtime = fs::last_write_time(e.path(), ec);
    if (!ec && mtime < cutoff && fs::remove(e.path(), ec)) ++removed;
  };
  std::error_code ec;
  for (fs::directory_iterator it(options_.work_dir, ec), end; !ec && it != end; it.increment(ec)) sweep(*it);
  const fs::path jobs = fs::path(options_.work_dir) / "jobs";
  ec.clear();
  for (fs::recursive_directory_iterator it(jobs, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec))
    sweep(*it);
  if (removed > 0)
    std::cerr << "vsdm-worker " << options_.worker_id << ": removed " << removed
              << " temp files older than an hour (interrupted writes) from " << options_.work_dir << std::endl;
}

// ---- Starting a rank -------------------------------------------------------------------------

int Agent::PickDevice() const {
  if (options_.devices <= 0) return -1;
  std::vector<int> held(static_cast<size_t>(options_.devices), 0);
  for (const auto& [id, rank] : ranks_)
    if (rank.device >= 0 && rank.device < options_.devices) ++held[static_cast<size_t>(rank.device)];
  return static_cast<int>(std::min_element(held.begin(), held.end()) - held.begin());
}

std::vector<std::string> Agent::TrainArgv(const v1::Assignment& a, const std::string& spec_path,
                                          const std::string& out_dir) const {
  tp::TrainArgs t;
  t.spec_path = spec_path;
  t.out_dir = out_dir;
  t.rank = a.rank();
  t.trainers = a.trainers();
  t.store = a.store_addr();
  t.job_id = a.job_id();
  t.job_uid = a.job_uid();
  t.spec_hash = a.spec_hash();
  t.max_rank_memory_bytes = 0;  // the coordinator checked the spec against its --max-rank-memory
  t.attempt = a.attempt();
  t.threads = options_.threads_per_rank;
  t.pg_timeout_seconds = options_.pg_timeout_seconds;
  t.bind = options_.host;
  return t.ToArgv(options_.train_bin);
}

v1::CompleteRequest Agent::Failure(const v1::Assignment& a, int exit_code, const std::string& message) const {
  v1::CompleteRequest c;
  c.set_worker_id(options_.worker_id);
  c.set_attempt_id(a.attempt_id());
  c.set_rank(a.rank());
  c.set_exit_code(exit_code);
  c.set_message(message);
  return c;
}

void Agent::Start(const v1::Assignment& a) {
  if (!started_.insert(absl::StrCat(a.attempt_id(), "#", a.rank())).second) return;  // a repeat
  const int bad_input = tp::ExitCode(tp::TrainExit::kBadInput);
  if (absl::Status s = CheckAssignment(a); !s.ok()) {
    std::cerr << "vsdm-worker " << options_.worker_id << ": refused the assignment of attempt \""
              << absl::CHexEscape(a.attempt_id().substr(0, 64)) << "\" rank " << a.rank() << ": " << s.message()
              << std::endl;
    unreported_.push_back(Failure(a, bad_input, absl::StrCat("agent: refused the assignment: ", s.message())));
    return;
  }
  auto spec = JobSpecFromProto(a.spec(), JobSpecLimits{0});  // the coordinator's limit applied
  if (!spec.ok()) {
    unreported_.push_back(
        Failure(a, bad_input, absl::StrCat("agent: the assignment's spec is invalid: ", spec.status().message())));
    return;
  }
  Rank r;
  r.assignment = a;
  const fs::path job_dir = fs::path(options_.work_dir) / "jobs" / a.job_id();
  r.out_dir = (job_dir / AttemptDirName(a)).string();
  r.log_path = (job_dir / tp::kLogsDir / tp::RankLogName(a.attempt(), a.rank())).string();
  const int failed = tp::ExitCode(tp::TrainExit::kFailed);
  if (absl::Status s = MakeDirsNoFollow(options_.work_dir, {"jobs", a.job_id(), tp::kLogsDir}); !s.ok()) {
    unreported_.push_back(Failure(a, failed, absl::StrCat("agent: ", s.message())));
    return;
  }
  if (absl::Status s = MakeDirsNoFollow(options_.work_dir, {"jobs", a.job_id(), AttemptDirName(a)}); !s.ok()) {
    unreported_.push_back(Failure(a, failed, absl::StrCat("agent: ", s.message())));
    return;
  }
  // JSON is YAML: vsdm-train reads it as a spec file.
  const std::string spec_path = (fs::path(r.out_dir) / tp::kSpecFile).string();
  if (auto s = AtomicWriteFile(spec_path, JobSpecToJson(*spec).dump(2) + "\n"); !s.ok()) {
    unreported_.push_back(Failure(a, failed, absl::StrCat("agent: ", s.message())));
    return;
  }
  if (a.rank() == 0) r.uploaded_round = PrepareCheckpoint(r);
  PruneAttemptDirs(a.job_id(), r.out_dir);
  auto child = StartChild(r, spec_path);
  if (!child.ok()) {
    unreported_.push_back(Failure(a, failed, absl::StrCat("agent: ", child.status().message())));
    return;
  }
  r.child = *child;
  r.process = processes_.Identity(r.child);
  ranks_[r.child] = std::move(r);
  WriteRankState();
}

absl::StatusOr<int64_t> Agent::StartChild(Rank& r, const std::string& spec_path) {
  const v1::Assignment& a = r.assignment;
  ChildOptions child_options;
  child_options.log_path = r.log_path;
  // One GPU a rank: the rank sees only its own device (a global rank % device count would put
  // two ranks of a node on one GPU when a gang spans nodes).
  r.device = PickDevice();
  if (r.device >= 0)
    child_options.env["CUDA_VISIBLE_DEVICES"] =
        static_cast<size_t>(r.device) < options_.visible_devices.size() ? options_.visible_devices[r.device]
                                                                         : absl::StrCat(r.device);
  if (!a.rendezvous_secret().empty()) child_options.env[tp::kRendezvousSecretEnv] = a.rendezvous_secret();
  child_options.max_open_files = options_.rank_max_open_files;
  child_options.max_address_space_bytes = options_.rank_max_address_space_bytes;
  // On the loop's thread, the main one: the child dies with the thread that forked it.
  return processes_.Start(TrainArgv(a, spec_path, r.out_dir), child_options);
}

// Note [Checkpoints through the coordinator]
// Agents share no disk, so rank 0's agent uploads each new checkpoint of its rank (a file
// vsdm-train wrote atomically) to the coordinator's artifact store, and the agent that starts
// rank 0 of a later attempt, wherever it is, first fetches the newest one the coordinator holds
// into the attempt's checkpoint dir (written beside it as a temp file, renamed when whole), where
// vsdm-train finds it and trainer 0 broadcasts it to the other ranks as before. A fetch that
// fails leaves the dir as it was: the rank then resumes from what an earlier attempt of the same
// job uid left on this disk (Note [Attempt directories]), or from round 0. A rank 0 that exits
// preempted (75) has its last checkpoint uploaded before its exit is reported.
int64_t Agent::PrepareCheckpoint(const Rank& r) {
  const v1::Assignment& a = r.assignment;
  const fs::path dir = fs::path(r.out_dir) / tp::kCheckpointDir;
  if (absl::Status s = MakeDirsNoFollow(options_.work_dir, {"jobs", a.job_id(), AttemptDirName(a), tp::kCheckpointDir});
      !s.ok()) {
    std::cerr << "vsdm-worker " << options_.worker_id << ": " << s.message() << std::endl;
    return 0;
  }
  const auto own = tp::NewestCheckpointFile(dir.string());
  std::optional<std::pair<int64_t, std::string>> earlier;  // of the same uid, never another's
  const std::string uid = a.job_uid().substr(0, kUidInDirName);
  for (const AttemptDir& d : AttemptDirs(fs::path(r.out_dir).parent_path())) {
    if (d.uid != uid || d.attempt >= a.attempt()) continue;
    auto newest = tp::NewestCheckpointFile((d.path / tp::kCheckpointDir).string());
    if (newest && (!earlier || newest->first > earlier->first)) earlier = std::move(newest);
  }
  const int64_t have = std::max(own ? own->first : 0, earlier ? earlier->first : 0);
  if (const int64_t fetched = FetchCheckpoint(r, have); fetched > have) return fetched;
  if (!earlier || earlier->first <= (own ? own->first : 0)) return have;
  const fs::path target = dir / tp::CheckpointFileName(earlier->first);
  if (absl::Status s = LinkOrCopy(earlier->second, target); !s.ok()) {
    std::cerr << "vsdm-worker " << options_.worker_id << ": " << s.message() << std::endl;
    return own ? own->first : 0;
  }
  std::cerr << "vsdm-worker " << options_.worker_id << ": attempt " << a.attempt() << " of " << a.job_id()
            << " starts from the checkpoint of round " << earlier->first << " of " << earlier->second << std::endl;
  return earlier->first;
}

int64_t Agent::FetchCheckpoint(const Rank& r, int64_t have) {
  v1::FetchCheckpointRequest req;
  req.set_worker_id(options_.worker_id);
  req.set_attempt_id(r.assignment.attempt_id());
  req.set_after_round(have);
  std::string data;
  int64_t size = -1;
  do {
    req.set_offset(static_cast<int64_t>(data.size()));
    auto page = client_.FetchCheckpoint(req);
    if (!page.ok() || (page->round() != 0 && (page->offset() != req.offset() || page->size() < 0))) {
      std::cerr << "vsdm-worker " << options_.worker_id << ": could not fetch the checkpoint of "
                << r.assignment.job_id() << " (" << (page.ok() ? "bad page" : page.status().ToString())
                << "); resuming from round " << have << std::endl;
      return 0;
    }
    if (page->round() == 0) return 0;  // the coordinator has nothing newer
    req.set_round(page->round());
    size = page->size();
    data += page->data();
    if (page->data().empty() && static_cast<int64_t>(data.size()) < size) return 0;  // no progress
  } while (static_cast<int64_t>(data.size()) < size);
  if (static_cast<int64_t>(data.size()) != size) return 0;
  const fs::path target = fs::path(r.out_dir) / tp::kCheckpointDir / tp::CheckpointFileName(req.round());
  if (!AtomicWriteFile(target.string(), data).ok()) return 0;
  std::cerr << "vsdm-worker " << options_.worker_id << ": fetched the checkpoint of round " << req.round() << " of "
            << r.assignment.job_id() << " (" << size << " bytes) from the coordinator" << std::endl;
  if (metrics_) metrics_->CheckpointTransferred("fetch", size);
  return req.round();
}

void Agent::PruneAttemptDirs(const std::string& job_id, const std::string& current) {
  std::set<std::string> in_use = {current};
  for (const auto& [id, r] : ranks_) in_use.insert(r.out_dir);
  for (const auto& p : pending_uploads_) in_use.insert(p.rank.out_dir);
  const fs::path job_dir = fs::path(options_.work_dir) / "jobs" / job_id;
  std::vector<AttemptDir> dirs = AttemptDirs(job_dir);
  const auto cur = ParseAttemptDir(fs::directory_entry(current));
  const auto own_uid = [&](const AttemptDir& d) { return cur && d.uid == cur->uid; };
  std::sort(dirs.begin(), dirs.end(), [&](const AttemptDir& x, const AttemptDir& y) {
    return std::make_tuple(own_uid(x), x.attempt) > std::make_tuple(own_uid(y), y.attempt);
  });
  for (size_t i = 2; i < dirs.size(); ++i) {
    if (in_use.count(dirs[i].path.string()) != 0) continue;
    std::error_code ec;
    fs::remove_all(dirs[i].path, ec);  // a symlink inside is removed, never followed
    if (ec)
      std::cerr << "vsdm-worker " << options_.worker_id << ": remove " << dirs[i].path.string() << ": "
                << ec.message() << std::endl;
  }
}

// ---- Running ranks ---------------------------------------------------------------------------

void Agent::StopRank(int64_t id, Rank& r, bool dump_stacks) {
  StopOptions how;
  // The full grace also for an abort: a preempted attempt's trainer 0 may still be writing the
  // checkpoint every rank agreed on when the abort (sent on its peers' exit 75) arrives.
  how.grace = options_.kill_grace;
  if (dump_stacks) how.dump_stacks_after = std::max(kDumpStacksAfter, options_.kill_grace - kDumpStacksBeforeKill);
  processes_.Stop(id, how);
  r.aborted = true;
}

void Agent::ApplyAnswers() {
  std::deque<v1::HeartbeatResponse> answers;
  {
    absl::MutexLock lock(&mu_);
    answers.swap(answers_);
  }
  for (const auto& resp : answers) {
    for (const auto& a : resp.assignments()) Start(a);
    for (const auto& attempt : resp.abort_attempts()) {
      for (auto& [id, r] : ranks_)
        // No stacks for the abort of a rank that is logging: gdb pauses the rank and blocks this
        // loop, which held the SIGKILL of cancelled ranks past their kill grace
        // (local_cluster_cancel). A silent one is hung (Note [Stacks of a hung rank]).
        if (r.assignment.attempt_id() == attempt && !r.aborted)
          StopRank(id, r, /*dump_stacks=*/SilentFor(r.log_path, kHungAfter));
      // The coordinator has moved on: an exited rank 0's files of that attempt are not wanted.
      pending_uploads_.erase(std::remove_if(pending_uploads_.begin(), pending_uploads_.end(),
                                            [&](const PendingUpload& p) {
                                              return p.rank.assignment.attempt_id() == attempt;
                                            }),
                             pending_uploads_.end());
    }
  }
}

void Agent::Fence() {
  if (options_.fence_after <= absl::ZeroDuration()) return;
  absl::Time last;
  {
    absl::MutexLock lock(&mu_);
    last = last_answer_;
  }
  const absl::Duration silent = clock_.Monotonic() - last;
  if (silent <= options_.fence_after) return;
  int stopped = 0;
  for (auto& [id, r] : ranks_) {
    if (r.aborted) continue;
    StopRank(id, r, /*dump_stacks=*/true);
    ++stopped;
  }
  if (stopped > 0)
    std::cerr << "vsdm-worker " << options_.worker_id << ": the coordinator has answered no heartbeat for "
              << absl::FormatDuration(absl::Trunc(silent, absl::Seconds(1))) << " (--fence-after "
              << absl::FormatDuration(options_.fence_after)
              << "): this worker's lease has expired and its attempts are being run elsewhere; stopping its " << stopped
              << " ranks" << std::endl;
}

std::optional<FileUpload> Agent::ExitUpload(const Rank& r, const ChildExit& e) const {
  if (r.aborted || r.assignment.rank() != 0) return std::nullopt;
  const std::string& attempt = r.assignment.attempt_id();
  if (e.exit_code == 0) {  // the artifacts, so SUCCEEDED means they can be downloaded
    std::vector<FileUpload::File> files;
    for (const char* name : tp::kArtifacts) {
      const std::string path = (fs::path(r.out_dir) / name).string();
      std::error_code ec;
      if (fs::is_regular_file(path, ec)) files.push_back({path, name});
    }
    return FileUpload(options_.worker_id, attempt, std::move(files));
  }
  if (e.exit_code == tp::ExitCode(tp::TrainExit::kPreempted)) {  // the checkpoint it wrote on SIGTERM
    const auto newest = tp::NewestCheckpointFile((fs::path(r.out_dir) / tp::kCheckpointDir).string());
    if (!newest || newest->first <= r.uploaded_round) return std::nullopt;
    const std::string name = fs::path(newest->second).filename().string();
    return FileUpload(options_.worker_id, attempt,
                      {{newest->second, absl::StrCat(tp::kCheckpointDir, "/", name)}});
  }
  return std::nullopt;
}

void Agent::ReapChildren() {
  bool changed = false;
  for (const ChildExit& e : processes_.Poll()) {
    auto it = ranks_.find(e.id);
    if (it == ranks_.end()) continue;
    changed = true;
    if (!it->second.aborted) ForwardLog(it->second, /*final=*/true);
    if (auto upload = ExitUpload(it->second, e))
      pending_uploads_.push_back({std::move(it->second), e, *std::move(upload)});
    else
      OnExit(it->second, e);
    ranks_.erase(it);
  }
  if (changed) WriteRankState();
}

void Agent::OnExit(const Rank& r, const ChildExit& e) {
  const bool preempted = e.exit_code == tp::ExitCode(tp::TrainExit::kPreempted);
  if (metrics_) {
    metrics_->RankExited(r.aborted       ? "aborted"
                         : e.exit_code == 0 ? "succeeded"
                         : preempted        ? "preempted"
                                            : "failed");
    if (r.assignment.rank() == 0 || r.assignment.rank() == r.assignment.trainers())
      metrics_->RemoveJob(r.assignment.job_id());
  }
  if (r.aborted) return;  // the coordinator ordered it, or has given the attempt up
  v1::CompleteRequest c = Failure(r.assignment, e.exit_code, "");
  if (e.exit_code != 0) {
    c.set_message(absl::StrCat(e.signal ? absl::StrCat("killed by signal ", e.signal, "; ") : "",
                               preempted ? "preempted (checkpointed on SIGTERM); " : "", "last lines:\n", e.log_tail));
  } else if (r.assignment.rank() == 0) {
    const auto m = nlohmann::json::parse(ReadFileOrEmpty((fs::path(r.out_dir) / tp::kMetricsFile).string()), nullptr,
                                         /*allow_exceptions=*/false);
    if (m.is_object()) {
      for (auto it = m.begin(); it != m.end(); ++it)
        if (it.value().is_number()) (*c.mutable_metrics())[it.key()] = it.value().get<double>();
    } else {
      c.set_exit_code(tp::ExitCode(tp::TrainExit::kFailed));
      c.set_message(absl::StrCat("rank 0 exited 0 but wrote no readable ", tp::kMetricsFile));
    }
  }
  unreported_.push_back(c);
}

bool Agent::UploadPending() {
  while (!pending_uploads_.empty()) {
    PendingUpload& p = pending_uploads_.front();
    const absl::Status s = p.upload.Continue(client_, kChunksPerTurn);
    if (RetryLater(s) || (s.ok() && !p.upload.done())) return true;  // the next turn goes on
    const bool artifacts = p.exit.exit_code == 0;
    if (s.ok()) {
      if (!artifacts && metrics_) metrics_->CheckpointTransferred("upload", p.upload.bytes_sent());
      OnExit(p.rank, p.exit);
    } else if (artifacts) {
      unreported_.push_back(Failure(p.rank.assignment, tp::ExitCode(tp::TrainExit::kFailed),
                                    absl::StrCat("artifact upload failed: ", s.message())));
    } else {
      OnExit(p.rank, p.exit);  // the checkpoint was refused: the preemption is reported all the same
    }
    pending_uploads_.pop_front();
  }
  return false;
}

void Agent::ReportPending() {
  while (!unreported_.empty()) {
    absl::Status s = client_.Complete(unreported_.front());
    if (RetryLater(s)) break;  // keep it for when the coordinator (or our registration) is back
    unreported_.pop_front();
  }
}

void Agent::UploadCheckpoint(Rank& r) {
  if (!r.checkpoint_upload) {
    const auto newest = tp::NewestCheckpointFile((fs::path(r.out_dir) / tp::kCheckpointDir).string());
    if (!newest || newest->first <= r.uploaded_round) return;
    const std::string name = fs::path(newest->second).filename().string();
    r.checkpoint_upload = FileUpload(options_.worker_id, r.assignment.attempt_id(),
                                     {{newest->second, absl::StrCat(tp::kCheckpointDir, "/", name)}});
    r.checkpoint_upload_round = newest->first;
  }
  const absl::Status s = r.checkpoint_upload->Continue(client_, kChunksPerTurn);
  if (s.ok() && !r.checkpoint_upload->done()) return;  // more next turn
  if (RetryLater(s)) {
    r.checkpoint_upload.reset();  // next turn, with whatever is newest then
    return;
  }
  // Up, or refused (the attempt is over) or gone under the upload (pruned: a newer one exists).
  if (s.ok() && metrics_) {
    std::error_code ec;
    const auto size = fs::file_size(fs::path(r.out_dir) / tp::kCheckpointDir /
                                        tp::CheckpointFileName(r.checkpoint_upload_round),
                                    ec);
    metrics_->CheckpointTransferred("upload", ec ? r.checkpoint_upload->bytes_sent() : static_cast<int64_t>(size));
  }
  r.uploaded_round = r.checkpoint_upload_round;
  r.checkpoint_upload.reset();
}

void Agent::ForwardVariational(Rank& r) {
  std::string text = ReadFileOrEmpty((fs::path(r.out_dir) / tp::kVariationalProgressFile).string());
  if (text.empty() || text == r.last_progress) return;
  auto p = tp::VariationalProgressFromJson(text);
  if (!p.ok()) return;  // a file from an older build, or half-read: try again next turn
  if (metrics_) metrics_->UpdateVariational(r.assignment.job_id(), *p);
  r.last_progress = std::move(text);
}

void Agent::ForwardTrainer(Rank& r) {
  std::string text = ReadFileOrEmpty((fs::path(r.out_dir) / tp::kProgressFile).string());
  if (text.empty() || text == r.last_progress) return;
  auto p = tp::TrainerProgressFromJson(text);
  if (!p.ok() || p->rounds <= 0) return;  // half-read or from an older attempt: next turn
  if (metrics_) metrics_->UpdateJob(r.assignment.job_id(), *p);
  v1::ReportRequest rep;
  rep.set_worker_id(options_.worker_id);
  rep.set_attempt_id(r.assignment.attempt_id());
  rep.set_rank(0);
  auto* pr = rep.mutable_progress();
  pr->set_round(p->round);
  pr->set_rounds(p->rounds);
  pr->set_loss(p->loss);
  pr->set_a_norm(p->a_norm);
  pr->set_steps_per_second(p->steps_per_second);
  pr->set_eta_seconds(p->eta_seconds);
  if (p->checkpoints_skipped > 0) {  // the coordinator turns it into a checkpoint_fallback event
    (*pr->mutable_metrics())["checkpoints_skipped"] = static_cast<double>(p->checkpoints_skipped);
    (*pr->mutable_metrics())["resumed_from_round"] = static_cast<double>(p->resumed_from_round);
  }
  client_.Report(rep).IgnoreError();  // progress is best effort; the next round sends more
  r.last_progress = std::move(text);
}

void Agent::ForwardProgress() {
  for (auto& [id, r] : ranks_) {
    if (r.aborted) continue;
    if (r.assignment.rank() == r.assignment.trainers()) {
      ForwardVariational(r);  // the variational rank: local metrics only
    } else if (r.assignment.rank() == 0) {
      ForwardTrainer(r);
      UploadCheckpoint(r);
    }
  }
}

void Agent::ForwardLogs() {
  for (auto& [id, r] : ranks_)
    if (!r.aborted) ForwardLog(r, /*final=*/false);
}

void Agent::ForwardLog(Rank& r, bool final) {
  constexpr int kChunksPerTurn = 4;
  const absl::Time now = clock_.Monotonic();
  // A rank's last lines are tried even while paused: they say why it ended.
  if (logs_unsupported_ || (!final && now < logs_paused_until_)) return;
  for (int i = 0; i < kChunksPerTurn; ++i) {
    std::optional<v1::AppendLogRequest> req = NextLogChunk(r.log_path, r.log, now, final);
    if (!req) return;
    req->set_worker_id(options_.worker_id);
    req->set_attempt_id(r.assignment.attempt_id());
    req->set_rank(r.assignment.rank());
    const absl::Status s = client_.AppendLog(*req);
    if (s.ok()) {
      CommitLogChunk(r.log, *req);
      continue;
    }
    if (absl::IsUnimplemented(s)) {
      logs_unsupported_ = true;  // an older coordinator: the logs stay on this disk only
    } else if (absl::IsFailedPrecondition(s) || absl::IsInvalidArgument(s)) {
      r.log.done = true;  // its attempt is over
    } else {
      logs_paused_until_ = now + absl::Seconds(5);  // unreachable: do not hold up the loop for every rank
    }
    return;
  }
}

absl::Duration Agent::Step() {
  Recover();
  if (!heartbeat_thread_.joinable()) Exchange();
  ApplyAnswers();
  PublishHeld();  // what was just started is acknowledged by the next heartbeat
  Fence();
  ReapChildren();
  const bool more = UploadPending();
  ReportPending();
  ForwardProgress();
  ForwardLogs();
  PublishHeld();
  if (metrics_) metrics_->SetRanksRunning(static_cast<int>(ranks_.size()));
  if (more) return absl::ZeroDuration();
  absl::MutexLock lock(&mu_);
  return std::min(heartbeat_, absl::Milliseconds(500));
}

void Agent::Shutdown() {
  Recover();
  for (auto& [id, r] : ranks_) {
    if (r.aborted) continue;
    StopOptions how;
    how.grace = options_.kill_grace;
    processes_.Stop(id, how);  // SIGTERM: they checkpoint and exit 75; their exits are reported
  }
  // Real time, whatever the supervisor's clock: this waits for real processes.
  const auto wait_for = [](absl::Duration d) {
    return std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(d);
  };
  const auto exited_by = wait_for(options_.kill_grace + absl::Seconds(2));
  while (!ranks_.empty() && std::chrono::steady_clock::now() < exited_by) {
    ReapChildren();
    PublishHeld();
    if (!ranks_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Artifacts are not uploaded now: a rank 0 that had just succeeded is reported preempted (the
  // attempt is requeued without counting a restart and resumes from its last checkpoint).
  for (auto it = pending_uploads_.begin(); it != pending_uploads_.end();) {
    if (it->exit.exit_code != 0) {
      ++it;
      continue;
    }
    unreported_.push_back(Failure(it->rank.assignment, tp::ExitCode(tp::TrainExit::kPreempted),
                                  "preempted: the agent was stopped before rank 0's artifacts were uploaded"));
    it = pending_uploads_.erase(it);
  }
  const auto uploaded_by = wait_for(options_.kill_grace);
  while (UploadPending() && std::chrono::steady_clock::now() < uploaded_by)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (const PendingUpload& p : pending_uploads_) OnExit(p.rank, p.exit);  // out of time: report anyway
  pending_uploads_.clear();
  ReportPending();
  PublishHeld();
  {
    absl::MutexLock lock(&mu_);
    stop_heartbeats_ = true;
  }
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
}

}  // namespace vsdm::worker
