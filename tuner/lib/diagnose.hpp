// diagnose: findings from socket state counts, listener queues and kernel counters. Pure: the shell
// gathers the inputs (sock_diag, /proc/net/netstat, /proc/net/snmp, /proc/sys) and prints the result.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tcptune {

// Kernel TCP states (include/net/tcp_states.h). 12 is TCP_NEW_SYN_RECV, the request socket of a
// half-open connection, which is what a listener's SYN queue holds; we report it as SYN_RECV.
inline constexpr int kTcpStates = 13;
std::string_view state_name(int state);

struct StateCounts {
  std::array<std::uint64_t, kTcpStates> v4{}, v6{};
  std::uint64_t get(int state) const;  // both families; SYN_RECV includes NEW_SYN_RECV
  std::uint64_t total() const;
  void add(int family_v6, int state);
};

struct ListenerInfo {
  std::string local;  // "127.0.0.1:80" or "[::1]:80"
  std::uint32_t accept_queue = 0;  // connections waiting for accept() (idiag_rqueue)
  std::uint32_t backlog = 0;       // listen() backlog after the somaxconn cap (idiag_wqueue)
};

struct OwnerCount {
  int pid = 0;
  std::string comm;
  std::uint64_t count = 0;
};

using Counters = std::map<std::string, std::int64_t>;  // "TcpExt.ListenOverflows" -> value
// Parses /proc/net/netstat or /proc/net/snmp: pairs of "Prefix: names..." / "Prefix: values..." lines.
Counters parse_proc_counters(std::string_view text);

struct Thresholds {
  std::uint64_t syn_recv = 128;
  std::uint64_t close_wait = 64;
  std::optional<std::uint64_t> time_wait;  // default: half the ephemeral port range
};

struct DiagInput {
  StateCounts counts;
  std::vector<ListenerInfo> listeners;
  std::vector<OwnerCount> close_wait_owners;  // by process, largest first (where visible)
  Counters counters;                          // cumulative since boot / netns creation
  std::optional<Counters> delta;              // counter increase over --interval, when sampled
  double interval_s = 0;
  std::map<std::string, std::string> sysctl;  // syncookies, max_syn_backlog, port range, max_tw_buckets...
  Thresholds thresholds;
};

enum class Severity { Info, Warning, Critical };
std::string_view severity_name(Severity s);

struct Finding {
  Severity severity = Severity::Info;
  std::string id;      // stable identifier, documented in docs/tcptune.md
  std::string title;
  std::string detail;  // the evidence, with numbers
  std::string advice;
  std::string profile;  // shipped profile that helps, empty if none does
};

std::vector<Finding> diagnose(const DiagInput& in);

}  // namespace tcptune
