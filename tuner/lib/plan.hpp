// What apply would change and how far the system drifted from a profile: pure comparisons of
// profile, live values (read by the shell) and configuration file texts.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "journal.hpp"
#include "profile.hpp"
#include "sysctl_conf.hpp"

namespace tcptune {

struct LiveValue {
  bool present = false;  // the /proc/sys file exists and was readable
  std::string value;     // canonical
  std::string error;     // why it could not be read
};
using LiveMap = std::map<std::string, LiveValue>;

struct Change {
  std::string key;
  std::optional<std::string> before;  // nullopt: absent in this kernel
  std::string after;
  bool changes = false;
};

struct ApplyPlan {
  std::vector<Change> changes;  // every profile key, in profile order
  std::vector<std::string> problems;  // keys that cannot be applied (absent in this kernel)
  std::string conf_before, conf_after;
  std::string error;  // the conf file cannot be edited safely (broken managed block)
  size_t live_changes() const;
  bool conf_changes() const { return conf_before != conf_after; }
  bool nothing_to_do() const { return live_changes() == 0 && !conf_changes(); }
};

std::vector<KV> profile_kvs(const Profile& p);

// Keys the managed block persists now (before an apply replaces it).
std::vector<std::string> block_keys(const std::string& conf_text);

// A key the managed block sets now and the profile being applied does not: a profile switch. Like
// TuneD, the switch puts such a key back to its value from before tcptune set it (known from the
// journal); when that value is unknown the live value is kept, said so, and recorded for verify.
struct Dropped {
  std::string key;
  std::string block_value;                // what the old block persisted
  std::optional<std::string> live;        // live now (nullopt: absent)
  std::optional<std::string> restore_to;  // write this back
  bool kept = false;                      // left live, no longer persisted, earlier value unknown
  std::string note;
};
// history: the active journal entries of this (netns, sysctl.conf), oldest first.
std::vector<Dropped> dropped_keys(const std::string& conf_text, const Profile& p, const std::vector<JournalEntry>& history,
                                  const LiveMap& live);
// Keys tcptune's journal says it set that the profile does not (read their live values for verify).
std::vector<std::string> journal_keys(const std::vector<JournalEntry>& history);
ApplyPlan make_plan(const Profile& p, const LiveMap& live, const std::string& conf_text);

struct DriftRow {
  std::string key, want;
  std::optional<std::string> live, persisted;  // persisted: value in the managed block
  std::optional<Source> boot;                  // what wins at boot, and where
  bool live_ok = false, persisted_ok = false, boot_ok = false;
  bool stale = false;  // not in the profile: a live value tcptune set that no file restores at boot
  std::string note;
  bool ok() const { return !stale && live_ok && persisted_ok && boot_ok; }
};

struct DriftReport {
  std::vector<DriftRow> rows;
  std::vector<std::string> warnings;
  bool drift = false;
};

// order: boot files in systemd-sysctl order (boot_order()), the managed conf among them.
// history: active journal entries of this (netns, sysctl.conf), oldest first; keys they set that the
// profile does not, still live at tcptune's value and restored by no file at boot, are drift too.
DriftReport compute_drift(const Profile& p, const LiveMap& live, const std::string& conf_path, const std::string& conf_text,
                          const std::vector<BootFile>& order, bool conf_linked, const std::vector<JournalEntry>& history = {});

// Unified diff (3 lines of context) between two texts, "" when equal.
std::string unified_diff(const std::string& a, const std::string& b, const std::string& a_name, const std::string& b_name);

}  // namespace tcptune
