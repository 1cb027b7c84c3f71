#include "health.hpp"

#include <spdlog/fmt/fmt.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace syngate::gw {

HealthVerdict judge_health(const HealthSnapshot& s, const HealthLimits& limits) {
  HealthVerdict v;
  if (s.worker_idle_s.empty()) v.problems.push_back("no workers");
  for (size_t i = 0; i < s.worker_idle_s.size(); ++i) {
    if (s.worker_idle_s[i] > limits.worker_stall_s) {
      v.problems.push_back(fmt::format("worker {} made no progress for {:.1f} s", i, s.worker_idle_s[i]));
    }
  }
  if (s.tick_age_s > limits.tick_stall_s) {
    v.problems.push_back(fmt::format("main thread made no progress for {:.1f} s", s.tick_age_s));
  }
  if (s.rules_in_place == 0) v.problems.push_back("iptables rules missing (syngate rules up)");
  if (s.rules_in_place < 0) v.problems.push_back("iptables rules not checked yet");
  if (s.fast_path_required && s.fast_path_interfaces <= 0) {
    v.problems.push_back("XDP fast path required ([xdp] mode) but attached nowhere");
  }
  v.healthy = v.problems.empty();
  v.summary = fmt::format("{} worker(s) making progress, rules in place, fast path {}", s.worker_idle_s.size(),
                          s.fast_path_interfaces < 0 ? std::string("off")
                                                     : fmt::format("on {} interface(s)", s.fast_path_interfaces));
  return v;
}

std::string health_answer(const HealthSnapshot& s, const HealthVerdict& v) {
  nlohmann::json j;
  j["healthy"] = v.healthy;
  j["workers"] = s.worker_idle_s.size();
  j["rules"] = s.rules_in_place > 0 ? "in place" : s.rules_in_place == 0 ? "missing" : "not checked";
  j["fast_path"] = s.fast_path_interfaces < 0 ? std::string("off")
                                              : std::to_string(s.fast_path_interfaces) + " interface(s)";
  j["problems"] = v.problems;
  j["summary"] = v.summary;
  return j.dump() + "\n";
}

HealthVerdict parse_health_answer(std::string_view line) {
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("healthy") || !j["healthy"].is_boolean() ||
      !j.contains("problems") || !j["problems"].is_array()) {
    throw std::runtime_error("not a syngate health answer");
  }
  HealthVerdict v;
  v.healthy = j["healthy"].get<bool>();
  for (const auto& p : j["problems"]) {
    if (!p.is_string()) throw std::runtime_error("not a syngate health answer");
    v.problems.push_back(p.get<std::string>());
  }
  if (j.contains("summary") && j["summary"].is_string()) v.summary = j["summary"].get<std::string>();
  // An answer that contradicts itself is no answer.
  if (v.healthy != v.problems.empty()) throw std::runtime_error("inconsistent syngate health answer");
  return v;
}

void HeartbeatWatch::observe(const std::vector<uint64_t>& beats, double now_s) {
  if (beats.size() != last_.size()) {
    last_ = beats;
    moved_at_.assign(beats.size(), now_s);
    return;
  }
  for (size_t i = 0; i < beats.size(); ++i) {
    if (beats[i] != last_[i]) {
      last_[i] = beats[i];
      moved_at_[i] = now_s;
    }
  }
}

std::vector<double> HeartbeatWatch::idle_s(double now_s) const {
  std::vector<double> out;
  for (double t : moved_at_) out.push_back(now_s > t ? now_s - t : 0);
  return out;
}

}  // namespace syngate::gw
