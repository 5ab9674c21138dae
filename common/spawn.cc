#include "common/spawn.h"

#include <fcntl.h>
#include <spawn.h>

#include <cstring>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace vsdm {

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& args_in, const SpawnOptions& o) {
  if (args_in.empty()) return absl::InvalidArgumentError("argv: empty");
  std::vector<std::string> args = args_in;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (o.stdin_devnull) posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (!o.log_path.empty()) {
    posix_spawn_file_actions_addopen(&fa, 1, o.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  short flags = 0;
  if (o.new_session) flags |= POSIX_SPAWN_SETSID;
  if (o.new_process_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&attr, 0);
  }
  posix_spawnattr_setflags(&attr, flags);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return absl::InternalError(absl::StrCat("start ", args[0], ": ", strerror(rc)));
  return pid;
}

}  // namespace vsdm
