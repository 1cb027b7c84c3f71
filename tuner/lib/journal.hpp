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
};

std::string journal_to_json(const JournalEntry& e);
std::optional<JournalEntry> journal_from_json(const std::string& text, std::string* error);
// "000042.json" for id 42: sorts in apply order.
std::string journal_file_name(unsigned long id);
std::optional<unsigned long> journal_id_from_name(const std::string& name);

}  // namespace tcptune
