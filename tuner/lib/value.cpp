#include "value.hpp"

namespace tcptune {

namespace {
bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
}  // namespace

std::vector<std::string> split_ws(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_ws(s[i])) ++i;
    size_t j = i;
    while (j < s.size() && !is_ws(s[j])) ++j;
    if (j > i) out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

std::string canonical(std::string_view s) {
  std::string out;
  for (const auto& t : split_ws(s)) {
    if (!out.empty()) out += ' ';
    out += t;
  }
  return out;
}

bool same_value(std::string_view a, std::string_view b) { return canonical(a) == canonical(b); }

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_ws(s[b])) ++b;
  while (e > b && is_ws(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

std::string key_to_path(std::string_view key) {
  std::string p(key);
  for (auto& c : p)
    if (c == '.') c = '/';
  return p;
}

// sysctl(8): if the first separator is '/', slashes separate components and dots are literal
// (interface names like eth0.100); we only keep the dotted form, so such keys are not supported.
std::string normalize_key(std::string_view key) {
  std::string k = trim(key);
  auto slash = k.find('/');
  auto dot = k.find('.');
  if (slash != std::string::npos && (dot == std::string::npos || slash < dot)) {
    for (auto& c : k)
      if (c == '/') c = '.';
  }
  return k;
}

}  // namespace tcptune
