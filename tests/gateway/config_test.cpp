#include <gtest/gtest.h>

#include <string>

#include "config.hpp"
#include "seeds.hpp"

#include <set>

using syngate::gw::ConfigError;
using syngate::gw::GatewayConfig;
using syngate::gw::parse_config;

namespace {

const char* kMinimal = R"(
[gateway]
secret_file = "/var/lib/syngate/secrets"
[[service]]
address = "10.10.3.2"
port = 80
)";

// Parses `text` expecting an error; returns it for inspection.
ConfigError error_of(const std::string& text) {
  try {
    parse_config(text, "t.toml");
  } catch (const ConfigError& e) {
    return e;
  }
  ADD_FAILURE() << "no error for:\n" << text;
  return ConfigError("", "", "");
}

std::string with_gateway(const std::string& extra) {
  return "[gateway]\nsecret_file = \"/s\"\n" + extra + "\n[[service]]\naddress = \"10.0.0.1\"\nport = 80\n";
}

}  // namespace

TEST(Config, MinimalConfigGetsSafeDefaults) {
  GatewayConfig c = parse_config(kMinimal, "t.toml");
  EXPECT_EQ(c.secret_file, "/var/lib/syngate/secrets");
  ASSERT_EQ(c.services.size(), 1u);
  EXPECT_EQ(c.services[0].address, "10.10.3.2");
  EXPECT_FALSE(c.services[0].v6);
  EXPECT_EQ(c.services[0].port, 80);
  EXPECT_FALSE(c.fail_open);
  EXPECT_EQ(c.metrics_host, "127.0.0.1");
  EXPECT_EQ(c.metrics_port, 9470);
  EXPECT_EQ(c.syn_queue, 0);
  EXPECT_EQ(c.flow_queue, 8);
  EXPECT_EQ(c.mode, syngate::gw::Mode::Both);
  // The engine gets the default EngineConfig plus the services, v4-mapped.
  syngate::EngineConfig defaults;
  EXPECT_EQ(c.engine.max_flows, defaults.max_flows);
  ASSERT_EQ(c.engine.services.size(), 1u);
  EXPECT_EQ(c.engine.services[0].port, 80);
  const auto& b = c.engine.services[0].address.bytes;
  EXPECT_EQ(b[10], 0xff);
  EXPECT_EQ(b[11], 0xff);
  EXPECT_EQ(b[12], 10);
  EXPECT_EQ(b[15], 2);
}

TEST(Config, EngineKeysMapOneToOne) {
  std::string text = std::string(kMinimal) + R"(
[engine]
max_flows = 1000
max_flows_per_source = 7
synack_window = 29200
announced_wscale = 9
announce_ecn = true
early_data_bytes = 2048
early_data_slots = 12
backend_syn_retries = 2
backend_retry_initial_ms = 250
established_idle_s = 100
closing_idle_s = 20
linger_s = 5
cookie_max_age = 2
)";
  GatewayConfig c = parse_config(text, "t.toml");
  EXPECT_EQ(c.engine.max_flows, 1000u);
  EXPECT_EQ(c.engine.max_flows_per_source, 7u);
  EXPECT_EQ(c.engine.synack_window, 29200);
  EXPECT_EQ(c.engine.announced_wscale, 9);
  EXPECT_TRUE(c.engine.announce_ecn);
  EXPECT_EQ(c.engine.early_data_bytes, 2048u);
  EXPECT_EQ(c.engine.early_data_slots, 12u);
  EXPECT_EQ(c.engine.backend_syn_retries, 2u);
  EXPECT_EQ(c.engine.backend_retry_initial_ms, 250u);
  EXPECT_EQ(c.engine.established_idle_s, 100u);
  EXPECT_EQ(c.engine.closing_idle_s, 20u);
  EXPECT_EQ(c.engine.linger_s, 5u);
  EXPECT_EQ(c.cookie_max_age, 2u);
}

TEST(Config, Ipv6ServiceIsCanonicalised) {
  std::string text = "[gateway]\nsecret_file = \"/s\"\n[[service]]\naddress = \"2001:DB8:0::1\"\nport = 443\n";
  GatewayConfig c = parse_config(text, "t.toml");
  EXPECT_EQ(c.services[0].address, "2001:db8::1");
  EXPECT_TRUE(c.services[0].v6);
  EXPECT_TRUE(c.has_v6());
  EXPECT_FALSE(c.has_v4());
}

