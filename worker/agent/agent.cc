#include "worker/agent/agent.h"

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/retry.h"
#include "common/status_macros.h"
#include "common/train_protocol.h"
#include "nlohmann/json.hpp"
#include "proto/job_spec_proto.h"

namespace vsdm::worker {
namespace fs = std::filesystem;
namespace {

// Progress files may not exist yet, and artifacts may be absent: "" then.
std::string ReadFileOrEmpty(const std::string& path) { return ReadFile(path).value_or(""); }

// Note [What the agent takes from an assignment]
// The coordinator's Assignment becomes paths and argv here, so a compromised or impersonated
// coordinator must not be able to steer them: the job id names <work dir>/jobs/<job_id>/
// (train_protocol::CheckJobId: no '/', no "..", no hidden names), attempt and rank name the log
// file (bounded integers), the store address is one "--store=HOST:PORT" argv element of a checked
// shape (train_protocol::ParseHostPort), and the rendezvous secret is hex that travels in the
// rank's environment, never in argv (`ps` shows argv to every local user). All of it is checked
// before anything is created.
constexpr int kMaxAttempt = 1000000;
constexpr int kMaxTrainers = 1 << 16;

absl::Status CheckAssignment(const v1::Assignment& a) {
  VSDM_RETURN_IF_ERROR(train_protocol::CheckJobId(a.job_id()));
  if (a.attempt() < 0 || a.attempt() > kMaxAttempt)
    return absl::InvalidArgumentError(absl::StrCat("attempt: must be in [0, ", kMaxAttempt, "], got ", a.attempt()));
  if (a.trainers() < 1 || a.trainers() > kMaxTrainers)
    return absl::InvalidArgumentError(absl::StrCat("trainers: must be in [1, ", kMaxTrainers, "], got ", a.trainers()));
  if (a.rank() < 0 || a.rank() > a.trainers())
    return absl::InvalidArgumentError(absl::StrCat("rank: must be in [0, ", a.trainers(), "], got ", a.rank()));
  VSDM_RETURN_IF_ERROR(train_protocol::ParseHostPort(a.store_addr(), "store_addr").status());
  return train_protocol::CheckRendezvousSecret(a.rendezvous_secret());
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

}  // namespace

Agent::Agent(AgentOptions options, CoordinatorClient& client, ProcessSupervisor& processes, AgentMetrics* metrics)
    : options_(std::move(options)), client_(client), processes_(processes), metrics_(metrics) {}

std::vector<v1::RunningRank> Agent::Running() const {
  std::vector<v1::RunningRank> out;
  for (const auto& [id, r] : ranks_) {
    if (r.aborted) continue;
    v1::RunningRank rr;
    rr.set_attempt_id(r.assignment.attempt_id());
    rr.set_rank(r.assignment.rank());
    out.push_back(rr);
  }
  return out;
}

int Agent::PickDevice() const {
  if (options_.devices <= 0) return -1;
  std::vector<int> held(static_cast<size_t>(options_.devices), 0);
  for (const auto& [id, rank] : ranks_)
    if (rank.device >= 0 && rank.device < options_.devices) ++held[static_cast<size_t>(rank.device)];
  return static_cast<int>(std::min_element(held.begin(), held.end()) - held.begin());
}

std::vector<std::string> Agent::TrainArgv(const v1::Assignment& a, const std::string& spec_path,
                                          const std::string& out_dir) const {
  train_protocol::TrainArgs t;
  t.spec_path = spec_path;
  t.out_dir = out_dir;
  t.rank = a.rank();
  t.trainers = a.trainers();
  t.store = a.store_addr();
  t.job_id = a.job_id();
  t.max_rank_memory_bytes = 0;  // the coordinator checked the spec against its --max-rank-memory
  t.attempt = a.attempt();
  t.threads = options_.threads_per_rank;
  t.pg_timeout_seconds = options_.pg_timeout_seconds;
  t.bind = options_.host;
  return t.ToArgv(options_.train_bin);
}

void Agent::Start(const v1::Assignment& a) {
  if (!started_.insert(absl::StrCat(a.attempt_id(), "#", a.rank())).second) return;  // a repeat
  v1::CompleteRequest failed;
  failed.set_worker_id(options_.worker_id);
  failed.set_attempt_id(a.attempt_id());
  failed.set_rank(a.rank());
  failed.set_exit_code(train_protocol::ExitCode(train_protocol::TrainExit::kBadInput));
  if (absl::Status s = CheckAssignment(a); !s.ok()) {
    std::cerr << "vsdm-worker " << options_.worker_id << ": refused the assignment of attempt \""
              << absl::CHexEscape(a.attempt_id().substr(0, 64)) << "\" rank " << a.rank() << ": " << s.message()
              << std::endl;
    failed.set_message(absl::StrCat("agent: refused the assignment: ", s.message()));
    unreported_.push_back(failed);
    return;
  }
  auto spec = JobSpecFromProto(a.spec(), JobSpecLimits{0});  // the coordinator's limit applied
  if (!spec.ok()) {
    failed.set_message(absl::StrCat("agent: the assignment's spec is invalid: ", spec.status().message()));
    unreported_.push_back(failed);
    return;
  }
  Rank r;
  r.assignment = a;
  r.out_dir = (fs::path(options_.work_dir) / "jobs" / a.job_id()).string();
  r.log_path =
      (fs::path(r.out_dir) / train_protocol::kLogsDir / train_protocol::RankLogName(a.attempt(), a.rank())).string();
  failed.set_exit_code(train_protocol::ExitCode(train_protocol::TrainExit::kFailed));
  if (absl::Status s = MakeDirsNoFollow(options_.work_dir, {"jobs", a.job_id(), train_protocol::kLogsDir}); !s.ok()) {
    failed.set_message(absl::StrCat("agent: ", s.message()));
    unreported_.push_back(failed);
    return;
  }
  // JSON is YAML: vsdm-train reads it as a spec file.
  const std::string spec_path = (fs::path(r.out_dir) / train_protocol::kSpecFile).string();
  if (auto s = AtomicWriteFile(spec_path, JobSpecToJson(*spec).dump(2) + "\n"); !s.ok()) {
    failed.set_message(absl::StrCat("agent: ", s.message()));
    unreported_.push_back(failed);
    return;
  }
  if (a.rank() == 0) r.uploaded_round = FetchCheckpoint(r);  // Note [Checkpoints through the coordinator]
  ChildOptions child_options;
  child_options.log_path = r.log_path;
  // One GPU a rank: the rank sees only its own device (a global rank % device count would put
  // two ranks of a node on one GPU when a gang spans nodes).
  r.device = PickDevice();
  if (r.device >= 0)
    child_options.env["CUDA_VISIBLE_DEVICES"] =
        static_cast<size_t>(r.device) < options_.visible_devices.size() ? options_.visible_devices[r.device]
                                                                         : absl::StrCat(r.device);
  if (!a.rendezvous_secret().empty()) child_options.env[train_protocol::kRendezvousSecretEnv] = a.rendezvous_secret();
  child_options.max_open_files = options_.rank_max_open_files;
  child_options.max_address_space_bytes = options_.rank_max_address_space_bytes;
  auto child = processes_.Start(TrainArgv(a, spec_path, r.out_dir), child_options);
  if (!child.ok()) {
    failed.set_message(absl::StrCat("agent: ", child.status().message()));
    unreported_.push_back(failed);
    return;
  }
  r.child = *child;
  ranks_[r.child] = std::move(r);
}

absl::Status Agent::UploadFile(const Rank& r, const std::string& local_path, const std::string& artifact_path) {
  constexpr size_t kChunk = 1 << 20;
  auto data = ReadFile(local_path);
  if (!data.ok()) return data.status();
  size_t off = 0;
  do {
    v1::UploadArtifactRequest u;
    u.set_worker_id(options_.worker_id);
    u.set_attempt_id(r.assignment.attempt_id());
    u.set_path(artifact_path);
    u.set_offset(static_cast<int64_t>(off));
    u.set_data(data->substr(off, kChunk));
    off += u.data().size();
    u.set_last(off >= data->size());
    VSDM_RETURN_IF_ERROR(client_.UploadArtifact(u));
  } while (off < data->size());
  return absl::OkStatus();
}

absl::Status Agent::UploadArtifacts(const Rank& r) {
  for (const char* name : train_protocol::kArtifacts) {
    const std::string path = (fs::path(r.out_dir) / name).string();
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) continue;
    VSDM_RETURN_IF_ERROR(UploadFile(r, path, name));
  }
  return absl::OkStatus();
}

// Note [Checkpoints through the coordinator]
// Agents share no disk, so rank 0's agent uploads each new checkpoint of its rank (a file
// vsdm-train wrote atomically) to the coordinator's artifact store, and the agent that starts
// rank 0 of a later attempt, wherever it is, first fetches the newest one the coordinator holds
// into its own checkpoint dir (written beside it as ".part", renamed when whole), where
// vsdm-train finds it and trainer 0 broadcasts it to the other ranks as before. A fetch that
// fails leaves the dir as it was: the rank then resumes from what is local, or from round 0.
int64_t Agent::FetchCheckpoint(const Rank& r) {
  const fs::path dir = fs::path(r.out_dir) / train_protocol::kCheckpointDir;
  const auto local = train_protocol::NewestCheckpointFile(dir.string());
  const int64_t have = local ? local->first : 0;
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
      return have;
    }
    if (page->round() == 0) return have;  // the coordinator has nothing newer
    req.set_round(page->round());
    size = page->size();
    data += page->data();
    if (page->data().empty() && static_cast<int64_t>(data.size()) < size) return have;  // no progress
  } while (static_cast<int64_t>(data.size()) < size);
  if (static_cast<int64_t>(data.size()) != size) return have;
  if (absl::Status s = MakeDirsNoFollow(options_.work_dir, {"jobs", r.assignment.job_id(), train_protocol::kCheckpointDir});
      !s.ok())
    return have;
  const fs::path target = dir / train_protocol::CheckpointFileName(req.round());
  if (!AtomicWriteFile(target.string(), data).ok()) return have;
  std::cerr << "vsdm-worker " << options_.worker_id << ": fetched the checkpoint of round " << req.round() << " of "
            << r.assignment.job_id() << " (" << size << " bytes) from the coordinator" << std::endl;
  if (metrics_) metrics_->CheckpointTransferred("fetch", size);
  return req.round();
}

