#include <gtest/gtest.h>

#include <string>

#include "config.hpp"
#include "reload_plan.hpp"
#include "start_check.hpp"

using syngate::gw::check_restart;
using syngate::gw::check_table_room;
using syngate::gw::ConfigError;
using syngate::gw::flow_tables_bytes;
using syngate::gw::GatewayConfig;
using syngate::gw::MachineRoom;
using syngate::gw::parse_config;
using syngate::gw::plan_reload;
using syngate::gw::reloaded_config;
using syngate::gw::ServiceEntry;

namespace {

GatewayConfig config(const std::string& gateway_extra, const std::string& engine = "",
                     const std::string& services = "[[service]]\naddress = \"10.10.3.2\"\nport = 80\n") {
  return parse_config("[gateway]\nsecret_file = \"/var/lib/syngate/secrets\"\n" + gateway_extra + "\n[engine]\n" +
                          engine + "\n" + services,
                      "t.toml");
}

std::string services(std::initializer_list<int> ports, const std::string& address = "10.10.3.2") {
  std::string out;
  for (int p : ports) out += "[[service]]\naddress = \"" + address + "\"\nport = " + std::to_string(p) + "\n";
  return out;
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

// ---- what a reload applies now ---------------------------------------------------------------

TEST(ReloadPlan, PolicyOnlyChangeAppliesNowAndLeavesTheServices) {
  const GatewayConfig a = config("");
  const GatewayConfig b =
      config("", "", services({80}) + "[policy]\ndeny = [\"198.18.0.0/15\"]\nsynack_per_prefix_per_s = 50\n");
  const auto p = plan_reload(a, b);
  EXPECT_TRUE(p.restart_keys.empty());
  EXPECT_FALSE(p.restart_in_place);
  EXPECT_FALSE(p.apply_services);
  EXPECT_FALSE(p.services_wait_for_restart);
  EXPECT_TRUE(p.added_services.empty());
  EXPECT_TRUE(p.removed_services.empty());
  const GatewayConfig r = reloaded_config(a, b, p);
  EXPECT_EQ(r.engine.policy, b.engine.policy);
  ASSERT_NE(r.engine.policy, nullptr);
  EXPECT_EQ(r.engine.policy->synack_per_prefix_per_s, 50u);
  EXPECT_EQ(r.services, a.services);
  EXPECT_EQ(r.engine.services.size(), a.engine.services.size());
}

TEST(ReloadPlan, LogStatsAndRotationComeFromTheNewFile) {
  const GatewayConfig a = config("");
  const GatewayConfig b =
      config("log_level = \"debug\"\nlog_format = \"json\"\nstats_interval_s = 7\nsecret_rotation_s = 600");
  const auto p = plan_reload(a, b);
  EXPECT_TRUE(p.restart_keys.empty());
  const GatewayConfig r = reloaded_config(a, b, p);
  EXPECT_EQ(r.log_level, "debug");
  EXPECT_EQ(r.log_format, "json");
  EXPECT_EQ(r.stats_interval_s, 7u);
  EXPECT_EQ(r.secret_rotation_s, 600u);
}

TEST(ReloadPlan, ServicesAddedAndRemovedAreNamedAndApplied) {
  const GatewayConfig a = config("", "", services({80, 443}));
  const GatewayConfig b = config("", "", services({80, 8080}));
  const auto p = plan_reload(a, b);
  EXPECT_TRUE(p.restart_keys.empty());
  EXPECT_TRUE(p.apply_services);
  ASSERT_EQ(p.added_services.size(), 1u);
  EXPECT_EQ(p.added_services[0].port, 8080);
  // The removed service drains: the workers keep its flows, the daemon lists it for `rules up`.
  ASSERT_EQ(p.removed_services.size(), 1u);
  EXPECT_EQ(p.removed_services[0].port, 443);
  const GatewayConfig r = reloaded_config(a, b, p);
  EXPECT_EQ(r.services, b.services);
  ASSERT_EQ(r.engine.services.size(), 2u);
  EXPECT_EQ(r.engine.services[1].port, 8080);
}

TEST(ReloadPlan, ReorderedServicesAddAndRemoveNothing) {
  const GatewayConfig a = config("", "", services({80, 443}));
  const GatewayConfig b = config("", "", services({443, 80}));
  const auto p = plan_reload(a, b);
  EXPECT_TRUE(p.apply_services);
  EXPECT_TRUE(p.added_services.empty());
  EXPECT_TRUE(p.removed_services.empty());
}

TEST(ReloadPlan, AServiceOfANewFamilyWaitsWhileThePolicyApplies) {
  const GatewayConfig a = config("");
  const GatewayConfig b = config("", "", services({80}) + services({80}, "2001:db8::2") +
                                             "[policy]\nsynack_per_prefix_per_s = 9\n");
  const auto p = plan_reload(a, b);
  EXPECT_TRUE(p.services_wait_for_restart);
  EXPECT_FALSE(p.apply_services);
  EXPECT_TRUE(p.added_services.empty());
  const GatewayConfig r = reloaded_config(a, b, p);
  EXPECT_EQ(r.services, a.services);
  EXPECT_FALSE(r.has_v6());
  EXPECT_EQ(r.engine.policy->synack_per_prefix_per_s, 9u);
}

// ---- what waits for a restart, what restarts in place ----------------------------------------

TEST(ReloadPlan, WithoutStateDirRestartKeysKeepTheirRunningValues) {
  const GatewayConfig a = config("state_dir = \"\"");
  const GatewayConfig b = config("state_dir = \"\"\nflow_queues = 2\nbatch_size = 16\nlog_level = \"debug\"");
  const auto p = plan_reload(a, b);
  EXPECT_EQ(p.restart_keys, (std::vector<std::string>{"gateway.flow_queue(s)", "gateway.batch_size"}));
  EXPECT_FALSE(p.restart_in_place);
  EXPECT_FALSE(p.tables_rebuilt);
  const GatewayConfig r = reloaded_config(a, b, p);
  EXPECT_EQ(r.flow_queues, a.flow_queues);
  EXPECT_EQ(r.batch_size, a.batch_size);
  EXPECT_EQ(r.log_level, "debug");
}

TEST(ReloadPlan, AnotherStateDirOrInstanceCannotCarryTheFlowsAndWaits) {
  const GatewayConfig a = config("");
  auto p = plan_reload(a, config("state_dir = \"/run/elsewhere\""));
  EXPECT_EQ(p.restart_keys, std::vector<std::string>{"gateway.state_dir"});
  EXPECT_FALSE(p.restart_in_place);
  p = plan_reload(a, config("instance = \"other\"\nflow_queues = 2"));
  EXPECT_EQ(p.restart_keys, (std::vector<std::string>{"gateway.instance", "gateway.flow_queue(s)"}));
  EXPECT_FALSE(p.restart_in_place);
}

TEST(ReloadPlan, EachRestartKeyRestartsInPlaceRebuildingTablesOnlyForTheirShape) {
  struct Case {
    std::string gateway, engine, key;
    bool rebuilt;
  };
  const Case cases[] = {
      {"flow_queues = 2", "", "gateway.flow_queue(s)", true},
      {"flow_queue = 200", "", "gateway.flow_queue(s)", true},
      {"", "max_flows = 1024", "[engine] settings", true},
      {"", "early_data_bytes = 2048", "[engine] settings", true},
      {"", "established_idle_s = 60", "[engine] settings", false},
      {"syn_queues = 2", "", "gateway.syn_queue(s)", false},
      {"batch_size = 16", "", "gateway.batch_size", false},
      {"fail_open = true", "", "gateway.fail_open", false},
      {"mark = 7", "", "gateway.mark", false},
      {"metrics_address = \"127.0.0.1:9998\"", "", "gateway.metrics_address", false},
      // A reload once ignored these three without a word.
      {"mode = \"router\"", "", "gateway.mode", false},
      {"advance_interval_ms = 50", "", "gateway.advance_interval_ms", false},
      {"chain = \"SYNGATE2\"", "", "gateway.iptables/chain", false},
      {"iptables = \"legacy\"", "", "gateway.iptables/chain", false},
  };
  const GatewayConfig a = config("");
  for (const Case& c : cases) {
    const auto p = plan_reload(a, config(c.gateway, c.engine));
    EXPECT_EQ(p.restart_keys, std::vector<std::string>{c.key}) << c.gateway << c.engine;
    EXPECT_TRUE(p.restart_in_place) << c.key;
    EXPECT_EQ(p.tables_rebuilt, c.rebuilt) << c.gateway << c.engine;
  }
}

TEST(ReloadPlan, ARestartInPlaceLeavesTheServicesToTheNewProcess) {
  const GatewayConfig a = config("", "", services({80, 443}));
  const auto p = plan_reload(a, config("syn_queues = 2", "", services({80, 8080})));
  EXPECT_TRUE(p.restart_in_place);
  EXPECT_FALSE(p.apply_services);
  EXPECT_TRUE(p.added_services.empty());
  EXPECT_TRUE(p.removed_services.empty());
}

TEST(ReloadPlan, ARestartTheNewProcessCouldNotStartOnIsRefused) {
  const GatewayConfig a = config("");
  GatewayConfig b = config("flow_queues = 2");
  b.secret_file = "/nonexistent-syngate-test-dir/secrets";
  const auto p = plan_reload(a, b);
  ASSERT_TRUE(p.restart_in_place);
  try {
    check_restart(b, p);
    ADD_FAILURE() << "restart not refused";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "gateway.secret_file");
    EXPECT_NE(e.reason().find("/nonexistent-syngate-test-dir"), std::string::npos) << e.what();
  }
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
