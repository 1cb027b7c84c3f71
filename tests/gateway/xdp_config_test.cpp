// The [xdp] section: defaults, every mode, interface lists, and the errors an operator sees.
#include <gtest/gtest.h>

#include <string>

#include "config.hpp"

using syngate::gw::ConfigError;
using syngate::gw::GatewayConfig;
using syngate::gw::parse_config;
using syngate::gw::XdpMode;

namespace {

std::string with_xdp(const std::string& xdp) {
  return "[gateway]\nsecret_file = \"/s\"\n[[service]]\naddress = \"10.0.0.1\"\nport = 80\n[xdp]\n" + xdp;
}

std::string error_of(const std::string& text) {
  try {
    parse_config(text, "t.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for:\n" << text;
  return "";
}

TEST(XdpConfig, DefaultIsAutoOnEveryInterface) {
  GatewayConfig c = parse_config("[gateway]\nsecret_file = \"/s\"\n[[service]]\naddress = \"10.0.0.1\"\nport = 80\n");
  EXPECT_EQ(c.xdp_mode, XdpMode::Auto);
  EXPECT_TRUE(c.xdp_interfaces.empty());
  EXPECT_EQ(parse_config(with_xdp("")).xdp_mode, XdpMode::Auto);
}

TEST(XdpConfig, EveryModeAndAnInterfaceList) {
  EXPECT_EQ(parse_config(with_xdp("mode = \"native\"")).xdp_mode, XdpMode::Native);
  EXPECT_EQ(parse_config(with_xdp("mode = \"generic\"")).xdp_mode, XdpMode::Generic);
  EXPECT_EQ(parse_config(with_xdp("mode = \"tc\"")).xdp_mode, XdpMode::Tc);
  EXPECT_EQ(parse_config(with_xdp("mode = \"off\"")).xdp_mode, XdpMode::Off);
  GatewayConfig c = parse_config(with_xdp("mode = \"auto\"\ninterfaces = [\"eth0\", \"veth-gw1\"]"));
  EXPECT_EQ(c.xdp_interfaces, (std::vector<std::string>{"eth0", "veth-gw1"}));
}

TEST(XdpConfig, BadValuesNameTheKeyAndTheReason) {
  EXPECT_NE(error_of(with_xdp("mode = \"fast\"")).find("xdp.mode: must be \"auto\", \"native\", \"generic\", \"tc\" or \"off\""),
            std::string::npos);
  EXPECT_NE(error_of(with_xdp("interfaces = \"eth0\"")).find("xdp.interfaces: must be an array"), std::string::npos);
  EXPECT_NE(error_of(with_xdp("interfaces = [1]")).find("xdp.interfaces"), std::string::npos);
  EXPECT_NE(error_of(with_xdp("interfaces = [\"a-name-that-is-too-long\"]")).find("not a valid interface name"),
            std::string::npos);
  EXPECT_NE(error_of(with_xdp("interfaces = [\"eth0/1\"]")).find("not a valid interface name"), std::string::npos);
  EXPECT_NE(error_of(with_xdp("interfaces = [\"eth0\", \"eth0\"]")).find("listed twice"), std::string::npos);
  EXPECT_NE(error_of(with_xdp("moed = \"off\"")).find("xdp.moed: unknown key"), std::string::npos);
  EXPECT_NE(error_of("[gateway]\nsecret_file = \"/s\"\nxdp = 1\n[[service]]\naddress = \"10.0.0.1\"\nport = 80\n")
                .find("gateway.xdp"),
            std::string::npos);
  EXPECT_NE(error_of("xdp = 1\n[gateway]\nsecret_file = \"/s\"\n[[service]]\naddress = \"10.0.0.1\"\nport = 80\n")
                .find("xdp: must be a table"),
            std::string::npos);
}

TEST(XdpConfig, ChangesNeedARestart) {
  GatewayConfig a = parse_config(with_xdp("mode = \"auto\""));
  GatewayConfig b = parse_config(with_xdp("mode = \"off\""));
  const auto changes = syngate::gw::non_reloadable_changes(a, b);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0], "[xdp] mode/interfaces");
}

}  // namespace