void Agent::UploadCheckpoint(Rank& r) {
  const auto newest =
      train_protocol::NewestCheckpointFile((fs::path(r.out_dir) / train_protocol::kCheckpointDir).string());
  if (!newest || newest->first <= r.uploaded_round) return;
  const std::string name = fs::path(newest->second).filename().string();
  absl::Status s = UploadFile(r, newest->second, absl::StrCat(train_protocol::kCheckpointDir, "/", name));
  if (!s.ok()) {
    // Retried next turn when the coordinator is away; a refusal (the attempt is over) is final.
    if (!IsRetryable(s)) r.uploaded_round = newest->first;
    return;
  }
  r.uploaded_round = newest->first;
  if (metrics_) {
    std::error_code ec;
    metrics_->CheckpointTransferred("upload", static_cast<int64_t>(fs::file_size(newest->second, ec)));
  }
}

void Agent::OnExit(const Rank& r, const ChildExit& e) {
  if (metrics_) {
    metrics_->RankExited(r.aborted ? "aborted" : e.exit_code == 0 ? "succeeded" : "failed");
    if (r.assignment.rank() == 0 || r.assignment.rank() == r.assignment.trainers())
      metrics_->RemoveJob(r.assignment.job_id());
  }
  if (r.aborted) return;  // the coordinator ordered it; it has moved on
  v1::CompleteRequest c;
  c.set_worker_id(options_.worker_id);
  c.set_attempt_id(r.assignment.attempt_id());
  c.set_rank(r.assignment.rank());
  c.set_exit_code(e.exit_code);
  if (e.exit_code != 0) {
    c.set_message(
        absl::StrCat(e.signal ? absl::StrCat("killed by signal ", e.signal, "; ") : "", "last lines:\n", e.log_tail));
  } else if (r.assignment.rank() == 0) {
    const auto m = nlohmann::json::parse(ReadFileOrEmpty((fs::path(r.out_dir) / train_protocol::kMetricsFile).string()),
                                         nullptr, /*allow_exceptions=*/false);
    if (m.is_object()) {
      for (auto it = m.begin(); it != m.end(); ++it)
        if (it.value().is_number()) (*c.mutable_metrics())[it.key()] = it.value().get<double>();
    } else {
      c.set_exit_code(train_protocol::ExitCode(train_protocol::TrainExit::kFailed));
      c.set_message(absl::StrCat("rank 0 exited 0 but wrote no readable ", train_protocol::kMetricsFile));
    }
  }
  unreported_.push_back(c);
}

