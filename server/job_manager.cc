#include "server/job_manager.h"

#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <iterator>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "common/stopwatch.h"
#include "common/train_protocol.h"
#include "proto/job_spec_proto.h"
#include "proto/job_state.h"
#include "server/attempt_id.h"

namespace vsdm::server {
namespace {

using google::protobuf::Timestamp;

Timestamp ToProto(absl::Time t) {
  Timestamp ts;
  const int64_t ns = absl::ToUnixNanos(t);
  ts.set_seconds(ns / 1'000'000'000);
  ts.set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
  return ts;
}
absl::Time FromProto(const Timestamp& ts) { return absl::FromUnixNanos(ts.seconds() * 1'000'000'000LL + ts.nanos()); }
int64_t Nanos(const Timestamp& ts) { return ts.seconds() * 1'000'000'000LL + ts.nanos(); }

// Page tokens: opaque to clients; the (submit time, job id) of the last job of the page.
std::string EncodeToken(const v1::Job& j) {
  return absl::WebSafeBase64Escape(absl::StrCat("v1:", Nanos(j.submit_time()), ":", j.job_id()));
}
bool DecodeToken(const std::string& token, int64_t* nanos, std::string* id) {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw)) return false;
  std::vector<std::string> parts = absl::StrSplit(raw, absl::MaxSplits(':', 2));
  return parts.size() == 3 && parts[0] == "v1" && absl::SimpleAtoi(parts[1], nanos) && !parts[2].empty() &&
         (*id = parts[2], true);
}

// The message of an attempt's "scheduled" event; StorePortOf reads the port back from it.
constexpr char kStoreTag[] = "; store ";
std::string ScheduledMessage(int attempt, const std::vector<RankPlacement>& ranks, const std::string& store_addr,
                             int64_t want_trainers) {
  std::vector<std::string> where;
  for (const auto& rp : ranks) where.push_back(absl::StrCat(rp.rank, "@", rp.worker_id));
  const int64_t trainers = static_cast<int64_t>(ranks.size()) - 1;
  const std::string elastic =
      trainers < want_trainers
          ? absl::StrCat(" (elastic: ", trainers, " of ", want_trainers, " trainers, the cluster holds no more)")
          : "";
  return absl::StrCat("attempt ", attempt, " placed: ranks ", absl::StrJoin(where, " "), elastic, kStoreTag,
                      store_addr);
}
// The store port of `attempt` from its "scheduled" event, if there is one that says it.
std::optional<int> StorePortOf(const std::vector<v1::JobEvent>& events, int attempt) {
  const std::string prefix = absl::StrCat("attempt ", attempt, " placed: ");
  for (auto it = events.rbegin(); it != events.rend(); ++it) {
    if (it->kind() != "scheduled" || !absl::StartsWith(it->message(), prefix)) continue;
    const auto tag = it->message().rfind(kStoreTag);
    const auto colon = it->message().rfind(':');
    int port = 0;
    if (tag == std::string::npos || colon == std::string::npos || colon < tag ||
        !absl::SimpleAtoi(absl::string_view(it->message()).substr(colon + 1), &port))
      return std::nullopt;
    return port;
  }
  return std::nullopt;
}

// Caller input in a message: at most 64 characters, control characters as '?'.
// True when `given` is `current` (a worker's session credential); an empty one never is.
bool IsCredential(const std::string& given, const std::string& current) {
  return !given.empty() && given.size() == current.size() && std::equal(given.begin(), given.end(), current.begin());
}

std::string Clip(absl::string_view s) {
  std::string out(s.substr(0, 64));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  if (s.size() > 64) absl::StrAppend(&out, "... (", s.size(), " bytes)");
  return out;
}

// The same for a job that does not exist and one the caller may not see.
absl::Status JobNotFound(const std::string& job_id) {
  return absl::NotFoundError(absl::StrCat("job ", Clip(job_id), " not found"));
}

// The stored request_id of a sweep's first member: "sweep:<the request's id>" (Submit refuses
// ids with this prefix, so a job's key and a sweep's never meet).
constexpr char kSweepRequestPrefix[] = "sweep:";

// Idempotency keys are scoped per owner.
std::string RequestKey(const std::string& owner, const std::string& request_id) {
  return absl::StrCat(owner, "\n", request_id);
}

// `bytes` random bytes as hex, from the OS's entropy source.
std::string RandomHex(int bytes) {
  static absl::Mutex mu(absl::kConstInit);
  static std::random_device* rd = new std::random_device;
  absl::MutexLock lock(&mu);
  std::string out;
  for (int i = 0; i < bytes; i += 4) absl::StrAppend(&out, absl::Hex((*rd)(), absl::kZeroPad8));
  return out.substr(0, static_cast<size_t>(bytes) * 2);
}

bool IdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

// A registered host becomes rank 0's store address (and an argv value of every rank): an IPv4
// address, a bracketed IPv6 address or a DNS name, nothing else.
bool ValidHost(absl::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  if (h.front() == '[') {
    if (h.size() < 3 || h.back() != ']') return false;
    for (char c : h.substr(1, h.size() - 2))
      if (!(absl::ascii_isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.')) return false;
    return true;
  }
  if (h.front() == '-' || h.front() == '.') return false;
  for (char c : h)
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.')) return false;
  return true;
}

// INVALID_ARGUMENT naming the field of a Register request that is out of bounds.
absl::Status ValidateRegister(const v1::RegisterRequest& req) {
  const std::string& id = req.worker_id();
  if (id.empty() || id.size() > 64 || id.front() == '-' || id.front() == '.' ||
      !std::all_of(id.begin(), id.end(), IdChar))
    return absl::InvalidArgumentError(
        absl::StrCat("worker_id: 1 to 64 letters, digits and . _ - (not first: . -), got \"", Clip(id), "\""));
  const auto& r = req.resources();
  if (r.slots() < 1 || r.slots() > 4096)
    return absl::InvalidArgumentError(absl::StrCat("resources.slots: must be in [1, 4096], got ", r.slots()));
  if (r.devices() < 0 || r.devices() > 1024)
    return absl::InvalidArgumentError(absl::StrCat("resources.devices: must be in [0, 1024], got ", r.devices()));
  if (r.memory_bytes() < 0 || r.memory_bytes() > (int64_t{1} << 50))
    return absl::InvalidArgumentError(
        absl::StrCat("resources.memory_bytes: must be in [0, 2^50], got ", r.memory_bytes()));
  if (!r.host().empty() && !ValidHost(r.host()))
    return absl::InvalidArgumentError(
        absl::StrCat("resources.host: an IPv4 address, [IPv6] or a DNS name, got \"", Clip(r.host()), "\""));
  if (req.running_size() > 4096)
    return absl::InvalidArgumentError(absl::StrCat("running: at most 4096 ranks, got ", req.running_size()));
  return absl::OkStatus();
}

bool Finite(double v) { return std::isfinite(v); }

// INVALID_ARGUMENT for a metrics map that is too big or not finite.
absl::Status ValidateMetrics(const google::protobuf::Map<std::string, double>& m, const char* field) {
  if (m.size() > 64) return absl::InvalidArgumentError(absl::StrCat(field, ": at most 64 entries, got ", m.size()));
  for (const auto& [k, v] : m) {
    if (k.empty() || k.size() > 64 || !std::all_of(k.begin(), k.end(), IdChar))
      return absl::InvalidArgumentError(absl::StrCat(field, ": key \"", Clip(k), "\" is not 1 to 64 of [A-Za-z0-9._-]"));
    if (!Finite(v)) return absl::InvalidArgumentError(absl::StrCat(field, ".", k, ": not finite"));
  }
  return absl::OkStatus();
}

// A rank's exit message (its log tail) as stored: the last 4 KiB, control characters but newline
// and tab as '?'.
std::string ExitMessage(const std::string& m) {
  constexpr size_t kMax = 4096;
  std::string out = m.size() > kMax ? "..." + m.substr(m.size() - kMax) : m;
  for (char& c : out)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') || c == 0x7f) c = '?';
  return out;
}

// Note [Fail fast]: what identifies a start-up failure across attempts: the exit code and the
// last non-empty line of the rank's log tail, digits folded (ports, pids, worker numbers and
// timestamps differ between attempts; "no such file images:/data/x" does not). Only the exits
// a rerun cannot fix qualify: 1 (an error) and 2 (bad input); not a peer lost (3), a
// preemption (75) or a signal (a kill -9 during start-up is not the job's fault).
std::string StartupSignature(int exit_code, const std::string& message) {
  if (exit_code != 1 && exit_code != 2) return "";
  absl::string_view last;
  for (absl::string_view line : absl::StrSplit(message, '\n'))
    if (!absl::StripAsciiWhitespace(line).empty()) last = line;
  std::string sig = absl::StrCat("exit ", exit_code, ": ");
  for (char c : absl::StripAsciiWhitespace(last)) {
    const bool digit = absl::ascii_isdigit(static_cast<unsigned char>(c));
    if (!digit || sig.back() != '#') sig.push_back(digit ? '#' : c);  // a run of digits is one '#'
  }
  return sig;
}

}  // namespace

JobManager::JobManager(JobStore& store, const Clock& clock, JobManagerOptions options)
    : store_(store),
      clock_(clock),
      options_(std::move(options)),
      scheduler_(options_.scheduler),
      registry_(clock, options_.lease),
      book_(options_.store_ports) {}

absl::Status JobManager::Recover() {
  auto loaded = store_.LoadJobs();
  if (!loaded.ok()) return loaded.status();
  std::vector<StoredJob> failed;  // jobs whose stored spec does not validate
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_.Now(), mono = clock_.Monotonic();
    for (auto& sj : *loaded) {
      const std::string id = sj.job.job_id();
      Record r;
      r.stored = std::move(sj);
      auto events = store_.LoadEvents(id, 0);
      if (!events.ok()) return events.status();
      r.events = std::move(*events);
      r.queued_since = mono;
      // A stored spec is validated again (a bit flip, or a bound this version added): a job
      // whose spec does not pass is failed, never scheduled from unchecked fields.
      // (The memory bound is not applied again: a job accepted under a higher limit keeps running.)
      if (absl::StatusOr<JobSpec> ok = JobSpecFromProto(r.stored.job.spec(), JobSpecLimits{0});
          !ok.ok() && !IsFinalState(r.stored.job.state())) {
        r.stored.job.set_state(v1::JOB_STATE_FAILED);
        r.stored.job.set_message(absl::StrCat("its stored spec does not validate: ", ok.status().message()));
        *r.stored.job.mutable_end_time() = ToProto(now);
        failed.push_back(r.stored);
      }
      if (r.stored.job.state() == v1::JOB_STATE_RUNNING) r.attempt = RecoveredAttempt(r, mono);
      if (!r.stored.request_id.empty()) by_request_[RequestKey(r.stored.job.owner(), r.stored.request_id)] = id;
      int64_t n = 0;
      if (absl::SimpleAtoi(absl::StripPrefix(id, "job-"), &n)) next_job_ = std::max(next_job_, n + 1);
      jobs_[id] = std::move(r);
    }
  }
  if (!failed.empty()) {
    StoreWrite w;
    w.jobs = failed;
    if (absl::Status s = store_.Write(std::move(w)); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    for (const StoredJob& sj : failed)
      Warn(absl::StrCat("recovering ", sj.job.job_id(), ": ", sj.job.message(), "; failed it"));
  }
  Deliver();
  return absl::OkStatus();
}

JobManager::Attempt JobManager::RecoveredAttempt(const Record& r, absl::Time now) {
  Attempt a;
  a.number = r.stored.job.attempts();
  a.attempt_id = MakeAttemptId(r.stored.job.job_id(), a.number);
  const int64_t trainers = r.stored.job.trainers() > 0 ? r.stored.job.trainers() : r.stored.job.spec().resources().trainers();
  a.ranks.resize(static_cast<size_t>(trainers) + 1);
  const bool cuda = r.stored.job.spec().resources().device() == "cuda";
  for (int i = 0; i < static_cast<int>(a.ranks.size()); ++i) {
    a.ranks[i].rank = i;
    a.ranks[i].device = cuda && i + 1 < static_cast<int>(a.ranks.size());  // trainers hold devices
  }
  a.recovering_since = now;
  a.last_progress_at = now;
  a.reported = r.stored.job.progress().round() > 0;
  a.last_round = r.stored.job.progress().round();
  // Ranks that had exited 0 are done for good: nobody re-reports them (review H7).
  for (int32_t d : r.stored.job.done_ranks())
    if (d >= 0 && d < static_cast<int>(a.ranks.size())) a.done.insert(d);
  // Its rank 0 may still serve its store: keep the port from being handed out again.
  if (std::optional<int> port = StorePortOf(r.events, a.number); port && !book_.HoldPort(a.attempt_id, *port))
    Warn(absl::StrCat("recovering ", a.attempt_id, ": its store port ", *port, " is outside --store-port-range ",
                      book_.ports().lo, "-", book_.ports().hi, " or already held; not reserved"));
  return a;
}

v1::Job JobManager::Visible(const Record& r) const {
  v1::Job j = r.stored.job;
  if (j.state() == v1::JOB_STATE_QUEUED) {
    auto it = pending_reasons_.find(j.job_id());
    j.set_pending_reason(it != pending_reasons_.end() ? it->second : "waiting for the next scheduling pass");
  }
  return j;
}

v1::JobEvent JobManager::MakeEvent(const Record& r, const v1::Job& job, const std::string& kind,
                                   const std::string& message) const {
  v1::JobEvent e;
  e.set_job_id(job.job_id());
  e.set_sequence(r.events.empty() ? 1 : r.events.back().sequence() + 1);
  *e.mutable_time() = ToProto(clock_.Now());
  e.set_state(job.state());
  e.set_kind(kind);
  e.set_message(message);
  *e.mutable_progress() = job.progress();
  return e;
}

absl::Status JobManager::Commit(std::vector<Change> changes) {
  if (changes.empty()) return absl::OkStatus();
  StoreWrite w;
  for (const auto& c : changes) {
    auto it = jobs_.find(c.job_id);
    w.jobs.push_back({c.job, it != jobs_.end() ? it->second.stored.request_id : std::string()});
    if (!c.event.kind().empty()) w.events.push_back(c.event);  // a change may have no event
  }
  if (absl::Status s = store_.Write(std::move(w)); !s.ok())
    return absl::UnavailableError(absl::StrCat("job store: ", s.message(), " (nothing changed; retry)"));
  for (auto& c : changes) {
    Record& r = jobs_[c.job_id];
    r.stored.job = c.job;
    if (!c.event.kind().empty()) r.events.push_back(c.event);
    if (c.apply) c.apply();
    if (!c.event.kind().empty()) events_.Publish(c.event);
  }
  return absl::OkStatus();
}

void JobManager::Warn(std::string line) { warnings_.push_back(std::move(line)); }

void JobManager::Deliver() {
  events_.Flush();
  std::vector<std::string> lines;
  {
    absl::MutexLock lock(&mu_);
    lines.swap(warnings_);
  }
  for (const std::string& line : lines) {
    if (options_.log) {
      options_.log(line);
    } else {
      std::cerr << "vsdm-coordinator: " << line << std::endl;
    }
  }
}

absl::Status JobManager::CheckQueueQuota(const std::string& owner, int adding) const {
  if (options_.max_queued_per_owner <= 0) return absl::OkStatus();
  int queued = 0;
  for (const auto& [id, r] : jobs_)
    queued += r.stored.job.owner() == owner && r.stored.job.state() == v1::JOB_STATE_QUEUED;
  if (queued + adding > options_.max_queued_per_owner)
    return absl::ResourceExhaustedError(absl::StrCat(
        "quota --max-queued-per-owner: ", Clip(owner), " already has ", queued, " queued jobs",
        adding > 1 ? absl::StrCat(" and this sweep adds ", adding) : "", " (the limit is ",
        options_.max_queued_per_owner, ")"));
  return absl::OkStatus();
}

absl::StatusOr<std::optional<v1::Job>> JobManager::AdmitSubmit(const JobSpec& spec, const std::string& request_id,
                                                               const std::string& key) {
  if (!request_id.empty()) {
    if (auto it = by_request_.find(key); it != by_request_.end()) {
      const Record& first = jobs_.at(it->second);
      if (!google::protobuf::util::MessageDifferencer::Equivalent(JobSpecToProto(spec), first.stored.job.spec()))
        return absl::AlreadyExistsError(absl::StrCat("request_id: already used for ", it->second,
                                                     " with another spec (a retry must send the same spec)"));
      return std::optional<v1::Job>(Visible(first));
    }
  }
  VSDM_RETURN_IF_ERROR(CheckQueueQuota(spec.owner, 1));
  if (!request_id.empty() && !requests_in_flight_.insert(key).second)
    return absl::UnavailableError("request_id: a submit with this id is in progress; retry");
  return std::optional<v1::Job>();
}

JobManager::Record JobManager::NewJobRecord(const JobSpec& spec, const std::string& job_id, absl::Time now,
                                            v1::JobEvent* ev) const {
  Record r;
  v1::Job& job = r.stored.job;
  job.set_job_id(job_id);
  *job.mutable_spec() = JobSpecToProto(spec);
  job.set_state(v1::JOB_STATE_QUEUED);
  *job.mutable_submit_time() = ToProto(now);
  job.set_owner(spec.owner);
  job.set_uid(RandomHex(16));  // Note [Job identity] in job.proto
  job.set_spec_hash(SpecHash(job.spec()));
  job.mutable_progress()->set_rounds(spec.train.rounds);
  r.queued_since = clock_.Monotonic();
  ev->set_job_id(job_id);
  ev->set_sequence(1);
  *ev->mutable_time() = job.submit_time();
  ev->set_state(v1::JOB_STATE_QUEUED);
  ev->set_kind("submitted");
  ev->set_message(absl::StrFormat("%s: %s on %s, %d trainers + 1 variational rank", spec.name, spec.method,
                                  spec.problem.dataset, spec.resources.trainers));
  return r;
}

absl::StatusOr<v1::Job> JobManager::Submit(const v1::JobSpec& proto_spec, const std::string& request_id,
                                           const std::string& owner) {
  if (request_id.size() > 128)
    return absl::InvalidArgumentError(absl::StrCat("request_id: at most 128 characters, got ", request_id.size()));
  if (absl::StartsWith(request_id, kSweepRequestPrefix))
    return absl::InvalidArgumentError(
        absl::StrCat("request_id: the prefix ", kSweepRequestPrefix, " is reserved for SubmitSweep"));
  absl::StatusOr<JobSpec> spec = JobSpecFromProto(proto_spec, options_.spec_limits);
  if (!spec.ok()) return spec.status();
  if (!owner.empty()) spec->owner = owner;
  const std::string key = RequestKey(spec->owner, request_id);
  std::string job_id;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<std::optional<v1::Job>> first = AdmitSubmit(*spec, request_id, key);
    if (!first.ok()) return first.status();
    if (*first) return **first;
    job_id = absl::StrFormat("job-%08d", next_job_++);
  }
  v1::JobEvent ev;
  Record r = NewJobRecord(*spec, job_id, clock_.Now(), &ev);
  r.stored.request_id = request_id;
  // The write happens outside the lock so concurrent submits share a group commit.
  absl::Status written = store_.Write({{r.stored}, {ev}, {}});
  if (!written.ok())
    written = absl::UnavailableError(absl::StrCat("job store: ", written.message(), " (not submitted; retry)"));
  v1::Job out;
  {
    absl::MutexLock lock(&mu_);
    requests_in_flight_.erase(key);
    if (!written.ok()) return written;
    r.events.push_back(ev);
    if (!request_id.empty()) by_request_[key] = job_id;
    jobs_[job_id] = std::move(r);
    events_.Publish(ev);
    out = Visible(jobs_.at(job_id));
  }
  Deliver();
  return out;
}

absl::StatusOr<std::vector<JobSpec>> JobManager::SweepSpecs(const v1::SubmitSweepRequest& req,
                                                            const std::string& owner) const {
  if (req.members_size() < 1 || req.members_size() > options_.max_sweep_members)
    return absl::InvalidArgumentError(absl::StrCat("members: a sweep has 1..", options_.max_sweep_members,
                                                   " members, got ", req.members_size()));
  if (req.request_id().size() > 128)
    return absl::InvalidArgumentError(
        absl::StrCat("request_id: at most 128 characters, got ", req.request_id().size()));
  std::vector<JobSpec> specs;
  for (int i = 0; i < req.members_size(); ++i) {
    const v1::SweepMember& m = req.members(i);
    absl::StatusOr<JobSpec> spec = JobSpecFromProto(m.spec(), options_.spec_limits);
    if (!spec.ok())
      return absl::Status(spec.status().code(), absl::StrCat("members[", i, "].", spec.status().message()));
    if (m.overrides_size() > 64)
      return absl::InvalidArgumentError(absl::StrCat("members[", i, "].overrides: at most 64, got ",
                                                     m.overrides_size()));
    for (const std::string& o : m.overrides())
      if (o.size() > 256 || o.find('=') == std::string::npos)
        return absl::InvalidArgumentError(absl::StrCat("members[", i, "].overrides: each is field=value of at most "
                                                       "256 characters, got \"", Clip(o), "\""));
    if (!owner.empty()) spec->owner = owner;
    if (!specs.empty() && spec->owner != specs[0].owner)  // auth off: one owner keys the group and its quota
      return absl::InvalidArgumentError(absl::StrCat("members[", i, "].spec.owner: every member of a sweep has the "
                                                     "owner of members[0] (", Clip(specs[0].owner), "), got ",
                                                     Clip(spec->owner)));
    specs.push_back(std::move(*spec));
  }
  return specs;
}

// The members of a sweep already submitted under the request's key, if they are the same members.
absl::StatusOr<v1::SubmitSweepResponse> JobManager::SweepReplay(const std::vector<JobSpec>& specs,
                                                                const std::string& first_id) const {
  const std::string& group = jobs_.at(first_id).stored.job.group_id();
  v1::SubmitSweepResponse resp;
  resp.set_group_id(group);
  int64_t first = 0, last = -1;
  bool same = absl::SimpleAtoi(first_id.substr(4), &first);  // "job-%08d"
  for (const auto& [id, r] : jobs_) {
    if (!same || r.stored.job.group_id() != group) continue;
    int64_t n = 0;
    same = absl::SimpleAtoi(id.substr(4), &n) && n > last && n - first < static_cast<int64_t>(specs.size());
    if (same)
      same = google::protobuf::util::MessageDifferencer::Equivalent(JobSpecToProto(specs[static_cast<size_t>(n - first)]),
                                                                    r.stored.job.spec());
    last = n;
    *resp.add_jobs() = Visible(r);
  }
  if (!same)
    return absl::AlreadyExistsError(absl::StrCat("request_id: already used for ", group,
                                                 " with other members (a retry must send the same sweep)"));
  return resp;
}

absl::StatusOr<v1::SubmitSweepResponse> JobManager::SubmitSweep(const v1::SubmitSweepRequest& req,
                                                                const std::string& owner) {
  VSDM_ASSIGN_OR_RETURN(std::vector<JobSpec> specs, SweepSpecs(req, owner));
  const std::string request_id = req.request_id().empty() ? "" : absl::StrCat(kSweepRequestPrefix, req.request_id());
  const std::string key = RequestKey(specs[0].owner, request_id);
  int64_t first = 0;
  {
    absl::MutexLock lock(&mu_);
    if (!request_id.empty())
      if (auto it = by_request_.find(key); it != by_request_.end()) return SweepReplay(specs, it->second);
    VSDM_RETURN_IF_ERROR(CheckQueueQuota(specs[0].owner, static_cast<int>(specs.size())));
    if (!request_id.empty() && !requests_in_flight_.insert(key).second)
      return absl::UnavailableError("request_id: a submit with this id is in progress; retry");
    first = next_job_;
    next_job_ += static_cast<int64_t>(specs.size());
  }
  const std::string group = absl::StrFormat("sweep-%08d", first);
  const absl::Time now = clock_.Now();
  std::vector<Record> records;
  StoreWrite w;
  for (size_t i = 0; i < specs.size(); ++i) {
    v1::JobEvent ev;
    Record r = NewJobRecord(specs[i], absl::StrFormat("job-%08d", first + static_cast<int64_t>(i)), now, &ev);
    r.stored.job.set_group_id(group);
    *r.stored.job.mutable_overrides() = req.members(static_cast<int>(i)).overrides();
    if (i == 0) r.stored.request_id = request_id;
    r.events.push_back(ev);
    w.jobs.push_back(r.stored);
    w.events.push_back(ev);
    records.push_back(std::move(r));
  }
  absl::Status written = store_.Write(std::move(w));  // one commit: the whole sweep or none of it
  if (!written.ok())
    written = absl::UnavailableError(absl::StrCat("job store: ", written.message(), " (not submitted; retry)"));
  v1::SubmitSweepResponse resp;
  resp.set_group_id(group);
  {
    absl::MutexLock lock(&mu_);
    requests_in_flight_.erase(key);
    if (!written.ok()) return written;
    if (!request_id.empty()) by_request_[key] = records[0].stored.job.job_id();
    for (Record& r : records) {
      const std::string id = r.stored.job.job_id();
      events_.Publish(r.events[0]);
      jobs_[id] = std::move(r);
      *resp.add_jobs() = Visible(jobs_.at(id));
    }
  }
  Deliver();
  return resp;
}

absl::StatusOr<v1::Job> JobManager::Get(const std::string& job_id, const JobScope& scope) const {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end() || !scope.Sees(it->second.stored.job.owner())) return JobNotFound(job_id);
  return Visible(it->second);
}

absl::StatusOr<v1::ListJobsResponse> JobManager::List(const v1::ListJobsRequest& req, const JobScope& scope) const {
  if (req.page_size() < 0)
    return absl::InvalidArgumentError(absl::StrCat("page_size: must be >= 0, got ", req.page_size()));
  const int size =
      req.page_size() == 0 ? options_.default_page_size : std::min(req.page_size(), options_.max_page_size);
  int64_t after_nanos = 0;
  std::string after_id;
  const bool paged = !req.page_token().empty();
  if (paged && !DecodeToken(req.page_token(), &after_nanos, &after_id))
    return absl::InvalidArgumentError("page_token: not a token returned by ListJobs");
  absl::MutexLock lock(&mu_);
  std::vector<const Record*> rows;
  for (const auto& [id, r] : jobs_) {
    const v1::Job& j = r.stored.job;
    if (req.state() != v1::JOB_STATE_UNSPECIFIED && j.state() != req.state()) continue;
    if (!req.owner().empty() && j.owner() != req.owner()) continue;
    if (!req.group_id().empty() && j.group_id() != req.group_id()) continue;
    if (!scope.Sees(j.owner())) continue;
    // Newest first: keep the ones strictly after the token's key in that order.
    if (paged) {
      const int64_t n = Nanos(j.submit_time());
      if (n > after_nanos || (n == after_nanos && j.job_id() >= after_id)) continue;
    }
    rows.push_back(&r);
  }
  std::sort(rows.begin(), rows.end(), [](const Record* a, const Record* b) {
    const int64_t na = Nanos(a->stored.job.submit_time()), nb = Nanos(b->stored.job.submit_time());
    return na != nb ? na > nb : a->stored.job.job_id() > b->stored.job.job_id();
  });
  v1::ListJobsResponse resp;
  for (size_t i = 0; i < rows.size() && static_cast<int>(i) < size; ++i) *resp.add_jobs() = Visible(*rows[i]);
  if (static_cast<int>(rows.size()) > size) resp.set_next_page_token(EncodeToken(resp.jobs(size - 1)));
  return resp;
}

absl::StatusOr<v1::Job> JobManager::Cancel(const std::string& job_id, const JobScope& scope) {
  v1::Job out;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end() || !scope.Sees(it->second.stored.job.owner())) return JobNotFound(job_id);
    Record& r = it->second;
    if (IsFinalState(r.stored.job.state()))
      return absl::FailedPreconditionError(
          absl::StrCat("job ", Clip(job_id), " already ", JobStateName(r.stored.job.state()), "; nothing to cancel"));
    Change c;
    c.job_id = job_id;
    c.job = r.stored.job;
    const bool running = c.job.state() == v1::JOB_STATE_RUNNING;
    c.job.set_state(v1::JOB_STATE_CANCELLED);
    *c.job.mutable_end_time() = ToProto(clock_.Now());
    c.job.set_message("cancelled by the user");
    c.event = MakeEvent(r, c.job, "cancelled", running ? "cancelled; aborting its ranks" : "cancelled while queued");
    c.apply = [this, &r]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (r.attempt) {
        EndAttempt(*r.attempt);
        r.attempt.reset();
      }
      Finished(r.stored.job, "cancelled");
    };
    if (absl::Status s = Commit({std::move(c)}); !s.ok()) return s;
    out = Visible(r);
  }
  Deliver();
  return out;
}

