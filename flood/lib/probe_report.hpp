// What the prober records per connection and how it summarises a run. Pure, so the success
// and failure accounting is unit-tested without a network.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "stats.hpp"

namespace syngate::flood {

enum class Failure : uint8_t {
  None = 0,
  ConnectTimeout,   // no SYN-ACK (or no completed handshake) within the timeout
  ResponseTimeout,  // connected, but the first response byte never came in time
  Refused,          // RST in answer to the SYN (ECONNREFUSED)
  Reset,            // RST after the handshake (ECONNRESET, EPIPE)
  Closed,           // orderly close before any response byte
  BadResponse,      // --http: the response was not an HTTP 2xx/3xx status line
  Other,            // anything else (EHOSTUNREACH, ENETUNREACH, EADDRNOTAVAIL, ...)
};
inline constexpr size_t kFailureCount = 8;
std::string_view to_string(Failure f) noexcept;

// The three families the report groups failures into: timeout, refused/RST, other.
std::string_view failure_family(Failure f) noexcept;

// An errno from connect()/SO_ERROR, recv() or send(), seen before or after the handshake.
Failure classify_errno(int err, bool connected) noexcept;

// Checks an HTTP status line prefix: "HTTP/1.x NNN". Returns the status, 0 while the line is
// still incomplete (fewer than 12 bytes), -1 when it cannot be HTTP.
int http_status(std::string_view head) noexcept;

struct Attempt {
  Failure failure = Failure::None;
  double connect_ms = -1;     // < 0: never connected
  double first_byte_ms = -1;  // < 0: no response byte (or none expected)
};

struct ProbeConfig {
  std::string target;
  uint64_t count = 0;
  uint64_t concurrency = 0;
  uint64_t timeout_ms = 0;
  std::string http_path;  // empty: plain connect
  bool expect_banner = false;
};

struct ProbeReport {
  ProbeConfig config;
  uint64_t attempted = 0;
  uint64_t succeeded = 0;
  double success_pct = 0;
  LatencySummary connect;
  LatencySummary first_byte;
  std::array<uint64_t, kFailureCount> failures{};
  double elapsed_s = 0;
};

ProbeReport summarize_probe(const ProbeConfig& config, const std::vector<Attempt>& attempts, double elapsed_s);
nlohmann::json to_json(const ProbeReport& r);
std::string to_text(const ProbeReport& r);

// Why the run counts as failed (exit 1), or "" when it passed. Without --min-success a run in
// which no connection succeeded fails, as ping and curl -f do when the target never answers;
// --min-success PCT asks for at least PCT percent instead (0: report only, for runs that
// expect every connection to fail).
std::string probe_failure(const ProbeReport& r, std::optional<double> min_success_pct);

}  // namespace syngate::flood
