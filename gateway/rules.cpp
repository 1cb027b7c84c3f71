#include "rules.hpp"

#include <algorithm>
#include <cstdio>
#include <map>

#include "syngate/bpf/tc_abi.h"
#include "syngate/packet.hpp"

namespace syngate::gw {

namespace {

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

std::string host_prefix(const ServiceEntry& s) { return s.address + (s.v6 ? "/128" : "/32"); }

// Hooks of the mangle table that jump to our chain, by mode.
std::vector<std::string> mangle_hooks(Mode m) {
  switch (m) {
    case Mode::Router: return {"FORWARD"};
    case Mode::Host: return {"INPUT", "OUTPUT"};
    case Mode::Both: return {"FORWARD", "INPUT", "OUTPUT"};
  }
  return {};
}
const std::vector<std::string> kAllMangleHooks = {"FORWARD", "INPUT", "OUTPUT"};
const std::vector<std::string> kRawHooks = {"PREROUTING", "OUTPUT"};

std::vector<std::string> jump(const std::string& verb, const std::string& hook, const std::string& chain,
                              const std::string& protocol = "tcp") {
  std::vector<std::string> a = {"-w", "-t", "", verb, hook};
  if (verb == "-I") a.push_back("1");
  a.insert(a.end(), {"-p", protocol, "-j", chain});
  return a;
}

// ICMP errors about protected flows cross the same chains. Not from mangle OUTPUT: an error this
// box sends itself quotes a packet before or after its own translation (a forwarded packet too big
// for the next hop: before), and only the errors of routers elsewhere are known to quote the
// translated side.
const char* icmp_protocol(bool v6) { return v6 ? "ipv6-icmp" : "icmp"; }
bool icmp_from_hook(const std::string& hook) { return hook != "OUTPUT"; }

// The u32 test that an ICMP error quotes a TCP segment to (or from) a service, written as
// iptables prints it back. IPv4: the error types that matter to TCP (3 unreachable, 11 time
// exceeded, 12 parameter problem) at the ICMP header after the outer IP header (IHL), the
// quoted header's protocol (TCP), fragment offset (0: it has ports), destination (or source)
// address, and the quoted TCP header (after the quoted IHL) with the service's port as
// destination (or source). IPv6: no extension headers on either header (routers send none):
// ICMPv6 types 1-4 at byte 40, outer next header 58, quoted next header 6, the quoted address
// in four words, the ports at byte 88.
std::vector<std::string> icmp_quote_match(const ServiceEntry& s, bool quote_from_service) {
  const std::optional<Address> a = Address::parse(s.address);
  const std::string port = hex(s.port);
  std::string u32;
  if (!s.v6) {
    const char* ihl = "0x0>>0x16&0x3c@";
    u32 = std::string(ihl) + "0x0>>0x18=0x3,0xb,0xc&&" + ihl + "0x10>>0x10&0xff=0x6&&" + ihl + "0xc&0x1fff=0x0&&" +
          ihl + (quote_from_service ? "0x14=" : "0x18=") + hex(a ? a->v4_host_order() : 0) + "&&" + ihl +
          "0x8>>0x16&0x3c@0x8" + (quote_from_service ? ">>0x10=" : "&0xffff=") + port;
    return {"-p", icmp_protocol(false), "!", "-f", "-m", "u32", "--u32", u32};
  }
  u32 = "0x28>>0x18=0x1:0x4&&0x4>>0x8&0xff=0x3a&&0x34>>0x8&0xff=0x6";
  const uint32_t first_word = quote_from_service ? 0x38 : 0x48;
  for (uint32_t w = 0; w < 4; ++w) {
    uint32_t v = 0;
    for (uint32_t b = 0; b < 4; ++b) v = v << 8 | (a ? a->bytes[4 * w + b] : 0);
    u32 += "&&" + hex(first_word + 4 * w) + "=" + hex(v);
  }
  u32 += std::string("&&0x58") + (quote_from_service ? ">>0x10=" : "&0xffff=") + port;
  return {"-p", icmp_protocol(true), "-m", "u32", "--u32", u32};
}

}  // namespace

std::vector<std::string> nfqueue_target(uint16_t first, uint16_t count, bool bypass) {
  std::vector<std::string> t = {"-j", "NFQUEUE"};
  if (count <= 1) {
    t.insert(t.end(), {"--queue-num", std::to_string(first)});
  } else {
    t.insert(t.end(), {"--queue-balance", std::to_string(first) + ":" + std::to_string(first + count - 1)});
  }
  if (bypass) t.push_back("--queue-bypass");
  return t;
}

std::vector<std::vector<std::string>> chain_rules(const GatewayConfig& c, bool v6, const std::string& table,
                                                  const std::string& output_match) {
  std::vector<std::vector<std::string>> rules;
  if (table == "mangle") {
    rules.push_back({"-m", "mark", "--mark", hex(c.mark), "-j", "RETURN"});
    // Translated already (tc ingress, the engine's verdict, syngate's own packets): matched by
    // the one bit, so an operator's MARK/CONNMARK in the other bits cannot queue it again.
    if (c.kernel_path_on()) rules.push_back({"-m", "mark", "--mark", hex(SG_TC_MARK) + "/" + hex(SG_TC_MARK), "-j", "RETURN"});
    // Host mode's server replies that tc egress will translate (tc_match.hpp): egress runs after
    // OUTPUT and cannot send a packet back to the queue. Not what leaves by lo: no tc program
    // there (the engine translates a local client's flow). The match answers only for the
    // server's direction, so in INPUT and FORWARD it lets through nothing tc ingress left.
    if (c.kernel_path_on() && c.mode != Mode::Router && !output_match.empty()) {
      rules.push_back({"!", "-o", "lo", "-p", "tcp", "-m", "bpf", "--object-pinned", output_match, "-j", "RETURN"});
    }
    // A non-first fragment carries no ports, so no port rule below matches it: without this it
    // would cross the gateway unseen. Every TCP fragment to a protected address goes to the SYN
    // queue, where the SYN decision drops and counts it (a lone fragment is harmless to the
    // server, but what the gateway cannot read it must not pass). TCP sets DF; real traffic to
    // these addresses does not fragment.
    std::vector<std::string> addresses;
    for (const ServiceEntry& s : c.services) {
      if (s.v6 == v6 && std::find(addresses.begin(), addresses.end(), s.address) == addresses.end()) {
        addresses.push_back(s.address);
      }
    }
    auto st = nfqueue_target(c.syn_queue, c.syn_queues, c.fail_open);
    for (const std::string& a : addresses) {
      std::vector<std::string> r = {"-d", a + (v6 ? "/128" : "/32"), "-p", "tcp"};
      if (v6) {
        r.insert(r.end(), {"-m", "frag"});
      } else {
        r.push_back("-f");
      }
      r.insert(r.end(), st.begin(), st.end());
      rules.push_back(r);
    }
  }
  for (const ServiceEntry& s : c.services) {
    if (s.v6 != v6) continue;
    std::string port = std::to_string(s.port);
    std::vector<std::string> to = {"-d", host_prefix(s), "-p", "tcp", "-m", "tcp", "--dport", port};
    std::vector<std::string> from = {"-s", host_prefix(s), "-p", "tcp", "-m", "tcp", "--sport", port};
    if (table == "raw") {
      for (auto r : {to, from}) {
        r.insert(r.end(), {"-j", "CT", "--notrack"});
        rules.push_back(r);
      }
    } else {
      auto syn = to;
      syn.insert(syn.end(), {"--tcp-flags", "FIN,SYN,RST,ACK", "SYN"});
      auto t = nfqueue_target(c.syn_queue, c.syn_queues, c.fail_open);
      syn.insert(syn.end(), t.begin(), t.end());
      rules.push_back(syn);
      auto ft = nfqueue_target(c.flow_queue, c.flow_queues, c.fail_open);
      for (auto r : {to, from}) {
        r.insert(r.end(), ft.begin(), ft.end());
        rules.push_back(r);
      }
    }
  }
  // Draining services: their connections finish through the proxy; new SYNs go straight on.
  std::vector<ServiceEntry> flowing;  // services whose flows are proxied: configured and draining
  for (const ServiceEntry& s : c.services) {
    if (s.v6 == v6) flowing.push_back(s);
  }
  for (const ServiceEntry& s : c.draining) {
    if (s.v6 != v6) continue;
    if (std::find(c.services.begin(), c.services.end(), s) != c.services.end()) continue;
    flowing.push_back(s);
    std::string port = std::to_string(s.port);
    std::vector<std::string> to = {"-d", host_prefix(s), "-p", "tcp", "-m", "tcp", "--dport", port};
    std::vector<std::string> from = {"-s", host_prefix(s), "-p", "tcp", "-m", "tcp", "--sport", port};
    auto ft = nfqueue_target(c.flow_queue, c.flow_queues, c.fail_open);
    for (auto r : {to, from}) {
      if (table == "raw") {
        r.insert(r.end(), {"-j", "CT", "--notrack"});
      } else {
        r.insert(r.end(), ft.begin(), ft.end());
      }
      rules.push_back(r);
    }
  }
  // ICMP errors quoting a proxied flow's segment: untracked like the flow (conntrack would find
  // no entry for the quote and call them INVALID), and queued to the first flow queue, whose
  // worker hands an error it has no flow for to the next one (the queue balancing hashes the
  // router's address, not the flow's).
  const auto first_flow_queue = nfqueue_target(c.flow_queue, 1, c.fail_open);
  for (const ServiceEntry& s : flowing) {
    for (bool from_service : {false, true}) {
      auto r = icmp_quote_match(s, from_service);
      if (table == "raw") {
        r.insert(r.end(), {"-j", "CT", "--notrack"});
      } else {
        r.insert(r.end(), first_flow_queue.begin(), first_flow_queue.end());
      }
      rules.push_back(r);
    }
  }
  return rules;
}

std::string restore_script(const GatewayConfig& c, bool v6, const std::string& table,
                           const std::string& output_match) {
  std::string out = "*" + table + "\n:" + c.chain + " - [0:0]\n";
  for (const auto& rule : chain_rules(c, v6, table, output_match)) {
    out += "-A " + c.chain;
    for (const auto& a : rule) out += " " + a;
    out += "\n";
  }
  out += "COMMIT\n";
  return out;
}

std::vector<RuleCommand> plan_up(const GatewayConfig& c, const std::string& output_match) {
  std::vector<RuleCommand> plan;
  for (bool v6 : {false, true}) {
    bool used = v6 ? c.has_v6() : c.has_v4();
    if (!used) {
      // A family without services keeps no rules: remove what an earlier config installed.
      for (auto& cmd : plan_down(c.chain)) {
        if (cmd.v6 == v6) plan.push_back(cmd);
      }
      continue;
    }
    // Chains first (atomically filled), then the jumps into them.
    for (const char* table : {"raw", "mangle"}) {
      RuleCommand r;
      r.kind = RuleCommand::Kind::Restore;
      r.v6 = v6;
      r.args = {"--noflush", "-w"};
      r.restore_input = restore_script(c, v6, table, output_match);
      plan.push_back(r);
    }
    for (const std::string protocol : {"tcp", icmp_protocol(v6)}) {
      for (const auto& hook : kRawHooks) {
        auto a = jump("-I", hook, c.chain, protocol);
        a[2] = "raw";
        plan.push_back({RuleCommand::Kind::Ensure, v6, a, {}});
      }
      auto wanted = mangle_hooks(c.mode);
      for (const auto& hook : kAllMangleHooks) {
        const bool want = std::find(wanted.begin(), wanted.end(), hook) != wanted.end() &&
                          (protocol == "tcp" || icmp_from_hook(hook));
        auto a = jump(want ? "-I" : "-D", hook, c.chain, protocol);
        a[2] = "mangle";
        plan.push_back({want ? RuleCommand::Kind::Ensure : RuleCommand::Kind::RemoveAll, v6, a, {}});
      }
    }
  }
  return plan;
}

std::vector<RuleCommand> plan_down(const std::string& chain) {
  std::vector<RuleCommand> plan;
  for (bool v6 : {false, true}) {
    for (const std::string protocol : {"tcp", icmp_protocol(v6)}) {
      for (const auto& hook : kAllMangleHooks) {
        auto a = jump("-D", hook, chain, protocol);
        a[2] = "mangle";
        plan.push_back({RuleCommand::Kind::RemoveAll, v6, a, {}});
      }
      for (const auto& hook : kRawHooks) {
        auto a = jump("-D", hook, chain, protocol);
        a[2] = "raw";
        plan.push_back({RuleCommand::Kind::RemoveAll, v6, a, {}});
      }
    }
    for (const char* table : {"mangle", "raw"}) {
      plan.push_back({RuleCommand::Kind::Optional, v6, {"-w", "-t", table, "-F", chain}, {}});
      plan.push_back({RuleCommand::Kind::Optional, v6, {"-w", "-t", table, "-X", chain}, {}});
    }
  }
  return plan;
}

std::string render(const std::string& binary, const std::vector<std::string>& args) {
  std::string out = binary;
  for (const auto& a : args) {
    bool quote = a.empty() || a.find_first_of(" \t'\"$") != std::string::npos;
    out += " ";
    out += quote ? "'" + a + "'" : a;
  }
  return out;
}

namespace {
struct ChainSeen {
  bool declared = false, filled = false, jumped = false, skips_translated = false;
};

// What `show_rules` output says of the chain, per section ("BINARY -t TABLE").
std::map<std::string, ChainSeen> read_shown(const std::string& shown, const std::string& chain) {
  std::map<std::string, ChainSeen> sections;
  const std::string skip = "-m mark --mark " + hex(SG_TC_MARK) + "/" + hex(SG_TC_MARK) + " -j RETURN";
  std::string section;
  size_t pos = 0;
  while (pos < shown.size()) {
    size_t nl = shown.find('\n', pos);
    if (nl == std::string::npos) nl = shown.size();
    const std::string line = shown.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.rfind("# ", 0) == 0) {
      section = line.substr(2);
      continue;
    }
    ChainSeen& s = sections[section];
    if (line == "-N " + chain) {
      s.declared = true;
    } else if (line.rfind("-A " + chain + " ", 0) == 0) {
      s.filled = true;
      if (line == "-A " + chain + " " + skip) s.skips_translated = true;
    } else if (line.rfind("-A ", 0) == 0 && (line + " ").find(" -j " + chain + " ") != std::string::npos) {
      s.jumped = true;
    }
  }
  return sections;
}
}  // namespace

