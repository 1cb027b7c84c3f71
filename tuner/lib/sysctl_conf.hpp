// sysctl.conf as text: parsing assignments, editing tcptune's managed block without touching any other
// byte, and working out which file wins at boot. String in, string out: no file access here.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tcptune {

struct Assignment {
  int line = 0;  // 1-based
  std::string key;
  std::string value;  // canonical
  bool in_block = false;  // inside tcptune's managed block
};

inline constexpr std::string_view kBeginMarker = "# BEGIN tcptune managed block";
inline constexpr std::string_view kEndMarker = "# END tcptune managed block";

struct BlockInfo {
  bool present = false;
  size_t begin = 0, end = 0;  // 0-based line indexes of the BEGIN and END marker lines
  std::string profile;        // from "profile=NAME" on the BEGIN line
};

struct ConfParse {
  std::vector<Assignment> assignments;
  BlockInfo block;
  std::string error;  // unterminated or duplicate managed block
};

// Lines split on '\n'; a '\r' stays part of its line so CRLF files round-trip.
std::vector<std::string> split_lines(std::string_view text, bool* final_newline);
ConfParse parse_conf(std::string_view text);

struct KV {
  std::string key, value;
};
std::string render_block(std::string_view profile, const std::vector<KV>& settings);

struct EditResult {
  std::string text;
  std::string error;
};
// Replace the managed block in place, or append it at the end of the file.
EditResult set_block(std::string_view text, std::string_view profile, const std::vector<KV>& settings);
// Remove the managed block; text outside it is untouched.
EditResult remove_block(std::string_view text);
// Replace the current managed block by `block_text` (a rendered block or empty for none).
EditResult replace_block(std::string_view text, std::string_view block_text);
// The managed block's exact text (markers included), empty when absent.
std::string block_text(std::string_view text);

// One sysctl configuration file taking part in boot-time loading.
struct BootFile {
  std::string path;
  std::string name;  // basename, the sort key of systemd-sysctl
  bool is_conf = false;  // this is (or links to) the managed sysctl.conf
  std::string text;
};
// systemd-sysctl order: a basename in an earlier directory masks the same name in later ones, then
// files run sorted by basename; the last assignment of a key wins. When no drop-in links to the
// managed sysctl.conf (Debian ships /etc/sysctl.d/99-sysctl.conf -> ../sysctl.conf), it is placed
// last, as procps `sysctl --system` does. Input: candidates in directory priority order.
std::vector<BootFile> boot_order(std::vector<BootFile> candidates, const BootFile& conf, bool* conf_linked);

struct Source {
  std::string path;
  int line = 0;
  std::string value;
};
// Where key's value comes from at boot (last assignment wins), nullopt when nothing sets it.
// Glob keys of systemd (net.ipv4.conf.*.rp_filter) match too, but only where no file names the key
// explicitly: systemd-sysctl never lets a glob override an explicit key.
std::optional<Source> boot_source(const std::vector<BootFile>& order, std::string_view key);
bool glob_match(std::string_view pattern, std::string_view key);

}  // namespace tcptune
