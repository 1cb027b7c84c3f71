#pragma once

#include <vector>

#include "addr.hpp"
#include "probe_report.hpp"

namespace syngate::flood {

// Opens config.count connections to `target`, at most config.concurrency at a time, each with
// its own deadline of config.timeout_ms from its connect() call; optionally sends an HTTP GET
// or waits for the server's banner. Returns one Attempt per connection that finished: all of
// them, unless SIGINT/SIGTERM (stop_requested) ended the run early.
std::vector<Attempt> run_probe(const ProbeConfig& config, const Endpoint& target);
std::vector<Attempt> run_probe(const ProbeConfig& config, const Endpoint6& target);

}  // namespace syngate::flood
