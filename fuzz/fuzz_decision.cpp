// The SYN decision and the source policy against an independent oracle. The input builds a small
// policy (up to 6 allow/deny prefixes, a budget) and then a sequence of packets, each either raw
// bytes or a SYN whose fields and option bytes come from the input.
// Invariants: no crash or sanitizer report; a parse failure is a Drop with a reason; an Answer is
// only ever given to a well-formed, option-free-IP, pure SYN to a protected service whose source
// the policy admits (checked by brute force over the prefixes, not the PrefixSet); no /24 gets more
// SYN-ACK answers in one second than its budget.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "fuzz_input.hpp"
#include "syngate/packet.hpp"
#include "syngate/syn_decision.hpp"
#include "syngate/engine.hpp"

namespace {

using namespace syngate;

using fuzz::Input;
using fuzz::check;

// Sources and prefixes come from a small space so that they often overlap.
Address small_v4(uint8_t b, uint8_t c) {
  return Address::from_v4(0x0a000000u | static_cast<uint32_t>(b & 3) << 16 | static_cast<uint32_t>(c & 7) << 8 |
                          static_cast<uint32_t>(c >> 3));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  const std::vector<Service> services = {{*Address::parse("10.10.3.2"), 80}, {*Address::parse("fd00::2"), 443}};
  auto policy = std::make_shared<SourcePolicy>();
  struct Entry {
    Prefix p;
    bool deny;
  };
  std::vector<Entry> entries;
  const int n_entries = in.u8() % 7;
  for (int i = 0; i < n_entries; ++i) {
    const uint8_t b = in.u8(), c = in.u8(), len = in.u8() % 33;
    const bool deny = in.u8() & 1;
    Prefix p;
    p.v4 = true;
    p.length = static_cast<uint8_t>(96 + len);
    p.address = mask_address(small_v4(b, c), p.length);
    bool dup = false;
    for (const Entry& e : entries) dup |= e.p == p;
    if (dup) continue;
    entries.push_back({p, deny});
    policy->add(p, deny);
  }
  policy->synack_per_prefix_per_s = in.u8() % 4;  // 0 = unlimited
  HashKey key{};
  for (auto& k : key) k = in.u8();
  SynGuardConfig gc{policy, key, 1, 64};
  gc.proven = std::make_shared<ProvenSources>(64, key);  // small tables: a fresh guard per input stays cheap
  SynGuard guard(gc);

  std::map<std::pair<uint32_t, uint32_t>, uint32_t> answers;  // (/24, second) -> answers
  uint64_t now = 0;
  while (in.n > 0) {
    const uint8_t op = in.u8();
    now += uint64_t{in.u8()} * 10000000ull;  // up to 2.55 s per step
    std::vector<uint8_t> buf;
    if (op & 1) {
      const size_t len = in.u8();
      for (size_t i = 0; i < len && in.n; ++i) buf.push_back(in.u8());
    } else {
      const Address src = small_v4(in.u8(), in.u8());
      const bool to_service = (op & 2) == 0;
      SegmentSpec s{.tuple = {src, to_service ? services[0].address : *Address::parse("10.10.3.3"),
                              in.u16(), static_cast<uint16_t>(to_service ? 80 : in.u16())},
                    .seq = in.u32(), .flags = in.u8(), .window = in.u16()};
      buf.resize(kMaxHeadersLen + 8);
      buf.resize(build_tcp_packet(buf, s));
      check(!buf.empty());
      // Overwrite the option area and data offset with input bytes: malformed options, offsets.
      const uint8_t opt_words = in.u8() % 11;
      buf.insert(buf.begin() + 40, opt_words * 4, 0);
      for (size_t i = 0; i < opt_words * 4u; ++i) buf[40 + i] = in.u8();
      buf[32] = static_cast<uint8_t>((5 + opt_words) << 4);
      if (op & 4) buf[32] = in.u8();
      const uint16_t total = static_cast<uint16_t>(buf.size());
      buf[2] = static_cast<uint8_t>(total >> 8);
      buf[3] = static_cast<uint8_t>(total);
      if (op & 8) buf[6] = in.u8();  // fragment bits
    }
    std::vector<uint8_t> copy = buf;
    const SynVerdict v = guard.decide(buf, services, now);
    check(buf == copy);  // the decision never writes
    const ParseResult independent = parse_tcp_packet(copy);
    check(static_cast<bool>(independent) == static_cast<bool>(v.parsed));
    if (!v.parsed) {
      if (v.action == SynAction::Icmp) {  // ICMP is the flow path's; never a SYN to answer
        check(independent.error == ParseError::NotTcp && v.icmp.kind != IcmpKind::NotIcmp);
        continue;
      }
      check(v.action == SynAction::Drop && is_syn_decision_reason(v.reason));
      continue;
    }
    if (v.action != SynAction::Answer) continue;
    const TcpPacket& p = v.parsed.packet;
    check((p.flags() & (tcp_flag::SYN | tcp_flag::ACK | tcp_flag::RST | tcp_flag::FIN)) == tcp_flag::SYN);
    check(!v.parsed.has_ip_options);
    check(is_protected(services, p.dst(), p.dport()));
    // Brute-force longest prefix.
    int best = -1;
    bool denied = false;
    for (const Entry& e : entries) {
      if (e.p.contains(p.src()) && e.p.length > best) {
        best = e.p.length;
        denied = e.deny;
      }
    }
    const bool any_allow = std::any_of(entries.begin(), entries.end(), [](const Entry& e) { return !e.deny; });
    check(!denied);
    check(best >= 0 || !any_allow);
    if (policy->synack_per_prefix_per_s) {
      const uint32_t slash24 = p.src().v4_host_order() >> 8;
      const uint32_t second = static_cast<uint32_t>(now / 1000000000ull);
      check(++answers[{slash24, second}] <= policy->synack_per_prefix_per_s);
    }
  }
  return 0;
}
