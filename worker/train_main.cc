// vsdm-train: runs one process role of a job. With --standalone, the whole job in this
// process. Composition root: parses flags, builds objects, wires them.
#include <filesystem>
#include <iostream>
#include <thread>

#include <torch/torch.h>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "common/job_spec.h"
#include "core/threading.h"
#include "worker/job_setup.h"
#include "worker/standalone_job.h"

namespace {

struct Options {
  std::string spec_path;    // job spec YAML
  std::string out_dir;      // artifacts + checkpoint/
  bool standalone = false;  // the whole job in this process
  int threads = 0;          // torch intra-op threads; 0 = all cores
  bool quiet = false;       // no per-round lines
};

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"vsdm-train: train a VSDM job (one role of it, or all of it with --standalone)"};
  app.add_option("--spec", opt.spec_path, "job spec YAML")->required();
  app.add_option("--out", opt.out_dir, "output directory (artifacts, checkpoint/)")->required();
  app.add_flag("--standalone", opt.standalone, "run the whole job in this process");
  app.add_option("--threads", opt.threads, "torch threads (0 = all cores)");
  app.add_flag("--quiet", opt.quiet, "no per-round progress lines");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (!opt.standalone) {
    std::cerr << "vsdm-train: distributed mode is not built yet; use --standalone\n";
    return 2;
  }
  // Validate everything before touching the out dir: a refused spec writes nothing.
  auto spec = vsdm::LoadJobSpecFile(opt.spec_path);
  if (!spec.ok()) {
    std::cerr << "vsdm-train: " << spec.status().message() << "\n";
    return 2;
  }
  auto setup = vsdm::worker::MakeJobSetup(*spec);
  if (!setup.ok()) {
    std::cerr << "vsdm-train: " << setup.status().message() << "\n";
    return 2;
  }
  const int threads = opt.threads > 0 ? opt.threads : std::max(1u, std::thread::hardware_concurrency());
  const std::string thread_desc = vsdm::core::ConfigureThreads(threads);

  std::error_code ec;
  std::filesystem::create_directories(opt.out_dir, ec);
  if (ec) {
    std::cerr << "vsdm-train: cannot create " << opt.out_dir << ": " << ec.message() << "\n";
    return 1;
  }
  std::cout << absl::StrFormat("vsdm-train: %s (%s, %s), %d rounds x %d steps, batch %d, %s\n",
                               spec->name, spec->problem.dataset, spec->method, spec->train.rounds,
                               spec->train.steps_per_round, spec->train.batch_points, thread_desc)
            << std::flush;
  vsdm::worker::StandaloneOptions so;
  so.out_dir = opt.out_dir;
  if (!opt.quiet)
    so.on_round = [](const vsdm::worker::RoundReport& r) {
      std::cout << vsdm::worker::FormatRoundLine(r) << std::endl;
    };
  auto metrics = vsdm::worker::RunStandalone(*setup, so);
  if (!metrics.ok()) {
    std::cerr << "vsdm-train: " << metrics.status() << "\n";
    return 1;
  }
  const auto& m = *metrics;
  std::cout << absl::StrFormat(
      "done in %.0fs: energy distance %.4f (data floor %.4f), PMF-RMSE %.3e (floor %.3e), "
      "straightness %.3f, transport %.2f\nartifacts: %s/{samples.npy,samples.png,metrics.json,model.pt}\n",
      m["wall_seconds"].get<double>(), m["energy_distance"].get<double>(),
      m["energy_distance_floor"].get<double>(), m["pmf_rmse"].get<double>(),
      m["pmf_rmse_floor"].get<double>(), m["ode_straightness"].get<double>(),
      m["ode_transport_cost"].get<double>(), opt.out_dir);
  return 0;
}
