// One attempt of a job across processes (DESIGN.md, "One attempt of one job"): W trainer ranks
// (0..W-1, TrainerRank) train the score network data-parallel, rank W (VariationalRank) keeps A
// and broadcasts it every round. Trainer 0 hosts the rendezvous store, checkpoints, and writes
// the final artifacts. The order every rank posts its collectives in is Note [Collective order].
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/train/comm.h"
#include "worker/train/job_setup.h"

namespace vsdm::worker {

// Note [Collective order]
// c10d matches collectives by the order each rank posts them, so every rank posts exactly this
// sequence (W = trainers; rank W is the variational rank; K = train.rounds):
//
//   start  [S] world     BroadcastBytes(checkpoint, root 0)   newest checkpoint trainer 0 found,
//                                                             "" for a fresh start
//   round k = start .. K-1:
//          [1] world     Broadcast(A, root W)                 the A trainers use this round
//          [2] trainers  AllReduceSum(gradient buckets)       once per step, trainers only
//          [3] world     Broadcast(EMA parameters, root 0)    the net the trajectories use
//          [5] world     AllReduceSum(stop bits)              whether any rank was told to stop
//                                                             (Note [Preemption], preemption.h):
//                                                             bit r set by rank r
//          [4] world     BroadcastBytes(variational state, root W)
//                                                             only when k+1 is a checkpoint round
//                                                             ((k+1) % checkpoint_every == 0 or
//                                                             k+1 == K) or [5] said stop; trainer
//                                                             0 then writes ckpt-(k+1) with it
//          after [4], when [5] said stop: every rank returns PreemptedError (exit 75)
//   end    [E] world     BroadcastBytes(summary of rank r, root r), r = 0 .. W
//
// Where the variational rank computes A (simulate trajectories, statistics, update):
//   sync  (variational.async false): after [5] of round k, from EMA(k) under A(k); trainers
//          wait for it in [1] of round k+1 (or, stopping, in [4]). Skipped after the last round.
//   async (variational.async true):  between [1] and [3] of round k, from EMA(k-1) under the A
//          it was trained with, while the trainers run [2]; so A is one round stale and
//          trainers do not wait for it. Skipped in round 0 of a fresh start and in round K-1.
//          (A(k+1) then depends on A(k-1), not A(k): a fixed-point rule such as `exact` advances
//          every other round, so async runs want more rounds for the same A.)
// The checkpoint holds trainer state after round k, the updater state, and `a_train` (the A
// that EMA(k) was trained under): all that an async variational rank needs to redo its
// pending update after a restart, so a resumed attempt computes what an uninterrupted one does.
// Random draws come from MakeRoundGenerator(seed, stream, rank, round): no RNG state to save.
// [5] sits after [3] so that it costs one small all-reduce and no wait: every rank reaches it
// without waiting for the variational update (sync) or the next A; a checkpoint written because
// of a stop is the one a checkpoint round would have written, so the resumed attempt computes
// what an uninterrupted one does.

struct DistributedOptions {
  std::string out_dir;              // trainer 0: artifacts and checkpoint/ (the checkpoint is read there too)
  int trainers = 1;                 // W
  int rank = 0;                     // 0..W-1 trainer, W variational
  int attempt = 0;                  // for logs and the store prefix
  std::string job_id;               // the store prefix's job (vsdm-train: --job-id, else the spec's name)
  std::string rendezvous_secret;    // the attempt's secret in the store prefix ("" = none); never logged
  int64_t bucket_bytes = 25 << 20;  // gradient all-reduce bucket size
  double rendezvous_seconds = 0;    // how long this attempt's rendezvous took (reported by trainer 0)
  std::function<void(const std::string&)> on_line;   // per-round progress lines (may be empty)
  std::function<void(const std::string&)> on_event;  // resumes and other one-off news (may be empty)
  std::function<void(const std::string&)> on_warning;  // skipped checkpoints and the like (may be empty)
  // The job's identity (--job-uid, --spec-hash): recorded in every checkpoint trainer 0 writes and
  // required of the one it resumes (core::CheckpointIdentity; "" = not checked).
  std::string job_uid;
  std::string spec_hash;
  // Whether this rank was told to stop (vsdm-train: PreemptionRequested); asked at [5] of every
  // round. Empty: never.
  std::function<bool()> stop_requested;
};

// The process groups of one rank: `world` (all W + 1 ranks) and `trainers` (ranks 0..W-1; null
// on the variational rank), each under its own store prefix.
struct RankComms {
  StorePtr store;
  std::unique_ptr<Comm> world;
  std::unique_ptr<Comm> trainers;
};

// Note [Store key prefix]
// Every key of an attempt lives under "<job_id>/attempt-<n>/<secret>/" ("<job_id>/attempt-<n>/"
// without a secret), then the group ("world", "trainers"). The job id keeps two jobs' attempt n
// apart on a store port that was reused; the secret, which only the attempt's ranks get (from the
// coordinator through their agents' environment), means a process that can reach the store but
// does not know it can neither read nor set the attempt's keys: the TCPStore has no call that
// lists keys, and Gloo's rendezvous and pair addresses are all under the prefix. It is no
// authentication: the store and Gloo still accept any connection (see ConnectTcpStore).
std::string StoreKeyPrefix(const DistributedOptions& options);

// Connects to (trainer 0: hosts) the TCPStore at host:port and joins both groups.
absl::StatusOr<RankComms> Rendezvous(const std::string& host, int port, const DistributedOptions& options,
                                     const CommOptions& comm_options);
// The same over an existing store (threads of one process in tests).
absl::StatusOr<RankComms> JoinGroups(const StorePtr& store, const DistributedOptions& options,
                                     const CommOptions& comm_options);

// [5] of Note [Collective order]: every rank's stop bit (1 << rank when `stop`) summed over
// `world`; every rank gets the same mask (0: nobody was told to stop).
absl::StatusOr<int64_t> AgreeToStop(Comm& world, bool stop);
// "rank 1", "ranks 0, 2" (W: "the variational rank") of a stop mask, for logs.
std::string DescribeStopMask(int64_t mask, int trainers);

// Runs this rank's role (TrainerRank or VariationalRank) to the end of the job. Trainer 0 returns the final metrics
// (also written to out_dir/metrics.json); the other ranks return their own timing summary. A failed collective (dead or
// stuck peer) returns UNAVAILABLE or DEADLINE_EXCEEDED; a stop agreed at [5] returns PreemptedError
// (preemption.h) on every rank, after trainer 0 has written that round's checkpoint.
absl::StatusOr<nlohmann::json> RunRank(const JobSetup& setup, RankComms& comms, const DistributedOptions& options);

}  // namespace vsdm::worker
