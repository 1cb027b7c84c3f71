// The loaders' shared libbpf plumbing (see bpf_util.hpp).
#include "bpf_util.hpp"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#ifdef SYNGATE_HAVE_XDP
#include <bpf/bpf.h>
#endif

namespace syngate::bpf {

std::string errno_text(int err) { return std::strerror(err < 0 ? -err : err); }

#ifdef SYNGATE_HAVE_XDP

namespace {

// libbpf's print callback is process-wide and takes no context: the log being kept is per thread.
thread_local std::string* g_libbpf_log = nullptr;

int collect_libbpf_log(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG || !g_libbpf_log) return 0;
  va_list copy;
  va_copy(copy, args);
  const int n = vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (n > 0) {
    std::string text(static_cast<size_t>(n) + 1, '\0');
    vsnprintf(text.data(), text.size(), format, args);
    text.resize(static_cast<size_t>(n));
    g_libbpf_log->append(text);
  }
  // The verifier's log can run to megabytes; its end says why.
  if (g_libbpf_log->size() > 8192) g_libbpf_log->erase(0, g_libbpf_log->size() - 8192);
  return 0;
}

}  // namespace

LibbpfLog::LibbpfLog() {
  g_libbpf_log = &text_;
  previous_ = libbpf_set_print(collect_libbpf_log);
}

LibbpfLog::~LibbpfLog() {
  libbpf_set_print(previous_);
  g_libbpf_log = nullptr;
}

std::string load_failure(std::string_view what, int err, const std::string& log) {
  std::string reason = "loading the " + std::string(what) + " failed: " + errno_text(err);
  if (err == -EPERM || err == -EACCES) {
    reason += " (needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, or root; without CAP_PERFMON the verifier refuses the program)";
  }
  if (!log.empty()) reason += "\n" + log;
  return reason;
}

std::vector<uint64_t> per_cpu_sums(int map_fd, uint32_t entries) {
  std::vector<uint64_t> out(entries, 0);
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return out;
  std::vector<uint64_t> per_cpu(static_cast<size_t>(cpus));
  for (uint32_t i = 0; i < entries; ++i) {
    if (bpf_map_lookup_elem(map_fd, &i, per_cpu.data()) != 0) continue;
    for (uint64_t v : per_cpu) out[i] += v;
  }
  return out;
}

#endif

}  // namespace syngate::bpf
