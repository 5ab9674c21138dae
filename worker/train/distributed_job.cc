#include "worker/train/distributed_job.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "worker/train/trainer_rank.h"
#include "worker/train/variational_rank.h"

namespace vsdm::worker {

std::string StoreKeyPrefix(const DistributedOptions& o) {
  return absl::StrCat(o.job_id, "/attempt-", o.attempt, "/",
                      o.rendezvous_secret.empty() ? "" : absl::StrCat(o.rendezvous_secret, "/"));
}

absl::StatusOr<RankComms> JoinGroups(const StorePtr& store, const DistributedOptions& o, const CommOptions& co) {
  RankComms rc;
  rc.store = store;
  const std::string prefix = StoreKeyPrefix(o);
  // Errors name the group without the secret: they end up in logs and in the coordinator's events.
  const std::string shown = absl::StrCat(o.job_id, "/attempt-", o.attempt, "/");
  CommOptions world = co, trainers = co;
  world.name = shown + "world";
  trainers.name = shown + "trainers";
  VSDM_ASSIGN_OR_RETURN(rc.world, Comm::Create(store, prefix + "world", o.rank, o.trainers + 1, world));
  if (o.rank < o.trainers) {
    VSDM_ASSIGN_OR_RETURN(rc.trainers, Comm::Create(store, prefix + "trainers", o.rank, o.trainers, trainers));
  }
  return rc;
}

absl::StatusOr<RankComms> Rendezvous(const std::string& host, int port, const DistributedOptions& o,
                                     const CommOptions& co) {
  VSDM_ASSIGN_OR_RETURN(StorePtr store, ConnectTcpStore(host, port, o.rank == 0, o.trainers + 1, co.timeout));
  return JoinGroups(store, o, co);
}

absl::StatusOr<int64_t> AgreeToStop(Comm& world, bool stop) {
  // One int64 (bit r = rank r; a 63-rank world at most, far beyond any spec's trainers).
  std::vector<torch::Tensor> bits = {
      torch::tensor({stop ? int64_t{1} << std::min(world.rank(), 62) : int64_t{0}}, torch::kLong)};
  VSDM_RETURN_IF_ERROR(world.AllReduceSum(bits));
  return bits[0].item<int64_t>();
}

std::string DescribeStopMask(int64_t mask, int trainers) {
  std::vector<std::string> who;
  for (int r = 0; r <= std::min(trainers, 62); ++r)
    if (mask & (int64_t{1} << r)) who.push_back(r == trainers ? "the variational rank" : absl::StrCat("trainer ", r));
  return who.empty() ? std::string("no rank") : absl::StrJoin(who, ", ");
}

absl::StatusOr<nlohmann::json> RunRank(const JobSetup& setup, RankComms& comms, const DistributedOptions& o) {
  if (o.trainers < 1) return absl::InvalidArgumentError("trainers: must be >= 1");
  if (o.rank < 0 || o.rank > o.trainers)
    return absl::InvalidArgumentError(absl::StrCat("rank: must be in [0, ", o.trainers, "], got ", o.rank));
  if (setup.spec.train.batch_points < o.trainers)
    return absl::InvalidArgumentError("train.batch_points: fewer points than trainers");
  if (o.rank < o.trainers) return TrainerRank(setup, *comms.world, *comms.trainers, o).Run();
  return VariationalRank(setup, *comms.world, o).Run();
}

}  // namespace vsdm::worker
