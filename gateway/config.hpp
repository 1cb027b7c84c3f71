// The daemon's configuration: one TOML file, validated whole before anything touches the network.
// Pure code (parsing and validation only); load_config() is the one function that reads a file.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "syngate/engine.hpp"

namespace syngate::gw {

// An error names the file, the key (dotted TOML path) and the reason, so an operator can fix it
// without reading code: "syngate.toml: gateway.syn_queues: must be between 1 and 64 (got 0)".
class ConfigError : public std::runtime_error {
 public:
  ConfigError(const std::string& source, const std::string& key, const std::string& reason);
  const std::string& key() const noexcept { return key_; }
  const std::string& reason() const noexcept { return reason_; }

 private:
  std::string key_;
  std::string reason_;
};

// Which netfilter hooks the rules use: a router forwards to servers behind it (FORWARD), a host
// runs the services itself (INPUT for client packets, OUTPUT for the replies).
enum class Mode : uint8_t { Router, Host, Both };
std::string_view to_string(Mode m) noexcept;

enum class IptablesBackend : uint8_t { Auto, Nft, Legacy };
std::string_view to_string(IptablesBackend b) noexcept;

// Where the fast path (bpf/syngate_xdp.bpf.c) attaches: auto picks per interface (native XDP on
// a NIC whose driver has it, else the tc ingress hook; generic XDP where tc cannot attach) and
// runs without it where nothing can attach; native, generic and tc force one hook; off never loads
// it. Generic XDP needs linear frames, so the kernel copies every GRO super-packet before the
// program runs (bulk traffic of established flows included); tc reads the skb as it is.
enum class XdpMode : uint8_t { Auto, Native, Generic, Tc, Off };
std::string_view to_string(XdpMode m) noexcept;

// Established flows in the kernel (tc programs translate them, issue 23): auto where the programs
// load and attach, off never (every segment crosses NFQUEUE, as before).
enum class KernelPath : uint8_t { Auto, Off };
std::string_view to_string(KernelPath k) noexcept;

struct ServiceEntry {
  std::string address;  // canonical text form (inet_ntop), as iptables gets it
  bool v6 = false;
  uint16_t port = 0;
  friend bool operator==(const ServiceEntry&, const ServiceEntry&) = default;
};

struct GatewayConfig {
  std::string source;  // file name, for messages

  // [gateway]
  std::string secret_file;
  std::string log_level = "info";
  std::string log_format = "text";  // "text" or "json" (one JSON object per line)
  std::string metrics_host = "127.0.0.1";
  uint16_t metrics_port = 9470;  // 0 disables the endpoint
  bool metrics_allow_remote = false;
  uint32_t stats_interval_s = 10;  // periodic log line; 0 = off

  uint16_t syn_queue = 0;
  uint16_t syn_queues = 1;
  uint16_t flow_queue = 8;
  uint16_t flow_queues = 1;
  uint32_t syn_queue_maxlen = 4096;
  uint32_t flow_queue_maxlen = 8192;
  bool fail_open = false;
  uint32_t rcvbuf_bytes = 16u << 20;
  uint32_t sndbuf_bytes = 4u << 20;
  uint32_t batch_size = 64;
  int syn_worker_nice = 10;
  int flow_worker_nice = 0;
  // 1-99: while the fast path is attached, flow workers run SCHED_FIFO at that priority, so a
  // packet that wakes one does not wait behind the kernel's own threads on its CPU (threaded NAPI,
  // ksoftirqd); 0, and without the fast path: the normal scheduler at flow_worker_nice.
  int flow_worker_rt_priority = 10;
  std::vector<int> syn_cpus;   // empty: let the scheduler place workers
  std::vector<int> flow_cpus;
  uint32_t advance_interval_ms = 100;

