// Command-line numbers and names, checked strictly. A wrapped -1, a NaN or an endless interval must
// be refused before anything runs, not discovered by the operator later.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tcptune {

// A count: decimal digits only (no sign, no exponent, no spaces), no overflow.
std::optional<std::uint64_t> parse_count(std::string_view s);
// A duration in seconds: finite, above zero, at most kMaxIntervalSeconds (a run stays bounded).
inline constexpr double kMaxIntervalSeconds = 3600;
std::optional<double> parse_seconds(std::string_view s);
// Why NAME cannot name a network namespace made by `ip netns add` ("" when it can). An empty name
// must never fall back to the host's namespace.
std::string netns_name_error(std::string_view name);

}  // namespace tcptune