absl::StatusOr<int64_t> JobManager::Watch(const std::string& job_id, int64_t after, const EventCallback& cb,
                                          std::vector<v1::JobEvent>* replay, const JobScope& scope) {
  absl::MutexLock lock(&mu_);  // no commit can publish between the replay and the subscription
  auto it = jobs_.find(job_id);
  if (it == jobs_.end() || !scope.Sees(it->second.stored.job.owner())) return JobNotFound(job_id);
  return events_.Subscribe(job_id, after, it->second.events, cb, replay);
}

void JobManager::Unwatch(int64_t subscription) { events_.Unsubscribe(subscription); }

void JobManager::EndAttempt(const Attempt& a) {
  for (const auto& p : a.ranks) {
    if (p.worker_id.empty() || a.done.count(p.rank)) continue;
    book_.Abort(p.worker_id, a.attempt_id);
    // Note [Slots drain]: a rank its worker runs keeps its slot until the worker stops listing it.
    if (a.acked.count(p.rank)) registry_.DrainRank(p.worker_id, a.attempt_id, p.rank);
  }
  book_.EndAttempt(a.attempt_id);
  registry_.ReleaseAttempt(a.attempt_id);
}

JobManager::Record* JobManager::FindAttempt(const std::string& attempt_id) {
  std::optional<AttemptRef> ref = ParseAttemptId(attempt_id);
  if (!ref) return nullptr;
  auto it = jobs_.find(ref->job_id);
  if (it == jobs_.end() || !it->second.attempt || it->second.attempt->attempt_id != attempt_id) return nullptr;
  return &it->second;
}

