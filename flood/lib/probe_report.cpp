#include "probe_report.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>

namespace syngate::flood {

std::string_view to_string(Failure f) noexcept {
  switch (f) {
    case Failure::None: return "none";
    case Failure::ConnectTimeout: return "connect_timeout";
    case Failure::ResponseTimeout: return "response_timeout";
    case Failure::Refused: return "refused";
    case Failure::Reset: return "reset";
    case Failure::Closed: return "closed";
    case Failure::BadResponse: return "bad_response";
    case Failure::Other: return "other";
  }
  return "?";
}

std::string_view failure_family(Failure f) noexcept {
  switch (f) {
    case Failure::None: return "none";
    case Failure::ConnectTimeout:
    case Failure::ResponseTimeout: return "timeout";
    case Failure::Refused:
    case Failure::Reset: return "refused_rst";
    default: return "other";
  }
}

Failure classify_errno(int err, bool connected) noexcept {
  switch (err) {
    case ECONNREFUSED: return connected ? Failure::Reset : Failure::Refused;
    case ECONNRESET:
    case EPIPE: return connected ? Failure::Reset : Failure::Refused;
    case ETIMEDOUT: return connected ? Failure::ResponseTimeout : Failure::ConnectTimeout;
    default: return Failure::Other;
  }
}

int http_status(std::string_view head) noexcept {
  static constexpr std::string_view kPrefix = "HTTP/1.";
  const size_t n = std::min(head.size(), kPrefix.size());
  if (head.substr(0, n) != kPrefix.substr(0, n)) return -1;
  if (head.size() < 12) return 0;
  if (head[8] != ' ') return -1;
  int status = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (head[i] < '0' || head[i] > '9') return -1;
    status = status * 10 + (head[i] - '0');
  }
  return status;
}

ProbeReport summarize_probe(const ProbeConfig& config, const std::vector<Attempt>& attempts, double elapsed_s) {
  ProbeReport r;
  r.config = config;
  r.attempted = attempts.size();
  r.elapsed_s = elapsed_s;
  std::vector<double> connect, first;
  for (const Attempt& a : attempts) {
    if (a.failure == Failure::None) {
      ++r.succeeded;
      // Latencies describe the connections that worked; failures are counted, not averaged in.
      if (a.connect_ms >= 0) connect.push_back(a.connect_ms);
      if (a.first_byte_ms >= 0) first.push_back(a.first_byte_ms);
    } else {
      ++r.failures[static_cast<size_t>(a.failure)];
    }
  }
  r.success_pct = r.attempted ? 100.0 * static_cast<double>(r.succeeded) / static_cast<double>(r.attempted) : 0;
  r.connect = summarize(connect);
  r.first_byte = summarize(first);
  return r;
}

namespace {
nlohmann::json latency_json(const LatencySummary& s) {
  return {{"count", s.count}, {"min", s.min}, {"p50", s.p50}, {"p90", s.p90},
          {"p99", s.p99},     {"max", s.max}, {"mean", s.mean}};
}
}  // namespace

nlohmann::json to_json(const ProbeReport& r) {
  nlohmann::json by_kind = nlohmann::json::object();
  nlohmann::json by_family = {{"timeout", 0}, {"refused_rst", 0}, {"other", 0}};
  for (size_t i = 1; i < kFailureCount; ++i) {
    const auto f = static_cast<Failure>(i);
    by_kind[std::string(to_string(f))] = r.failures[i];
    by_family[std::string(failure_family(f))] = by_family[std::string(failure_family(f))].get<uint64_t>() + r.failures[i];
  }
  nlohmann::json j = {
      {"target", r.config.target},
      {"count", r.config.count},
      {"concurrency", r.config.concurrency},
      {"timeout_ms", r.config.timeout_ms},
      {"check", r.config.http_path.empty() ? (r.config.expect_banner ? "banner" : "connect") : "http"},
      {"attempted", r.attempted},
      {"succeeded", r.succeeded},
      {"success_pct", r.success_pct},
      {"connect_ms", latency_json(r.connect)},
      {"first_byte_ms", latency_json(r.first_byte)},
      {"failures", by_family},
      {"failures_detail", by_kind},
      {"elapsed_s", r.elapsed_s},
  };
  if (!r.config.http_path.empty()) j["http_path"] = r.config.http_path;
  return j;
}

std::string to_text(const ProbeReport& r) {
  char buf[512];
  std::string out;
  std::snprintf(buf, sizeof buf, "probe %s: %llu/%llu succeeded (%.2f%%) in %.2f s\n", r.config.target.c_str(),
                static_cast<unsigned long long>(r.succeeded), static_cast<unsigned long long>(r.attempted),
                r.success_pct, r.elapsed_s);
  out += buf;
  auto line = [&](const char* name, const LatencySummary& s) {
    if (!s.count) return;
    std::snprintf(buf, sizeof buf, "  %-10s ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", name, s.p50, s.p90,
                  s.p99, s.max);
    out += buf;
  };
  line("connect", r.connect);
  line("first-byte", r.first_byte);
  for (size_t i = 1; i < kFailureCount; ++i) {
    if (!r.failures[i]) continue;
    std::snprintf(buf, sizeof buf, "  failed %-16s %llu\n", std::string(to_string(static_cast<Failure>(i))).c_str(),
                  static_cast<unsigned long long>(r.failures[i]));
    out += buf;
  }
  return out;
}

std::string probe_failure(const ProbeReport& r, std::optional<double> min_success_pct) {
  if (r.attempted == 0) return "no connection finished";
  char buf[160];
  if (!min_success_pct) {
    if (r.succeeded > 0) return "";
    std::snprintf(buf, sizeof buf,
                  "none of the %llu connections succeeded (--min-success 0 reports without failing)",
                  static_cast<unsigned long long>(r.attempted));
    return buf;
  }
  if (r.success_pct >= *min_success_pct) return "";
  std::snprintf(buf, sizeof buf, "%.2f%% succeeded, below --min-success %.2f%%", r.success_pct, *min_success_pct);
  return buf;
}

}  // namespace syngate::flood
