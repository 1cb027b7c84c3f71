// Log line formats: spdlog's text, or one JSON object per line for log shippers
// (gateway.log_format = "json").
#pragma once

#include <spdlog/formatter.h>

#include <memory>
#include <string>

namespace syngate::gw {

// {"time":"2026-12-01T01:02:03.456Z","level":"info","logger":"syngate","msg":"..."}: UTC
// timestamps with milliseconds, the message escaped as JSON (control characters as \uXXXX).
class JsonLogFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
};

// Installs the format on spdlog's default logger: "text" or "json".
void set_log_format(const std::string& format);

}  // namespace syngate::gw
