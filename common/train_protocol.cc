#include "common/train_protocol.h"

#include <arpa/inet.h>

#include <algorithm>
#include <filesystem>
#include <type_traits>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

namespace vsdm::train_protocol {
namespace {

template <class Record>
std::string RecordToJson(const Record& r) {
  nlohmann::json j = nlohmann::json::object();
  Record::VisitFields(r, [&](const char* key, const auto& value) { j[key] = value; });
  return j.dump();
}

template <class Record>
bool RecordEquals(const Record& a, const Record& b) {
  // Two visits in the same fixed order: field i of a against field i of b.
  std::vector<nlohmann::json> va, vb;
  Record::VisitFields(a, [&](const char*, const auto& value) { va.emplace_back(value); });
  Record::VisitFields(b, [&](const char*, const auto& value) { vb.emplace_back(value); });
  return va == vb;
}

template <class Record>
absl::StatusOr<Record> RecordFromJson(const std::string& text, const char* what) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": not a JSON object"));
  Record r;
  absl::Status status;  // each known key is read, then erased: what is left in `j` is unknown
  Record::VisitFields(r, [&](const char* key, auto& value) {
    auto it = j.find(key);
    if (it == j.end() || !status.ok()) return;
    using T = std::decay_t<decltype(value)>;
    if constexpr (std::is_integral_v<T>) {
      if (!it->is_number_integer()) {
        status = absl::InvalidArgumentError(absl::StrCat(what, ": ", key, ": want an integer, got ", it->dump()));
        return;
      }
    } else if (!it->is_number()) {
      status = absl::InvalidArgumentError(absl::StrCat(what, ": ", key, ": want a number, got ", it->dump()));
      return;
    }
    value = it->template get<T>();
    j.erase(it);
  });
  if (!status.ok()) return status;
  if (!j.empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", j.begin().key(), ": unknown key"));
  return r;
}

}  // namespace

std::string RankLogName(int64_t attempt, int64_t rank) {
  return absl::StrCat("attempt-", attempt, "-rank-", rank, ".log");
}

std::string CheckpointFileName(int64_t round) { return absl::StrFormat("ckpt-%08d.pt", round); }

std::optional<int64_t> CheckpointRound(const std::string& file_name) {
  absl::string_view name = file_name;
  if (!absl::ConsumePrefix(&name, "ckpt-") || !absl::ConsumeSuffix(&name, ".pt") || name.empty() || name.size() > 18)
    return std::nullopt;
  if (!std::all_of(name.begin(), name.end(), [](char c) { return absl::ascii_isdigit(c); })) return std::nullopt;
  int64_t round = 0;
  if (!absl::SimpleAtoi(name, &round)) return std::nullopt;
  return round;
}

std::optional<std::pair<int64_t, std::string>> NewestCheckpointFile(const std::string& dir) {
  std::error_code ec;
  std::optional<std::pair<int64_t, std::string>> best;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec)) continue;
    const auto round = CheckpointRound(e.path().filename().string());
    if (round && (!best || *round > best->first)) best = std::make_pair(*round, e.path().string());
  }
  return best;
}

void PruneCheckpointFiles(const std::string& dir, int keep) {
  std::error_code ec;
  std::vector<std::pair<int64_t, std::filesystem::path>> all;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (const auto round = CheckpointRound(e.path().filename().string()); round && e.is_regular_file(ec))
      all.emplace_back(*round, e.path());
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = static_cast<size_t>(std::max(keep, 0)); i < all.size(); ++i) std::filesystem::remove(all[i].second, ec);
}

absl::Status CheckJobId(const std::string& id) {
  const auto word = [](char c) { return absl::ascii_isalnum(c) || c == '_'; };
  bool ok = !id.empty() && id.size() <= kMaxJobIdLength && word(id[0]);
  for (char c : id) ok = ok && (word(c) || c == '.' || c == '-');
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("job_id: must be 1 to ", kMaxJobIdLength,
                   " characters of [A-Za-z0-9._-] starting with a letter, digit or '_', got \"",
                   absl::CHexEscape(id.substr(0, 64)), id.size() > 64 ? "...\"" : "\""));
}

absl::Status CheckRendezvousSecret(const std::string& secret) {
  bool ok = secret.size() <= kMaxRendezvousSecretLength;
  for (char c : secret) ok = ok && absl::ascii_isxdigit(c);
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("rendezvous_secret: must be at most ", kMaxRendezvousSecretLength,
                                                 " hex digits (", secret.size(), " characters, not all hex)"));
}

