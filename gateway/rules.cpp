#include "rules.hpp"

#include <algorithm>
#include <cstdio>

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

std::vector<std::string> jump(const std::string& verb, const std::string& hook, const std::string& chain) {
  std::vector<std::string> a = {"-w", "-t", "", verb, hook};
  if (verb == "-I") a.push_back("1");
  a.insert(a.end(), {"-p", "tcp", "-j", chain});
  return a;
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

std::vector<std::vector<std::string>> chain_rules(const GatewayConfig& c, bool v6, const std::string& table) {
  std::vector<std::vector<std::string>> rules;
  if (table == "mangle") {
    rules.push_back({"-m", "mark", "--mark", hex(c.mark), "-j", "RETURN"});
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
  for (const ServiceEntry& s : c.draining) {
    if (s.v6 != v6) continue;
    if (std::find(c.services.begin(), c.services.end(), s) != c.services.end()) continue;
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
  return rules;
}

std::string restore_script(const GatewayConfig& c, bool v6, const std::string& table) {
  std::string out = "*" + table + "\n:" + c.chain + " - [0:0]\n";
  for (const auto& rule : chain_rules(c, v6, table)) {
    out += "-A " + c.chain;
    for (const auto& a : rule) out += " " + a;
    out += "\n";
  }
  out += "COMMIT\n";
  return out;
}

std::vector<RuleCommand> plan_up(const GatewayConfig& c) {
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
      r.restore_input = restore_script(c, v6, table);
      plan.push_back(r);
    }
    for (const auto& hook : kRawHooks) {
      auto a = jump("-I", hook, c.chain);
      a[2] = "raw";
      plan.push_back({RuleCommand::Kind::Ensure, v6, a, {}});
    }
    auto wanted = mangle_hooks(c.mode);
    for (const auto& hook : kAllMangleHooks) {
      bool want = std::find(wanted.begin(), wanted.end(), hook) != wanted.end();
      auto a = jump(want ? "-I" : "-D", hook, c.chain);
      a[2] = "mangle";
      plan.push_back({want ? RuleCommand::Kind::Ensure : RuleCommand::Kind::RemoveAll, v6, a, {}});
    }
  }
  return plan;
}

std::vector<RuleCommand> plan_down(const std::string& chain) {
  std::vector<RuleCommand> plan;
  for (bool v6 : {false, true}) {
    for (const auto& hook : kAllMangleHooks) {
      auto a = jump("-D", hook, chain);
      a[2] = "mangle";
      plan.push_back({RuleCommand::Kind::RemoveAll, v6, a, {}});
    }
    for (const auto& hook : kRawHooks) {
      auto a = jump("-D", hook, chain);
      a[2] = "raw";
      plan.push_back({RuleCommand::Kind::RemoveAll, v6, a, {}});
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

}  // namespace syngate::gw