TEST(Config, MissingSecretFileNamesTheKey) {
  auto e = error_of("[gateway]\n[[service]]\naddress = \"10.0.0.1\"\nport = 80\n");
  EXPECT_EQ(e.key(), "gateway.secret_file");
  EXPECT_NE(std::string(e.what()).find("t.toml: gateway.secret_file: is required"), std::string::npos) << e.what();
}

TEST(Config, NoServiceIsAnError) {
  auto e = error_of("[gateway]\nsecret_file = \"/s\"\n");
  EXPECT_EQ(e.key(), "service");
}

TEST(Config, OutOfRangeValueNamesKeyAndRange) {
  auto e = error_of(with_gateway("syn_queues = 0"));
  EXPECT_EQ(e.key(), "gateway.syn_queues");
  EXPECT_NE(e.reason().find("between 1 and 64 (got 0)"), std::string::npos) << e.reason();
}

TEST(Config, WrongTypeIsReported) {
  auto e = error_of(with_gateway("fail_open = \"yes\""));
  EXPECT_EQ(e.key(), "gateway.fail_open");
  EXPECT_NE(e.reason().find("true or false"), std::string::npos);
}

TEST(Config, UnknownKeyIsATypo) {
  auto e = error_of(with_gateway("synqueue = 3"));
  EXPECT_EQ(e.key(), "gateway.synqueue");
  EXPECT_NE(e.reason().find("unknown key"), std::string::npos);
  auto e2 = error_of(std::string(kMinimal) + "[engine]\nmax_flow = 5\n");
  EXPECT_EQ(e2.key(), "engine.max_flow");
  auto e3 = error_of(std::string(kMinimal) + "[gatway]\n");
  EXPECT_EQ(e3.key(), "gatway");
}

TEST(Config, OverlappingQueuesAreRefused) {
  auto e = error_of(with_gateway("syn_queue = 4\nsyn_queues = 4\nflow_queue = 6"));
  EXPECT_EQ(e.key(), "gateway.flow_queue");
  EXPECT_NE(e.reason().find("overlap"), std::string::npos);
  EXPECT_NO_THROW(parse_config(with_gateway("syn_queue = 4\nsyn_queues = 4\nflow_queue = 8"), "t"));
}

TEST(Config, BadServiceAddressAndPort) {
  auto e = error_of("[gateway]\nsecret_file = \"/s\"\n[[service]]\naddress = \"srv.example\"\nport = 80\n");
  EXPECT_EQ(e.key(), "service[0].address");
  auto e2 = error_of("[gateway]\nsecret_file = \"/s\"\n[[service]]\naddress = \"10.0.0.1\"\nport = 80\n"
                     "[[service]]\naddress = \"10.0.0.2\"\nport = 70000\n");
  EXPECT_EQ(e2.key(), "service[1].port");
  auto e3 = error_of("[gateway]\nsecret_file = \"/s\"\n[[service]]\naddress = \"10.0.0.1\"\n");
  EXPECT_EQ(e3.key(), "service[0].port");
  auto e4 = error_of("[gateway]\nsecret_file = \"/s\"\n[[service]]\naddress = \"10.0.0.1\"\nport = 80\n"
                     "[[service]]\naddress = \"10.0.0.1\"\nport = 80\n");
  EXPECT_NE(e4.reason().find("duplicate"), std::string::npos);
}

TEST(Config, Ipv4MappedServiceAddressIsRefused) {
  // ::ffff:10.10.3.2 is on no wire: the ip6tables rules would match nothing and, with XDP on, the
  // IPv4 service would become unreachable.
  for (const char* text : {"::ffff:10.10.3.2", "::FFFF:a0a:302", "0:0:0:0:0:ffff:10.10.3.2"}) {
    auto e = error_of(std::string("[gateway]\nsecret_file = \"/s\"\n[[service]]\naddress = \"") + text +
                      "\"\nport = 80\n");
    EXPECT_EQ(e.key(), "service[0].address") << text;
    EXPECT_NE(e.reason().find("IPv4-mapped"), std::string::npos) << e.reason();
    EXPECT_NE(e.reason().find("\"10.10.3.2\""), std::string::npos) << "names the address to write: " << e.reason();
  }
}

