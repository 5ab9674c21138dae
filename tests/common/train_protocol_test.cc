// The agent <-> runtime contract: argv and both progress records round-trip with every field set
// to a value other than its default; the parsers refuse unknown keys and wrong types by name.
#include "common/train_protocol.h"

#include <algorithm>
#include <set>
#include <string>
#include <type_traits>

#include <gtest/gtest.h>

#include "nlohmann/json.hpp"

namespace vsdm::train_protocol {
namespace {

// Sets field i to a value that differs from its default and from every other field's.
template <class Record>
Record EveryFieldSet() {
  Record r;
  int i = 0;
  Record::VisitFields(r, [&](const char*, auto& v) {
    ++i;
    using T = std::decay_t<decltype(v)>;
    if constexpr (std::is_integral_v<T>)
      v = static_cast<T>(1000 + i);
    else
      v = 0.25 + i;
  });
  return r;
}

template <class Record>
std::vector<std::string> Keys() {
  Record r;
  std::vector<std::string> keys;
  Record::VisitFields(r, [&](const char* k, auto&) { keys.push_back(k); });
  return keys;
}

template <class Record>
void ExpectEveryFieldRoundTrips(absl::StatusOr<Record> (*parse)(const std::string&)) {
  const Record want = EveryFieldSet<Record>();
  EXPECT_FALSE(want == Record{});
  const std::string text = want.ToJson();
  // The JSON has exactly the visited keys, each with the value set.
  const auto j = nlohmann::json::parse(text);
  const auto keys = Keys<Record>();
  EXPECT_EQ(j.size(), keys.size());
  EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), keys.size()) << "duplicate key";
  Record copy = want;
  Record::VisitFields(copy, [&](const char* k, auto& v) {
    ASSERT_TRUE(j.contains(k)) << k;
    EXPECT_EQ(j[k].template get<std::decay_t<decltype(v)>>(), v) << k;
  });
  auto back = parse(text);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == want);
  // Each field on its own survives too (a field the parser skipped would come back default).
  Record one;
  int n = 0;
  Record::VisitFields(one, [&](const char* k, auto& v) {
    Record r;
    int m = 0;
    Record::VisitFields(r, [&](const char*, auto& w) {
      if (m++ == n) w = static_cast<std::decay_t<decltype(w)>>(j[k].template get<std::decay_t<decltype(v)>>());
    });
    auto b = parse(r.ToJson());
    ASSERT_TRUE(b.ok()) << k;
    EXPECT_TRUE(*b == r) << k;
    EXPECT_FALSE(*b == Record{}) << k << " came back at its default";
    ++n;
  });
}

TEST(TrainProtocolTest, CheckpointNamesAreWhatCoreWritesAndNothingElseParses) {
  EXPECT_EQ(CheckpointFileName(120), "ckpt-00000120.pt");
  EXPECT_EQ(CheckpointRound(CheckpointFileName(120)), 120);
  EXPECT_EQ(CheckpointRound("ckpt-123456789.pt"), 123456789);
  for (const char* bad : {"ckpt-.pt", "ckpt-12.pt.part", "ckpt-12.pt.tmp", "ckpt--1.pt", "ckpt-1a.pt", "x-12.pt",
                          "ckpt-99999999999999999999.pt", ""})
    EXPECT_FALSE(CheckpointRound(bad).has_value()) << bad;
}

TEST(TrainProtocolTest, TrainerProgressRoundTripsEveryField) {
  ExpectEveryFieldRoundTrips<TrainerProgress>(&TrainerProgressFromJson);
}

TEST(TrainProtocolTest, VariationalProgressRoundTripsEveryField) {
  ExpectEveryFieldRoundTrips<VariationalProgress>(&VariationalProgressFromJson);
}

TEST(TrainProtocolTest, ProgressParsersRefuseUnknownKeysWrongTypesAndGarbage) {
  auto unknown = TrainerProgressFromJson(R"({"round": 3, "a_nrom": 1.5})");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("a_nrom: unknown key"), std::string::npos) << unknown.status();
  auto type = TrainerProgressFromJson(R"({"round": "three"})");
  ASSERT_FALSE(type.ok());
  EXPECT_NE(type.status().message().find("round: want an integer"), std::string::npos) << type.status();
  auto frac = VariationalProgressFromJson(R"({"rounds": 2.5})");
  EXPECT_FALSE(frac.ok());
  auto num = VariationalProgressFromJson(R"({"a_norm": true})");
  ASSERT_FALSE(num.ok());
  EXPECT_NE(num.status().message().find("a_norm: want a number"), std::string::npos);
  EXPECT_FALSE(TrainerProgressFromJson("{\"round\": 1").ok());  // half-written
  EXPECT_FALSE(TrainerProgressFromJson("[1, 2]").ok());
  EXPECT_FALSE(TrainerProgressFromJson("").ok());
  // Missing keys keep their defaults; an integer is a fine double.
  auto partial = TrainerProgressFromJson(R"({"round": 4, "loss": 2})");
  ASSERT_TRUE(partial.ok());
  EXPECT_EQ(partial->round, 4);
  EXPECT_EQ(partial->loss, 2.0);
  EXPECT_EQ(partial->device_memory_used_bytes, -1);
}

