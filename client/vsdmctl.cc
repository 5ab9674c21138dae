// vsdmctl: the command line of vsdm, written against the generated JobService stub.
//   submit -f job.yaml [--wait]   get JOB   list [--state S]   watch JOB   cancel JOB
//   logs JOB   artifacts JOB --out DIR   workers   local up [--workers N] | local down
// Exit codes: 0 ok; 1 the job failed (or was cancelled); 2 bad usage or input refused (the
// server's message names the field); 3 the coordinator is unavailable.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/local_cluster.h"
#include "common/job_spec.h"
#include "proto/job_spec_proto.h"
#include "proto/job_state.h"
#include "vsdm/v1/service.grpc.pb.h"

namespace {
namespace fs = std::filesystem;
using vsdm::v1::Job;
using vsdm::v1::JobState;

struct Options {
  std::string coordinator;  // --coordinator; default $VSDM_COORDINATOR, the local cluster, 127.0.0.1:50051
  std::string output;       // -o json
  std::string state_dir;    // local cluster state; default $VSDM_HOME or ~/.vsdm/local
};

int ExitFor(const grpc::Status& s) {
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 3;
    default:
      return 2;
  }
}

int Fail(const grpc::Status& s, const std::string& what) {
  std::cerr << "vsdmctl: " << what << ": " << s.error_message() << "\n";
  if (ExitFor(s) == 3) std::cerr << "vsdmctl: is the coordinator running? (vsdmctl local up, or --coordinator)\n";
  return ExitFor(s);
}

std::string Json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