TEST(Config, DuplicateServicesAreComparedAsAddresses) {
  auto e = error_of("[gateway]\nsecret_file = \"/s\"\n[[service]]\naddress = \"2001:db8::1\"\nport = 443\n"
                    "[[service]]\naddress = \"2001:DB8:0::1\"\nport = 443\n");
  EXPECT_EQ(e.key(), "service[1].address");
  EXPECT_NE(e.reason().find("duplicate"), std::string::npos) << e.reason();
  auto e2 = error_of("[gateway]\nsecret_file = \"/s\"\n[[service]]\naddress = \"2001:db8::1\"\nport = 443\n"
                     "[[service]]\naddress = \"2001:0db8:0000:0000:0000:0000:0000:0001\"\nport = 443\n");
  EXPECT_EQ(e2.key(), "service[1].address");
  // Same address, another port: two services.
  EXPECT_NO_THROW(parse_config("[gateway]\nsecret_file = \"/s\"\n[[service]]\naddress = \"2001:db8::1\"\nport = 443\n"
                               "[[service]]\naddress = \"2001:DB8::1\"\nport = 80\n", "t"));
}

TEST(Config, SourcePrefixV6) {
  GatewayConfig d = parse_config(kMinimal, "t.toml");
  EXPECT_EQ(d.engine.source_prefix_v6, 64) << "IPv6 sources count per /64 by default";
  GatewayConfig c = parse_config(std::string(kMinimal) + "[engine]\nsource_prefix_v6 = 56\n", "t.toml");
  EXPECT_EQ(c.engine.source_prefix_v6, 56);
  auto e = error_of(std::string(kMinimal) + "[engine]\nsource_prefix_v6 = 129\n");
  EXPECT_EQ(e.key(), "engine.source_prefix_v6");
  GatewayConfig other = parse_config(std::string(kMinimal) + "[engine]\nsource_prefix_v6 = 128\n", "t.toml");
  EXPECT_FALSE(syngate::gw::non_reloadable_changes(d, other).empty());
}

TEST(Config, MetricsOnlyOnLoopbackUnlessAllowed) {
  auto e = error_of(with_gateway("metrics_address = \"0.0.0.0:9470\""));
  EXPECT_EQ(e.key(), "gateway.metrics_address");
  EXPECT_NE(e.reason().find("metrics_allow_remote"), std::string::npos);
  GatewayConfig c = parse_config(with_gateway("metrics_address = \"10.1.2.3:9100\"\nmetrics_allow_remote = true"), "t");
  EXPECT_EQ(c.metrics_host, "10.1.2.3");
  EXPECT_EQ(c.metrics_port, 9100);
  GatewayConfig v6 = parse_config(with_gateway("metrics_address = \"[::1]:9471\""), "t");
  EXPECT_EQ(v6.metrics_host, "::1");
  GatewayConfig off = parse_config(with_gateway("metrics_address = \"off\""), "t");
  EXPECT_EQ(off.metrics_port, 0);
  EXPECT_EQ(error_of(with_gateway("metrics_address = \"127.0.0.1\"")).key(), "gateway.metrics_address");
  EXPECT_EQ(error_of(with_gateway("metrics_address = \"127.0.0.1:0\"")).key(), "gateway.metrics_address");
}

TEST(Config, EnumsAndChain) {
  GatewayConfig c = parse_config(with_gateway("mode = \"router\"\niptables = \"legacy\"\nchain = \"SG_1\""), "t");
  EXPECT_EQ(c.mode, syngate::gw::Mode::Router);
  EXPECT_EQ(c.iptables, syngate::gw::IptablesBackend::Legacy);
  EXPECT_EQ(c.chain, "SG_1");
  EXPECT_EQ(error_of(with_gateway("mode = \"bridge\"")).key(), "gateway.mode");
  EXPECT_EQ(error_of(with_gateway("iptables = \"ebtables\"")).key(), "gateway.iptables");
  EXPECT_EQ(error_of(with_gateway("chain = \"BAD CHAIN\"")).key(), "gateway.chain");
}

TEST(Config, KernelPathIsOnUnlessTurnedOffAndNeedsARestart) {
  const GatewayConfig a = parse_config(kMinimal, "t");
  EXPECT_EQ(a.kernel_path, syngate::gw::KernelPath::Auto);
  EXPECT_TRUE(a.kernel_path_on());
  const GatewayConfig on = parse_config(with_gateway("kernel_path = \"auto\""), "t");
  EXPECT_TRUE(on.kernel_path_on());
  const GatewayConfig off = parse_config(with_gateway("kernel_path = \"off\""), "t");
  EXPECT_FALSE(off.kernel_path_on());
  EXPECT_EQ(error_of(with_gateway("kernel_path = \"on\"")).key(), "gateway.kernel_path");
  const auto changes = non_reloadable_changes(on, off);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0], "gateway.kernel_path/tc_forward/tc_handshake/tc_open_flows");
}

