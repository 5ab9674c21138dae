// Load generator against a real vsdm-coordinator process on loopback (not a test; prints figures):
//  1. durable submits per second: --clients threads submitting --jobs jobs (each acknowledged
//     only once it is in the SQLite WAL, see Note [Group commit]);
//  2. scheduling-pass latency with the queue still holding --jobs minus what fits, after
//     --workers workers register (default: 10 500 jobs of 4 ranks, 1 000 workers x 2 slots:
//     500 start, 10 000 stay queued), read from the coordinator's own /metrics.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <thread>

#include "CLI/CLI.hpp"
#include "common/port_file.h"
#include "common/spawn.h"
#include "vsdm/v1/service.grpc.pb.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::string Scrape(int port) {
  std::string out;
  const std::string cmd = "curl -s http://127.0.0.1:" + std::to_string(port) + "/metrics";
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
  }
  return out;
}

double Metric(const std::string& text, const std::string& name) {
  std::smatch m;
  std::regex re("\n" + name + " ([0-9.eE+-]+)");
  return std::regex_search(text, m, re) ? std::stod(m[1]) : -1.0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string bin = "build/bin/vsdm-coordinator";
  int jobs = 10500, clients = 64, workers = 1000, slots = 2, trainers = 3;
  CLI::App app{"coordinator_load: durable submit rate and scheduling-pass latency of a real coordinator"};
  app.add_option("--coordinator", bin, "vsdm-coordinator binary");
  app.add_option("--jobs", jobs, "jobs to submit");
  app.add_option("--clients", clients, "concurrent submitting threads");
  app.add_option("--workers", workers, "workers to register after the submits");
  app.add_option("--slots", slots, "slots per worker");
  app.add_option("--trainers", trainers, "trainers per job (ranks = trainers + 1)");
  CLI11_PARSE(app, argc, argv);

  const std::string dir = (fs::temp_directory_path() / ("vsdm_load_" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::vector<std::string> args = {bin,          "--listen",       "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                                   "--data-dir", dir + "/data",    "--port-file", dir + "/ports",     "--lease-seconds",
                                   "3600",       "--tick-seconds", "0.2", "--max-queued-per-owner", "0"};
  vsdm::SpawnOptions so;
  so.log_path = "/dev/null";
  auto spawned = vsdm::Spawn(args, so);
  if (!spawned.ok()) {
    std::cerr << spawned.status().message() << "\n";
    return 1;
  }
  const pid_t pid = *spawned;
  auto ports = vsdm::WaitForPortFile(dir + "/ports", absl::Seconds(10));
  if (!ports.ok()) {
    std::cerr << "coordinator did not come up: " << ports.status().message() << "\n";
    kill(pid, SIGKILL);
    return 1;
  }
  const int port = ports->grpc, mport = ports->metrics;
  const std::string addr = "127.0.0.1:" + std::to_string(port);
  std::cout << "coordinator " << addr << ", " << std::thread::hardware_concurrency() << " cores\n";

  // 1. Durable submits.
  std::atomic<int> next{0}, ok{0}, failed{0};
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      grpc::ChannelArguments ca;
      ca.SetInt("vsdm-client", c % 4);  // a few distinct connections
      auto stub =
          vsdm::v1::JobService::NewStub(grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(), ca));
      for (int i = next++; i < jobs; i = next++) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        vsdm::v1::SubmitJobRequest req;
        req.set_request_id("load-" + std::to_string(i));
        req.mutable_spec()->set_name("load");
        req.mutable_spec()->mutable_resources()->set_trainers(trainers);
        vsdm::v1::Job j;
        (stub->SubmitJob(&ctx, req, &j).ok() ? ok : failed)++;
      }
    });
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("durable submits: %d in %.2f s = %.0f /s with %d client threads (%d failed)\n", ok.load(), secs,
              ok / secs, clients, failed.load());

  // 2. Scheduling passes with the queue full and the workers registered.
  auto wstub = vsdm::v1::WorkerService::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  for (int w = 0; w < workers; ++w) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    vsdm::v1::RegisterRequest req;
    req.set_worker_id("w" + std::to_string(w));
    req.mutable_resources()->set_slots(slots);
    req.mutable_resources()->set_host("10.0.0." + std::to_string(w % 250));
    vsdm::v1::RegisterResponse resp;
    if (!wstub->Register(&ctx, req, &resp).ok()) {
      std::cerr << "register failed\n";
      return 1;
    }
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));  // the first pass places what fits
  const std::string a = Scrape(mport);
  std::this_thread::sleep_for(std::chrono::seconds(5));
  const std::string b = Scrape(mport);
  const double n = Metric(b, "vsdm_scheduling_pass_seconds_count") - Metric(a, "vsdm_scheduling_pass_seconds_count");
  const double sum = Metric(b, "vsdm_scheduling_pass_seconds_sum") - Metric(a, "vsdm_scheduling_pass_seconds_sum");
  std::printf("queued %.0f, running %.0f, workers %.0f alive\n", Metric(b, "vsdm_jobs\\{state=\"queued\"\\}"),
              Metric(b, "vsdm_jobs\\{state=\"running\"\\}"), Metric(b, "vsdm_workers\\{state=\"alive\"\\}"));
  std::printf("scheduling pass: mean %.1f ms over %.0f passes, last %.1f ms\n", n > 0 ? 1e3 * sum / n : -1.0, n,
              1e3 * Metric(b, "vsdm_scheduling_pass_last_seconds"));
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  fs::remove_all(dir);
  return 0;
}