void JobManager::Finished(const v1::Job& job, const std::string& outcome) {
  finished_.emplace_back(outcome, absl::ToDoubleSeconds(clock_.Now() - FromProto(job.submit_time())));
}

JobManager::Change JobManager::FailAttempt(Record& r, const std::string& reason, const std::string& cause,
                                           std::optional<absl::Time> failed_at, const std::string& startup_signature) {
  Change c;
  c.job_id = r.stored.job.job_id();
  c.job = r.stored.job;
  c.job.clear_done_ranks();
  const int n = c.job.attempts();
  const bool preempted = cause == "preempted";
  if (preempted) c.job.set_preemptions(c.job.preemptions() + 1);
  const int restarts = n - c.job.preemptions();  // preemptions are not the job's failures
  const int64_t max_restarts = c.job.spec().resources().max_restarts();
  const absl::Time now = clock_.Monotonic();
  // Note [Fail fast]
  const bool in_startup = r.attempt && !r.attempt->reported;
  const bool same_again = in_startup && !startup_signature.empty() && startup_signature == c.job.last_startup_error();
  c.job.set_last_startup_error(in_startup ? startup_signature : "");
  const int streak = preempted ? r.failure_streak : in_startup ? r.failure_streak + 1 : 0;
  if (restarts <= max_restarts && !same_again) {
    const absl::Duration backoff =
        preempted ? absl::ZeroDuration()
                  : std::min(options_.max_backoff, options_.restart_backoff * std::pow(2.0, std::max(0, streak - 1)));
    c.job.set_state(v1::JOB_STATE_QUEUED);
    c.job.set_message(absl::StrCat("attempt ", n, preempted ? " preempted: " : " failed: ", reason));
    c.event = MakeEvent(r, c.job, "requeued",
                        preempted ? absl::StrFormat("attempt %d preempted: %s; requeued (not counted against "
                                                    "max_restarts: %d of %d used)",
                                                    n, reason, restarts, max_restarts)
                                  : absl::StrFormat("attempt %d failed: %s; restart %d of %d after %s", n, reason,
                                                    restarts, max_restarts, absl::FormatDuration(backoff)));
    const absl::Time failed = failed_at.value_or(now);
    c.apply = [this, &r, now, backoff, cause, failed, streak]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      r.failure_streak = streak;
      if (r.attempt) EndAttempt(*r.attempt);
      r.attempt.reset();
      r.queued_since = now;
      r.not_before = now + backoff;
      ++restarts_;
      ++restarts_by_cause_[cause];
      recovery_.emplace_back("detect", std::max(0.0, absl::ToDoubleSeconds(now - failed)));
      r.recovery = Recovery{now, std::nullopt};
    };
  } else {
    c.job.set_state(v1::JOB_STATE_FAILED);
    *c.job.mutable_end_time() = ToProto(clock_.Now());
    c.job.set_message(same_again ? absl::StrFormat("attempt %d failed during start-up the same way as the attempt "
                                                   "before it: %s; not retried (fail fast)",
                                                   n, reason)
                                 : absl::StrFormat("attempt %d failed: %s; no restarts left (max_restarts %d)", n,
                                                   reason, max_restarts));
    c.event = MakeEvent(r, c.job, "failed", c.job.message());
    c.apply = [this, &r]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (r.attempt) EndAttempt(*r.attempt);
      r.attempt.reset();
      r.recovery.reset();
      Finished(r.stored.job, "failed");
    };
  }
  return c;
}