TEST(Config, TcForwardIsOnUnlessTurnedOffAndNeedsARestart) {
  EXPECT_TRUE(parse_config(kMinimal, "t").tc_forward);
  const GatewayConfig off = parse_config(with_gateway("tc_forward = false"), "t");
  EXPECT_FALSE(off.tc_forward);
  EXPECT_EQ(error_of(with_gateway("tc_forward = \"no\"")).key(), "gateway.tc_forward");
  const auto changes = non_reloadable_changes(parse_config(with_gateway("tc_forward = true"), "t"), off);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0], "gateway.kernel_path/tc_forward/tc_handshake/tc_open_flows");
}

TEST(Config, TcHandshakeIsOnUnlessTurnedOffAndNeedsARestart) {
  EXPECT_TRUE(parse_config(kMinimal, "t").tc_handshake);
  EXPECT_FALSE(parse_config(with_gateway("tc_handshake = false"), "t").tc_handshake);
  const GatewayConfig on = parse_config(with_gateway("tc_handshake = true"), "t");
  EXPECT_TRUE(on.tc_handshake);
  EXPECT_EQ(error_of(with_gateway("tc_handshake = 1")).key(), "gateway.tc_handshake");
  const auto changes = non_reloadable_changes(parse_config(with_gateway("tc_handshake = false"), "t"), on);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0], "gateway.kernel_path/tc_forward/tc_handshake/tc_open_flows");
}

TEST(Config, TcOpenFlowsIsOnUnlessTurnedOffAndNeedsARestart) {
  EXPECT_TRUE(parse_config(kMinimal, "t").tc_open_flows);
  EXPECT_FALSE(parse_config(with_gateway("tc_open_flows = false"), "t").tc_open_flows);
  const GatewayConfig on = parse_config(with_gateway("tc_open_flows = true"), "t");
  EXPECT_TRUE(on.tc_open_flows);
  EXPECT_EQ(error_of(with_gateway("tc_open_flows = \"yes\"")).key(), "gateway.tc_open_flows");
  const auto changes = non_reloadable_changes(parse_config(with_gateway("tc_open_flows = false"), "t"), on);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0], "gateway.kernel_path/tc_forward/tc_handshake/tc_open_flows");
}

TEST(Config, TcEarlyDataIsOnUnlessTurnedOffAndNeedsARestart) {
  EXPECT_TRUE(parse_config(kMinimal, "t").tc_early_data);
  EXPECT_FALSE(parse_config(with_gateway("tc_early_data = false"), "t").tc_early_data);
  const GatewayConfig on = parse_config(with_gateway("tc_early_data = true"), "t");
  EXPECT_TRUE(on.tc_early_data);
  EXPECT_EQ(error_of(with_gateway("tc_early_data = 0")).key(), "gateway.tc_early_data");
  const auto changes = non_reloadable_changes(parse_config(with_gateway("tc_early_data = false"), "t"), on);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0], "gateway.tc_early_data");
}

TEST(Config, FlowWorkerRtPriorityIsTenUnlessSetAndNeedsARestart) {
  EXPECT_EQ(parse_config(kMinimal, "t").flow_worker_rt_priority, 10);
  EXPECT_EQ(parse_config(with_gateway("flow_worker_rt_priority = 0"), "t").flow_worker_rt_priority, 0);
  const GatewayConfig rt = parse_config(with_gateway("flow_worker_rt_priority = 20"), "t");
  EXPECT_EQ(rt.flow_worker_rt_priority, 20);
  EXPECT_EQ(error_of(with_gateway("flow_worker_rt_priority = 100")).key(), "gateway.flow_worker_rt_priority");
  EXPECT_EQ(error_of(with_gateway("flow_worker_rt_priority = -1")).key(), "gateway.flow_worker_rt_priority");
  const auto changes = non_reloadable_changes(parse_config(with_gateway(""), "t"), rt);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0], "gateway worker placement (nice/rt priority/cpus)");
}

TEST(Config, BpfDirIsAnAbsolutePathAndNeedsARestart) {
  EXPECT_EQ(parse_config(kMinimal, "t").bpf_dir, "/sys/fs/bpf");
  const GatewayConfig a = parse_config(with_gateway("bpf_dir = \"/run/syngate-bpf\""), "t");
  EXPECT_EQ(a.bpf_dir, "/run/syngate-bpf");
  EXPECT_EQ(error_of(with_gateway("bpf_dir = \"bpf\"")).key(), "gateway.bpf_dir");
  EXPECT_EQ(error_of(with_gateway("bpf_dir = \"\"")).key(), "gateway.bpf_dir");
  const auto changes = non_reloadable_changes(a, parse_config(with_gateway(""), "t"));
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0], "gateway.bpf_dir");
}

