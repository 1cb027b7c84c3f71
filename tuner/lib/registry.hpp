// The registry of sysctl keys tcptune knows: type, meaningful range, namespace scope, one-line doc,
// and keys that were removed or no longer do anything. Pure data and pure checks.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tcptune {

// Measured on Linux 6.18 by listing /proc/sys/net in a fresh netns against the root netns:
//  - PerNetns: present and writable in every netns; writing it in a netns leaves the host alone.
//  - Global: absent from a child netns (tcp_mem, tcp_max_orphans, netdev_max_backlog...): only the
//    root netns can set it and it applies to the whole host.
//  - HostOnly: present in a child netns but read-only there (0444), showing the host's value
//    (rmem_max/wmem_max/rmem_default/wmem_default, nf_conntrack_max): host-wide as well.
enum class Scope { PerNetns, Global, HostOnly };
enum class Status { Active, Removed, Obsolete };
enum class Kind { Integer, Vector, Text };
// Cross-field checks for multi-value keys.
enum class Check { None, Ascending, PortRange };

struct Field {
  std::int64_t min;
  std::int64_t max;
  const char* name = nullptr;  // "low port", "min"...: named in errors of multi-value keys
};

struct KeyDef {
  std::string name;  // may contain one '*' component (net.ipv4.conf.*.rp_filter)
  Kind kind = Kind::Integer;
  std::vector<Field> fields;  // one per value; empty for Text
  Scope scope = Scope::PerNetns;
  std::string doc;
  Status status = Status::Active;
  std::string reason;  // why a Removed/Obsolete key is refused
  Check check = Check::None;
  std::string floor_reason;  // why values below the minimum are refused, when the kernel accepts them
};

const std::vector<KeyDef>& registry();
// Exact name first, then patterns with '*' standing for one dotted component.
const KeyDef* find_key(std::string_view key);
std::string_view scope_name(Scope s);
std::string_view kind_name(Kind k);

struct Checked {
  bool ok = false;
  std::string value;  // canonical text when ok
  std::string error;  // human-readable reason when not ok
};
// Validates text against the key's type and meaningful range; returns the canonical value.
Checked check_value(const KeyDef& def, std::string_view text);
// Strict decimal parse (optional sign); no trailing junk, no overflow.
std::optional<std::int64_t> parse_int(std::string_view s);

}  // namespace tcptune