TrainArgs EveryArgSet() {
  TrainArgs a;
  a.spec_path = "/w/jobs/j1/spec.json";
  a.out_dir = "/w/jobs/j1";
  a.overrides = {"train.rounds=7", "name=with space"};
  a.standalone = true;
  a.print_world_size = true;
  a.threads = 3;
  a.quiet = true;
  a.rank = 2;
  a.trainers = 4;
  a.store = "10.0.0.5:29517";
  a.job_id = "job-00000042";
  a.attempt = 6;
  a.pg_timeout_seconds = 12.5;
  a.bind = "10.0.0.7";
  a.data_dir = "/opt/vsdm/data";
  a.fashion_mnist_dir = "/data/fm";
  a.cache_dir = "/var/cache/vsdm";
  a.max_rank_memory_bytes = 0;
  return a;
}

void ExpectSameArgs(const TrainArgs& a, const TrainArgs& b) {
  EXPECT_EQ(a.spec_path, b.spec_path);
  EXPECT_EQ(a.out_dir, b.out_dir);
  EXPECT_EQ(a.overrides, b.overrides);
  EXPECT_EQ(a.standalone, b.standalone);
  EXPECT_EQ(a.print_world_size, b.print_world_size);
  EXPECT_EQ(a.threads, b.threads);
  EXPECT_EQ(a.quiet, b.quiet);
  EXPECT_EQ(a.rank, b.rank);
  EXPECT_EQ(a.trainers, b.trainers);
  EXPECT_EQ(a.store, b.store);
  EXPECT_EQ(a.job_id, b.job_id);
  EXPECT_EQ(a.attempt, b.attempt);
  EXPECT_EQ(a.pg_timeout_seconds, b.pg_timeout_seconds);
  EXPECT_EQ(a.bind, b.bind);
  EXPECT_EQ(a.data_dir, b.data_dir);
  EXPECT_EQ(a.fashion_mnist_dir, b.fashion_mnist_dir);
  EXPECT_EQ(a.cache_dir, b.cache_dir);
  EXPECT_EQ(a.max_rank_memory_bytes, b.max_rank_memory_bytes);
}

TEST(TrainProtocolTest, ArgvRoundTripsEveryField) {
  const TrainArgs want = EveryArgSet();
  const auto argv = want.ToArgv("/usr/bin/vsdm-train");
  EXPECT_EQ(argv[0], "/usr/bin/vsdm-train");
  auto got = ParseTrainArgs(argv);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->help.empty());
  ExpectSameArgs(got->args, want);
  // The distributed form the agent builds (no --standalone) round-trips too.
  TrainArgs rank = want;
  rank.standalone = false;
  rank.print_world_size = false;
  auto r = ParseTrainArgs(rank.ToArgv("vsdm-train"));
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectSameArgs(r->args, rank);
  // Defaults are left out of argv, and parse back as defaults.
  TrainArgs d;
  d.spec_path = "s.yaml";
  d.out_dir = "o";
  d.standalone = true;
  EXPECT_EQ(d.ToArgv("b").size(), 6u);
  auto dd = ParseTrainArgs(d.ToArgv("b"));
  ASSERT_TRUE(dd.ok()) << dd.status();
  ExpectSameArgs(dd->args, d);
}

// M3: a value the coordinator chose travels as one "--flag=value" element, so one that starts
// with '-' stays a value instead of becoming another flag.
TEST(TrainProtocolTest, StoreAndJobIdAreOneArgvElementEach) {
  TrainArgs t;
  t.spec_path = "s.yaml";
  t.out_dir = "o";
  t.rank = 0;
  t.store = "--standalone";
  t.job_id = "--print-world-size";
  const auto argv = t.ToArgv("b");
  EXPECT_NE(std::find(argv.begin(), argv.end(), "--store=--standalone"), argv.end());
  EXPECT_NE(std::find(argv.begin(), argv.end(), "--job-id=--print-world-size"), argv.end());
  auto back = ParseTrainArgs(argv);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->args.store, "--standalone");
  EXPECT_FALSE(back->args.standalone);
  EXPECT_FALSE(back->args.print_world_size);
  EXPECT_EQ(back->args.job_id, "--print-world-size");
}

