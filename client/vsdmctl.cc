// vsdmctl: the command line of vsdm, written against the generated JobService stub.
//   submit -f job.yaml [--set key=value]... [--sweep key=v1,v2]... [--wait]   get JOB
//   list [--state S] [--group G [--metric M]]   watch JOB   cancel JOB | --group G
//   logs JOB [--rank R] [--attempt N] [-f] [--events]   artifacts JOB --out DIR   workers   health
//   local up [--workers N] | local down
//   --version
// Exit codes: 0 ok; 1 the job failed (or was cancelled); 2 bad usage or input refused (the
// server's message names the field); 3 the coordinator is unavailable.
// This file parses flags into the Args of client/commands.h and dispatches; the commands and
// the exit-code mapping are there.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include <grpcpp/grpcpp.h>

#include "CLI/CLI.hpp"
#include "client/commands.h"
#include "client/local_cluster.h"
#include "common/grpc_client.h"

namespace {
namespace fs = std::filesystem;
namespace vc = vsdm::client;

struct Options {
  std::string coordinator;  // --coordinator; default $VSDM_COORDINATOR, the local cluster, 127.0.0.1:50051
  std::string output;       // -o json; "" = human tables
  std::string state_dir;    // --state-dir: local cluster state; default $VSDM_HOME or ~/.vsdm/local
  vc::SubmitArgs submit;
  vc::JobArgs get;
  vc::ListArgs list;
  vc::WatchArgs watch;
  vc::JobArgs cancel;
  vc::LogsArgs logs;
  vc::ArtifactsArgs artifacts;
  vc::WorkersArgs workers;
  vc::LocalClusterOptions local;  // local up
  std::string token_file;         // --token-file; default $VSDM_TOKEN, then the local cluster's admin token
  vsdm::ClientSecurity security;  // --tls-ca, --tls-cert/--tls-key, --tls-server-name
};

// The subcommands, to ask which one was given.
struct Subcommands {
  CLI::App* submit = nullptr;
  CLI::App* get = nullptr;
  CLI::App* list = nullptr;
  CLI::App* watch = nullptr;
  CLI::App* cancel = nullptr;
  CLI::App* logs = nullptr;
  CLI::App* artifacts = nullptr;
  CLI::App* workers = nullptr;
  CLI::App* health = nullptr;
  CLI::App* up = nullptr;
  CLI::App* down = nullptr;
};

void AddGlobalOptions(CLI::App& app, Options& opt) {
  app.set_version_flag("--version", "vsdmctl " VSDM_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global options (-o json, --coordinator) also after the subcommand
  app.add_option("--coordinator", opt.coordinator,
                 "coordinator address (default $VSDM_COORDINATOR, the local cluster, 127.0.0.1:50051)");
  app.add_option("-o,--output", opt.output, "output format: json")->check(CLI::IsMember({"json", ""}));
  app.add_option("--state-dir", opt.state_dir, "local cluster state dir (default $VSDM_HOME or ~/.vsdm/local)");
  app.add_option("--token-file", opt.token_file,
                 "bearer token for the coordinator (default $VSDM_TOKEN, then the local cluster's own)");
  app.add_option("--tls-ca", opt.security.tls_ca, "CA of the coordinator's certificate (PEM): use TLS");
  app.add_option("--tls-cert", opt.security.tls_cert, "client certificate (PEM), for mTLS");
  app.add_option("--tls-key", opt.security.tls_key, "its private key (PEM)");
  app.add_option("--tls-server-name", opt.security.tls_server_name, "name to verify in the coordinator's certificate");
}

void AddJobCommands(CLI::App& app, Options& opt, Subcommands& cmd) {
  cmd.submit = app.add_subcommand("submit", "submit a job spec");
  cmd.submit->add_option("-f,--file", opt.submit.file, "job spec YAML")->required();
  cmd.submit->add_option("--set", opt.submit.overrides, "override a spec field, key=value (repeatable)")
      ->allow_extra_args(false);
  cmd.submit->add_option("--sweep", opt.submit.sweeps,
                         "field=v1,v2,...: submit every combination as one group (repeatable)")
      ->allow_extra_args(false);
  cmd.submit->add_option("--request-id", opt.submit.request_id, "idempotency key (default: none)");
  cmd.submit->add_flag("--wait", opt.submit.wait, "watch it to the end (exit 1 if it does not succeed)");
  cmd.get = app.add_subcommand("get", "show a job");
  cmd.get->add_option("job", opt.get.job_id)->required();
  cmd.list = app.add_subcommand("list", "list jobs, newest first");
  cmd.list->add_option("--state", opt.list.state, "queued|running|succeeded|failed|cancelled");
  cmd.list->add_option("--group", opt.list.group, "a sweep's members, their overrides and the best by --metric");
  cmd.list->add_option("--metric", opt.list.metric, "with --group: the metrics.json figure to compare by");
  cmd.watch = app.add_subcommand("watch", "follow a job with a progress bar");
  cmd.watch->add_option("job", opt.watch.job_id)->required();
  cmd.cancel = app.add_subcommand("cancel", "cancel a job");
  auto* cancel_job = cmd.cancel->add_option("job", opt.cancel.job_id);
  cmd.cancel->add_option("--group", opt.cancel.group, "every member of this sweep that has not ended")
      ->excludes(cancel_job);
  cmd.logs = app.add_subcommand("logs", "the output of a job's ranks (--events: its event log)");
  cmd.logs->add_option("job", opt.logs.job_id)->required();
  cmd.logs->add_option("--rank", opt.logs.rank, "only this rank")->check(CLI::NonNegativeNumber);
  cmd.logs->add_option("--attempt", opt.logs.attempt, "this attempt (default: the newest)")
      ->check(CLI::PositiveNumber);
  cmd.logs->add_flag("-f,--follow", opt.logs.follow, "print new lines as they come, until the job ends");
  cmd.logs->add_flag("--events", opt.logs.events, "the job's event log, and where the full rank logs are");
  cmd.artifacts = app.add_subcommand("artifacts", "download a finished job's artifacts");
  cmd.artifacts->add_option("job", opt.artifacts.job_id)->required();
  cmd.artifacts->add_option("--out", opt.artifacts.out_dir, "directory to write into")->required();
  cmd.workers = app.add_subcommand("workers", "list the registered workers");
  cmd.health = app.add_subcommand("health", "the coordinator's gRPC health: exit 0 if SERVING (no token needed)");
}

void AddLocalCommands(CLI::App& app, Options& opt, Subcommands& cmd) {
  auto* local = app.add_subcommand("local", "a coordinator and agents on this machine");
  local->require_subcommand(1);
  cmd.up = local->add_subcommand("up", "start them in the background");
  cmd.up->add_option("--workers", opt.local.workers, "agents")->check(CLI::Range(1, 64));
  cmd.up->add_option("--slots", opt.local.slots, "slots per agent")->check(CLI::Range(1, 64));
  cmd.up->add_option("--threads-per-rank", opt.local.threads_per_rank, "threads of each rank")
      ->check(CLI::Range(1, 64));
  cmd.down = local->add_subcommand("down", "stop them");
}

// -o json and the terminal into every command's Args.
void ApplyOutputOptions(Options& opt) {
  const bool json = opt.output == "json";
  const bool tty = isatty(STDOUT_FILENO);
  opt.submit.json = opt.get.json = opt.list.json = opt.watch.json = json;
  opt.cancel.json = opt.logs.json = opt.workers.json = json;
  opt.submit.follow.tty = opt.watch.follow.tty = tty;
}

absl::Status RunLocal(const Subcommands& cmd, Options& opt) {
  if (cmd.down->parsed()) return vc::RunLocalDown(opt.state_dir, std::cout);
  std::error_code ec;
  opt.local.state_dir = opt.state_dir;
  opt.local.bin_dir = fs::read_symlink("/proc/self/exe", ec).parent_path().string();
  return vc::RunLocalUp(opt.local, std::cout);
}

absl::Status RunJobCommand(const Subcommands& cmd, Options& opt) {
  const std::string coordinator =
      vc::ResolveCoordinator(opt.coordinator, std::getenv("VSDM_COORDINATOR"), opt.state_dir);
  opt.logs.local_state_dir = vc::LocalClusterStateDirFor(coordinator, opt.state_dir);
  // The local cluster's own token when talking to it and no other is given.
  const char* env_token = std::getenv("VSDM_TOKEN");
  if (opt.token_file.empty() && !(env_token && *env_token) && !opt.logs.local_state_dir.empty())
    opt.token_file = vc::LocalClusterTokenFile(opt.logs.local_state_dir);
  auto token = vsdm::ReadToken(opt.token_file, env_token);
  if (!token.ok()) return token.status();
  opt.security.token = *token;
  auto channel = vsdm::MakeChannel(coordinator, opt.security);
  if (!channel.ok()) return channel.status();
  std::ostream& out = std::cout;
  if (cmd.health->parsed()) return vc::RunHealth(*grpc::health::v1::Health::NewStub(*channel), out);
  auto stub = vsdm::v1::JobService::NewStub(*channel);
  if (cmd.submit->parsed()) return vc::RunSubmit(opt.submit, *stub, out);
  if (cmd.get->parsed()) return vc::RunGet(opt.get, *stub, out);
  if (cmd.list->parsed()) return vc::RunList(opt.list, *stub, out);
  if (cmd.watch->parsed()) return vc::RunWatch(opt.watch, *stub, out);
  if (cmd.cancel->parsed()) return vc::RunCancel(opt.cancel, *stub, out);
  if (cmd.logs->parsed()) return vc::RunLogs(opt.logs, *stub, out);
  if (cmd.artifacts->parsed()) return vc::RunArtifacts(opt.artifacts, *stub, out);
  if (cmd.workers->parsed()) return vc::RunWorkers(opt.workers, *stub, out);
  return absl::InvalidArgumentError("no command");
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  opt.state_dir = vc::DefaultStateDir(std::getenv("VSDM_HOME"), std::getenv("HOME"));
  CLI::App app{"vsdmctl: submit and watch VSDM training jobs"};
  Subcommands cmd;
  AddGlobalOptions(app, opt);
  AddJobCommands(app, opt, cmd);
  AddLocalCommands(app, opt, cmd);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  ApplyOutputOptions(opt);
  const bool local = cmd.up->parsed() || cmd.down->parsed();
  const absl::Status s = local ? RunLocal(cmd, opt) : RunJobCommand(cmd, opt);
  return s.ok() ? vc::kExitOk : vc::ReportFailure(s, std::cerr);
}
