// Sysctl values as text. The kernel prints multi-value keys with tabs (tcp_rmem "4096\t131072\t6291456"),
// sysctl.conf writes them with spaces; both compare equal once split on whitespace.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace tcptune {

std::vector<std::string> split_ws(std::string_view s);
// Canonical form: whitespace-separated tokens joined by one space, no leading/trailing blanks.
std::string canonical(std::string_view s);
bool same_value(std::string_view a, std::string_view b);
std::string trim(std::string_view s);
// "net.ipv4.tcp_rmem" <-> "net/ipv4/tcp_rmem" (sysctl(8) accepts both separators).
std::string key_to_path(std::string_view key);
std::string normalize_key(std::string_view key);

}  // namespace tcptune
