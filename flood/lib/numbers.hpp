// Strict parsing of the command line's numbers. Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace syngate::flood {

// A non-negative decimal integer that fits in 64 bits: digits only, so "-5", "+5", "1e3",
// " 5" and "5x" are refused (strtoull would wrap "-5" to 2^64 - 5).
std::optional<uint64_t> parse_count(std::string_view text) noexcept;
// A finite decimal number (no NaN, no infinity, no hex floats).
std::optional<double> parse_finite(std::string_view text) noexcept;

}  // namespace syngate::flood
