// The rule of interfaces.hpp: pure, over facts read elsewhere.
#include "interfaces.hpp"

#include <algorithm>
#include <map>

namespace syngate::gw {

namespace {

const LinkFact* find_link(const RoutingFacts& facts, int ifindex) {
  for (const LinkFact& l : facts.links) {
    if (l.ifindex == ifindex) return &l;
  }
  return nullptr;
}

constexpr const char* kNotEthernet =
    "not an Ethernet interface (the programs read Ethernet frames): its packets stay with NFQUEUE";

// Collects reasons per interface, refusing the ones no program belongs on.
class Chooser {
 public:
  Chooser(const RoutingFacts& facts, InterfacePlan& plan) : facts_(facts), plan_(plan) {}

  // False when the interface cannot take a program (noted once per interface and cause).
  bool add(int ifindex, const std::string& reason, bool clients) {
    const LinkFact* link = find_link(facts_, ifindex);
    if (!link) return note("ifindex " + std::to_string(ifindex) + " (" + reason + "): no such interface");
    if (link->loopback) return note(link->name + " (" + reason + "): loopback carries only this host's own traffic");
    if (!link->up) return note(link->name + " (" + reason + "): down");
    if (!link->ethernet) return note(link->name + " (" + reason + "): " + kNotEthernet);
    Chosen& c = chosen_[ifindex];
    if (std::find(c.reasons.begin(), c.reasons.end(), reason) == c.reasons.end()) c.reasons.push_back(reason);
    c.clients = c.clients || clients;
    return true;
  }
  bool any() const { return !chosen_.empty(); }
  void finish() {
    for (auto& [ifindex, c] : chosen_) {
      plan_.interfaces.push_back({ifindex, find_link(facts_, ifindex)->name, c.reasons, c.clients});
    }
  }
  bool note(const std::string& text) {
    if (std::find(plan_.notes.begin(), plan_.notes.end(), text) == plan_.notes.end()) plan_.notes.push_back(text);
    return false;
  }

 private:
  const RoutingFacts& facts_;
  InterfacePlan& plan_;
  struct Chosen {
    std::vector<std::string> reasons;
    bool clients = false;
  };
  std::map<int, Chosen> chosen_;
};

}  // namespace

InterfacePlan plan_interfaces(const RoutingFacts& facts, Mode mode) {
  InterfacePlan plan;
  Chooser chooser(facts, plan);
  for (const DefaultRouteFact& d : facts.defaults) {
    std::string reason = std::string("default route (") + (d.v6 ? "IPv6" : "IPv4");
    reason += d.via.empty() ? ")" : " via " + d.via + ")";
    chooser.add(d.ifindex, reason + ": clients arrive here", true);
  }
  // A default route through a down interface still says where clients come from: it is down.
  const bool have_default = !facts.defaults.empty() || facts.had_default;
  if (facts.defaults.empty() && facts.had_default) {
    chooser.note("the default route is gone (its uplink down?): the client side gets the program back with it");
  }
  for (const ServiceRouteFact& s : facts.services) {
    const std::string addr = s.address.to_string();
    if (s.local) {
      if (mode == Mode::Router) {
        chooser.note("service " + addr + " is an address of this host, but gateway.mode = \"router\" queues "
                     "only forwarded traffic");
      }
      continue;  // the server is this host: its route is lo, its clients come by the client side
    }
    if (s.ifindexes.empty()) {
      chooser.note("no route to service " + addr + ": no interface toward it");
      continue;
    }
    if (mode == Mode::Host) {
      chooser.note("service " + addr + " is on another host, but gateway.mode = \"host\" queues only this "
                   "host's own traffic");
    }
    for (int ifindex : s.ifindexes) chooser.add(ifindex, "route to service " + addr + ": toward the servers", false);
  }
  if (!have_default) {
    // No uplink to tell the client side by: a client can come through any route there is, except
    // an interface that leads to the servers, unless no other has a route (one-armed).
    std::vector<int> toward_servers;
    for (const ServiceRouteFact& s : facts.services) {
      if (!s.local) toward_servers.insert(toward_servers.end(), s.ifindexes.begin(), s.ifindexes.end());
    }
    auto leads_to_servers = [&](int ifindex) {
      return std::find(toward_servers.begin(), toward_servers.end(), ifindex) != toward_servers.end();
    };
    const bool one_armed = std::all_of(facts.routed.begin(), facts.routed.end(),
                                       [&](const RoutedFact& r) { return leads_to_servers(r.ifindex); });
    bool taken = false;
    for (const RoutedFact& r : facts.routed) {
      const bool clients = one_armed || !leads_to_servers(r.ifindex);
      taken |= chooser.add(r.ifindex,
                           clients ? "no default route; clients may arrive by route " + r.prefix
                                   : "no default route; route " + r.prefix + " leads to the servers",
                           clients);
    }
    chooser.note(std::string("no default route in this namespace: ") +
                 (taken ? "every up interface with a route is taken" : "and no other route either") +
                 "; add the default route or list [xdp] interfaces");
  }
  chooser.finish();
  return plan;
}

InterfacePlan plan_listed(const RoutingFacts& facts, const std::vector<std::string>& listed) {
  InterfacePlan plan;
  for (const std::string& name : listed) {
    auto it = std::find_if(facts.links.begin(), facts.links.end(), [&](const LinkFact& l) { return l.name == name; });
    if (it == facts.links.end()) {
      plan.notes.push_back(name + " (listed in [xdp] interfaces): no such interface (yet)");
    } else if (!it->ethernet) {
      plan.notes.push_back(name + " (listed in [xdp] interfaces): " + kNotEthernet);
    } else {
      plan.interfaces.push_back({it->ifindex, name, {"listed in [xdp] interfaces"}, true});
    }
  }
  return plan;
}

InterfacePlan client_side(const InterfacePlan& plan) {
  InterfacePlan out;
  out.notes = plan.notes;
  for (const InterfaceChoice& c : plan.interfaces) {
    if (c.clients) {
      out.interfaces.push_back(c);
    } else {
      out.notes.push_back(c.name + " leads only toward the servers: no fast path there (it would pass every reply, "
                          "and in generic XDP copy each first)");
    }
  }
  return out;
}

std::vector<std::string> describe(const InterfacePlan& plan) {
  std::vector<std::string> out;
  for (const InterfaceChoice& c : plan.interfaces) {
    std::string line = c.name + ":";
    for (size_t i = 0; i < c.reasons.size(); ++i) line += (i ? "; " : " ") + c.reasons[i];
    out.push_back(line);
  }
  return out;
}

FibUse fib_use(Mode mode, bool tc_forward, const std::vector<std::string>& fwmark_rules, std::string* why) {
  if (mode == Mode::Host) return {};
  if (fwmark_rules.empty()) return {.judge = true, .forward = tc_forward};
  if (why) {
    *why = "policy routing selects by firewall mark (" + fwmark_rules.front() +
           (fwmark_rules.size() > 1 ? ", and " + std::to_string(fwmark_rules.size() - 1) + " more" : "") +
           "), which netfilter sets after tc ingress: the kernel forwards the translated segments and "
           "judges them (TTL, MTU, unreachable) while such a rule exists";
  }
  return {};
}

}  // namespace syngate::gw