std::string Duration(double s) {
  if (s < 60) return absl::StrFormat("%.0fs", s);
  if (s < 3600) return absl::StrFormat("%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return absl::StrFormat("%dh%02dm", static_cast<int>(s) / 3600, (static_cast<int>(s) % 3600) / 60);
}

void Deadline(grpc::ClientContext& ctx, int seconds = 10) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

std::string ProgressBar(const vsdm::v1::Progress& p) {
  const int width = 30;
  const double f = p.rounds() > 0 ? static_cast<double>(p.round()) / static_cast<double>(p.rounds()) : 0.0;
  const int fill = static_cast<int>(f * width);
  std::string bar(width, ' ');
  for (int i = 0; i < fill; ++i) bar[i] = '=';
  if (fill < width) bar[fill] = '>';
  return absl::StrFormat("round %d/%d [%s] %3.0f%%  loss %.4f  |A| %.3f  %.0f steps/s  goodput %.0f%%  ETA %s",
                         p.round(), p.rounds(), bar, 100 * f, p.loss(), p.a_norm(), p.steps_per_second(),
                         100 * p.goodput_ratio(), Duration(p.eta_seconds()));
}

void PrintFinal(const Job& j) {
  std::cout << j.job_id() << " " << vsdm::JobStateName(j.state());
  if (!j.message().empty()) std::cout << ": " << j.message();
  std::cout << "\n";
  const auto& m = j.progress().metrics();
  auto get = [&](const char* k) { auto it = m.find(k); return it == m.end() ? -1.0 : it->second; };
  if (j.state() == vsdm::v1::JOB_STATE_SUCCEEDED && m.count("energy_distance"))
    std::cout << absl::StrFormat(
        "energy distance %.4f (data floor %.4f), PMF-RMSE %.3e (floor %.3e), ODE straightness %.3f, %.0fs\n",
        get("energy_distance"), get("energy_distance_floor"), get("pmf_rmse"), get("pmf_rmse_floor"),
        get("ode_straightness"), get("wall_seconds"));
}

// Streams the job's events with a progress bar; returns its exit code (0 succeeded, 1 not).
int Watch(vsdm::v1::JobService::Stub& stub, const std::string& job_id, bool json) {
  const bool tty = isatty(STDOUT_FILENO);
  int64_t after = 0;
  for (int tries = 0;; ++tries) {
    grpc::ClientContext ctx;
    vsdm::v1::WatchJobRequest req;
    req.set_job_id(job_id);
    req.set_after_sequence(after);
    auto reader = stub.WatchJob(&ctx, req);
    vsdm::v1::JobEvent e;
    int64_t last_round = -1;
    bool bar_open = false;
    while (reader->Read(&e)) {
      tries = 0;
      if (json) {
        std::cout << Json(e) << std::endl;
      } else if (e.kind() == "progress") {
        if (e.progress().round() != last_round || tty) {
          std::cout << (tty ? "\r" : "") << ProgressBar(e.progress()) << (tty ? "" : "\n") << std::flush;
          bar_open = tty;
          last_round = e.progress().round();
        }
      } else {
        if (bar_open) std::cout << "\n";
        bar_open = false;
        std::cout << "[" << e.kind() << "] " << e.message() << std::endl;
      }
      if (e.kind() != "progress") after = e.sequence();
    }
    if (bar_open) std::cout << "\n";
    grpc::Status s = reader->Finish();
    if (s.ok()) break;
    if (ExitFor(s) != 3 || tries >= 60) return Fail(s, "watch " + job_id);
    std::this_thread::sleep_for(std::chrono::seconds(1));  // the coordinator may be restarting
  }
  grpc::ClientContext ctx;
  Deadline(ctx);
  vsdm::v1::GetJobRequest g;
  g.set_job_id(job_id);
  Job j;
  if (grpc::Status s = stub.GetJob(&ctx, g, &j); !s.ok()) return Fail(s, "get " + job_id);
  if (!json) PrintFinal(j);
  return j.state() == vsdm::v1::JOB_STATE_SUCCEEDED ? 0 : 1;
}

std::string DefaultStateDir() {
  if (const char* h = std::getenv("VSDM_HOME"); h && *h) return h;
  const char* home = std::getenv("HOME");
  return (fs::path(home ? home : ".") / ".vsdm" / "local").string();
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  opt.state_dir = DefaultStateDir();
  CLI::App app{"vsdmctl: submit and watch VSDM training jobs"};
  app.require_subcommand(1);
  app.fallthrough();  // global options (-o json, --coordinator) also after the subcommand
  app.add_option("--coordinator", opt.coordinator, "coordinator address (default $VSDM_COORDINATOR, the local cluster, 127.0.0.1:50051)");
  app.add_option("-o,--output", opt.output, "output format: json")->check(CLI::IsMember({"json", ""}));
  app.add_option("--state-dir", opt.state_dir, "local cluster state dir (default $VSDM_HOME or ~/.vsdm/local)");

  std::string file, job_id, state, out_dir, request_id;
  bool wait = false;
  auto* submit = app.add_subcommand("submit", "submit a job spec");
  submit->add_option("-f,--file", file, "job spec YAML")->required();
  submit->add_option("--request-id", request_id, "idempotency key (default: none)");
  submit->add_flag("--wait", wait, "watch it to the end (exit 1 if it does not succeed)");
  auto* get = app.add_subcommand("get", "show a job");
  get->add_option("job", job_id)->required();
  auto* list = app.add_subcommand("list", "list jobs, newest first");
  list->add_option("--state", state, "queued|running|succeeded|failed|cancelled");
  auto* watch = app.add_subcommand("watch", "follow a job with a progress bar");
  watch->add_option("job", job_id)->required();
  auto* cancel = app.add_subcommand("cancel", "cancel a job");
  cancel->add_option("job", job_id)->required();
  auto* logs = app.add_subcommand("logs", "a job's event log (and where its ranks' logs are)");
  logs->add_option("job", job_id)->required();
  auto* artifacts = app.add_subcommand("artifacts", "download a finished job's artifacts");
  artifacts->add_option("job", job_id)->required();
  artifacts->add_option("--out", out_dir, "directory to write into")->required();
  auto* workers = app.add_subcommand("workers", "list the registered workers");
  auto* local = app.add_subcommand("local", "a coordinator and agents on this machine");
  local->require_subcommand(1);
  vsdm::client::LocalClusterOptions lo;
  auto* up = local->add_subcommand("up", "start them in the background");
  up->add_option("--workers", lo.workers, "agents")->check(CLI::Range(1, 64));
  up->add_option("--slots", lo.slots, "slots per agent")->check(CLI::Range(1, 64));
  up->add_option("--threads-per-rank", lo.threads_per_rank, "threads of each rank")->check(CLI::Range(1, 64));
  auto* down = local->add_subcommand("down", "stop them");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  const bool json = opt.output == "json";

  if (up->parsed()) {
    std::error_code ec;
    lo.state_dir = opt.state_dir;
    lo.bin_dir = fs::read_symlink("/proc/self/exe", ec).parent_path().string();
    auto addr = vsdm::client::LocalClusterUp(lo);
    if (!addr.ok()) {
      std::cerr << "vsdmctl: local up: " << addr.status().message() << "\n";
      return addr.status().code() == absl::StatusCode::kFailedPrecondition ? 2 : 3;
    }
    std::cout << "local cluster up: coordinator " << *addr << ", " << lo.workers << " agents x " << lo.slots
              << " slots; state and logs in " << opt.state_dir << "\n";
    return 0;
  }
  if (down->parsed()) {
    auto s = vsdm::client::LocalClusterDown(opt.state_dir);
    std::cout << "local cluster down (" << opt.state_dir << ")\n";
    return s.ok() ? 0 : 1;
  }

  if (opt.coordinator.empty()) {
    if (const char* c = std::getenv("VSDM_COORDINATOR"); c && *c) opt.coordinator = c;
  }
  if (opt.coordinator.empty()) {
    auto local_addr = vsdm::client::LocalClusterAddress(opt.state_dir);
    opt.coordinator = local_addr.ok() ? *local_addr : "127.0.0.1:50051";
  }
  auto stub = vsdm::v1::JobService::NewStub(grpc::CreateChannel(opt.coordinator, grpc::InsecureChannelCredentials()));

  if (submit->parsed()) {
    auto spec = vsdm::LoadJobSpecFile(file);
    if (!spec.ok()) {
      std::cerr << "vsdmctl: " << file << ": " << spec.status().message() << "\n";
      return 2;
    }
    vsdm::v1::SubmitJobRequest req;
    *req.mutable_spec() = vsdm::JobSpecToProto(*spec);
    req.set_request_id(request_id);
    grpc::ClientContext ctx;
    Deadline(ctx, 30);
    Job j;
    if (grpc::Status s = stub->SubmitJob(&ctx, req, &j); !s.ok()) return Fail(s, "submit " + file);
    if (json && !wait) {
      std::cout << Json(j) << "\n";
      return 0;
    }
    std::cout << j.job_id() << " submitted (" << vsdm::JobStateName(j.state()) << ")" << std::endl;
    return wait ? Watch(*stub, j.job_id(), json) : 0;
  }
  if (get->parsed()) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    vsdm::v1::GetJobRequest req;
    req.set_job_id(job_id);
    Job j;
    if (grpc::Status s = stub->GetJob(&ctx, req, &j); !s.ok()) return Fail(s, "get " + job_id);
    if (json) {
      std::cout << Json(j) << "\n";
      return 0;
    }
    std::cout << absl::StrFormat("%s  %s  %s  attempts %d\n", j.job_id(), j.spec().name(), vsdm::JobStateName(j.state()),
                                 j.attempts());
    if (!j.pending_reason().empty()) std::cout << "pending: " << j.pending_reason() << "\n";
    if (j.state() == vsdm::v1::JOB_STATE_RUNNING && j.progress().rounds() > 0) std::cout << ProgressBar(j.progress()) << "\n";
    if (vsdm::IsFinalState(j.state())) PrintFinal(j);
    else if (!j.message().empty()) std::cout << "last: " << j.message() << "\n";
    return 0;
  }
  if (list->parsed()) {
    vsdm::v1::ListJobsRequest req;
    if (!state.empty()) {
      JobState st;
      std::string upper = "JOB_STATE_";
      for (char c : state) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      if (!vsdm::v1::JobState_Parse(upper, &st)) {
        std::cerr << "vsdmctl: --state: must be queued|running|succeeded|failed|cancelled, got " << state << "\n";
        return 2;
      }
      req.set_state(st);
    }
    req.set_page_size(100);
    vsdm::v1::ListJobsResponse all;
    for (;;) {
      grpc::ClientContext ctx;
      Deadline(ctx);
      vsdm::v1::ListJobsResponse resp;
      if (grpc::Status s = stub->ListJobs(&ctx, req, &resp); !s.ok()) return Fail(s, "list");
      for (auto& j : *resp.mutable_jobs()) *all.add_jobs() = std::move(j);
      if (resp.next_page_token().empty()) break;
      req.set_page_token(resp.next_page_token());
    }
    if (json) {
      std::cout << Json(all) << "\n";
      return 0;
    }
    std::cout << absl::StrFormat("%-14s %-20s %-10s %-8s %s\n", "JOB", "NAME", "STATE", "ATTEMPTS", "PROGRESS / REASON");
    for (const auto& j : all.jobs()) {
      std::string extra = j.state() == vsdm::v1::JOB_STATE_QUEUED ? j.pending_reason()
                          : j.state() == vsdm::v1::JOB_STATE_RUNNING
                              ? absl::StrFormat("round %d/%d", j.progress().round(), j.progress().rounds())
                              : j.message();
      std::cout << absl::StrFormat("%-14s %-20s %-10s %-8d %s\n", j.job_id(), j.spec().name().substr(0, 20),
                                   vsdm::JobStateName(j.state()), j.attempts(), extra);
    }
    return 0;
  }
  if (watch->parsed()) return Watch(*stub, job_id, json);
  if (cancel->parsed()) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    vsdm::v1::CancelJobRequest req;
    req.set_job_id(job_id);
    Job j;
    if (grpc::Status s = stub->CancelJob(&ctx, req, &j); !s.ok()) return Fail(s, "cancel " + job_id);
    std::cout << j.job_id() << " " << vsdm::JobStateName(j.state()) << "\n";
    return 0;
  }
  if (logs->parsed()) {
    // The stored events arrive at once; a running job's stream then waits for news, which the
    // short deadline cuts off.
    grpc::ClientContext ctx;
    Deadline(ctx, 2);
    vsdm::v1::WatchJobRequest req;
    req.set_job_id(job_id);
    auto reader = stub->WatchJob(&ctx, req);
    vsdm::v1::JobEvent e;
    while (reader->Read(&e)) {
      if (e.kind() == "progress") continue;
      std::cout << (json ? Json(e)
                         : absl::StrCat("#", e.sequence(), " [", e.kind(), "] ", vsdm::JobStateName(e.state()), ": ", e.message()))
                << "\n";
    }
    grpc::Status s = reader->Finish();
    if (!s.ok() && s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) return Fail(s, "logs " + job_id);
    if (!json)
      std::cout << "ranks' logs: <agent work dir>/jobs/" << job_id << "/logs/ (local cluster: " << opt.state_dir
                << "/work/jobs/" << job_id << "/logs/)\n";
    return 0;
  }
  if (artifacts->parsed()) {
    std::error_code ec;
    fs::create_directories(out_dir, ec);
    int got = 0;
    for (const char* name : {"samples.png", "samples.npy", "metrics.json", "model.pt"}) {
      grpc::ClientContext ctx;
      Deadline(ctx, 60);
      vsdm::v1::GetArtifactRequest req;
      req.set_job_id(job_id);
      req.set_path(name);
      auto reader = stub->GetArtifact(&ctx, req);
      vsdm::v1::ArtifactChunk chunk;
      std::string data;
      while (reader->Read(&chunk)) data += chunk.data();
      grpc::Status s = reader->Finish();
      if (s.error_code() == grpc::StatusCode::NOT_FOUND) continue;
      if (!s.ok()) return Fail(s, absl::StrCat("artifact ", name));
      const fs::path tmp = fs::path(out_dir) / (std::string(name) + ".tmp");
      std::ofstream(tmp, std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
      fs::rename(tmp, fs::path(out_dir) / name, ec);
      std::cout << (fs::path(out_dir) / name).string() << "  (" << data.size() << " bytes)\n";
      ++got;
    }
    if (got == 0) {
      std::cerr << "vsdmctl: " << job_id << " has no artifacts (yet)\n";
      return 1;
    }
    return 0;
  }
  if (workers->parsed()) {
    grpc::ClientContext ctx;
    Deadline(ctx);
    vsdm::v1::ListWorkersResponse resp;
    if (grpc::Status s = stub->ListWorkers(&ctx, {}, &resp); !s.ok()) return Fail(s, "workers");
    if (json) {
      std::cout << Json(resp) << "\n";
      return 0;
    }
    std::cout << absl::StrFormat("%-16s %-6s %-16s %-6s %-5s %s\n", "WORKER", "STATE", "HOST", "SLOTS", "FREE", "RANKS");
    for (const auto& w : resp.workers()) {
      std::string ranks;
      for (const auto& r : w.ranks()) absl::StrAppend(&ranks, ranks.empty() ? "" : " ", r.attempt_id(), "#", r.rank());
      std::cout << absl::StrFormat("%-16s %-6s %-16s %-6d %-5d %s\n", w.worker_id(), w.state(), w.resources().host(),
                                   w.resources().slots(), w.free_slots(), ranks);
    }
    return 0;
  }
  return 2;
}
