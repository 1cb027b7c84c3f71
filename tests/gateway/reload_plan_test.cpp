#include <gtest/gtest.h>

#include <string>

#include "config.hpp"
#include "reload_plan.hpp"

using syngate::gw::check_table_room;
using syngate::gw::ConfigError;
using syngate::gw::flow_tables_bytes;
using syngate::gw::GatewayConfig;
using syngate::gw::MachineRoom;
using syngate::gw::parse_config;
using syngate::gw::plan_reload;

namespace {

GatewayConfig config(const std::string& gateway_extra, const std::string& engine = "",
                     const std::string& services = "[[service]]\naddress = \"10.10.3.2\"\nport = 80\n") {
  return parse_config("[gateway]\nsecret_file = \"/var/lib/syngate/secrets\"\n" + gateway_extra + "\n[engine]\n" +
                          engine + "\n" + services,
                      "t.toml");
}

constexpr uint64_t kGiB = 1ull << 30;

ConfigError room_error(const GatewayConfig& c, const MachineRoom& room, bool new_files) {
  try {
    check_table_room(c, room, new_files);
  } catch (const ConfigError& e) {
    return e;
  }
  ADD_FAILURE() << "no error";
  return ConfigError("", "", "");
}

}  // namespace

TEST(ReloadPlan, ReloadableChangesApplyInPlace) {
  const GatewayConfig a = config("");
  const GatewayConfig b = config("log_level = \"debug\"");
  const auto p = plan_reload(a, b);
  EXPECT_TRUE(p.restart_keys.empty());
  EXPECT_FALSE(p.restart_in_place);
  EXPECT_FALSE(p.apply_services);
}

TEST(ReloadPlan, TableSizeRestartsInPlaceAndRebuildsTables) {
  const GatewayConfig a = config("");
  const GatewayConfig b = config("", "early_data_slots = 8192");
  const auto p = plan_reload(a, b);
  ASSERT_EQ(p.restart_keys.size(), 1u);
  EXPECT_EQ(p.restart_keys[0], "[engine] settings");
  EXPECT_TRUE(p.restart_in_place);
  EXPECT_TRUE(p.tables_rebuilt);
}

TEST(ReloadPlan, SecretFileRestartsInPlaceKeepingTables) {
  const GatewayConfig a = config("");
  GatewayConfig b = a;
  b.secret_file = "/elsewhere/secrets";
  const auto p = plan_reload(a, b);
  EXPECT_TRUE(p.restart_in_place);
  EXPECT_FALSE(p.tables_rebuilt);
}

TEST(ReloadPlan, WithoutStateDirRestartKeysWait) {
  const GatewayConfig a = config("state_dir = \"\"");
  const GatewayConfig b = config("state_dir = \"\"\nflow_queues = 2");
  const auto p = plan_reload(a, b);
  EXPECT_FALSE(p.restart_keys.empty());
  EXPECT_FALSE(p.restart_in_place);
}

TEST(ReloadPlan, ServicesRemovedOrWaitingForAFamily) {
  const GatewayConfig a = config("", "",
                                 "[[service]]\naddress = \"10.10.3.2\"\nport = 80\n"
                                 "[[service]]\naddress = \"10.10.3.2\"\nport = 443\n");
  const GatewayConfig b = config("");
  auto p = plan_reload(a, b);
  EXPECT_TRUE(p.apply_services);
  ASSERT_EQ(p.removed_services.size(), 1u);
  EXPECT_EQ(p.removed_services[0].port, 443);
  const GatewayConfig v6 = config("", "", "[[service]]\naddress = \"2001:db8::2\"\nport = 80\n"
                                          "[[service]]\naddress = \"10.10.3.2\"\nport = 80\n");
  p = plan_reload(b, v6);
  EXPECT_FALSE(p.apply_services);
  EXPECT_TRUE(p.services_wait_for_restart);
}

TEST(TableRoom, DefaultFitsASmallMachine) {
  const GatewayConfig c = config("");
  EXPECT_LT(flow_tables_bytes(c), 1 * kGiB);
  EXPECT_NO_THROW(check_table_room(c, MachineRoom{2 * kGiB, 1 * kGiB, 1 * kGiB}, true));
}

TEST(TableRoom, SixteenTiBEarlyDataPoolIsRefusedNamingTheKey) {
  const GatewayConfig c = config("", "early_data_bytes = 1048576\nearly_data_slots = 16777216");
  EXPECT_GE(flow_tables_bytes(c), 16ull << 40);
  const ConfigError e = room_error(c, MachineRoom{64 * kGiB, std::nullopt, std::nullopt}, false);
  EXPECT_EQ(e.key(), "engine.early_data_slots");
  EXPECT_NE(e.reason().find("RAM"), std::string::npos) << e.what();
}

TEST(TableRoom, FlowsPerQueueBeyondTheStateDirFilesystem) {
  // 4 queues of 2^26 flows: the flows, not the pool, ask for most of it.
  const GatewayConfig c = config("flow_queues = 4", "max_flows = 67108864");
  const ConfigError e = room_error(c, MachineRoom{1024 * kGiB, 8 * kGiB, 8 * kGiB}, false);
  EXPECT_EQ(e.key(), "engine.max_flows");
  EXPECT_NE(e.reason().find("state_dir"), std::string::npos) << e.what();
  EXPECT_NE(e.reason().find("4 flow queue(s)"), std::string::npos) << e.what();
}

TEST(TableRoom, NewFilesNeedFreeSpaceOnlyWhenRebuilt) {
  const GatewayConfig c = config("");
  const uint64_t need = flow_tables_bytes(c);
  const MachineRoom room{64 * kGiB, 64 * kGiB, need / 2};
  EXPECT_NO_THROW(check_table_room(c, room, false));
  const ConfigError e = room_error(c, room, true);
  EXPECT_NE(e.reason().find("free"), std::string::npos) << e.what();
}