void JobManager::Tick() {
  {
    absl::MutexLock lock(&mu_);
    ApplyBeats();
    GuardLeases(clock_.Monotonic());
    std::set<std::string> failing;  // jobs whose attempt this tick fails (each once)
    std::vector<Change> changes = ExpireLeases(&failing);
    for (std::vector<Change> more : {ExpireRecoveries(&failing), ExpireProgress(&failing)})
      changes.insert(changes.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
    if (Commit(std::move(changes)).ok()) {
      pending_lost_.clear();
      RunSchedulingPass();
    }  // else pending_lost_ is kept: retried on the next tick
    PruneFinished();
  }
  Deliver();
}

void JobManager::PruneFinished() {
  if (options_.retain_finished <= 0) return;
  std::vector<std::pair<int64_t, std::string>> finished;  // (end time, id)
  for (const auto& [id, r] : jobs_)
    if (IsFinalState(r.stored.job.state())) finished.emplace_back(Nanos(r.stored.job.end_time()), id);
  const size_t keep = static_cast<size_t>(options_.retain_finished);
  if (finished.size() <= keep) return;
  std::sort(finished.begin(), finished.end());
  StoreWrite w;
  for (size_t i = 0; i < finished.size() - keep && i < 1000; ++i) w.deleted.push_back(finished[i].second);
  if (!store_.Write(w).ok()) return;
  for (const std::string& id : w.deleted) {
    const StoredJob& sj = jobs_.at(id).stored;
    if (!sj.request_id.empty()) by_request_.erase(RequestKey(sj.job.owner(), sj.request_id));
    pending_reasons_.erase(id);
    pending_kinds_.erase(id);
    jobs_.erase(id);
  }
}

void JobManager::GuardLeases(absl::Time now) {
  const std::optional<absl::Time> last = std::exchange(last_tick_, now);
  if (last && now - *last > options_.stall_threshold) {
    // The ticker did not run: this process stalled (disk, lock, pause). Heartbeats that waited
    // behind it must not count against their workers.
    const absl::Duration gap = now - *last;
    registry_.ExtendLeases(gap);
    for (auto& [id, r] : jobs_)
      if (r.attempt) r.attempt->last_progress_at += gap;
    Warn(absl::StrCat("the coordinator stalled for ", absl::FormatDuration(gap),
                      " (no tick): every lease and progress deadline extended by that much"));
  }
  // One grace a episode: an episode ends two leases after it began.
  if (mass_expiry_since_ && now - *mass_expiry_since_ >= 2 * options_.lease) mass_expiry_since_.reset();
  const size_t expired = registry_.Expired().size();
  const int alive = registry_.CountInState(WorkerState::kAlive);
  if (alive < 3 || static_cast<double>(expired) <= options_.max_expire_fraction * alive) return;
  if (mass_expiry_since_) {
    Warn(absl::StrCat(expired, " of ", alive, " workers are still silent one lease after their leases ran out "
                      "together: expiring them"));
    return;
  }
  mass_expiry_since_ = now;
  registry_.ExtendLeases(options_.lease);
  Warn(absl::StrCat(expired, " of ", alive, " workers' leases ran out in the same tick (more than ",
                    options_.max_expire_fraction, " of the cluster: a partition, or this coordinator's own stall?); "
                    "every lease extended once by ", absl::FormatDuration(options_.lease), " before expiring any"));
}

std::vector<JobManager::Change> JobManager::ExpireProgress(std::set<std::string>* failing) {
  std::vector<Change> changes;
  const absl::Time now = clock_.Monotonic();
  for (auto& [id, r] : jobs_) {
    if (!r.attempt || r.attempt->recovering_since || failing->count(id)) continue;
    const Attempt& a = *r.attempt;
    const bool between_rounds = a.reported && a.last_round < r.stored.job.spec().train().rounds();
    const absl::Duration deadline =
        between_rounds ? std::max(options_.progress_deadline_min,
                                  absl::Seconds(options_.progress_deadline_factor * a.round_seconds))
                       : options_.startup_deadline;
    if (now - a.last_progress_at < deadline) continue;
    failing->insert(id);
    changes.push_back(FailAttempt(
        r,
        absl::StrCat("no progress report for ", absl::FormatDuration(now - a.last_progress_at), " (deadline ",
                     absl::FormatDuration(deadline),
                     between_rounds ? absl::StrFormat(": %g x its round time of %.3gs", options_.progress_deadline_factor,
                                                      a.round_seconds)
                                    : a.reported ? " after its last round" : " to its first report",
                     ")"),
        "no_progress", a.last_progress_at));
  }
  return changes;
}

std::vector<JobManager::Change> JobManager::ExpireLeases(std::set<std::string>* failing) {
  std::vector<Change> changes;
  for (LostWorker& lw : registry_.ExpireLeases()) {
    {
      absl::MutexLock beats(&beats_mu_);  // its heartbeats go the full way: NOT_FOUND, register again
      beats_.erase(lw.worker_id);
    }
    pending_lost_.push_back(std::move(lw));
  }
  for (const LostWorker& lw : pending_lost_) {
    const WorkerInfo* w = registry_.Find(lw.worker_id);
    const std::optional<absl::Time> last_heartbeat =
        w ? std::optional<absl::Time>(w->lease_expiry - options_.lease) : std::nullopt;
    for (const RankSlot& slot : lw.ranks) {
      Record* r = FindAttempt(slot.attempt_id);
      if (r == nullptr || !failing->insert(r->stored.job.job_id()).second) continue;
      changes.push_back(FailAttempt(*r,
                                    absl::StrFormat("worker %s (rank %d) lost its lease: no heartbeat for %s",
                                                    lw.worker_id, slot.rank, absl::FormatDuration(options_.lease)),
                                    "lease_lost", last_heartbeat));
    }
  }
  return changes;
}

std::vector<JobManager::Change> JobManager::ExpireRecoveries(std::set<std::string>* failing) {
  std::vector<Change> changes;
  const absl::Time now = clock_.Monotonic();
  for (auto& [id, r] : jobs_) {
    if (!r.attempt || !r.attempt->recovering_since || failing->count(id)) continue;
    bool all = true;
    for (const auto& p : r.attempt->ranks) all = all && (!p.worker_id.empty() || r.attempt->done.count(p.rank));
    if (all) {
      r.attempt->recovering_since.reset();
      r.attempt->last_progress_at = now;
    } else if (now - *r.attempt->recovering_since >= options_.recovery_grace) {
      failing->insert(id);
      changes.push_back(
          FailAttempt(r,
                      absl::StrCat("its ranks were not reported back within ",
                                   absl::FormatDuration(options_.recovery_grace), " of a coordinator restart"),
                      "recovery"));
    }
  }
  return changes;
}

// Note [Elastic restarts]: a restart of a job with resources.min_trainers runs with as many
// trainers as the alive workers can hold at all (slots, and devices for cuda), never fewer than
// min_trainers, when they can no longer hold resources.trainers. The ranks learn W from their
// assignment; each trainer's shard is batch_points / W, so the global batch is the same.
static int ElasticTrainers(const v1::Job& j, const std::vector<WorkerCapacity>& workers) {
  const auto& res = j.spec().resources();
  const int want = static_cast<int>(res.trainers());
  if (res.min_trainers() <= 0 || j.attempts() == 0) return want;
  int slots = 0, devices = 0;
  for (const WorkerCapacity& w : workers) {
    slots += w.total_slots;
    devices += w.total_devices;
  }
  int fit = slots - 1;  // the variational rank takes a slot
  if (res.device() == "cuda") fit = std::min(fit, devices);
  if (fit >= want || fit < res.min_trainers()) return want;
  return fit;
}

std::vector<QueuedJob> JobManager::QueueSnapshot(std::map<std::string, int>* running) const {
  std::vector<QueuedJob> queue;
  const std::vector<WorkerCapacity> capacity = registry_.Capacity();
  for (const auto& [id, r] : jobs_) {
    const v1::Job& j = r.stored.job;
    if (j.state() == v1::JOB_STATE_RUNNING) ++(*running)[j.owner()];
    if (j.state() != v1::JOB_STATE_QUEUED) continue;
    QueuedJob q;
    q.job_id = id;
    q.owner = j.owner();
    q.priority = j.spec().priority();
    q.submit_time = FromProto(j.submit_time());
    q.queued_since = r.queued_since;
    q.not_before = r.not_before;
    q.trainers = ElasticTrainers(j, capacity);
    q.cuda = j.spec().resources().device() == "cuda";
    queue.push_back(std::move(q));
  }
  return queue;
}

void JobManager::RunSchedulingPass() {
  const Stopwatch pass;  // timed whole: queue snapshot, plan, durable starts
  const absl::Time now = clock_.Monotonic();
  std::map<std::string, int> running;
  std::vector<QueuedJob> queue = QueueSnapshot(&running);
  SchedulePlan plan = scheduler_.Plan(std::move(queue), registry_.Capacity(), running, now);
  pending_reasons_ = std::move(plan.pending_reasons);
  pending_kinds_ = std::move(plan.pending_kinds);
  std::vector<Change> starts;
  std::vector<std::string> booked;  // attempt ids holding a port and slots until committed
  for (const Placement& p : plan.placements) {
    std::optional<Change> c = MakeStartChange(p, now);
    if (!c) continue;
    booked.push_back(MakeAttemptId(c->job_id, c->job.attempts()));
    starts.push_back(std::move(*c));
  }
  if (!Commit(std::move(starts)).ok()) {  // they stay queued for the next pass
    for (const std::string& attempt_id : booked) {
      registry_.ReleaseAttempt(attempt_id);
      book_.EndAttempt(attempt_id);
    }
  }
  last_pass_seconds_ = pass.Seconds();
}

std::optional<JobManager::Change> JobManager::MakeStartChange(const Placement& p, absl::Time now) {
  Record& r = jobs_.at(p.job_id);
  Attempt a;
  a.number = r.stored.job.attempts() + 1;
  a.attempt_id = MakeAttemptId(p.job_id, a.number);
  a.ranks = p.ranks;
  a.rendezvous_secret = RandomHex(16);
  a.last_progress_at = now;
  const std::optional<int> port = book_.TakePort(a.attempt_id);
  if (!port) {
    const PortRange& range = book_.ports();
    const std::string why = absl::StrFormat(
        "all %d TCPStore ports of --store-port-range %d-%d are held by running "
        "attempts; it starts when one ends",
        range.size(), range.lo, range.hi);
    pending_kinds_[p.job_id] = PendingKind::kNoStorePort;
    pending_reasons_[p.job_id] = "placed, but " + why;
    if (!std::exchange(ports_exhausted_, true)) Warn(absl::StrCat("not starting ", p.job_id, ": ", why));
    return std::nullopt;
  }
  ports_exhausted_ = false;
  for (const RankPlacement& rp : a.ranks) {
    if (absl::Status s = registry_.Assign(rp.worker_id, a.attempt_id, rp.rank, rp.device); !s.ok()) {
      registry_.ReleaseAttempt(a.attempt_id);
      book_.EndAttempt(a.attempt_id);
      Warn(absl::StrCat("not starting ", a.attempt_id, ": cannot book rank ", rp.rank, ": ", s.message(),
                        " (the job stays queued)"));
      return std::nullopt;
    }
  }
  const WorkerInfo* w0 = registry_.Find(a.ranks[0].worker_id);
  const std::string store_addr =
      absl::StrCat(w0 && !w0->resources.host.empty() ? w0->resources.host : "127.0.0.1", ":", *port);
  Change c;
  c.job_id = p.job_id;
  c.job = r.stored.job;
  c.job.set_state(v1::JOB_STATE_RUNNING);
  c.job.set_attempts(a.number);
  c.job.set_trainers(static_cast<int32_t>(a.ranks.size()) - 1);
  c.job.clear_done_ranks();
  *c.job.mutable_start_time() = ToProto(clock_.Now());
  c.job.clear_message();
  c.job.clear_pending_reason();
  c.event = MakeEvent(r, c.job, "scheduled", ScheduledMessage(a.number, a.ranks, store_addr, c.job.spec().resources().trainers()));
  c.apply = [this, &r, a, store_addr, now]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    QueueAssignments(r, a, store_addr);
    queue_waits_.push_back(absl::ToDoubleSeconds(now - r.queued_since));
    if (r.recovery && !r.recovery->started_at) {
      recovery_.emplace_back("reschedule", absl::ToDoubleSeconds(now - r.recovery->requeued_at));
      r.recovery->started_at = now;
    }
    r.attempt = a;
  };
  return c;
}

