// The state directory's rules without root: identity, locking, trust, symlinks, what a plan maps.
// (A full filesystem and real namespaces are in state_test.sh.)
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <filesystem>
#include <fstream>
#include <string>

#include "flow_state.hpp"

namespace syngate::gw {
namespace {

namespace fs = std::filesystem;

class StateDirTest : public ::testing::Test {
 protected:
  std::string root;
  InstanceId id{"syngate", 4026531999, 7, 0xb007};
  EngineConfig config;
  void SetUp() override {
    char tmpl[] = "/tmp/syngate-state-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root = tmpl;
    config.max_flows = 64;
    config.early_data_bytes = 64;
    config.early_data_slots = 4;
  }
  void TearDown() override { fs::remove_all(root); }
  std::string state() const { return root + "/state"; }
  static std::string error_of(const std::function<void()>& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  }
};

TEST_F(StateDirTest, EachIdentityHasItsOwnLockedDirectory) {
  StateDir a(state(), id);
  EXPECT_EQ(a.path(), state() + "/syngate.netns-4026531999");
  EXPECT_EQ(fs::status(a.path()).permissions() & fs::perms::all, fs::perms::owner_all);
  // The same identity again (a second syngate with this name in this namespace) is refused...
  const std::string e = error_of([&] { StateDir b(state(), id); });
  EXPECT_NE(e.find("another syngate (pid " + std::to_string(getpid()) + ") runs as instance \"syngate\""),
            std::string::npos)
      << e;
  // ...another name, or another namespace, is not.
  InstanceId other_name = id;
  other_name.name = "edge";
  StateDir c(state(), other_name);
  InstanceId other_ns = id;
  other_ns.netns_inode = 4026532000;
  StateDir d(state(), other_ns);
}

TEST_F(StateDirTest, TablesOfADeletedNamespaceAreRemovedNotUsed) {
  const size_t bytes = Engine::state_bytes(config);
  {
    StateDir dir(state(), id);
    MappedTable t(dir, table_name(8), bytes, false);
  }
  // A new namespace under the same inode number (the old one was deleted): another cookie.
  InstanceId reborn = id;
  reborn.netns_cookie = 99;
  StateDir dir(state(), reborn);
  ASSERT_EQ(dir.notes().size(), 1u);
  EXPECT_NE(dir.notes()[0].find("no longer exists"), std::string::npos) << dir.notes()[0];
  EXPECT_FALSE(fs::exists(dir.path() + "/flows-q8.bin"));
  FlowStatePlan plan = plan_flow_state(dir, 8, 1, config, reborn.boot_id);
  EXPECT_TRUE(plan.saved.empty());
  EXPECT_FALSE(plan.queues.at(0).in_place);
}

TEST_F(StateDirTest, ARestartInPlaceKeepsItsTables) {
  const size_t bytes = Engine::state_bytes(config);
  {
    StateDir dir(state(), id);
    MappedTable t(dir, table_name(8), bytes, false);
  }
  StateDir dir(state(), id);
  EXPECT_TRUE(dir.notes().empty());
  FlowStatePlan plan = plan_flow_state(dir, 8, 1, config, id.boot_id);
  ASSERT_EQ(plan.saved.count("flows-q8.bin"), 1u);
  EXPECT_EQ(plan.saved.at("flows-q8.bin")->region().size(), bytes);
}

TEST_F(StateDirTest, AStateDirOthersCouldWriteIsRefused) {
  fs::create_directory(state());
  chmod(state().c_str(), 0777);
  EXPECT_NE(error_of([&] { StateDir d(state(), id); }).find("mode 0777 lets other users write"), std::string::npos);
  chmod(state().c_str(), 0700);
  fs::create_directory_symlink(state(), root + "/link");
  EXPECT_NE(error_of([&] { StateDir d(root + "/link", id); }).find("is a symlink"), std::string::npos);
  if (geteuid() == 0) {
    ASSERT_EQ(chown(state().c_str(), 65534, 65534), 0);
    EXPECT_NE(error_of([&] { StateDir d(state(), id); }).find("owned by uid 65534"), std::string::npos);
  }
}

TEST_F(StateDirTest, ATableOpenToOthersIsReplacedNotAdopted) {
  const size_t bytes = Engine::state_bytes(config);
  StateDir dir(state(), id);
  const std::string path = dir.path() + "/flows-q8.bin";
  {
    std::ofstream planted(path);
    planted << std::string(bytes, 'x');
  }
  chmod(path.c_str(), 0666);
  FlowStatePlan plan = plan_flow_state(dir, 8, 1, config, id.boot_id);
  EXPECT_TRUE(plan.saved.empty());
  EXPECT_FALSE(plan.queues.at(0).in_place);
  ASSERT_FALSE(plan.notes.empty());
  EXPECT_NE(plan.notes[0].find("not trusted (mode 0666"), std::string::npos) << plan.notes[0];
  struct stat before;
  ASSERT_EQ(stat(path.c_str(), &before), 0);
  MappedTable t(dir, "flows-q8.bin", bytes, false);
  struct stat after;
  ASSERT_EQ(stat(path.c_str(), &after), 0);
  EXPECT_NE(after.st_ino, before.st_ino) << "a fresh file, not the planted one";
  EXPECT_EQ(after.st_mode & 0777, 0600u);
  EXPECT_EQ(after.st_uid, geteuid());
  EXPECT_GE(uint64_t(after.st_blocks) * 512, bytes) << "every block reserved";
}

TEST_F(StateDirTest, DrainingServicesNeverFollowASymlink) {
  StateDir dir(state(), id);
  const std::string victim = root + "/victim";
  { std::ofstream(victim) << "precious\n"; }
  fs::create_symlink(victim, dir.path() + "/draining-services.tmp");
  write_draining_services(dir, {ServiceEntry{"10.10.3.2", false, 7000}});
  std::ifstream v(victim);
  std::string text;
  std::getline(v, text);
  EXPECT_EQ(text, "precious");
  auto listed = read_draining_services(dir);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].port, 7000);
  // `rules up` reads the same list without taking the lock, and nothing from another identity.
  EXPECT_EQ(read_draining_services(state(), id).size(), 1u);
  InstanceId reborn = id;
  reborn.netns_cookie = 99;
  EXPECT_TRUE(read_draining_services(state(), reborn).empty());
  // A symlink in place of the list itself is not read.
  fs::remove(dir.path() + "/draining-services");
  fs::create_symlink(victim, dir.path() + "/draining-services");
  EXPECT_NE(error_of([&] { read_draining_services(dir); }).find("is a symlink"), std::string::npos);
}

TEST_F(StateDirTest, TablesOfAnEarlierReleaseMoveIntoTheFirstInstance) {
  fs::create_directory(state());
  chmod(state().c_str(), 0700);
  { std::ofstream(state() + "/flows-q8.bin") << "old table"; }
  chmod((state() + "/flows-q8.bin").c_str(), 0600);
  { std::ofstream(state() + "/draining-services") << "10.10.3.2 7000\n"; }
  chmod((state() + "/draining-services").c_str(), 0600);
  StateDir dir(state(), id);
  EXPECT_TRUE(fs::exists(dir.path() + "/flows-q8.bin"));
  EXPECT_FALSE(fs::exists(state() + "/flows-q8.bin"));
  EXPECT_EQ(read_draining_services(dir).size(), 1u);
}

}  // namespace
}  // namespace syngate::gw
