// Spawn on real children: the log is never written through a planted link, the environment and
// limits are exactly the ones asked for, and a start that fails names what failed.
#include "common/spawn.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "common/file_util.h"

namespace vsdm {
namespace {
namespace fs = std::filesystem;

class SpawnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vsdm_spawn_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs argv to its end with its output in `log`; returns its exit status (-1: not started).
  static int Run(const std::vector<std::string>& argv, SpawnOptions o) {
    auto pid = Spawn(argv, o);
    EXPECT_TRUE(pid.ok()) << pid.status();
    if (!pid.ok()) return -1;
    int status = 0;
    waitpid(*pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

TEST_F(SpawnTest, ALogPlantedAsASymlinkOrAHardLinkIsRefusedAndItsTargetUntouched) {
  const std::string target = Path("target");
  ASSERT_TRUE(AtomicWriteFile(target, "precious\n").ok());
  fs::create_symlink(target, Path("sym.log"));
  fs::create_hard_link(target, Path("hard.log"));
  for (const char* name : {"sym.log", "hard.log"}) {
    SpawnOptions o;
    o.log_path = Path(name);
    auto pid = Spawn({"/bin/echo", "overwritten"}, o);
    ASSERT_FALSE(pid.ok()) << name;
    EXPECT_NE(pid.status().message().find(o.log_path), std::string::npos) << pid.status();
    EXPECT_NE(pid.status().message().find("refused"), std::string::npos) << pid.status();
  }
  EXPECT_EQ(ReadFile(target).value_or(""), "precious\n");
  // A fresh log is created for the owner only (0600, whatever the umask adds).
  SpawnOptions o;
  o.log_path = Path("fresh.log");
  EXPECT_EQ(Run({"/bin/echo", "hello"}, o), 0);
  EXPECT_EQ(ReadFile(o.log_path).value_or(""), "hello\n");
  struct stat st {};
  ASSERT_EQ(::stat(o.log_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0077, 0u);
}

TEST_F(SpawnTest, TheChildsEnvironmentIsExactlyTheOneGiven) {
  ::setenv("VSDM_SPAWN_TEST_PARENT", "x", 1);
  SpawnOptions o;
  o.log_path = Path("env.log");
  o.env = std::vector<std::string>{"ONLY=this"};
  EXPECT_EQ(Run({"/usr/bin/env"}, o), 0);
  EXPECT_EQ(ReadFile(o.log_path).value_or(""), "ONLY=this\n");
  // Without `env`, the child inherits this process's.
  SpawnOptions inherit;
  inherit.log_path = Path("inherit.log");
  EXPECT_EQ(Run({"/usr/bin/env"}, inherit), 0);
  EXPECT_NE(ReadFile(inherit.log_path).value_or("").find("VSDM_SPAWN_TEST_PARENT=x\n"), std::string::npos);
  ::unsetenv("VSDM_SPAWN_TEST_PARENT");
}

TEST_F(SpawnTest, LimitsAreSetInTheChildAndClampedToTheParentsHardLimit) {
  rlimit nofile{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &nofile), 0);
  SpawnOptions o;
  o.log_path = Path("limits.log");
  o.limits = {{RLIMIT_CORE, 0},
              {RLIMIT_NOFILE, nofile.rlim_max == RLIM_INFINITY ? rlim_t{1} << 20 : nofile.rlim_max + 1}};
  EXPECT_EQ(Run({"/bin/sh", "-c", "ulimit -c; ulimit -Hc; ulimit -n; ulimit -Hn"}, o), 0);
  const std::string n = nofile.rlim_max == RLIM_INFINITY ? std::to_string(1 << 20) : std::to_string(nofile.rlim_max);
  EXPECT_EQ(ReadFile(o.log_path).value_or(""), "0\n0\n" + n + "\n" + n + "\n");
}

TEST_F(SpawnTest, AFailedStartNamesTheBinaryAndAProcessGroupIsItsOwn) {
  auto bad = Spawn({Path("no-such-binary")}, SpawnOptions{});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(bad.status().message().find(Path("no-such-binary")), std::string::npos);
  EXPECT_NE(bad.status().message().find("No such file"), std::string::npos) << bad.status();
  EXPECT_EQ(Spawn({}, SpawnOptions{}).status().code(), absl::StatusCode::kInvalidArgument);
  SpawnOptions o;
  o.new_process_group = true;
  auto pid = Spawn({"/bin/sleep", "5"}, o);
  ASSERT_TRUE(pid.ok()) << pid.status();
  EXPECT_EQ(getpgid(*pid), *pid);
  kill(*pid, SIGKILL);
  waitpid(*pid, nullptr, 0);
}

}  // namespace
}  // namespace vsdm