std::vector<std::string> missing_rules(const std::string& shown, const std::string& chain,
                                       const std::string& v4_binary, bool need_v4,
                                       const std::string& v6_binary, bool need_v6, bool kernel_path) {
  std::map<std::string, ChainSeen> sections = read_shown(shown, chain);
  std::vector<std::string> missing;
  for (const auto& [binary, needed] : {std::pair{v4_binary, need_v4}, std::pair{v6_binary, need_v6}}) {
    if (!needed) continue;
    for (const char* table : {"raw", "mangle"}) {
      const std::string where = binary + " -t " + table;
      const ChainSeen s = sections.count(where) ? sections[where] : ChainSeen{};
      if (!s.declared) missing.push_back(where + ": no chain " + chain);
      else if (!s.filled) missing.push_back(where + ": chain " + chain + " is empty");
      if (!s.jumped) missing.push_back(where + ": no jump to " + chain);
      if (kernel_path && std::string(table) == "mangle" && s.filled && !s.skips_translated) {
        missing.push_back(where + ": chain " + chain + " queues packets tc translated (made with kernel_path \"off\")");
      }
    }
  }
  return missing;
}

std::vector<std::string> rules_queue_translated(const std::string& shown, const std::string& chain,
                                                const std::string& v4_binary, bool need_v4,
                                                const std::string& v6_binary, bool need_v6) {
  std::vector<std::string> out;
  for (const std::string& m : missing_rules(shown, chain, v4_binary, need_v4, v6_binary, need_v6, true)) {
    if (m.find("queues packets tc translated") != std::string::npos) out.push_back(m);
  }
  return out;
}

}  // namespace syngate::gw
