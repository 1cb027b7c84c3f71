#include "sysctl_conf.hpp"

#include <algorithm>
#include <map>

#include "value.hpp"

namespace tcptune {

std::vector<std::string> split_lines(std::string_view text, bool* final_newline) {
  std::vector<std::string> lines;
  size_t i = 0;
  while (i < text.size()) {
    size_t nl = text.find('\n', i);
    if (nl == std::string_view::npos) {
      lines.emplace_back(text.substr(i));
      break;
    }
    lines.emplace_back(text.substr(i, nl - i));
    i = nl + 1;
  }
  if (final_newline) *final_newline = !text.empty() && text.back() == '\n';
  return lines;
}

namespace {

std::string join_lines(const std::vector<std::string>& lines, bool final_newline) {
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    out += lines[i];
    if (i + 1 < lines.size() || final_newline) out += '\n';
  }
  return out;
}

std::string block_profile(const std::string& line) {
  auto p = line.find("profile=");
  if (p == std::string::npos) return {};
  p += 8;
  auto e = line.find_first_of(" \t\r)", p);
  return line.substr(p, e == std::string::npos ? std::string::npos : e - p);
}

std::optional<KV> parse_assignment(const std::string& raw) {
  std::string line = trim(raw);
  if (line.empty() || line[0] == '#' || line[0] == ';') return std::nullopt;
  auto eq = line.find('=');
  if (eq == std::string::npos) return std::nullopt;
  std::string key = trim(line.substr(0, eq));
  // systemd-sysctl: a leading '-' means "ignore failure to set"; it does not change the key.
  if (!key.empty() && key[0] == '-') key = trim(key.substr(1));
  if (key.empty()) return std::nullopt;
  return KV{normalize_key(key), canonical(line.substr(eq + 1))};
}

}  // namespace

ConfParse parse_conf(std::string_view text) {
  ConfParse out;
  auto lines = split_lines(text, nullptr);
  bool inside = false;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string t = trim(lines[i]);
    if (t.starts_with(kBeginMarker)) {
      if (out.block.present || inside) {
        out.error = "line " + std::to_string(i + 1) + ": a second tcptune managed block (fix the file by hand)";
        return out;
      }
      inside = true;
      out.block.begin = i;
      out.block.profile = block_profile(t);
      continue;
    }
    if (t.starts_with(kEndMarker)) {
      if (!inside) {
        out.error = "line " + std::to_string(i + 1) + ": END marker without BEGIN (fix the file by hand)";
        return out;
      }
      inside = false;
      out.block.present = true;
      out.block.end = i;
      continue;
    }
    if (auto kv = parse_assignment(lines[i]))
      out.assignments.push_back(Assignment{static_cast<int>(i + 1), kv->key, kv->value, inside});
  }
  if (inside) out.error = "line " + std::to_string(out.block.begin + 1) + ": managed block has no END marker (fix the file by hand)";
  return out;
}

std::string render_block(std::string_view profile, const std::vector<KV>& settings) {
  std::string out;
  out += std::string(kBeginMarker) + ": profile=" + std::string(profile) +
         " (written by tcptune; edit the profile and re-apply, or run tcptune rollback)\n";
  for (const auto& kv : settings) out += kv.key + " = " + kv.value + "\n";
  out += std::string(kEndMarker) + ": profile=" + std::string(profile) + "\n";
  return out;
}

EditResult replace_block(std::string_view text, std::string_view block) {
  EditResult r;
  auto parsed = parse_conf(text);
  if (!parsed.error.empty()) {
    r.error = parsed.error;
    return r;
  }
  bool final_nl = false;
  auto lines = split_lines(text, &final_nl);
  bool block_nl = false;
  auto block_lines = split_lines(block, &block_nl);
  if (parsed.block.present) {
    bool suffix = parsed.block.end + 1 < lines.size();
    std::vector<std::string> out(lines.begin(), lines.begin() + static_cast<long>(parsed.block.begin));
    out.insert(out.end(), block_lines.begin(), block_lines.end());
    out.insert(out.end(), lines.begin() + static_cast<long>(parsed.block.end + 1), lines.end());
    // Lines before the block ended in '\n' (the BEGIN line followed them); so does a rendered block.
    bool nl = suffix ? final_nl : true;
    r.text = join_lines(out, nl);
    return r;
  }
  if (block.empty()) {
    r.text = std::string(text);
    return r;
  }
  r.text = std::string(text);
  if (!r.text.empty() && r.text.back() != '\n') r.text += '\n';
  r.text += std::string(block);
  return r;
}

EditResult set_block(std::string_view text, std::string_view profile, const std::vector<KV>& settings) {
  return replace_block(text, render_block(profile, settings));
}

EditResult remove_block(std::string_view text) { return replace_block(text, ""); }

std::string block_text(std::string_view text) {
  auto parsed = parse_conf(text);
  if (!parsed.block.present) return {};
  auto lines = split_lines(text, nullptr);
  std::string out;
  for (size_t i = parsed.block.begin; i <= parsed.block.end; ++i) out += lines[i] + "\n";
  return out;
}

std::vector<BootFile> boot_order(std::vector<BootFile> candidates, const BootFile& conf, bool* conf_linked) {
  std::map<std::string, BootFile> by_name;  // sorted by basename, first directory wins
  for (auto& c : candidates) by_name.emplace(c.name, std::move(c));
  std::vector<BootFile> out;
  bool linked = false;
  for (auto& [name, f] : by_name) {
    if (f.is_conf) {
      linked = true;
      BootFile c = conf;
      c.name = name;
      c.is_conf = true;
      out.push_back(std::move(c));
    } else {
      out.push_back(std::move(f));
    }
  }
  if (!linked) {
    BootFile c = conf;
    c.is_conf = true;
    out.push_back(std::move(c));
  }
  if (conf_linked) *conf_linked = linked;
  return out;
}

bool glob_match(std::string_view p, std::string_view s) {
  // '*' and '?' as in fnmatch without FNM_PATHNAME; enough for systemd-sysctl key globs.
  size_t pi = 0, si = 0, star = std::string_view::npos, mark = 0;
  while (si < s.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == s[si])) {
      ++pi;
      ++si;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

std::optional<Source> boot_source(const std::vector<BootFile>& order, std::string_view key) {
  // systemd-sysctl applies a glob only to keys no file names explicitly ("explicit setting exists"),
  // so the last explicit assignment wins over any glob, wherever the glob is; among globs the last wins.
  std::optional<Source> exact, glob;
  for (const auto& f : order) {
    for (const auto& a : parse_conf(f.text).assignments) {
      if (a.key == key)
        exact = Source{f.path, a.line, a.value};
      else if (a.key.find_first_of("*?") != std::string::npos && glob_match(a.key, key))
        glob = Source{f.path, a.line, a.value};
    }
  }
  return exact ? exact : glob;
}

}  // namespace tcptune
