#include "journal.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <type_traits>
#include <nlohmann/json.hpp>

namespace tcptune {

std::string journal_to_json(const JournalEntry& e) {
  nlohmann::json j;
  j["version"] = e.version;
  j["id"] = e.id;
  j["time"] = e.time;
  j["state"] = e.state;
  j["profile"] = e.profile;
  j["profile_path"] = e.profile_path;
  j["netns"] = e.netns;
  j["sysctl_conf"] = e.conf_path;
  j["conf_existed"] = e.conf_existed;
  j["conf_mode"] = e.conf_mode;
  j["conf_before"] = e.conf_before;
  j["conf_after"] = e.conf_after;
  j["values"] = nlohmann::json::array();
  for (const auto& v : e.values) j["values"].push_back({{"key", v.key}, {"before", v.before}, {"after", v.after}});
  if (!e.kept.empty()) {
    j["kept"] = nlohmann::json::array();
    for (const auto& k : e.kept) j["kept"].push_back({{"key", k.key}, {"value", k.value}});
  }
  return j.dump(2) + "\n";
}

namespace {

// Field access that says which field is wrong, in words an operator can act on.
struct Reader {
  const nlohmann::json& j;
  std::string error;
  const nlohmann::json* field(const char* name, bool required = true) {
    auto it = j.find(name);
    if (it == j.end()) {
      if (required && error.empty()) error = std::string("field '") + name + "' is missing";
      return nullptr;
    }
    return &*it;
  }
  template <class T>
  void get(const char* name, T& out, bool required = true) {
    const auto* f = field(name, required);
    if (!f) return;
    bool ok = false;
    if constexpr (std::is_same_v<T, std::string>) ok = f->is_string();
    else if constexpr (std::is_same_v<T, bool>) ok = f->is_boolean();
    else ok = f->is_number_unsigned() || (f->is_number_integer() && f->template get<long long>() >= 0);
    if (!ok) {
      if (error.empty()) error = std::string("field '") + name + "' has the wrong type";
      return;
    }
    out = f->template get<T>();
  }
};

}  // namespace

std::optional<JournalEntry> journal_from_json(const std::string& text, std::string* error) {
  auto fail = [&](const std::string& why) -> std::optional<JournalEntry> {
    if (error) *error = "corrupt journal entry: " + why;
    return std::nullopt;
  };
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return fail(text.empty() ? "the file is empty" : "not valid JSON (truncated or edited by hand?)");
  if (!j.is_object()) return fail("not a JSON object");
  Reader r{j, {}};
  JournalEntry e;
  unsigned version = 0;
  r.get("version", version);
  if (r.error.empty() && version != 1) {
    if (error) *error = "unsupported journal version " + std::to_string(version);
    return std::nullopt;
  }
  r.get("id", e.id);
  r.get("time", e.time, false);
  r.get("state", e.state);
  r.get("profile", e.profile);
  r.get("profile_path", e.profile_path, false);
  r.get("netns", e.netns, false);
  r.get("sysctl_conf", e.conf_path);
  r.get("conf_existed", e.conf_existed);
  r.get("conf_mode", e.conf_mode);
  r.get("conf_before", e.conf_before);
  r.get("conf_after", e.conf_after);
  if (!r.error.empty()) return fail(r.error);
  if (e.state != "pending" && e.state != "committed") return fail("field 'state' is '" + e.state + "' (pending or committed)");
  const auto* values = r.field("values");
  if (!values || !values->is_array()) return fail(values ? "field 'values' is not an array" : r.error);
  for (const auto& v : *values) {
    if (!v.is_object()) return fail("an entry of 'values' is not an object");
    Reader vr{v, {}};
    JournalValue jv;
    vr.get("key", jv.key);
    vr.get("before", jv.before);
    vr.get("after", jv.after);
    if (!vr.error.empty()) return fail("values: " + vr.error);
    e.values.push_back(std::move(jv));
  }
  if (const auto* kept = r.field("kept", false)) {
    if (!kept->is_array()) return fail("field 'kept' is not an array");
    for (const auto& k : *kept) {
      if (!k.is_object()) return fail("an entry of 'kept' is not an object");
      Reader kr{k, {}};
      JournalKept jk;
      kr.get("key", jk.key);
      kr.get("value", jk.value);
      if (!kr.error.empty()) return fail("kept: " + kr.error);
      e.kept.push_back(std::move(jk));
    }
  }
  return e;
}

bool in_scope(const JournalEntry& e, const std::string& netns, const std::string& conf_path) {
  return e.netns == netns && e.conf_path == conf_path;
}

std::vector<ScopeStatus> summarize(const std::vector<JournalEntry>& entries) {
  std::map<std::pair<std::string, std::string>, ScopeStatus> by_scope;
  std::vector<const JournalEntry*> sorted;
  for (const auto& e : entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const JournalEntry* a, const JournalEntry* b) { return a->id < b->id; });
  for (const auto* e : sorted) {
    auto& s = by_scope[{e->netns, e->conf_path}];
    s.netns = e->netns;
    s.conf_path = e->conf_path;
    s.latest = *e;
    ++s.entries;
    if (e->state != "committed") s.interrupted = true;
    for (const auto& v : e->values) {
      auto it = std::find_if(s.changed.begin(), s.changed.end(), [&](const KeyChange& c) { return c.key == v.key; });
      if (it == s.changed.end())
        s.changed.push_back({v.key, v.before, v.after, e->profile});
      else {
        it->now = v.after;
        it->by = e->profile;
      }
    }
    for (const auto& k : e->kept) {
      auto it = std::find_if(s.changed.begin(), s.changed.end(), [&](const KeyChange& c) { return c.key == k.key; });
      if (it == s.changed.end()) s.changed.push_back({k.key, std::nullopt, k.value, e->profile});
    }
  }
  std::vector<ScopeStatus> out;
  for (auto& [scope, s] : by_scope) {
    std::erase_if(s.changed, [](const KeyChange& c) { return c.before && *c.before == c.now; });
    std::sort(s.changed.begin(), s.changed.end(), [](const KeyChange& a, const KeyChange& b) { return a.key < b.key; });
    out.push_back(std::move(s));
  }
  return out;
}

std::string journal_file_name(unsigned long id) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%06lu.json", id);
  return buf;
}

std::optional<unsigned long> journal_id_from_name(const std::string& name) {
  if (name.size() < 6 || !name.ends_with(".json")) return std::nullopt;
  std::string digits = name.substr(0, name.size() - 5);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoul(digits);
}

}  // namespace tcptune
