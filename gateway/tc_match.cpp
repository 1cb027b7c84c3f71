// See tc_match.hpp. Built with or without the BPF programs: without them nothing is pinned and
// the rules keep every reply on the queue.
#include "tc_match.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <spdlog/spdlog.h>

#include "bpf_util.hpp"
#include "tc_program.hpp"

#ifdef SYNGATE_HAVE_TC
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "syngate_tc_match.skel.h"
#endif

namespace syngate::tc {

uint32_t kernel_path_max_flows(const gw::GatewayConfig& c) noexcept {
  const uint64_t all_flows = uint64_t{c.engine.max_flows} * c.flow_queues;
  return static_cast<uint32_t>(std::min<uint64_t>(all_flows, 1u << 25));
}

bool output_match_wanted(const gw::GatewayConfig& c) noexcept {
  return c.kernel_path_on() && c.mode != gw::Mode::Router;
}

namespace {

std::string match_path(const gw::GatewayConfig& c) { return pin_dir(c.instance, c.bpf_dir) + "/" + kMatchPinName; }

}  // namespace

#ifdef SYNGATE_HAVE_TC

namespace {

// The map id a program fd or a map fd names (0 when it cannot tell).
uint32_t map_id_of(int map_fd) {
  bpf_map_info info{};
  uint32_t len = sizeof info;
  return bpf_obj_get_info_by_fd(map_fd, &info, &len) == 0 ? info.id : 0;
}

// The ids of the maps a program uses.
std::vector<uint32_t> prog_map_ids(int prog_fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0) return {};
  std::vector<uint32_t> ids(info.nr_map_ids);
  if (ids.empty()) return ids;
  bpf_prog_info again{};
  again.nr_map_ids = static_cast<uint32_t>(ids.size());
  again.map_ids = reinterpret_cast<uint64_t>(ids.data());
  len = sizeof again;
  if (bpf_obj_get_info_by_fd(prog_fd, &again, &len) != 0) return {};
  ids.resize(std::min<size_t>(ids.size(), again.nr_map_ids));
  return ids;
}

// The unit's root step makes <bpf_dir>/syngate the service user's (deploy/syngate.service): what
// `rules up` (root) pins below it goes to that user too, or the daemon could not open the flow
// map it must share with the match. Where root owns that directory, nothing changes hands.
void hand_to_owner(const std::string& bpf_dir, const std::vector<std::string>& paths) {
  struct stat top{};
  if (stat((bpf_dir + "/syngate").c_str(), &top) != 0 || top.st_uid == geteuid()) return;
  for (const std::string& p : paths) {
    if (chown(p.c_str(), top.st_uid, top.st_gid) != 0 && errno != ENOENT) {
      spdlog::warn("tc: cannot hand {} to uid {} (the owner of {}/syngate): {}", p, top.st_uid, bpf_dir,
                   std::strerror(errno));
    }
  }
}

}  // namespace

MatchPin pin_output_match(const gw::GatewayConfig& c) noexcept {
  MatchPin out;
  try {
    // Under the shipped unit even this root step sees the unit's view: bpf_dir an empty
    // directory, with syngate's own directory of the bpffs bound into it. The pins go there.
    const std::string dir = pin_dir(c.instance, c.bpf_dir);
    if (!on_bpffs(dir)) {
      out.why = "gateway.bpf_dir " + c.bpf_dir + " is not a bpffs (mount one there, or name one: `ip netns exec` " +
                "mounts a fresh /sys without it)";
      return out;
    }
    if (!make_pin_dirs(dir)) {
      out.why = "cannot create " + dir + ": " + std::strerror(errno);
      return out;
    }
    bpf::LibbpfLog capture;
    syngate_tc_match* skel = syngate_tc_match__open();
    if (!skel) {
      out.why = "cannot open the match program: " + bpf::errno_text(-errno);
      return out;
    }
    const std::string map_pin = dir + "/sg_tc_flows";
    bpf_map__set_max_entries(skel->maps.sg_tc_flows, flow_map_entries(kernel_path_max_flows(c)));
    bpf_map__set_pin_path(skel->maps.sg_tc_flows, map_pin.c_str());
    if (const int err = syngate_tc_match__load(skel); err != 0) {
      // A pinned map of another size or layout is a running daemon's (or a dead one's, which the
      // next start replaces): never replaced from here.
      out.why = bpf::load_failure("the OUTPUT match (on " + map_pin + ")", err, capture.text());
      syngate_tc_match__destroy(skel);
      return out;
    }
    const std::string path = match_path(c);
    unlink(path.c_str());  // an earlier one: the rules that named it keep it until they go
    if (const int err = bpf_program__pin(skel->progs.sg_tc_match, path.c_str()); err != 0) {
      out.why = "cannot pin the OUTPUT match at " + path + ": " + bpf::errno_text(err);
    } else {
      out.path = path;
    }
    hand_to_owner(c.bpf_dir, {dir, map_pin, path});
    syngate_tc_match__destroy(skel);  // pins stay
  } catch (const std::exception& e) {
    out.why = e.what();
  }
  return out;
}

void check_output_match(const gw::GatewayConfig& c, const Program& program) noexcept {
  if (!output_match_wanted(c)) return;
  // Both mode with no service on this host: no egress filter, and no entry the match would take.
  const bool egress = program.egress_entries();
  const std::string path = match_path(c);
  const int prog_fd = bpf_obj_get(path.c_str());
  const uint32_t mine = map_id_of(program.flows_map_fd());
  if (prog_fd < 0) {
    if (!egress) return;  // nothing of this host's to let by anyway
    spdlog::warn("tc: host mode: no OUTPUT match at {} ({}): the server's replies cross NFQUEUE and the engine "
                 "translates them; `syngate rules up` pins it (gateway.bpf_dir must be a bpffs both can reach)",
                 path, std::strerror(errno));
    return;
  }
  const std::vector<uint32_t> ids = prog_map_ids(prog_fd);
  close(prog_fd);
  if (mine != 0 && std::find(ids.begin(), ids.end(), mine) != ids.end()) {
    if (egress) {
      spdlog::info("tc: host mode: the OUTPUT match {} reads this flow map: the server's replies skip NFQUEUE and "
                   "are translated at tc egress",
                   path);
    } else {
      spdlog::info("tc: host mode: the OUTPUT match {} reads this flow map; with no service on this host it lets "
                   "nothing past the queue",
                   path);
    }
  } else if (egress) {
    spdlog::warn("tc: host mode: the OUTPUT match {} reads another flow map than this run's (not pinned where "
                 "`rules up` pinned it?): the server's replies cross NFQUEUE; run `syngate rules up` again",
                 path);
  }
}

#else  // !SYNGATE_HAVE_TC

MatchPin pin_output_match(const gw::GatewayConfig&) noexcept {
  return {"", "this build has no tc programs"};
}
void check_output_match(const gw::GatewayConfig&, const Program&) noexcept {}

#endif

}  // namespace syngate::tc
