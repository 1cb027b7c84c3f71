// Loader for the kernel-captured packets in tests/core/fixtures (see capture_fixtures.sh):
// <name>.hex holds the IP packet, <name>.expect the fields tcpdump printed for it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace syngate::testing {

struct Fixture {
  std::string name;
  std::vector<uint8_t> bytes;
  std::map<std::string, std::string> expect;

  bool has(const std::string& key) const { return expect.count(key) != 0; }
  const std::string& at(const std::string& key) const {
    auto it = expect.find(key);
    if (it == expect.end()) throw std::runtime_error(name + ": no key " + key);
    return it->second;
  }
  unsigned long long num(const std::string& key) const { return std::stoull(at(key), nullptr, 0); }
};

inline std::vector<uint8_t> decode_hex(const std::string& text) {
  std::vector<uint8_t> out;
  int hi = -1;
  for (char c : text) {
    int v;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
    else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    else throw std::runtime_error(std::string("bad hex character ") + c);
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<uint8_t>(hi << 4 | v));
      hi = -1;
    }
  }
  if (hi >= 0) throw std::runtime_error("odd number of hex digits");
  return out;
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<Fixture> load_fixtures() {
  namespace fs = std::filesystem;
  std::vector<Fixture> out;
  for (const auto& entry : fs::directory_iterator(SYNGATE_FIXTURE_DIR)) {
    if (entry.path().extension() != ".hex") continue;
    Fixture f;
    f.name = entry.path().stem().string();
    f.bytes = decode_hex(slurp(entry.path()));
    fs::path expect = entry.path();
    expect.replace_extension(".expect");
    std::istringstream lines(slurp(expect));
    for (std::string line; std::getline(lines, line);) {
      if (line.empty() || line[0] == '#') continue;
      const auto eq = line.find('=');
      if (eq == std::string::npos) throw std::runtime_error(f.name + ": bad line " + line);
      f.expect[line.substr(0, eq)] = line.substr(eq + 1);
    }
    out.push_back(std::move(f));
  }
  std::sort(out.begin(), out.end(), [](const Fixture& a, const Fixture& b) { return a.name < b.name; });
  return out;
}

// The fixtures, loaded once per test binary.
inline const std::vector<Fixture>& fixtures() {
  static const std::vector<Fixture> all = load_fixtures();
  return all;
}

}  // namespace syngate::testing
