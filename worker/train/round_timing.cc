#include "worker/train/round_timing.h"

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace vsdm::worker {

nlohmann::json RoundTiming::ToJson() const {
  return {{"round", round},
          {"round_sec", round_sec},
          {"compute_sec", compute},
          {"allreduce_sec", allreduce},
          {"broadcast_sec", broadcast},
          {"wait_for_a_sec", wait_a},
          {"variational_sec", variational},
          {"wait_for_trainers_sec", wait_trainers},
          {"broadcast_bytes", broadcast_bytes},
          {"stop_check_sec", stop_check},
          {"loss", loss},
          {"a_norm", a_norm},
          {"a_checksum", a_checksum}};
}

nlohmann::json RankSummary(const std::string& role, int rank, const std::vector<RoundTiming>& rounds) {
  nlohmann::json s;
  s["role"] = role;
  s["rank"] = rank;
  double tot = 0, comp = 0, ar = 0, bc = 0, wa = 0, var = 0, wt = 0, sc = 0;
  nlohmann::json rs = nlohmann::json::array();
  for (const auto& r : rounds) {
    tot += r.round_sec;
    comp += r.compute;
    ar += r.allreduce;
    bc += r.broadcast;
    wa += r.wait_a;
    var += r.variational;
    wt += r.wait_trainers;
    sc += r.stop_check;
    rs.push_back(r.ToJson());
  }
  s["totals"] = {{"round_sec", tot},
                 {"compute_sec", comp},
                 {"allreduce_sec", ar},
                 {"broadcast_sec", bc},
                 {"wait_for_a_sec", wa},
                 {"variational_sec", var},
                 {"wait_for_trainers_sec", wt},
                 {"stop_check_sec", sc},
                 {"wait_for_a_fraction", tot > 0 ? wa / tot : 0.0}};
  s["rounds"] = std::move(rs);
  return s;
}

absl::StatusOr<nlohmann::json> GatherSummaries(Comm& world, const nlohmann::json& mine) {
  nlohmann::json all = nlohmann::json::array();
  for (int r = 0; r < world.size(); ++r) {
    std::string bytes = r == world.rank() ? mine.dump() : std::string();
    VSDM_RETURN_IF_ERROR(world.BroadcastBytes(bytes, r));
    all.push_back(r == world.rank() ? mine : nlohmann::json::parse(bytes));
  }
  return all;
}

void AddParamSummary(nlohmann::json& h, const torch::Tensor& param) {
  torch::Tensor p = param.to(torch::kFloat64).contiguous().cpu();
  if (p.numel() <= 64) {
    h["A"] = std::vector<double>(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
    return;
  }
  h["A_summary"] = {
      {"min", p.min().item<double>()}, {"mean", p.mean().item<double>()}, {"max", p.max().item<double>()}};
}

std::string TensorChecksum(const torch::Tensor& t) {
  torch::Tensor c = t.contiguous().cpu();
  const auto* p = static_cast<const unsigned char*>(c.data_ptr());
  const size_t n = c.numel() * c.element_size();
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return absl::StrFormat("%016x", h);
}

torch::Tensor FlattenParams(core::ScoreNet& net) {
  std::vector<torch::Tensor> flat;
  for (const auto& p : net->parameters()) flat.push_back(p.detach().reshape({-1}));
  return torch::cat(flat);
}

void UnflattenParams(const torch::Tensor& flat, core::ScoreNet& net) {
  torch::NoGradGuard g;
  int64_t off = 0;
  for (auto& p : net->parameters()) {
    p.copy_(flat.narrow(0, off, p.numel()).view(p.sizes()));
    off += p.numel();
  }
}

bool IsCheckpointRound(const JobSpec& spec, int64_t k) {
  return (k + 1) % spec.train.checkpoint_every == 0 || k + 1 == spec.train.rounds;
}

std::string EtaString(const std::vector<RoundTiming>& done, int64_t left) {
  double tot = 0;
  for (const auto& r : done) tot += r.round_sec;
  return FormatDuration(done.empty() ? 0.0 : tot / static_cast<double>(done.size()) * static_cast<double>(left));
}

}  // namespace vsdm::worker
