// What every libbpf loader in the daemon needs, whichever program it loads (the XDP program
// now, the tc programs next): errno as text, libbpf's messages kept for the error a failed load
// throws, per-CPU counter sums, and the bookkeeping of BPF links by interface.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#ifdef SYNGATE_HAVE_XDP
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#endif

namespace syngate::bpf {

// strerror of an errno value or of a negative libbpf return.
std::string errno_text(int err);

#ifdef SYNGATE_HAVE_XDP

// While it lives, libbpf's messages (warnings, the verifier's log) on this thread are kept, the
// last 8 KiB of them: the verifier's log can run to megabytes and its end says why. Restores the
// previous print function when it goes. One at a time.
class LibbpfLog {
 public:
  LibbpfLog();
  ~LibbpfLog();
  LibbpfLog(const LibbpfLog&) = delete;
  LibbpfLog& operator=(const LibbpfLog&) = delete;
  const std::string& text() const noexcept { return text_; }

 private:
  std::string text_;
  libbpf_print_fn_t previous_;
};

// "loading the <what> failed: <errno text>", with the capabilities it needs when refused for
// permission, and libbpf's log after it.
std::string load_failure(std::string_view what, int err, const std::string& log);

// Each entry [0, entries) of a per-CPU array map summed over the possible CPUs (0 where a
// lookup fails).
std::vector<uint64_t> per_cpu_sums(int map_fd, uint32_t entries);

// Every entry of a hash map once. By buckets (BPF_MAP_LOOKUP_BATCH) where the kernel has it: a
// get_next_key walk whose last key is deleted under it (the workers free flows while a scrape or
// stop() walks) starts again from the first key and meets entries twice; a batch walk keeps its
// place by bucket, and takes many entries per system call.
template <class Key, class Value, class Fn>
void walk_map(int fd, Fn&& fn) {
  uint32_t room = 256;
  std::vector<Key> keys(room);
  std::vector<Value> values(room);
  uint32_t cursor = 0, next = 0;
  bool started = false;
  for (;;) {
    uint32_t count = room;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    const int rc = bpf_map_lookup_batch(fd, started ? &cursor : nullptr, &next, keys.data(), values.data(), &count, &opts);
    if (rc == -ENOSPC && count == 0 && room < (1u << 16)) {  // one bucket holds more than `room`
      room *= 2;
      keys.resize(room);
      values.resize(room);
      continue;
    }
    if (rc != 0 && rc != -ENOENT) break;
    for (uint32_t i = 0; i < count && i < room; ++i) fn(keys[i], values[i]);
    if (rc == -ENOENT) return;  // the last bucket was in this batch
    cursor = next;
    started = true;
  }
  if (started) return;  // a failure midway: what was walked is all there is
  // No batch lookup for this map (a kernel before 5.6): key by key.
  Key key{}, at{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &at) == 0) {
    Value v{};
    if (bpf_map_lookup_elem(fd, &at, &v) == 0) fn(at, v);
    key = at;
    prev = &key;
  }
}

// Deletes these keys from a hash map; returns how many it deleted. Many a system call
// (BPF_MAP_DELETE_BATCH) where the kernel has it: a full flow table is half a million keys, and
// one call each took about 1.2 µs a key of stop() here, batches 0.7. A batch stops at a key not there
// (deleted meanwhile): that one is skipped and the rest go on. Without batch deletes (a kernel
// before 5.6, a map type without them), key by key.
template <class Key>
uint64_t delete_keys(int fd, const std::vector<Key>& keys) noexcept {
  uint64_t deleted = 0;
  size_t at = 0;
  while (at < keys.size()) {
    uint32_t count = static_cast<uint32_t>(std::min<size_t>(keys.size() - at, 4096));
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    const int rc = bpf_map_delete_batch(fd, &keys[at], &count, &opts);
    if (rc == 0 || (rc == -ENOENT && count < keys.size() - at)) {
      deleted += count;
      at += count + (rc == 0 ? 0 : 1);
      continue;
    }
    break;  // no batch deletes here, or a fault: what is left goes key by key
  }
  for (; at < keys.size(); ++at) deleted += bpf_map_delete_elem(fd, &keys[at]) == 0 ? 1 : 0;
  return deleted;
}

// The entries walk_map finds (a scrape's gauge): on a failed allocation, the count so far.
template <class Key, class Value>
uint64_t count_map(int fd) noexcept {
  uint64_t n = 0;
  try {
    walk_map<Key, Value>(fd, [&](const Key&, const Value&) { ++n; });
  } catch (const std::bad_alloc&) {
  }
  return n;
}

#endif

// BPF links by interface. Closing a link's fd detaches its program, as the process's exit does.
// `Info` describes one attachment and has an `int ifindex`. Thread-safe.
template <typename Info>
class Links {
 public:
  Links() = default;
  ~Links() { clear(); }
  Links(const Links&) = delete;
  Links& operator=(const Links&) = delete;

  // Takes ownership of the link fd.
  void add(Info info, int fd) {
    std::lock_guard lock(mutex_);
    links_.push_back({std::move(info), fd});
  }
  // Detaches every link on that interface (also when the interface is gone).
  void remove(int ifindex) noexcept {
    std::lock_guard lock(mutex_);
    for (auto it = links_.begin(); it != links_.end();) {
      if (it->info.ifindex == ifindex) {
        close(it->fd);
        it = links_.erase(it);
      } else {
        ++it;
      }
    }
  }
  void clear() noexcept {
    std::lock_guard lock(mutex_);
    for (auto& l : links_) close(l.fd);
    links_.clear();
  }
  std::vector<Info> list() const {
    std::lock_guard lock(mutex_);
    std::vector<Info> out;
    for (const auto& l : links_) out.push_back(l.info);
    return out;
  }

 private:
  struct Link {
    Info info;
    int fd = -1;
  };
  mutable std::mutex mutex_;
  std::vector<Link> links_;
};

}  // namespace syngate::bpf
