// The apply journal: one JSON document per apply, holding what is needed to undo it exactly.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace tcptune {

struct JournalValue {
  std::string key;
  std::string before;  // live value before apply (canonical)
  std::string after;
};

// A key a profile switch stopped persisting but left live, because its value from before tcptune
// is not known (no journal entry set it). verify reports it until a file or an apply takes it over.
struct JournalKept {
  std::string key;
  std::string value;  // live value left in place
};

struct JournalEntry {
  int version = 1;
  unsigned long id = 0;
  std::string time;       // ISO 8601 UTC, for people
  std::string state;      // "pending" while apply runs, "committed" once it succeeded
  std::string profile, profile_path, netns;
  std::string conf_path;
  bool conf_existed = false;
  unsigned conf_mode = 0644;
  std::string conf_before, conf_after;
  std::vector<JournalValue> values;  // only the keys apply changed, in write order
  std::vector<JournalKept> kept;     // keys the previous profile set, this one does not, left live
};

std::string journal_to_json(const JournalEntry& e);
std::optional<JournalEntry> journal_from_json(const std::string& text, std::string* error);
// Rollback, verify and profile switches look only at entries of one (netns, sysctl.conf) pair.
bool in_scope(const JournalEntry& e, const std::string& netns, const std::string& conf_path);

// `tcptune status`: per (netns, sysctl.conf), the latest active entry and the net effect of all of
// them: each key's value before the first entry that changed it and after the last one.
struct KeyChange {
  std::string key;
  std::optional<std::string> before;  // nullopt: kept live by a switch, value before tcptune unknown
  std::string now;
  std::string by;  // profile of the last entry that set it
};
struct ScopeStatus {
  std::string netns, conf_path;
  JournalEntry latest;
  size_t entries = 0;
  bool interrupted = false;  // an entry is still pending: an apply died before it finished
  std::vector<KeyChange> changed;  // keys whose value differs from before tcptune, sorted
};
std::vector<ScopeStatus> summarize(const std::vector<JournalEntry>& active_entries);

// "000042.json" for id 42: sorts in apply order.
std::string journal_file_name(unsigned long id);
std::optional<unsigned long> journal_id_from_name(const std::string& name);

}  // namespace tcptune
