// The cookie secrets file: the only I/O of the core. A restart must keep validating the cookies
// of SYN-ACKs already in flight, so the keys outlive the process; they are as sensitive as a
// private key, hence the 0600 mode, the ownership check and the atomic replace.
//
// Format (text, one field per line, nothing else accepted):
//   syngate-cookie-secrets 1
//   current <32 lowercase hex digits>
//   previous <32 lowercase hex digits>
//   current_since <decimal counter>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "syngate/cookie.hpp"

namespace syngate {

namespace {

constexpr std::string_view kMagic = "syngate-cookie-secrets";
constexpr unsigned kFormatVersion = 1;
constexpr size_t kMaxFileSize = 4096;  // the real file is ~130 bytes; anything big is not ours

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw std::runtime_error("cookie secrets file " + path + ": " + why);
}
[[noreturn]] void fail_errno(const std::string& path, const std::string& what) {
  fail(path, what + ": " + std::strerror(errno));
}

void ensure_sodium() {
  // sodium_init is idempotent and thread-safe; the static makes later calls free.
  static const int rc = sodium_init();
  if (rc < 0) throw std::runtime_error("libsodium failed to initialise (sodium_init)");
}

// Closes the descriptor on every exit path.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  int release() {
    int f = fd;
    fd = -1;
    return f;
  }
};

std::string directory_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Makes a rename or link inside `dir` durable.
void fsync_directory(const std::string& path, const std::string& dir) {
  Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.fd < 0) fail_errno(path, "cannot open directory " + dir + " to sync it");
  if (::fsync(d.fd) != 0) fail_errno(path, "fsync of directory " + dir);
}

std::string to_hex(const CookieKey& key) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : key) {
    s += kDigits[b >> 4];
    s += kDigits[b & 0xF];
  }
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::string serialize(const CookieSecrets& s) {
  std::string out;
  out += std::string(kMagic) + " " + std::to_string(kFormatVersion) + "\n";
  out += "current " + to_hex(s.current) + "\n";
  out += "previous " + to_hex(s.previous) + "\n";
  out += "current_since " + std::to_string(s.current_since) + "\n";
  return out;
}

// Takes the next '\n'-terminated line; a missing final newline means a truncated file.
std::string_view next_line(const std::string& path, std::string_view& rest, std::string_view field) {
  auto nl = rest.find('\n');
  if (nl == std::string_view::npos) {
    fail(path, rest.empty() ? "truncated: missing the '" + std::string(field) + "' line"
                            : "truncated: the '" + std::string(field) + "' line has no end of line");
  }
  std::string_view line = rest.substr(0, nl);
  rest.remove_prefix(nl + 1);
  return line;
}

// "<name> <value>" with exactly one space; returns the value.
std::string_view field_value(const std::string& path, std::string_view line, std::string_view name,
                             int line_no) {
  if (line.size() <= name.size() || line.substr(0, name.size()) != name || line[name.size()] != ' ') {
    fail(path, "malformed line " + std::to_string(line_no) + ": expected '" + std::string(name) +
                   " ...'");
  }
  return line.substr(name.size() + 1);
}

CookieKey parse_key(const std::string& path, std::string_view hex, std::string_view name, int line_no) {
  CookieKey key{};
  if (hex.size() != key.size() * 2) {
    fail(path, "malformed line " + std::to_string(line_no) + ": '" + std::string(name) + "' must be " +
                   std::to_string(key.size() * 2) + " lowercase hex digits");
  }
  for (size_t i = 0; i < key.size(); ++i) {
    int hi = hex_value(hex[2 * i]);
    int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      fail(path, "malformed line " + std::to_string(line_no) + ": '" + std::string(name) +
                     "' has a character that is not a lowercase hex digit");
    }
    key[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return key;
}

uint32_t parse_counter(const std::string& path, std::string_view text, int line_no) {
  if (text.empty() || text.size() > 10 || (text.size() > 1 && text[0] == '0')) {
    fail(path, "malformed line " + std::to_string(line_no) +
                   ": 'current_since' must be a decimal number without leading zeros");
  }
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      fail(path, "malformed line " + std::to_string(line_no) + ": 'current_since' must be decimal");
    }
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > UINT32_MAX) {
    fail(path, "malformed line " + std::to_string(line_no) + ": 'current_since' exceeds 32 bits");
  }
  return static_cast<uint32_t>(v);
}

// For quoting file content in an error message: printable ASCII as is, the rest escaped, cut short.
std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 48)) {
    if (c >= 0x20 && c < 0x7f) {
      out += c;
    } else {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      out += esc;
    }
  }
  if (text.size() > 48) out += "...";
  return out;
}

