// A plain HTTP GET with a total deadline and a body cap, for `syngate status`: whatever answers
// at the metrics address (a trickling or endless endpoint included), the call ends in time and
// holds at most the cap in memory.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace syngate::gw {

struct HttpGetResult {
  bool ok = false;      // a complete response arrived (any status)
  bool connected = false;
  bool timed_out = false;  // the deadline passed first
  int status = 0;
  std::string body;
  std::string error;    // why not ok: "connection refused", "no complete answer within 3 s", ...
};

// GET `path` from host:port (a literal IPv4 or IPv6 address). The deadline covers everything from
// connect to the last body byte; a body over max_body bytes is an error. Understands
// Content-Length, chunked transfer coding and bodies ended by the close.
HttpGetResult http_get(const std::string& host, uint16_t port, const std::string& path,
                       std::chrono::milliseconds deadline, size_t max_body);

}  // namespace syngate::gw
