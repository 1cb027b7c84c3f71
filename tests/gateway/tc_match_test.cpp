// The kernel path's pins and host mode's OUTPUT match: where they go and when they are wanted.
#include <gtest/gtest.h>

#include <string>

#include "config.hpp"
#include "tc_match.hpp"
#include "tc_program.hpp"

using syngate::gw::parse_config;

namespace {
syngate::gw::GatewayConfig config(const std::string& gateway) {
  return parse_config("[gateway]\nsecret_file = \"/s\"\n" + gateway + "\n[[service]]\naddress = \"10.0.0.1\"\nport = 80\n",
                      "t");
}
}  // namespace

// bpffs refuses a name with a dot (EPERM): an instance "edge.v2" must still get a directory.
TEST(TcPins, DirectoryNamesHoldNoDot) {
  const std::string dir = syngate::tc::pin_dir("edge.v2", "/run/b");
  EXPECT_EQ(dir.rfind("/run/b/syngate/edge:v2", 0), 0u) << dir;
  EXPECT_EQ(dir.find('.'), std::string::npos) << dir;
  EXPECT_EQ(syngate::tc::pin_dir("syngate").rfind("/sys/fs/bpf/syngate/syngate", 0), 0u);
}

TEST(TcPins, OutputMatchOnlyInHostAndBothModesWithTheKernelPath) {
  EXPECT_TRUE(syngate::tc::output_match_wanted(config("mode = \"host\"\nkernel_path = \"auto\"")));
  EXPECT_TRUE(syngate::tc::output_match_wanted(config("mode = \"both\"\nkernel_path = \"auto\"")));
  EXPECT_FALSE(syngate::tc::output_match_wanted(config("mode = \"router\"\nkernel_path = \"auto\"")));
  EXPECT_FALSE(syngate::tc::output_match_wanted(config("mode = \"host\"\nkernel_path = \"off\"")));
}

// `rules up` creates the map the daemon then reuses: both size it from the same configuration.
TEST(TcPins, MapSizeFollowsTheFlowWorkers) {
  const auto c = config("flow_queues = 3\n");
  EXPECT_EQ(syngate::tc::kernel_path_max_flows(c), uint64_t{c.engine.max_flows} * 3);
  EXPECT_EQ(syngate::tc::flow_map_entries(10), 2048u);
  EXPECT_EQ(syngate::tc::flow_map_entries(5000), 10000u);
}