CookieSecrets parse(const std::string& path, std::string_view text) {
  if (text.empty()) fail(path, "empty file");
  std::string_view rest = text;
  std::string_view header = next_line(path, rest, kMagic);
  if (header.substr(0, kMagic.size()) != kMagic) {
    fail(path, "not a syngate cookie secrets file (first line must start with '" + std::string(kMagic) +
                   "')");
  }
  const std::string expected_header = std::string(kMagic) + " " + std::to_string(kFormatVersion);
  if (header != expected_header) {
    fail(path, "unsupported format '" + printable(header) + "' (this build reads '" +
                   expected_header + "')");
  }
  CookieSecrets s;
  s.current = parse_key(path, field_value(path, next_line(path, rest, "current"), "current", 2),
                        "current", 2);
  s.previous = parse_key(path, field_value(path, next_line(path, rest, "previous"), "previous", 3),
                         "previous", 3);
  s.current_since = parse_counter(
      path, field_value(path, next_line(path, rest, "current_since"), "current_since", 4), 4);
  if (!rest.empty()) fail(path, "unexpected content after line 4");
  return s;
}

// Refuses anything an attacker on the same host could have read or planted.
void check_file_safety(const std::string& path, const struct stat& st) {
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    fail(path, std::string("mode ") + mode +
                   " gives group/other access to the keys; run chmod 600 on it (or delete it to "
                   "generate new keys)");
  }
  if (st.st_uid != ::geteuid()) {
    fail(path, "owned by uid " + std::to_string(st.st_uid) + ", not by this process (uid " +
                   std::to_string(::geteuid()) + "); another user could replace the keys");
  }
}

// Returns nullopt when the file does not exist.
std::optional<CookieSecrets> read_secrets(const std::string& path) {
  // O_NONBLOCK: a FIFO in its place must not block the reload until a writer comes (fstat refuses it).
  Fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (f.fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    fail_errno(path, "cannot open");
  }
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail_errno(path, "fstat");
  check_file_safety(path, st);
  if (st.st_size > static_cast<off_t>(kMaxFileSize)) {
    fail(path, "too large (" + std::to_string(st.st_size) + " bytes) to be a secrets file");
  }
  std::string text;
  char buf[kMaxFileSize + 1];
  for (;;) {
    ssize_t n = ::read(f.fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno(path, "read");
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxFileSize) fail(path, "too large to be a secrets file");
  }
  return parse(path, text);
}

void write_all(const std::string& path, int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno(path, "write");
    }
    done += static_cast<size_t>(n);
  }
}

// Writes `s` to a fresh 0600 temp file next to `path`, fsynced; returns the temp file's name.
std::string write_temp(const std::string& path, const CookieSecrets& s) {
  std::string tmp = path + ".tmp.XXXXXX";
  Fd f(::mkostemp(tmp.data(), O_CLOEXEC));
  if (f.fd < 0) fail_errno(path, "cannot create a temporary file in " + directory_of(path));
  try {
    // mkstemp already uses 0600, but say it: the umask must not be what protects the keys.
    if (::fchmod(f.fd, S_IRUSR | S_IWUSR) != 0) fail_errno(path, "fchmod of temporary file");
    write_all(path, f.fd, serialize(s));
    if (::fsync(f.fd) != 0) fail_errno(path, "fsync of temporary file");
    if (::close(f.release()) != 0) fail_errno(path, "close of temporary file");
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  return tmp;
}

}  // namespace

CookieSecrets generate_secrets(uint32_t counter_now) {
  ensure_sodium();
  CookieSecrets s;
  randombytes_buf(s.current.data(), s.current.size());
  // A random previous key too: cookies dated before `since` then validate only with a key
  // nobody knows, instead of with an all-zero one anybody could use.
  randombytes_buf(s.previous.data(), s.previous.size());
  s.current_since = counter_now;
  return s;
}

CookieSecrets rotate_secrets(const CookieSecrets& old, uint32_t counter_now) {
  ensure_sodium();
  CookieSecrets s;
  s.previous = old.current;
  randombytes_buf(s.current.data(), s.current.size());
  s.current_since = counter_now;
  return s;
}

void save_secrets(const std::string& path, const CookieSecrets& secrets) {
  if (path.empty()) throw std::runtime_error("cookie secrets file: empty path");
  const std::string tmp = write_temp(path, secrets);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    ::unlink(tmp.c_str());
    errno = saved;
    fail_errno(path, "cannot rename " + tmp + " over it");
  }
  fsync_directory(path, directory_of(path));
}

CookieSecrets load_or_create_secrets(const std::string& path, uint32_t counter_now) {
  if (path.empty()) throw std::runtime_error("cookie secrets file: empty path");
  if (auto existing = read_secrets(path)) return *existing;

  // Create without ever replacing: link() fails with EEXIST when another process created the
  // file meanwhile, and then its keys (already in use there) win.
  const CookieSecrets fresh = generate_secrets(counter_now);
  const std::string tmp = write_temp(path, fresh);
  int rc = ::link(tmp.c_str(), path.c_str());
  if (rc != 0 && (errno == EPERM || errno == EOPNOTSUPP || errno == EMLINK)) {
    // A filesystem without hard links (vfat and the like): the same no-replace guarantee.
    rc = ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE);
  }
  const int saved = errno;
  ::unlink(tmp.c_str());
  if (rc != 0) {
    if (saved == EEXIST) {
      if (auto theirs = read_secrets(path)) return *theirs;
    }
    errno = saved;
    fail_errno(path, "cannot create");
  }
  fsync_directory(path, directory_of(path));
  return fresh;
}

}  // namespace syngate