namespace {

bool IsDnsName(const std::string& h) {
  if (h.empty() || h.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(h, '.')) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!absl::ascii_isalnum(c) && c != '-') return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<HostPort> ParseHostPort(const std::string& value, const std::string& what) {
  const auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": must be HOST:PORT (HOST an IPv4 address, [IPv6] or a DNS name; PORT in [1, 65535]), got \"",
        absl::CHexEscape(value.substr(0, 300)), "\": ", why));
  };
  const size_t colon = value.rfind(':');
  if (colon == std::string::npos) return bad("no ':'");
  const std::string host = value.substr(0, colon), port_text = value.substr(colon + 1);
  HostPort hp;
  if (port_text.empty() || port_text.size() > 5 ||
      !std::all_of(port_text.begin(), port_text.end(), absl::ascii_isdigit) || !absl::SimpleAtoi(port_text, &hp.port) ||
      hp.port < 1 || hp.port > 65535)
    return bad("the port is not a decimal number in [1, 65535]");
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    hp.host = host.substr(1, host.size() - 2);
    in6_addr a6{};
    if (inet_pton(AF_INET6, hp.host.c_str(), &a6) != 1) return bad("not an IPv6 address inside []");
    return hp;
  }
  hp.host = host;
  // All digits and dots: it must be an IPv4 address (999.1.1.1 is no name either).
  if (!host.empty() &&
      std::all_of(host.begin(), host.end(), [](char c) { return absl::ascii_isdigit(c) || c == '.'; })) {
    in_addr a4{};
    if (inet_pton(AF_INET, host.c_str(), &a4) != 1) return bad("not an IPv4 address");
    return hp;
  }
  if (!IsDnsName(host)) return bad("the host is not an IPv4 address, [IPv6] or a DNS name");
  return hp;
}

std::string DescribeExit(int code) {
  switch (code) {
    case 0:
      return "ok";
    case 1:
      return "failed";
    case 2:
      return "bad input";
    case 3:
      return "peer lost";
    case 75:
      return "preempted";
    default:
      return absl::StrCat("exit ", code);
  }
}

std::vector<std::string> TrainArgs::ToArgv(const std::string& binary) const {
  const TrainArgs d;
  std::vector<std::string> a = {binary, "--spec", spec_path, "--out", out_dir};
  for (const auto& o : overrides) a.insert(a.end(), {"--set", o});
  if (standalone) a.push_back("--standalone");
  if (print_world_size) a.push_back("--print-world-size");
  if (threads != d.threads) a.insert(a.end(), {"--threads", std::to_string(threads)});
  if (quiet) a.push_back("--quiet");
  if (rank != d.rank) a.insert(a.end(), {"--rank", std::to_string(rank)});
  if (trainers != d.trainers) a.insert(a.end(), {"--trainers", std::to_string(trainers)});
  // One element each: a value starting with '-' cannot be read as another flag.
  if (!store.empty()) a.push_back("--store=" + store);
  if (!job_id.empty()) a.push_back("--job-id=" + job_id);
  if (attempt != d.attempt) a.insert(a.end(), {"--attempt", std::to_string(attempt)});
  if (!job_uid.empty()) a.push_back("--job-uid=" + job_uid);
  if (!spec_hash.empty()) a.push_back("--spec-hash=" + spec_hash);
  if (pg_timeout_seconds != d.pg_timeout_seconds)
    a.insert(a.end(), {"--pg-timeout", absl::StrFormat("%.17g", pg_timeout_seconds)});
  if (!bind.empty()) a.insert(a.end(), {"--bind", bind});
  if (!data_dir.empty()) a.insert(a.end(), {"--data-dir", data_dir});
  if (!fashion_mnist_dir.empty()) a.insert(a.end(), {"--fashion-mnist-dir", fashion_mnist_dir});
  if (!cache_dir.empty()) a.insert(a.end(), {"--cache-dir", cache_dir});
  if (max_rank_memory_bytes != d.max_rank_memory_bytes)
    a.insert(a.end(), {"--max-rank-memory", std::to_string(max_rank_memory_bytes)});
  return a;
}

