// `syngate status` on whatever a metrics endpoint answers: the Prometheus text parser
// (gateway/status.cpp), then the report from two scrapes, its text and its JSON. The input is
// [max_flows][interval in 0.1 s] then the earlier scrape, a form feed, the later one.
// Invariants: no crash or sanitizer report; a malformed scrape throws MetricsParseError, a scrape
// without syngate metrics the report's std::runtime_error, and nothing else throws (the JSON
// dump included: what a daemon sends must not take `syngate status --json` down).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_input.hpp"
#include "status.hpp"

namespace {

using namespace syngate;

std::vector<gw::MetricSample> parse(std::string_view text, bool& ok) {
  try {
    return gw::parse_prometheus_text(text);
  } catch (const gw::MetricsParseError& e) {
    fuzz::check(std::string_view(e.what()).find("metrics line ") == 0);
    ok = false;
    return {};
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint32_t max_flows = data[0];
  const double interval = data[1] / 10.0;
  const std::string_view text(reinterpret_cast<const char*>(data + 2), size - 2);
  const size_t split = text.find('\f');
  const std::string_view first = split == std::string_view::npos ? std::string_view() : text.substr(0, split);
  const std::string_view second = split == std::string_view::npos ? text : text.substr(split + 1);
  bool ok = true;
  gw::Scrape prev{parse(first, ok), 1000.0};
  gw::Scrape now{parse(second, ok), 1000.0 + interval};
  if (!ok) return 0;
  gw::StatusReport r;
  try {
    r = gw::build_status(prev, now, max_flows, 1.8e9, "http://127.0.0.1:9469/metrics");
  } catch (const std::runtime_error& e) {
    fuzz::check(std::string_view(e.what()).find("no syngate_") == 0);
    return 0;
  }
  const std::string shown = gw::render_status_text(r);
  fuzz::check(!shown.empty());
  const std::string json = gw::json_text(gw::status_to_json(r));
  fuzz::check(!json.empty());
  fuzz::check(!gw::json_text(gw::down_to_json("http://127.0.0.1:9469/metrics", std::string(text.substr(0, 64)))).empty());
  return 0;
}