void JobManager::QueueAssignments(const Record& r, const Attempt& a, const std::string& store_addr) {
  for (const auto& rp : a.ranks) {
    v1::Assignment as;
    as.set_attempt_id(a.attempt_id);
    as.set_job_id(r.stored.job.job_id());
    as.set_attempt(a.number);
    as.set_rank(rp.rank);
    as.set_trainers(static_cast<int32_t>(a.ranks.size()) - 1);
    as.set_store_addr(store_addr);
    *as.mutable_spec() = r.stored.job.spec();
    // Note [Elastic restarts]: the ranks run the attempt's W (its spec_hash stays the job's).
    as.mutable_spec()->mutable_resources()->set_trainers(as.trainers());
    as.set_artifact_dir(absl::StrCat(options_.artifact_root, "/", r.stored.job.job_id()));
    as.set_rendezvous_secret(a.rendezvous_secret);
    as.set_job_uid(r.stored.job.uid());
    as.set_spec_hash(r.stored.job.spec_hash());
    book_.Assign(rp.worker_id, std::move(as));
  }
}

absl::StatusOr<v1::RegisterResponse> JobManager::Register(const v1::RegisterRequest& req, const std::string& principal) {
  if (absl::Status s = ValidateRegister(req); !s.ok()) return s;
  v1::RegisterResponse resp;
  {
    absl::MutexLock lock(&mu_);
    auto bound = bindings_.find(req.worker_id());
    if (bound != bindings_.end() && bound->second.principal != principal)
      return absl::PermissionDeniedError(
          absl::StrCat("worker_id: ", req.worker_id(), " is registered by another identity"));
    const auto& res = req.resources();
    if (absl::Status s =
            registry_.Register(req.worker_id(), {res.slots(), res.devices(), res.memory_bytes(), res.host()});
        !s.ok())
      return s;
    WorkerBinding& b = bindings_[req.worker_id()];
    b.principal = principal;
    b.credential = RandomHex(16);  // the previous one, if any, is revoked
    resp.set_worker_credential(b.credential);
    {
      absl::MutexLock beats(&beats_mu_);
      beats_[req.worker_id()] = {b.credential, clock_.Monotonic()};
    }
    ReclaimRunningRanks(req);
    // It lists exactly what it runs: an acknowledged rank it does not list is gone.
    std::set<std::pair<std::string, int>> running;
    for (const auto& rr : req.running()) running.insert({rr.attempt_id(), rr.rank()});
    Commit(ReconcileRanks(req.worker_id(), running)).IgnoreError();  // else at its next heartbeat
  }
  Deliver();
  resp.set_lease_seconds(absl::ToDoubleSeconds(options_.lease));
  resp.set_heartbeat_seconds(absl::ToDoubleSeconds(options_.lease) / 3.0);
  return resp;
}

