// Whether this gateway should receive traffic, for a routing daemon that announces the service
// only while the answer is yes (docs/scale-out.md, deploy/bird/). The decision from a snapshot,
// the answer's one-line form and the heartbeat bookkeeping are pure (tests/gateway/health_test.cpp);
// the socket that carries the answer is health_socket.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace syngate::gw {

struct HealthSnapshot {
  std::vector<double> worker_idle_s;  // per worker: seconds since its heartbeat last moved
  double tick_age_s = 0;              // seconds since the main thread's last tick
  int rules_in_place = -1;            // at the last rules check: 1 in place, 0 not, -1 not checked yet
  bool fast_path_required = false;    // [xdp] mode native or generic: the operator asked for it
  int fast_path_interfaces = -1;      // interfaces the XDP program is attached to; -1: no fast path
};

// A worker's turn waits at most 100 ms for packets, and its heartbeat moves every turn, idle or
// not: 2 s without a move is a stuck worker, not a quiet one. The main thread ticks every second
// and checks the rules every 2 s: 5 s without a tick means the rules state is stale.
struct HealthLimits {
  double worker_stall_s = 2.0;
  double tick_stall_s = 5.0;
};

struct HealthVerdict {
  bool healthy = false;
  std::vector<std::string> problems;  // one line each; empty when healthy
  std::string summary;                // what was checked, for the healthy line
};

HealthVerdict judge_health(const HealthSnapshot& s, const HealthLimits& limits = {});

// The daemon's answer: one line of JSON ending in '\n':
//   {"healthy":true,"workers":2,"rules":"in place","fast_path":"off","problems":[]}
std::string health_answer(const HealthSnapshot& s, const HealthVerdict& v);
// The client's reading of it; throws std::runtime_error when the line is not such an answer.
HealthVerdict parse_health_answer(std::string_view line);

// When each worker's heartbeat last moved, from samples taken by whoever asks (the health
// socket's thread samples every 200 ms). A worker count that changes starts over.
class HeartbeatWatch {
 public:
  void observe(const std::vector<uint64_t>& beats, double now_s);
  std::vector<double> idle_s(double now_s) const;

 private:
  std::vector<uint64_t> last_;
  std::vector<double> moved_at_;
};

}  // namespace syngate::gw
