#include "profile.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <set>
#include <toml++/toml.h>

#include "value.hpp"

namespace tcptune {

namespace {

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string stem_of(const std::string& path) {
  auto slash = path.rfind('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.size() > 5 && base.ends_with(".toml")) base.resize(base.size() - 5);
  return base;
}

std::string where(const std::string& path, const toml::node& n) {
  return path + ":" + std::to_string(n.source().begin.line);
}

struct RawValue {
  std::string text;
  std::string where;
  int line = 0;
  std::string error;
};

// TOML -> sysctl text. Booleans become 0/1, arrays of integers become "a b c".
RawValue to_text(const toml::node& v, const std::string& path) {
  RawValue r;
  r.where = where(path, v);
  r.line = static_cast<int>(v.source().begin.line);
  if (auto i = v.as_integer()) {
    r.text = std::to_string(i->get());
  } else if (auto b = v.as_boolean()) {
    r.text = b->get() ? "1" : "0";
  } else if (auto s = v.as_string()) {
    r.text = s->get();
    if (r.text.find_first_of("\n\r#;") != std::string::npos) r.error = "value contains a newline or comment character";
  } else if (auto a = v.as_array()) {
    for (auto&& e : *a) {
      auto ei = e.as_integer();
      if (!ei) {
        r.error = "arrays may hold integers only";
        return r;
      }
      if (!r.text.empty()) r.text += ' ';
      r.text += std::to_string(ei->get());
    }
    if (a->empty()) r.error = "empty array";
  } else {
    r.error = "unsupported value type (use an integer, boolean, string or array of integers)";
  }
  return r;
}

void flatten(const toml::table& t, const std::string& prefix, const std::string& path, std::map<std::string, RawValue>& out,
             std::vector<std::string>& errors) {
  for (auto&& [k, v] : t) {
    std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (auto sub = v.as_table()) {
      flatten(*sub, key, path, out, errors);
      continue;
    }
    auto value = to_text(v, path);
    auto [it, fresh] = out.try_emplace(normalize_key(key), value);
    if (!fresh) {
      // TOML sees "a.b" = 1 and a.b = 2 as different keys; sysctl does not. Report the later line.
      const RawValue& first = it->second.line <= value.line ? it->second : value;
      const RawValue& second = it->second.line <= value.line ? value : it->second;
      errors.push_back(second.where + ": " + it->first + " is set twice (first at line " + std::to_string(first.line) + ")");
    }
  }
}

// Dotted TOML key of a key/value or table header line, segments unquoted ("a".b . 'c' -> a.b.c).
// Empty when the line does not start with a key.
std::string scan_key(std::string_view s, size_t& i) {
  std::string key;
  while (true) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    if (i >= s.size()) return {};
    std::string seg;
    if (s[i] == '"' || s[i] == '\'') {
      char q = s[i++];
      while (i < s.size() && s[i] != q) {
        if (q == '"' && s[i] == '\\' && i + 1 < s.size()) ++i;
        seg += s[i++];
      }
      if (i >= s.size()) return {};
      ++i;
    } else {
      while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_' || s[i] == '-')) seg += s[i++];
      if (seg.empty()) return {};
    }
    key += (key.empty() ? "" : ".") + seg;
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    if (i < s.size() && s[i] == '.') {
      ++i;
      continue;
    }
    return key;
  }
}

// toml++ reports a plainly repeated key as a parse error with a garbled key name; find the repeat
// ourselves to name the key and both lines. Best effort: only used to explain a parse error.
std::optional<std::string> find_repeated_key(const std::string& text, const std::string& path) {
  std::map<std::string, size_t> seen;  // normalized full key -> line
  std::string table;
  auto lines_of = [&] {
    std::vector<std::string> v;
    size_t b = 0;
    while (b <= text.size()) {
      size_t e = text.find('\n', b);
      v.push_back(text.substr(b, e == std::string::npos ? std::string::npos : e - b));
      if (e == std::string::npos) break;
      b = e + 1;
    }
    return v;
  }();
  std::string in_multiline;  // the closing quotes of a multi-line string being skipped
  for (size_t n = 0; n < lines_of.size(); ++n) {
    std::string_view line = lines_of[n];
    if (!in_multiline.empty()) {
      if (line.find(in_multiline) != std::string_view::npos) in_multiline.clear();
      continue;
    }
    size_t i = 0;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i < line.size() && line[i] == '[') {
      bool array = i + 1 < line.size() && line[i + 1] == '[';
      i += array ? 2 : 1;
      table = array ? std::string() : scan_key(line, i);
      continue;
    }
    std::string key = scan_key(line, i);
    if (key.empty() || i >= line.size() || line[i] != '=') continue;
    std::string_view rest = line.substr(i + 1);
    for (const char* q : {"\"\"\"", "'''"}) {
      auto open = rest.find(q);
      if (open != std::string_view::npos && rest.find(q, open + 3) == std::string_view::npos) in_multiline = q;
    }
    std::string full = table.empty() ? key : table + "." + key;
    auto [it, fresh] = seen.emplace(full, n + 1);
    if (!fresh) {
      std::string shown = full.starts_with("sysctl.") ? normalize_key(full.substr(7)) : full;
      return path + ":" + std::to_string(n + 1) + ": " + shown + " is set twice (first at line " + std::to_string(it->second) + ")";
    }
  }
  return std::nullopt;
}

struct Layer {
  std::string name, description, path, extends;
  int extends_line = 0;
  std::vector<std::string> allow_unknown, unset;
  std::map<std::string, RawValue> values;
};

std::optional<Layer> parse_layer(const std::string& text, const std::string& path, std::vector<std::string>& errors) {
  toml::table doc;
  try {
    doc = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    if (auto repeated = find_repeated_key(text, path)) {
      errors.push_back(*repeated);
      return std::nullopt;
    }
    errors.push_back(path + ":" + std::to_string(e.source().begin.line) + ": TOML syntax: " + std::string(e.description()));
    return std::nullopt;
  }
  Layer l;
  l.path = path;
  l.name = stem_of(path);
  size_t before = errors.size();
  for (auto&& [k, v] : doc) {
    if (k != "profile" && k != "sysctl")
      errors.push_back(where(path, v) + ": unknown table '" + std::string(k.str()) + "' (expected [profile] and [sysctl])");
  }
  auto string_list = [&](const toml::node& n, const char* what, std::vector<std::string>& out) {
    auto a = n.as_array();
    if (!a) {
      errors.push_back(where(path, n) + ": " + what + " must be an array of key names");
      return;
    }
    for (auto&& e : *a) {
      if (auto s = e.as_string())
        out.push_back(normalize_key(s->get()));
      else
        errors.push_back(where(path, e) + ": " + what + " entries must be strings");
    }
  };
  if (auto meta = doc["profile"].as_table()) {
    for (auto&& [k, v] : *meta) {
      std::string key(k.str());
      if (key == "name" || key == "description" || key == "extends") {
        auto s = v.as_string();
        if (!s) {
          errors.push_back(where(path, v) + ": profile." + key + " must be a string");
          continue;
        }
        (key == "name" ? l.name : key == "description" ? l.description : l.extends) = s->get();
        if (key == "extends") l.extends_line = static_cast<int>(v.source().begin.line);
      } else if (key == "allow-unknown") {
        string_list(v, "allow-unknown", l.allow_unknown);
      } else if (key == "unset") {
        string_list(v, "unset", l.unset);
      } else {
        errors.push_back(where(path, v) + ": unknown profile field '" + key +
                         "' (name, description, extends, allow-unknown, unset)");
      }
    }
  } else if (doc.contains("profile")) {
    errors.push_back(path + ": 'profile' must be a table");
  }
  if (auto sys = doc["sysctl"].as_table()) {
    flatten(*sys, "", path, l.values, errors);
  } else if (doc.contains("sysctl")) {
    errors.push_back(path + ": 'sysctl' must be a table");
  }
  if (errors.size() != before) return std::nullopt;
  return l;
}

}  // namespace