absl::Status JobManager::CheckWorker(const std::string& worker_id, const std::string& credential) const {
  auto it = bindings_.find(worker_id);
  const WorkerInfo* w = it == bindings_.end() ? nullptr : registry_.Find(worker_id);
  if (w == nullptr) return absl::NotFoundError(absl::StrCat("worker ", Clip(worker_id), " is not registered"));
  if (!IsCredential(credential, it->second.credential))
    return absl::PermissionDeniedError(absl::StrCat(
        "worker ", worker_id, ": the x-vsdm-worker-credential is not the one its current registration was given"));
  if (w->state != WorkerState::kAlive)
    return absl::NotFoundError(absl::StrCat("worker ", worker_id, " lost its lease; register again"));
  return absl::OkStatus();
}

absl::StatusOr<JobManager::Record*> JobManager::HeldAttempt(const std::string& worker_id,
                                                            const std::string& attempt_id, int64_t rank) {
  Record* r = FindAttempt(attempt_id);
  if (r == nullptr)
    return absl::FailedPreconditionError(absl::StrCat("attempt ", Clip(attempt_id), " is not a running attempt"));
  if (rank < 0 || rank >= static_cast<int64_t>(r->attempt->ranks.size()))
    return absl::FailedPreconditionError(absl::StrCat("rank: ", rank, " is not a rank of ", attempt_id, " (0..",
                                                      r->attempt->ranks.size() - 1, ")"));
  if (r->attempt->ranks[static_cast<size_t>(rank)].worker_id != worker_id)
    return absl::FailedPreconditionError(
        absl::StrCat("rank ", rank, " of ", attempt_id, " is not placed on worker ", worker_id));
  return r;
}

