// The metrics endpoint: GET /metrics and GET /healthz over HTTP/1.1, served by one thread with
// poll(2). It must neither stop nor blind the gateway:
// - an address it cannot bind (another process holds the port) is logged and retried; the data
//   path runs on. No SO_REUSEPORT, so nobody shares the port with it either.
// - every connection has a deadline from accept to the last byte of its answer, and the number
//   of connections is capped; a new one closes the oldest that has not sent its request yet. A
//   scraper sends its request at once and is answered in the next turn of the loop, so hundreds
//   of clients that trickle header lines (or never read) cannot keep it out.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace syngate::gw {

struct MetricsEndpointLimits {
  std::chrono::milliseconds deadline{5000};      // accept to last response byte
  size_t max_connections = 512;                  // more: the oldest still reading is closed
  size_t max_request_bytes = 8192;               // request line and headers
  std::chrono::milliseconds bind_retry{2000};    // while the address cannot be bound
};

class MetricsEndpoint {
 public:
  // Renders the body of GET /metrics (called on the endpoint's thread).
  using Render = std::function<std::string()>;

  // Starts serving host:port (a literal IPv4 or IPv6 address; port 0 picks a free port, for
  // tests). Never throws for an address it cannot bind: it keeps trying.
  MetricsEndpoint(std::string host, uint16_t port, Render render, MetricsEndpointLimits limits = {});
  ~MetricsEndpoint();  // stops the thread and closes every socket
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  // The port listened on, or 0 while the address is not bound.
  uint16_t listening_port() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace syngate::gw