const Setting* Profile::find(std::string_view key) const {
  for (const auto& s : settings)
    if (s.key == key) return &s;
  return nullptr;
}

std::optional<std::string> resolve_profile(std::string_view arg, const std::string& relative_dir, const ProfileSource& src) {
  std::string a(arg);
  if (a.empty()) return std::nullopt;
  bool is_path = a.find('/') != std::string::npos || a.ends_with(".toml");
  if (is_path) {
    std::string p = (a[0] == '/' || relative_dir.empty()) ? a : relative_dir + "/" + a;
    p = std::filesystem::path(p).lexically_normal().string();  // "sub/../base.toml" names one file
    if (src.read(p)) return p;
    return std::nullopt;
  }
  std::vector<std::string> dirs;
  if (!relative_dir.empty()) dirs.push_back(relative_dir);
  dirs.insert(dirs.end(), src.search_dirs.begin(), src.search_dirs.end());
  for (const auto& d : dirs) {
    std::string p = d + "/" + a + ".toml";
    if (src.read(p)) return p;
  }
  return std::nullopt;
}

std::optional<ProfileHeader> read_header(const std::string& text, const std::string& path, std::string* error) {
  std::vector<std::string> errors;
  auto l = parse_layer(text, path, errors);
  if (!l) {
    if (error) *error = errors.empty() ? "invalid profile" : errors.front();
    return std::nullopt;
  }
  return ProfileHeader{l->name, l->description, l->extends};
}

