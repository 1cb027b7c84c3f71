#include "journal.hpp"

#include <cstdio>
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
  return j.dump(2) + "\n";
}

std::optional<JournalEntry> journal_from_json(const std::string& text, std::string* error) {
  try {
    auto j = nlohmann::json::parse(text);
    JournalEntry e;
    e.version = j.at("version").get<int>();
    if (e.version != 1) {
      if (error) *error = "unsupported journal version " + std::to_string(e.version);
      return std::nullopt;
    }
    e.id = j.at("id").get<unsigned long>();
    e.time = j.value("time", "");
    e.state = j.at("state").get<std::string>();
    e.profile = j.at("profile").get<std::string>();
    e.profile_path = j.value("profile_path", "");
    e.netns = j.value("netns", "");
    e.conf_path = j.at("sysctl_conf").get<std::string>();
    e.conf_existed = j.at("conf_existed").get<bool>();
    e.conf_mode = j.at("conf_mode").get<unsigned>();
    e.conf_before = j.at("conf_before").get<std::string>();
    e.conf_after = j.at("conf_after").get<std::string>();
    for (const auto& v : j.at("values"))
      e.values.push_back({v.at("key").get<std::string>(), v.at("before").get<std::string>(), v.at("after").get<std::string>()});
    return e;
  } catch (const std::exception& ex) {
    if (error) *error = std::string("corrupt journal entry: ") + ex.what();
    return std::nullopt;
  }
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