absl::StatusOr<ParsedTrainArgs> ParseTrainArgs(const std::vector<std::string>& argv) {
  ParsedTrainArgs out;
  TrainArgs& o = out.args;
  CLI::App app{"vsdm-train: train a VSDM job (one rank of a distributed attempt, or all of it with --standalone)"};
  app.add_option("--spec", o.spec_path, "job spec YAML")->required();
  app.add_option("--out", o.out_dir, "output directory (artifacts, checkpoint/, progress files)");
  app.add_option("--set", o.overrides, "override a spec field, KEY=VALUE (e.g. train.rounds=10); repeatable");
  app.add_flag("--standalone", o.standalone, "run the whole job in this process");
  app.add_flag("--print-world-size", o.print_world_size, "print the number of ranks (trainers + 1) and exit");
  app.add_option("--threads", o.threads, "BLAS threads (torch itself gets 1; 0 = all cores)");
  app.add_flag("--quiet", o.quiet, "no per-round progress lines");
  app.add_option("--rank", o.rank, "distributed: this rank (0..W-1 trainers, W the variational rank)");
  app.add_option("--trainers", o.trainers, "distributed: trainer ranks W (default: resources.trainers)");
  app.add_option("--store", o.store, "distributed: HOST:PORT of the TCPStore (trainer 0 hosts it)");
  app.add_option("--job-id", o.job_id, "distributed: the job's id in the store key prefix (default: the spec's name)");
  app.add_option("--attempt", o.attempt, "distributed: attempt number (logs, store prefix)");
  app.add_option("--job-uid", o.job_uid, "distributed: the job's unique id (checkpoints are bound to it)");
  app.add_option("--spec-hash", o.spec_hash, "distributed: the hash of the job's spec (checkpoints are bound to it)");
  app.add_option("--pg-timeout", o.pg_timeout_seconds, "distributed: seconds before a collective fails (default 60)");
  app.add_option("--bind", o.bind,
                 "distributed: address Gloo binds (default: 127.0.0.1 for a loopback store, "
                 "else $GLOO_SOCKET_IFNAME or the hostname)");
  app.add_option("--data-dir", o.data_dir,
                 "built-in datasets (data/images/digits8x8.csv.gz); default: the source tree's data/");
  app.add_option("--fashion-mnist-dir", o.fashion_mnist_dir,
                 "Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist)");
  app.add_option("--cache-dir", o.cache_dir, "feature-net cache (default $XDG_CACHE_HOME/vsdm or ~/.cache/vsdm)");
  app.add_option("--max-rank-memory", o.max_rank_memory_bytes,
                 "refuse a spec whose estimated per-rank peak exceeds this many bytes (-1 = 16 GiB, 0 = no bound)")
      ->check(CLI::Range(int64_t{-1}, int64_t{1} << 50));
  app.set_version_flag("--version", std::string("vsdm-train ") + VSDM_VERSION);
  std::vector<std::string> rev(argv.rbegin(), argv.rend());  // CLI11 takes them last first
  if (!rev.empty()) rev.pop_back();                          // argv[0]
  try {
    app.parse(rev);
  } catch (const CLI::CallForHelp&) {
    out.help = app.help();
    return out;
  } catch (const CLI::CallForVersion&) {
    out.help = std::string("vsdm-train ") + VSDM_VERSION + "\n";
    return out;
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
  if (o.print_world_size) return out;
  if (o.out_dir.empty()) return absl::InvalidArgumentError("--out is required");
  if (!o.standalone) {
    if (o.rank < 0) return absl::InvalidArgumentError("--rank: required without --standalone");
    if (o.store.empty()) return absl::InvalidArgumentError("--store: required without --standalone (HOST:PORT)");
    if (!(o.pg_timeout_seconds > 0 && o.pg_timeout_seconds <= 3600))
      return absl::InvalidArgumentError("--pg-timeout: must be in (0, 3600] seconds");
  }
  return out;
}

std::string TrainerProgress::ToJson() const { return RecordToJson(*this); }
bool TrainerProgress::operator==(const TrainerProgress& o) const { return RecordEquals(*this, o); }
std::string VariationalProgress::ToJson() const { return RecordToJson(*this); }
bool VariationalProgress::operator==(const VariationalProgress& o) const { return RecordEquals(*this, o); }

absl::StatusOr<TrainerProgress> TrainerProgressFromJson(const std::string& text) {
  return RecordFromJson<TrainerProgress>(text, kProgressFile);
}
absl::StatusOr<VariationalProgress> VariationalProgressFromJson(const std::string& text) {
  return RecordFromJson<VariationalProgress>(text, kVariationalProgressFile);
}

}  // namespace vsdm::train_protocol