TEST(TrainProtocolTest, HostPortAcceptsIpv4BracketedIpv6AndDnsNamesOnly) {
  struct Want {
    std::string in, host;
    int port;
  };
  for (const Want& w : std::vector<Want>{{"127.0.0.1:29500", "127.0.0.1", 29500},
                                         {"[::1]:1", "::1", 1},
                                         {"[2001:db8::7]:65535", "2001:db8::7", 65535},
                                         {"node-7.cluster.local:29517", "node-7.cluster.local", 29517},
                                         {"localhost:80", "localhost", 80}}) {
    auto hp = ParseHostPort(w.in);
    ASSERT_TRUE(hp.ok()) << w.in << ": " << hp.status();
    EXPECT_EQ(hp->host, w.host);
    EXPECT_EQ(hp->port, w.port);
  }
  for (const std::string& bad : std::vector<std::string>{"",
                                                         "host",
                                                         ":29500",
                                                         "host:",
                                                         "host:0",
                                                         "host:65536",
                                                         "host:+80",
                                                         "host:0x50",
                                                         "host:123456",
                                                         "-host:1",
                                                         "host-:1",
                                                         "a..b:1",
                                                         "a b:1",
                                                         "a_b:1",
                                                         "999.0.0.1:1",
                                                         "1.2.3:1",
                                                         "[::1:1",
                                                         "[zz]:1",
                                                         "::1:29500",
                                                         "[::1]]:1",
                                                         std::string(254, 'a') + ":1",
                                                         std::string(64, 'a') + ".b:1",
                                                         "h\n:1"}) {
    auto hp = ParseHostPort(bad, "store_addr");
    ASSERT_FALSE(hp.ok()) << bad;
    EXPECT_EQ(hp.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(hp.status().message().rfind("store_addr: must be HOST:PORT", 0), 0u) << hp.status();
  }
}

TEST(TrainProtocolTest, JobIdsAndSecretsThatCanBeUsedAsTheyAre) {
  for (const std::string& ok :
       std::vector<std::string>{"job-00000001", "a", "J_1.x-2", std::string(kMaxJobIdLength, 'j'), "_x"})
    EXPECT_TRUE(CheckJobId(ok).ok()) << ok;
  for (const std::string& bad :
       std::vector<std::string>{"", ".", "..", "../x", ".hidden", "-x", "a/b", "a\\b", "a b", "\xc3\xa9",
                                std::string("a\0b", 3), std::string(kMaxJobIdLength + 1, 'j')}) {
    absl::Status s = CheckJobId(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(s.message().rfind("job_id: ", 0), 0u) << s;
  }
  EXPECT_TRUE(CheckRendezvousSecret("").ok());
  EXPECT_TRUE(CheckRendezvousSecret("0123456789abcdefABCDEF").ok());
  EXPECT_TRUE(CheckRendezvousSecret(std::string(kMaxRendezvousSecretLength, 'f')).ok());
  EXPECT_FALSE(CheckRendezvousSecret("abc/").ok());
  EXPECT_FALSE(CheckRendezvousSecret("g").ok());
  EXPECT_FALSE(CheckRendezvousSecret(std::string(kMaxRendezvousSecretLength + 1, 'f')).ok());
  // The refusal does not echo the secret.
  EXPECT_EQ(CheckRendezvousSecret("s3cr3t-value").message().find("s3cr3t"), std::string::npos);
}

TEST(TrainProtocolTest, ArgvErrorsNameTheFlag) {
  auto no_rank = ParseTrainArgs({"vsdm-train", "--spec", "s", "--out", "o", "--store", "h:1"});
  ASSERT_FALSE(no_rank.ok());
  EXPECT_NE(no_rank.status().message().find("--rank"), std::string::npos);
  auto no_store = ParseTrainArgs({"vsdm-train", "--spec", "s", "--out", "o", "--rank", "0"});
  ASSERT_FALSE(no_store.ok());
  EXPECT_NE(no_store.status().message().find("--store"), std::string::npos);
  auto timeout =
      ParseTrainArgs({"vsdm-train", "--spec", "s", "--out", "o", "--rank", "0", "--store", "h:1", "--pg-timeout", "0"});
  ASSERT_FALSE(timeout.ok());
  EXPECT_NE(timeout.status().message().find("--pg-timeout"), std::string::npos);
  auto no_spec = ParseTrainArgs({"vsdm-train", "--out", "o", "--standalone"});
  ASSERT_FALSE(no_spec.ok());
  EXPECT_NE(no_spec.status().message().find("--spec"), std::string::npos);
  auto bad_int = ParseTrainArgs({"vsdm-train", "--spec", "s", "--out", "o", "--standalone", "--threads", "x"});
  EXPECT_FALSE(bad_int.ok());
  auto unknown = ParseTrainArgs({"vsdm-train", "--spec", "s", "--out", "o", "--standalone", "--bogus"});
  EXPECT_FALSE(unknown.ok());
  auto help = ParseTrainArgs({"vsdm-train", "--help"});
  ASSERT_TRUE(help.ok());
  EXPECT_NE(help->help.find("--pg-timeout"), std::string::npos);
  // --print-world-size needs only the spec.
  auto ws = ParseTrainArgs({"vsdm-train", "--spec", "s", "--print-world-size"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  EXPECT_TRUE(ws->args.print_world_size);
}

TEST(TrainProtocolTest, NamesAndExitCodes) {
  EXPECT_EQ(RankLogName(2, 3), "attempt-2-rank-3.log");
  EXPECT_EQ(std::string(kArtifacts[0]), kMetricsFile);
  EXPECT_EQ(ExitCode(TrainExit::kPeerLost), 3);
  EXPECT_EQ(DescribeExit(ExitCode(TrainExit::kBadInput)), "bad input");
  EXPECT_EQ(DescribeExit(9), "exit 9");
}

}  // namespace
}  // namespace vsdm::train_protocol
