#include "netinfo.hpp"

#include <bit>
#include <charconv>
#include <vector>

namespace syngate::flood {

namespace {

std::vector<std::string_view> split_ws(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

template <typename F>
void for_each_line(std::string_view text, F&& f) {
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    f(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

// /proc/net/route prints each address as the 32-bit word in memory (network byte order) read as
// a host integer: on a little-endian machine 10.10.3.0 appears as 00030A0A.
std::optional<uint32_t> route_hex(std::string_view s) {
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  if constexpr (std::endian::native == std::endian::little) v = __builtin_bswap32(v);
  return v;
}

}  // namespace

std::optional<RouteChoice> pick_route(std::string_view table, uint32_t target) {
  std::optional<RouteChoice> best;
  int best_prefix = -1;
  uint64_t best_metric = 0;
  bool header = true;
  for_each_line(table, [&](std::string_view line) {
    if (header) {  // first line names the columns
      header = false;
      return;
    }
    const auto f = split_ws(line);
    if (f.size() < 8) return;
    const auto dest = route_hex(f[1]);
    const auto gw = route_hex(f[2]);
    const auto mask = route_hex(f[7]);
    uint32_t flags = 0;
    uint64_t metric = 0;
    std::from_chars(f[3].data(), f[3].data() + f[3].size(), flags, 16);
    std::from_chars(f[6].data(), f[6].data() + f[6].size(), metric);
    if (!dest || !gw || !mask) return;
    if ((flags & 0x1) == 0) return;  // RTF_UP
    if ((target & *mask) != *dest) return;
    const int prefix = std::popcount(*mask);
    if (prefix > best_prefix || (prefix == best_prefix && metric < best_metric)) {
      best_prefix = prefix;
      best_metric = metric;
      const bool via_gateway = (flags & 0x2) != 0 && *gw != 0;  // RTF_GATEWAY
      best = RouteChoice{std::string(f[0]), via_gateway ? *gw : target};
    }
  });
  return best;
}

std::optional<Mac> find_neighbour(std::string_view table, uint32_t ip, std::string_view iface) {
  std::optional<Mac> found;
  bool header = true;
  for_each_line(table, [&](std::string_view line) {
    if (header) {
      header = false;
      return;
    }
    const auto f = split_ws(line);
    if (f.size() < 6 || found) return;
    const auto addr = parse_ipv4(f[0]);
    if (!addr || *addr != ip || f[5] != iface) return;
    uint32_t flags = 0;
    auto fl = f[2];
    if (fl.starts_with("0x")) fl.remove_prefix(2);
    std::from_chars(fl.data(), fl.data() + fl.size(), flags, 16);
    if ((flags & 0x2) == 0) return;  // ATF_COM: the entry is resolved
    found = parse_mac(f[3]);
  });
  return found;
}

namespace {
std::optional<Ip6> ipv6_route_hex(std::string_view s) {
  if (s.size() != 32) return std::nullopt;
  Ip6 out{};
  for (size_t i = 0; i < 16; ++i) {
    uint32_t byte = 0;
    auto [p, ec] = std::from_chars(s.data() + 2 * i, s.data() + 2 * i + 2, byte, 16);
    if (ec != std::errc{} || p != s.data() + 2 * i + 2) return std::nullopt;
    out[i] = static_cast<uint8_t>(byte);
  }
  return out;
}
std::optional<uint32_t> plain_hex(std::string_view s) {
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}
}  // namespace

std::optional<RouteChoice6> pick_route6(std::string_view table, const Ip6& target) {
  constexpr uint32_t kRtfReject = 0x0200;
  std::optional<RouteChoice6> best;
  int best_prefix = -1;
  uint32_t best_metric = 0;
  for_each_line(table, [&](std::string_view line) {
    // dest plen src src_plen next_hop metric refcnt use flags iface (hex, no header line)
    const auto f = split_ws(line);
    if (f.size() < 10) return;
    const auto dest = ipv6_route_hex(f[0]);
    const auto plen = plain_hex(f[1]);
    const auto hop = ipv6_route_hex(f[4]);
    const auto metric = plain_hex(f[5]);
    const auto flags = plain_hex(f[8]);
    if (!dest || !plen || *plen > 128 || !hop || !metric || !flags) return;
    if (*flags & kRtfReject) return;
    if (!Cidr6{*dest, static_cast<uint8_t>(*plen)}.contains(target)) return;
    const int prefix = static_cast<int>(*plen);
    if (prefix < best_prefix || (prefix == best_prefix && *metric >= best_metric)) return;
    best_prefix = prefix;
    best_metric = *metric;
    RouteChoice6 r{std::string(f[9]), *hop};
    if (r.next_hop == Ip6{}) r.next_hop = target;
    best = r;
  });
  return best;
}

}  // namespace syngate::flood