TEST(Config, RotationFasterThanTwoTicksIsRefused) {
  EXPECT_EQ(error_of(with_gateway("secret_rotation_s = 60")).key(), "gateway.secret_rotation_s");
  EXPECT_EQ(parse_config(with_gateway("secret_rotation_s = 3600"), "t").secret_rotation_s, 3600u);
}

TEST(Config, SyntaxErrorGivesLine) {
  auto e = error_of("[gateway]\nsecret_file = \n");
  EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
}

TEST(Config, ReloadReportsWhatNeedsARestart) {
  GatewayConfig a = parse_config(kMinimal, "t");
  GatewayConfig b = parse_config(std::string(kMinimal) + "", "t");
  EXPECT_TRUE(non_reloadable_changes(a, b).empty());
  b.log_level = "debug";  // reloadable
  EXPECT_TRUE(non_reloadable_changes(a, b).empty());
  b.flow_queues = 2;
  b.engine.max_flows = 5;
  auto changes = non_reloadable_changes(a, b);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0], "gateway.flow_queue(s)");
  EXPECT_EQ(changes[1], "[engine] settings");
}

TEST(Config, LoadMissingFileNamesIt) {
  try {
    syngate::gw::load_config("/nonexistent/syngate.toml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/syngate.toml"), std::string::npos);
  }
}

// ---- [policy] --------------------------------------------------------------------------------

TEST(Policy, ParsesAllowDenyAndBudgets) {
  GatewayConfig c = parse_config(std::string(kMinimal) + R"(
[policy]
deny = ["198.18.0.0/15", "2001:2::/48"]
allow = ["10.0.0.0/8", "10.10.1.7"]
synack_per_prefix_per_s = 50
synack_per_address_per_s = 7
new_flows_per_source_per_s = 20
)", "t.toml");
  ASSERT_TRUE(c.engine.policy);
  const syngate::SourcePolicy& p = *c.engine.policy;
  EXPECT_EQ(p.prefixes.size(), 4u);
  EXPECT_TRUE(p.allow_list);
  EXPECT_EQ(p.synack_per_prefix_per_s, 50u);
  EXPECT_EQ(p.synack_per_address_per_s, 7u);
  EXPECT_EQ(p.new_flows_per_source_per_s, 20u);
  EXPECT_EQ(p.prefixes.longest_match(*syngate::Address::parse("198.19.0.1")), syngate::kPolicyDeny);
  EXPECT_EQ(p.prefixes.longest_match(*syngate::Address::parse("10.10.1.7")), syngate::kPolicyAllow);
}

TEST(Policy, DefaultsWhenAbsent) {
  GatewayConfig c = parse_config(kMinimal, "t.toml");
  ASSERT_TRUE(c.engine.policy);
  EXPECT_TRUE(c.engine.policy->prefixes.empty());
  EXPECT_FALSE(c.engine.policy->allow_list);
  EXPECT_EQ(c.engine.policy->synack_per_prefix_per_s, syngate::SourcePolicy::kDefaultSynackPerPrefixPerS);
  EXPECT_EQ(c.engine.policy->synack_per_address_per_s, syngate::SourcePolicy::kDefaultSynackPerAddressPerS);
  EXPECT_EQ(c.engine.policy->new_flows_per_source_per_s, 0u);
}

