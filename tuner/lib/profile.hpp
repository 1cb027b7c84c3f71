// Profiles: TOML files with [profile] metadata and a [sysctl] table, `extends` inheritance.
// Loading is pure apart from the injected file reader, so tests feed profiles from strings.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "registry.hpp"

namespace tcptune {

struct Setting {
  std::string key;
  std::string value;   // canonical text
  std::string origin;  // profile (name) that set it last
  const KeyDef* def = nullptr;  // null for keys allowed via allow-unknown
};

struct Profile {
  std::string name;
  std::string description;
  std::string path;
  std::vector<std::string> chain;  // base first, this profile last
  std::vector<Setting> settings;   // sorted by key
  const Setting* find(std::string_view key) const;
};

using FileReader = std::function<std::optional<std::string>(const std::string& path)>;

struct ProfileSource {
  FileReader read;
  std::vector<std::string> search_dirs;  // where shipped profiles live, first match wins
};

struct LoadResult {
  std::optional<Profile> profile;
  std::vector<std::string> errors;  // every problem found, not just the first
};

// PROFILE is a path when it contains '/' or ends in ".toml", else a name looked up as NAME.toml in
// `relative_dir` (for extends) and then the search dirs.
std::optional<std::string> resolve_profile(std::string_view arg, const std::string& relative_dir, const ProfileSource& src);
LoadResult load_profile(std::string_view arg, const ProfileSource& src);
// Parses one TOML document (no extends resolution); exposed for `tcptune profiles`.
struct ProfileHeader {
  std::string name, description, extends;
};
std::optional<ProfileHeader> read_header(const std::string& text, const std::string& path, std::string* error);

}  // namespace tcptune
