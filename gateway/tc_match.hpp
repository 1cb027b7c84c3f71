// Host mode's OUTPUT match for the kernel path (issue 23). In host and both modes the server's
// replies cross iptables OUTPUT, where syngate's NFQUEUE rule would queue them, before tc egress,
// which cannot hand a packet back to the queue. So `rules up` pins a socket-filter program
// (bpf/syngate_tc_match.bpf.c: the tc programs' own "can rewrite" test, lib/tc_rewritable.h, on
// their pinned flow map) next to that map, and adds `-m bpf --object-pinned PIN -j RETURN` to the
// mangle chain before the queue rules (rules.cpp). xt_bpf resolves the path when the rule is added
// and then holds the program, and the program holds the map it was loaded with: the daemon must
// use that same map, which it does by reusing the pin (tc_program.cpp); at start it checks, and
// says so when it cannot (check_output_match).
//
// Safe by construction: where the match cannot be loaded or pinned, `rules up` leaves the rule out
// and says why, and every reply is queued and translated by the engine as with the kernel path off.
// An empty or stale map matches less, never more: a reply the match does not let through is
// queued, translated by the engine and marked, and tc egress leaves it alone. It takes only
// entries a run with an egress filter wrote (SG_TC_OPT_EGRESS): both mode with no service on the
// host attaches none (KernelPath::start), and its entries must not let a reply past the queue.
#pragma once

#include <cstdint>
#include <string>

#include "config.hpp"

namespace syngate::tc {

// The pinned program's file name, in pin_dir() beside the flow map.
inline constexpr const char* kMatchPinName = "sg_tc_match";

// How many flows the kernel path's map is sized for, from the configuration (the daemon's flow
// workers' capacity): `rules up` creates the pinned map that the daemon then reuses.
uint32_t kernel_path_max_flows(const gw::GatewayConfig& config) noexcept;

// True when the configuration wants the OUTPUT match: kernel path on, host or both mode.
bool output_match_wanted(const gw::GatewayConfig& config) noexcept;

struct MatchPin {
  std::string path;  // the pinned program, for `--object-pinned`; empty when it could not be pinned
  std::string why;   // then: the reason, for the operator
};

// For `rules up` (root): finds or creates the pin directory under gateway.bpf_dir (which must be
// a bpffs), reuses the pinned flow map or creates it at the daemon's size, loads the match on it
// and pins it (replacing an earlier pin). Never throws.
MatchPin pin_output_match(const gw::GatewayConfig& config) noexcept;

class Program;
// At the daemon's start, host and both modes: logs whether the pinned match looks at this
// program's flow map (else the replies stay queued: safe, but not in the kernel) and how to fix it.
void check_output_match(const gw::GatewayConfig& config, const Program& program) noexcept;

}  // namespace syngate::tc