std::vector<JobManager::Change> JobManager::ReconcileRanks(const std::string& worker_id,
                                                           const std::set<std::pair<std::string, int>>& running) {
  registry_.ReleaseDrained(worker_id, running);  // Note [Slots drain]
  std::vector<Change> changes;
  const WorkerInfo* w = registry_.Find(worker_id);
  if (w == nullptr) return changes;
  std::set<std::string> failing;
  for (const RankSlot& slot : w->ranks) {
    Record* r = slot.draining ? nullptr : FindAttempt(slot.attempt_id);
    if (r == nullptr) continue;
    Attempt& a = *r->attempt;
    if (running.count({slot.attempt_id, slot.rank})) {
      a.acked.insert(slot.rank);
      continue;
    }
    if (!a.acked.count(slot.rank) || a.done.count(slot.rank) || !failing.insert(r->stored.job.job_id()).second)
      continue;
    changes.push_back(FailAttempt(*r,
                                  absl::StrFormat("rank %d is no longer running on worker %s (it ended unreported, "
                                                  "or its agent restarted without it)",
                                                  slot.rank, worker_id),
                                  "rank_gone"));
  }
  return changes;
}

void JobManager::ReclaimRunningRanks(const v1::RegisterRequest& req) {
  const std::string& worker = req.worker_id();
  for (const auto& rr : req.running()) {
    Record* r = FindAttempt(rr.attempt_id());
    if (r == nullptr || rr.rank() < 0 || rr.rank() >= static_cast<int>(r->attempt->ranks.size())) {
      book_.Abort(worker, rr.attempt_id());
      continue;
    }
    RankPlacement& p = r->attempt->ranks[rr.rank()];
    if (!p.worker_id.empty() && p.worker_id != worker) continue;
    bool held = false;
    for (const auto& slot : registry_.Find(worker)->ranks)
      held = held || (slot.attempt_id == rr.attempt_id() && slot.rank == rr.rank());
    absl::Status booked = held ? absl::OkStatus() : registry_.Assign(worker, rr.attempt_id(), rr.rank(), p.device);
    if (booked.ok()) {
      p.worker_id = worker;
      continue;
    }
    // Not taken back: the rank stays unreported (the attempt fails at its recovery deadline if
    // nobody else reports it) and this worker stops running it.
    Warn(absl::StrCat("worker ", worker, " reports rank ", rr.rank(), " of ", rr.attempt_id(),
                      " running but it cannot be booked there: ", booked.message(), "; aborting it"));
    book_.Abort(worker, rr.attempt_id());
  }
}

bool JobManager::RenewLease(const std::string& worker_id, const std::string& credential) {
  absl::MutexLock lock(&beats_mu_);
  auto it = beats_.find(worker_id);
  if (it == beats_.end() || !IsCredential(credential, it->second.credential)) return false;
  it->second.at = clock_.Monotonic();
  return true;
}

void JobManager::ApplyBeats() {
  absl::MutexLock lock(&beats_mu_);
  for (const auto& [id, beat] : beats_) registry_.RenewFrom(id, beat.at);
}

bool JobManager::LockWithin(absl::Duration d) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  const auto until = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(d);
  while (!mu_.TryLock()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

absl::StatusOr<v1::HeartbeatResponse> JobManager::Heartbeat(const v1::HeartbeatRequest& req,
                                                           const std::string& credential) {
  if (req.running_size() > 4096)
    return absl::InvalidArgumentError(absl::StrCat("running: at most 4096 ranks, got ", req.running_size()));
  if (RenewLease(req.worker_id(), credential)) {
    if (!LockWithin(options_.heartbeat_lock_wait)) {  // Note [Heartbeats beside the lock]
      absl::MutexLock lock(&beats_mu_);
      ++heartbeats_deferred_;
      v1::HeartbeatResponse resp;
      resp.set_lease_seconds(absl::ToDoubleSeconds(options_.lease));
      return resp;
    }
  } else {
    mu_.Lock();  // the full path says why (NOT_FOUND, PERMISSION_DENIED)
  }
  absl::StatusOr<v1::HeartbeatResponse> resp = HeartbeatLocked(req, credential);
  mu_.Unlock();
  return resp;
}

absl::StatusOr<v1::HeartbeatResponse> JobManager::HeartbeatLocked(const v1::HeartbeatRequest& req,
                                                                 const std::string& credential) {
  if (absl::Status s = CheckWorker(req.worker_id(), credential); !s.ok()) return s;
  if (absl::Status s = registry_.Heartbeat(req.worker_id()); !s.ok()) return s;
  v1::HeartbeatResponse resp;
  std::set<std::pair<std::string, int>> running;
  for (const auto& rr : req.running()) {
    running.insert({rr.attempt_id(), rr.rank()});
    // Re-derived on every heartbeat until the worker stops listing it (review M6: an abort order
    // lost with its response is sent again).
    if (FindAttempt(rr.attempt_id()) == nullptr) book_.Abort(req.worker_id(), rr.attempt_id());
  }
  // A failed write is retried at the next heartbeat: the rank is still missing then.
  Commit(ReconcileRanks(req.worker_id(), running)).IgnoreError();
  // Assignments are sent again until the worker reports the rank running (a lost response must
  // not lose a rank); the agent ignores ones it has already started.
  auto delivered = [&](const v1::Assignment& a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Record* r = FindAttempt(a.attempt_id());
    return r == nullptr || running.count({a.attempt_id(), a.rank()}) > 0 || r->attempt->done.count(a.rank()) > 0;
  };
  for (auto& a : book_.Deliverable(req.worker_id(), delivered)) *resp.add_assignments() = std::move(a);
  for (auto& a : book_.TakeAborts(req.worker_id())) resp.add_abort_attempts(std::move(a));
  resp.set_lease_seconds(absl::ToDoubleSeconds(options_.lease));
  return resp;
}

absl::Status JobManager::Report(const v1::ReportRequest& req, const std::string& credential) {
  {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = CheckWorker(req.worker_id(), credential); !s.ok()) return s;
    absl::StatusOr<Record*> held = HeldAttempt(req.worker_id(), req.attempt_id(), req.rank());
    if (!held.ok()) return held.status();
    Record* r = *held;
    if (req.rank() != 0) return absl::OkStatus();  // only rank 0's progress is the job's
    v1::Progress p = req.progress();
    const int64_t rounds = r->stored.job.spec().train().rounds();
    if (p.round() < r->attempt->last_round || p.round() > rounds)
      return absl::InvalidArgumentError(absl::StrCat("progress.round: must be in [", r->attempt->last_round, ", ",
                                                     rounds, "] (never lower than the last report), got ", p.round()));
    if (!Finite(p.loss()) || !Finite(p.steps_per_second()) || p.steps_per_second() < 0 || !Finite(p.eta_seconds()))
      return absl::InvalidArgumentError("progress: loss, steps_per_second and eta_seconds must be finite (rate >= 0)");
    if (absl::Status s = ValidateMetrics(p.metrics(), "progress.metrics"); !s.ok()) return s;
    r->attempt->last_round = p.round();
    r->attempt->last_progress_at = clock_.Monotonic();  // Note [Progress deadlines]
    r->attempt->reported = true;
    const double since_submit = absl::ToDoubleSeconds(clock_.Now() - FromProto(r->stored.job.submit_time()));
    const double per_round =
        p.steps_per_second() > 0
            ? static_cast<double>(r->stored.job.spec().train().steps_per_round()) / p.steps_per_second()
            : 0.0;
    r->attempt->round_seconds = per_round;
    if (since_submit > 0) p.set_goodput_ratio(std::min(1.0, static_cast<double>(p.round()) * per_round / since_submit));
    *r->stored.job.mutable_progress() = p;
    if (std::optional<Change> c = FallbackChange(*r, p))
      Commit({std::move(*c)}).IgnoreError();  // a failed write: said again at the next report
    if (r->recovery && r->recovery->started_at) {
      recovery_.emplace_back("resume", absl::ToDoubleSeconds(clock_.Monotonic() - *r->recovery->started_at));
      r->recovery.reset();
    }
    v1::JobEvent e = MakeEvent(*r, r->stored.job, "progress", "");
    e.set_sequence(r->events.empty() ? 0 : r->events.back().sequence());
    events_.Publish(e);
  }
  Deliver();
  return absl::OkStatus();
}

