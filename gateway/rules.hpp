// iptables rules for the configured services, generated as plain data (pure, unit-tested) and
// applied by a small executor (iptables_exec.cpp) that runs the iptables binaries.
//
// Layout (one dedicated chain, default SYNGATE, in two tables, so `rules down` removes exactly ours):
//   raw    SYNGATE  <- PREROUTING, OUTPUT     CT --notrack for every protected packet: conntrack
//                                             would otherwise judge the rewritten sequence numbers
//                                             (and our raw-socket packets) INVALID.
//   mangle SYNGATE  <- FORWARD (router mode), INPUT + OUTPUT (host mode)
//                   1. packets carrying our mark (our own raw-socket output) -> RETURN
//                      with the kernel path on: the SG_TC_MARK bit (translated already) -> RETURN
//                      and in host/both mode, when `rules up` pinned it (tc_match.hpp): a server
//                      reply tc egress will translate (xt_bpf on the flow map), not via lo -> RETURN
//                   2. client SYN to a service          -> NFQUEUE over the SYN queues
//                   3. anything else to/from a service  -> NFQUEUE over the flow queues
// Queueing from mangle (not filter) means the operator's filter rules still see, and may drop,
// what syngate accepts: NF_ACCEPT after a queue continues with the next table, not the next rule.
// --queue-balance hashes the address pair symmetrically (nfqueue_hash), so both directions of a
// connection reach the same flow worker; --queue-cpu-fanout would break that and is never used.
#pragma once

#include <string>
#include <vector>

#include "config.hpp"

namespace syngate::gw {

struct RuleCommand {
  enum class Kind : uint8_t {
    Run,        // must succeed
    Optional,   // may fail (e.g. flushing a chain that does not exist)
    Ensure,     // args hold an -I/-A rule: skip when the same rule exists (checked with -C)
    RemoveAll,  // args hold a -D rule: repeat until it fails (removes duplicates too)
    Restore,    // feed `restore_input` to <binary>-restore --noflush (atomic per table)
  };
  Kind kind = Kind::Run;
  bool v6 = false;                // ip6tables instead of iptables
  std::vector<std::string> args;  // arguments after the binary name
  std::string restore_input;      // for Restore
  friend bool operator==(const RuleCommand&, const RuleCommand&) = default;
};

// The text that `iptables-restore --noflush` gets for one table of one family: declares our chain
// (creating it, or flushing it when it exists) and fills it, so an update never leaves a window
// with a half-filled chain.
// `output_match`: the pinned OUTPUT match (tc_match.hpp) to name, or "" for none.
std::string restore_script(const GatewayConfig& config, bool v6, const std::string& table,
                           const std::string& output_match = "");

// The chain body alone (the "-A CHAIN ..." lines, without the -A prefix split out): for tests and
// `rules show` comparisons.
std::vector<std::vector<std::string>> chain_rules(const GatewayConfig& config, bool v6,
                                                  const std::string& table, const std::string& output_match = "");

// Installs or updates the rules: idempotent, and running it with another mode removes the jumps
// the new mode does not use.
std::vector<RuleCommand> plan_up(const GatewayConfig& config, const std::string& output_match = "");
// Removes every jump to the chain and the chain itself from both tables, for both families.
// Depends only on the chain name so that a config whose services changed still cleans up.
std::vector<RuleCommand> plan_down(const std::string& chain);

// "--queue-num N" or "--queue-balance first:last", plus "--queue-bypass" when fail_open.
std::vector<std::string> nfqueue_target(uint16_t first, uint16_t count, bool bypass);

// What `show_rules` output (sections "# BINARY -t TABLE") lacks for a running gateway: for each
// family in use (its binary named) and each of raw and mangle, the chain, a rule in it and a jump
// into it. One line per missing piece, e.g. "iptables -t mangle: no jump to SYNGATE"; empty when
// everything is there. Checks presence, not every rule's text: enough to see the rules deleted or
// flushed (a firewall reload, iptables -F) under a running syngate. With `kernel_path`, a mangle
// chain that has rules but not the one letting translated packets (SG_TC_MARK) past the queue is
// named too: rules made while kernel_path was "off" (before an upgrade that turned it on, or
// restored from a saved ruleset) would queue what tc translated, and the engine would translate
// it a second time.
std::vector<std::string> missing_rules(const std::string& shown, const std::string& chain,
                                       const std::string& v4_binary, bool need_v4,
                                       const std::string& v6_binary, bool need_v6, bool kernel_path = false);
// Only that last kind: the sections whose chain is in place and would queue translated packets.
// Empty when none (also when no rule is in place yet: `rules up` with this config adds it).
std::vector<std::string> rules_queue_translated(const std::string& shown, const std::string& chain,
                                                const std::string& v4_binary, bool need_v4,
                                                const std::string& v6_binary, bool need_v6);

// One command line as a shell would show it (for logs and error messages).
std::string render(const std::string& binary, const std::vector<std::string>& args);

}  // namespace syngate::gw