TEST(Policy, ErrorsNameTheKey) {
  auto with = [](const std::string& body) { return std::string(kMinimal) + "[policy]\n" + body + "\n"; };
  ConfigError e = error_of(with(R"(deny = ["10.0.0.0/8", "10.1.2.3/16"])"));
  EXPECT_EQ(e.key(), "policy.deny[1]");
  EXPECT_NE(e.reason().find("host bits"), std::string::npos) << e.what();
  e = error_of(with(R"(allow = ["nonsense"])"));
  EXPECT_EQ(e.key(), "policy.allow[0]");
  e = error_of(with(R"(deny = "10.0.0.0/8")"));
  EXPECT_EQ(e.key(), "policy.deny");
  e = error_of(with(R"(deny = [8])"));
  EXPECT_EQ(e.key(), "policy.deny[0]");
  e = error_of(with(R"(deny = ["10.0.0.0/8"]
allow = ["10.0.0.0/8"])"));
  EXPECT_EQ(e.key(), "policy.allow[0]");
  EXPECT_NE(e.reason().find("policy.deny[0]"), std::string::npos) << e.what();
  e = error_of(with("synack_per_prefix_per_s = -1"));
  EXPECT_EQ(e.key(), "policy.synack_per_prefix_per_s");
  e = error_of(with("new_flows_per_source = 3"));
  EXPECT_EQ(e.key(), "policy.new_flows_per_source");
  e = error_of("policy = 3\n" + std::string(kMinimal));
  EXPECT_EQ(e.key(), "policy");
}

// The XDP fast path's policy map holds 65,536 prefixes (allow and deny together); one more made
// the map update fail at start and left the whole fast path off, with only a warning in the log.
TEST(Policy, ListsBeyondTheFastPathMapAreRefusedUnlessXdpIsOff) {
  std::string deny = "deny = [";
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) deny += "\"10." + std::to_string(a) + "." + std::to_string(b) + ".0/24\",";
  }
  deny += "]\n";
  const std::string full = std::string(kMinimal) + "[policy]\n" + deny;
  EXPECT_EQ(parse_config(full, "t.toml").engine.policy->prefixes.size(), 65536u);

  const std::string over = full + "allow = [\"192.0.2.0/24\"]\n";
  ConfigError e = error_of(over);
  EXPECT_EQ(e.key(), "policy");
  EXPECT_NE(e.reason().find("65537 prefixes"), std::string::npos) << e.what();
  EXPECT_NE(e.reason().find("at most 65536"), std::string::npos) << e.what();
  EXPECT_NE(e.reason().find("mode = \"off\""), std::string::npos) << e.what();

  // Without the fast path the NFQUEUE engine's own table has no such bound.
  EXPECT_EQ(parse_config(over + "[xdp]\nmode = \"off\"\n", "t.toml").engine.policy->prefixes.size(), 65537u);
}

// ---- hash keys -------------------------------------------------------------------------------

TEST(HashKeys, EveryWorkerGetsFreshRandomKeys) {
  GatewayConfig c = parse_config(kMinimal, "t.toml");
  EXPECT_EQ(c.engine.hash_seed, 0u) << "nothing compiled in: the config leaves the keys unset";
  std::set<uint64_t> seeds;
  std::set<syngate::HashKey> keys;
  for (int i = 0; i < 32; ++i) {
    syngate::EngineConfig e = c.engine;
    syngate::gw::randomize_hash_keys(e);
    EXPECT_NE(e.hash_seed, 0u);
    EXPECT_NE(e.hash_seed, 0x5eed5eed5eed5eedull) << "the old compiled-in seed";
    EXPECT_NE(e.hash_key, syngate::HashKey{});
    seeds.insert(e.hash_seed);
    keys.insert(e.hash_key);
  }
  EXPECT_EQ(seeds.size(), 32u);
  EXPECT_EQ(keys.size(), 32u);
}

TEST(Config, InstanceIsTheConfigFileNameUnlessSet) {
  EXPECT_EQ(parse_config(kMinimal, "/etc/syngate/syngate.toml").instance, "syngate");
  EXPECT_EQ(parse_config(kMinimal, "/etc/syngate/edge.toml").instance, "edge");
  EXPECT_EQ(parse_config(kMinimal, "edge.v6.toml").instance, "edge.v6");
  EXPECT_EQ(parse_config(kMinimal, "/etc/syngate/my gw.conf").instance, "my_gw.conf");
  EXPECT_EQ(syngate::gw::default_instance_name("/etc/syngate/.toml"), "_toml");
  EXPECT_EQ(syngate::gw::default_instance_name(""), "syngate");
  EXPECT_EQ(parse_config(with_gateway("instance = \"edge@ns1\""), "/etc/syngate/syngate.toml").instance, "edge@ns1");
  EXPECT_EQ(error_of(with_gateway("instance = \"\"")).key(), "gateway.instance");
  EXPECT_EQ(error_of(with_gateway("instance = \"../x\"")).key(), "gateway.instance");
  EXPECT_EQ(error_of(with_gateway("instance = \".hidden\"")).key(), "gateway.instance");
  // Another instance name is another state directory: only a new process can move to it.
  GatewayConfig a = parse_config(kMinimal, "/etc/syngate/a.toml");
  GatewayConfig b = parse_config(kMinimal, "/etc/syngate/b.toml");
  auto changes = non_reloadable_changes(a, b);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0], "gateway.instance");
}