std::optional<JobManager::Change> JobManager::FallbackChange(Record& r, const v1::Progress& p) {
  auto skipped = p.metrics().find("checkpoints_skipped");
  if (r.attempt->fallback_reported || skipped == p.metrics().end() || skipped->second <= 0) return std::nullopt;
  auto from = p.metrics().find("resumed_from_round");
  const int64_t resumed = from == p.metrics().end() ? 0 : static_cast<int64_t>(from->second);
  Change c;
  c.job_id = r.stored.job.job_id();
  c.job = r.stored.job;
  c.event = MakeEvent(r, c.job, "checkpoint_fallback",
                      absl::StrFormat("attempt %d resumed from round %d: its %d newest checkpoint(s) were refused "
                                      "(truncated, corrupt, another job's or not finite) and renamed .bad; rank 0's "
                                      "log says why",
                                      r.attempt->number, resumed, static_cast<int64_t>(skipped->second)));
  Attempt* a = &*r.attempt;
  c.apply = [a] { a->fallback_reported = true; };
  return c;
}

absl::Status JobManager::Complete(const v1::CompleteRequest& req, const std::string& credential) {
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = CheckWorker(req.worker_id(), credential); !s.ok()) return s;
    absl::StatusOr<Record*> held = HeldAttempt(req.worker_id(), req.attempt_id(), req.rank());
    if (!held.ok()) return held.status();
    if (absl::Status s = ValidateMetrics(req.metrics(), "metrics"); !s.ok()) return s;
    Record* r = *held;
    if (req.exit_code() != 0) {
      status = Commit({RankExited(*r, req)});
    } else if (req.rank() == 0) {
      status = Commit({Succeeded(*r, req)});
    } else if (!r->attempt->done.count(req.rank())) {
      // Durable (review H7): after a coordinator restart nobody re-reports a rank that exited, so
      // the recovered attempt must know it is done (Job.done_ranks), not wait for it.
      Change c;
      c.job_id = r->stored.job.job_id();
      c.job = r->stored.job;
      c.job.add_done_ranks(req.rank());
      c.apply = [r, rank = req.rank()] { r->attempt->done.insert(rank); };
      status = Commit({std::move(c)});
    }
  }
  Deliver();
  return status;
}

JobManager::Change JobManager::RankExited(Record& r, const v1::CompleteRequest& req) {
  const std::string message = ExitMessage(req.message());
  const bool preempted = req.exit_code() == train_protocol::ExitCode(train_protocol::TrainExit::kPreempted);
  return FailAttempt(r,
                     absl::StrFormat("rank %d on %s exited with code %d%s%s%s", req.rank(), req.worker_id(),
                                     req.exit_code(), preempted ? " (preempted; it checkpointed)" : "",
                                     message.empty() ? "" : ": ", message),
                     preempted ? "preempted" : "rank_failed", std::nullopt, StartupSignature(req.exit_code(), message));
}

JobManager::Change JobManager::Succeeded(Record& r, const v1::CompleteRequest& req) {
  Change c;
  c.job_id = r.stored.job.job_id();
  c.job = r.stored.job;
  c.job.set_state(v1::JOB_STATE_SUCCEEDED);
  c.job.clear_done_ranks();
  *c.job.mutable_end_time() = ToProto(clock_.Now());
  for (const auto& [k, v] : req.metrics()) (*c.job.mutable_progress()->mutable_metrics())[k] = v;
  c.job.mutable_progress()->set_round(c.job.spec().train().rounds());
  c.job.mutable_progress()->set_eta_seconds(0);
  c.event = MakeEvent(r, c.job, "succeeded", absl::StrCat("artifacts in ", options_.artifact_root, "/", c.job_id));
  c.apply = [this, rp = &r]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    rp->attempt->done.insert(0);
    EndAttempt(*rp->attempt);
    rp->attempt.reset();
    Finished(rp->stored.job, "succeeded");
  };
  return c;
}

absl::StatusOr<std::string> JobManager::RankJob(const std::string& worker_id, const std::string& attempt_id,
                                                int64_t rank, const std::string& credential) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckWorker(worker_id, credential); !s.ok()) return s;
  absl::StatusOr<Record*> held = HeldAttempt(worker_id, attempt_id, rank);
  if (!held.ok()) return held.status();
  return (*held)->stored.job.job_id();
}

absl::StatusOr<std::string> JobManager::UploadTarget(const v1::UploadArtifactRequest& req,
                                                     const std::string& credential) {
  return RankJob(req.worker_id(), req.attempt_id(), 0, credential);
}

absl::StatusOr<std::string> JobManager::CheckpointSource(const v1::FetchCheckpointRequest& req,
                                                         const std::string& credential) {
  return RankJob(req.worker_id(), req.attempt_id(), 0, credential);
}

absl::StatusOr<std::string> JobManager::LogTarget(const v1::AppendLogRequest& req, const std::string& credential) {
  return RankJob(req.worker_id(), req.attempt_id(), req.rank(), credential);
}

v1::ListWorkersResponse JobManager::Workers() const {
  absl::MutexLock lock(&mu_);
  absl::MutexLock beats(&beats_mu_);
  v1::ListWorkersResponse resp;
  const absl::Time now = clock_.Monotonic();
  for (const auto& [id, w] : registry_.workers()) {
    auto* s = resp.add_workers();
    s->set_worker_id(id);
    s->set_state(w.state == WorkerState::kAlive ? "alive" : "lost");
    s->mutable_resources()->set_slots(w.resources.slots);
    s->mutable_resources()->set_devices(w.resources.devices);
    s->mutable_resources()->set_memory_bytes(w.resources.memory_bytes);
    s->mutable_resources()->set_host(w.resources.host);
    s->set_free_slots(std::max(0, w.resources.slots - static_cast<int>(w.ranks.size())));
    for (const auto& r : w.ranks) {
      auto* rr = s->add_ranks();
      rr->set_attempt_id(r.attempt_id);
      rr->set_rank(r.rank);
    }
    absl::Time expiry = w.lease_expiry;  // or a renewal not yet applied (Note [Heartbeats beside the lock])
    if (auto b = beats_.find(id); b != beats_.end() && w.state == WorkerState::kAlive)
      expiry = std::max(expiry, b->second.at + options_.lease);
    s->set_lease_remaining_seconds(std::max(0.0, absl::ToDoubleSeconds(expiry - now)));
  }
  return resp;
}

JobManagerStats JobManager::TakeStats() {
  absl::MutexLock lock(&mu_);
  ApplyBeats();
  JobManagerStats s;
  {
    absl::MutexLock beats(&beats_mu_);
    s.heartbeats_deferred = heartbeats_deferred_;
  }
  for (const auto& [id, r] : jobs_) ++s.jobs_by_state[r.stored.job.state()];
  s.workers_alive = registry_.CountInState(WorkerState::kAlive);
  s.workers_lost = registry_.CountInState(WorkerState::kLost);
  s.restarts = restarts_;
  s.restarts_by_cause = restarts_by_cause_;
  for (const auto& [id, kind] : pending_kinds_) {
    auto it = jobs_.find(id);
    if (it != jobs_.end() && it->second.stored.job.state() == v1::JOB_STATE_QUEUED) ++s.pending_by_kind[kind];
  }
  s.finished.swap(finished_);
  s.recovery.swap(recovery_);
  for (const auto& [id, r] : jobs_)
    if (r.stored.job.state() == v1::JOB_STATE_RUNNING) s.goodput[id] = r.stored.job.progress().goodput_ratio();
  const absl::Time now = clock_.Monotonic();
  for (const auto& [id, w] : registry_.workers())
    if (w.state == WorkerState::kAlive)
      s.heartbeat_age_seconds[id] = absl::ToDoubleSeconds(now - (w.lease_expiry - options_.lease));
  s.last_pass_seconds = last_pass_seconds_;
  s.queue_wait_seconds.swap(queue_waits_);
  return s;
}

}  // namespace vsdm::server