LoadResult load_profile(std::string_view arg, const ProfileSource& src) {
  LoadResult res;
  std::vector<Layer> layers;  // child first while loading
  std::set<std::string> seen;
  std::string want(arg);
  std::string rel;
  std::string referrer;
  while (true) {
    auto path = resolve_profile(want, rel, src);
    if (!path) {
      res.errors.push_back((referrer.empty() ? std::string("profile '") : referrer + ": extends '") + want +
                           "' not found (a path to a .toml file, or the name of a profile in: " +
                           [&] {
                             std::string s;
                             for (const auto& d : src.search_dirs) s += (s.empty() ? "" : ", ") + d;
                             return s.empty() ? std::string("no profile directory") : s;
                           }() +
                           ")");
      return res;
    }
    auto chain_to = [&](const std::string& last) {
      std::string c;
      for (const auto& l : layers) c += l.name + " -> ";
      return c + last;
    };
    auto extends_where = [&] { return layers.back().path + ":" + std::to_string(layers.back().extends_line); };
    if (!seen.insert(*path).second) {
      std::string again;
      for (const auto& l : layers)
        if (l.path == *path) again = l.name;
      res.errors.push_back(extends_where() + ": extends cycle: " + chain_to(again));
      return res;
    }
    if (layers.size() >= 16) {
      res.errors.push_back(extends_where() + ": extends chain deeper than 16: " + chain_to(want));
      return res;
    }
    auto text = src.read(*path);
    auto layer = parse_layer(*text, *path, res.errors);
    if (!layer) return res;
    layers.push_back(std::move(*layer));
    if (layers.back().extends.empty()) break;
    want = layers.back().extends;
    rel = dir_of(*path);
    referrer = *path;
  }
  std::reverse(layers.begin(), layers.end());

  Profile p;
  std::set<std::string> allowed;
  for (const auto& l : layers)
    allowed.insert(l.allow_unknown.begin(), l.allow_unknown.end());
  std::map<std::string, Setting> merged;
  for (const auto& l : layers) {
    p.chain.push_back(l.name);
    for (const auto& k : l.unset) {
      if (!merged.erase(k)) res.errors.push_back(l.path + ": unset '" + k + "' is not set by any profile it extends");
    }
    for (const auto& [key, raw] : l.values) {
      if (!raw.error.empty()) {
        res.errors.push_back(raw.where + ": " + key + ": " + raw.error);
        continue;
      }
      Setting s;
      s.key = key;
      s.origin = l.name;
      s.def = find_key(key);
      if (s.def) {
        auto c = check_value(*s.def, raw.text);
        if (!c.ok) {
          res.errors.push_back(raw.where + ": " + key + ": " + c.error);
          continue;
        }
        s.value = c.value;
      } else if (allowed.count(key)) {
        s.value = canonical(raw.text);
        if (s.value.empty()) {
          res.errors.push_back(raw.where + ": " + key + ": empty value");
          continue;
        }
      } else {
        res.errors.push_back(raw.where + ": " + key +
                             ": unknown key (not in tcptune's registry; list it in [profile] allow-unknown to set it anyway)");
        continue;
      }
      merged[key] = std::move(s);
    }
  }
  if (!res.errors.empty()) return res;
  p.name = layers.back().name;
  p.description = layers.back().description;
  p.path = layers.back().path;
  for (auto& [k, s] : merged) p.settings.push_back(std::move(s));
  res.profile = std::move(p);
  return res;
}

}  // namespace tcptune