void Agent::ForwardVariational(Rank& r) {
  std::string text = ReadFileOrEmpty((fs::path(r.out_dir) / train_protocol::kVariationalProgressFile).string());
  if (text.empty() || text == r.last_progress) return;
  auto p = train_protocol::VariationalProgressFromJson(text);
  if (!p.ok()) return;  // a file from an older build, or half-read: try again next turn
  if (metrics_) metrics_->UpdateVariational(r.assignment.job_id(), *p);
  r.last_progress = std::move(text);
}

void Agent::ForwardTrainer(Rank& r) {
  std::string text = ReadFileOrEmpty((fs::path(r.out_dir) / train_protocol::kProgressFile).string());
  if (text.empty() || text == r.last_progress) return;
  auto p = train_protocol::TrainerProgressFromJson(text);
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

void Agent::RegisterIfNeeded() {
  if (registered_) return;
  v1::RegisterRequest reg;
  reg.set_worker_id(options_.worker_id);
  auto* res = reg.mutable_resources();
  res->set_slots(options_.slots);
  res->set_devices(options_.devices);
  res->set_memory_bytes(options_.memory_bytes);
  res->set_host(options_.host);
  for (auto& rr : Running()) *reg.add_running() = rr;
  auto resp = client_.Register(reg);
  if (resp.ok()) {
    registered_ = true;
    heartbeat_ = absl::Seconds(std::max(0.2, resp->heartbeat_seconds()));
  }
}

void Agent::Heartbeat() {
  if (!registered_) return;
  v1::HeartbeatRequest hb;
  hb.set_worker_id(options_.worker_id);
  for (auto& rr : Running()) *hb.add_running() = rr;
  auto resp = client_.Heartbeat(hb);
  if (!resp.ok()) {
    if (resp.status().code() == absl::StatusCode::kNotFound)
      registered_ = false;  // lost our lease, or the coordinator restarted: register again now
    return;
  }
  if (metrics_) metrics_->HeartbeatOk();
  for (const auto& a : resp->assignments()) Start(a);
  for (const auto& attempt : resp->abort_attempts())
    for (auto& [id, r] : ranks_)
      if (r.assignment.attempt_id() == attempt && !r.aborted) {
        processes_.Stop(id, options_.kill_grace);
        r.aborted = true;
      }
}

void Agent::ReapChildren() {
  for (const ChildExit& e : processes_.Poll()) {
    auto it = ranks_.find(e.id);
    if (it == ranks_.end()) continue;
    // Rank 0's success is reported after its artifacts are uploaded, so SUCCEEDED means they
    // can be downloaded.
    if (!it->second.aborted && it->second.assignment.rank() == 0 && e.exit_code == 0)
      pending_uploads_.emplace_back(it->second, e);
    else
      OnExit(it->second, e);
    ranks_.erase(it);
  }
}

void Agent::UploadPending() {
  while (!pending_uploads_.empty()) {
    auto& [r, e] = pending_uploads_.front();
    absl::Status s = UploadArtifacts(r);
    if (IsRetryable(s)) break;  // retried next turn
    if (s.ok()) {
      OnExit(r, e);
    } else {
      v1::CompleteRequest c;
      c.set_worker_id(options_.worker_id);
      c.set_attempt_id(r.assignment.attempt_id());
      c.set_rank(0);
      c.set_exit_code(train_protocol::ExitCode(train_protocol::TrainExit::kFailed));
      c.set_message(absl::StrCat("artifact upload failed: ", s.message()));
      unreported_.push_back(c);
    }
    pending_uploads_.pop_front();
  }
}

void Agent::ReportPending() {
  while (!unreported_.empty()) {
    absl::Status s = client_.Complete(unreported_.front());
    if (IsRetryable(s)) break;  // keep it for when the coordinator is back
    unreported_.pop_front();
  }
}

absl::Duration Agent::Step() {
  RegisterIfNeeded();
  Heartbeat();
  ReapChildren();
  UploadPending();
  ReportPending();
  ForwardProgress();
  if (metrics_) metrics_->SetRanksRunning(static_cast<int>(ranks_.size()));
  return std::min(heartbeat_, absl::Milliseconds(500));
}

}  // namespace vsdm::worker