  Mode mode = Mode::Both;
  uint32_t mark = 0x5347;  // SO_MARK of emitted packets; the rules let such packets through
  IptablesBackend iptables = IptablesBackend::Auto;
  std::string chain = "SYNGATE";
  // With the kernel path on, packets carrying SG_TC_MARK (tc_abi.h) skip the queue rules, and
  // syngate sets that bit on what it translates and sends (so tc egress leaves them alone).
  KernelPath kernel_path = KernelPath::Auto;  // where the tc programs load (else said, and off)
  bool kernel_path_on() const noexcept { return kernel_path != KernelPath::Off; }
  // With the kernel path on in router and both modes: the tc ingress program sends the segments
  // it translated on itself (FIB lookup, bpf_redirect), skipping ip_forward and the FORWARD and
  // POSTROUTING hooks. Off: they go up the stack and are forwarded by the kernel.
  bool tc_forward = true;
  // Router and both modes with tc_forward, for services behind a route: the ingress program
  // answers a backend's SYN-ACK itself when the client's cookie ACK carried no data (tc_abi.h,
  // sg_tc_handshakes). On by default: in the lab it takes a third or more off the daemon's CPU
  // per connection and connections per second gain (docs/lab.md).
  bool tc_handshake = true;
  // With tc_handshake and one flow queue: the ingress program also takes a client's cookie ACK
  // itself (tc_abi.h, sg_tc_cookie_ack): it checks the cookie, sends the backend's SYN and tells
  // the engine, so a connection whose SYN-ACK comes before the client's data crosses no queue.
  // In the lab connections per second gain a quarter to a third and the daemon's share of its
  // core halves (docs/lab.md). With several flow queues it does nothing (said at start).
  bool tc_open_flows = true;
  // With tc_handshake: a client's request that reaches the tc ingress before its backend's SYN-ACK
  // is kept in the kernel (tc_abi.h, sg_tc_early) and sent on behind the ACK that completes the
  // backend's handshake, so that the SYN-ACK is still answered in tc. Off: such a request and
  // its SYN-ACK cross NFQUEUE, and the engine answers. On a real network nearly every
  // client-speaks-first connection's request overtakes its SYN-ACK (docs/lab.md).
  bool tc_early_data = true;
  // The bpffs directory the kernel path pins under (syngate/<instance>.netns-<inode>/): its flow
  // map, and in host and both modes the OUTPUT match that `rules up` names by path (xt_bpf reads
  // the pin when a rule is added). `ip netns exec` mounts a fresh /sys, without a bpffs: a
  // gateway run that way needs a bpffs mounted elsewhere (tests/gateway/lib.sh, kernel_path_pins).
  std::string bpf_dir = "/sys/fs/bpf";

  // Where flow workers keep their flow tables (one file per flow queue, mapped shared) so that
  // proxied connections survive a restart, an upgrade or a crash. Empty: in process memory only.
  // Meant for a tmpfs (the default /run is one): a reboot must start clean.
  std::string state_dir = "/run/syngate";
  // Names this instance's files in state_dir (with its network namespace): instances in other
  // namespaces or with other names never share, import or delete each other's tables. Defaults
  // to the config file's name without ".toml" (syngate@edge.service reads edge.toml: "edge").
  std::string instance;

  uint32_t secret_rotation_s = 0;  // 0 = keep the secrets until the file changes
  uint32_t cookie_max_age = 1;

  // [engine], mapped 1:1 onto EngineConfig (services come from [[service]]).
  EngineConfig engine;

  // [[service]]
  std::vector<ServiceEntry> services;
  // Not from the file: services a running daemon still drains after a reload removed them
  // (read by `rules up` from state_dir); their flow traffic stays queued, their SYNs do not.
  std::vector<ServiceEntry> draining;

  // [xdp]
  XdpMode xdp_mode = XdpMode::Auto;
  std::vector<std::string> xdp_interfaces;  // empty: where gw::plan_interfaces() says

  // Whether any service (or draining service) of the family is configured.
  bool has_v4() const noexcept;
  bool has_v6() const noexcept;
};

// Parses and validates TOML text. Unknown keys are errors (a typo must not silently fall back to
// a default). Throws ConfigError.
GatewayConfig parse_config(std::string_view toml_text, std::string_view source = "config");
// Reads the file and parses it; a missing or unreadable file is a ConfigError too.
GatewayConfig load_config(const std::string& path);

// gateway.instance when the file does not set it: the file's name without ".toml", characters
// other than A-Z a-z 0-9 _ - . @ replaced by '_' ("syngate" when nothing is left).
std::string default_instance_name(std::string_view config_path);

// gateway.chain, and `syngate rules down --chain`: a name iptables accepts for a user chain.
inline constexpr std::string_view kChainNameRule = "1..28 characters of A-Z a-z 0-9 _ -";
bool valid_chain_name(std::string_view name) noexcept;

// Turns the service list into the engine's form (IPv4 as v4-mapped Address).
std::vector<Service> to_engine_services(const std::vector<ServiceEntry>& services);

// One line per setting that differs and cannot change without a restart (queues, buffers,
// workers, flow table sizes); empty when a reload can apply everything.
std::vector<std::string> non_reloadable_changes(const GatewayConfig& running,
                                                const GatewayConfig& next);

}  // namespace syngate::gw
