// synflood: flood generator, pcap replayer and legitimate-client prober for stress tests.
// Everything it sends is bounded in count or time, and spoofed sources stay in the RFC 2544
// benchmarking range unless the operator explicitly says otherwise.
#include <pcap/pcap.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "addr.hpp"
#include "frame.hpp"
#include "live.hpp"
#include "numbers.hpp"
#include "malform.hpp"
#include "probe.hpp"
#include "probe_report.hpp"
#include "rate.hpp"
#include "rewrite.hpp"
#include "tx.hpp"

using namespace syngate::flood;

namespace {

// Exit codes (documented in --help and docs/lab.md).
constexpr int kExitDone = 0;    // ran to its bound (or was interrupted) with nothing failed
constexpr int kExitFailed = 1;  // ran but failed: nothing sent, frames refused, a read error, a
                                // probe with no success or below --min-success, or the run could
                                // not start
constexpr int kExitUsage = 2;   // bad command line: nothing was sent

// A command line that cannot run as given (exit 2), as opposed to a run that failed (exit 1).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr size_t kBatch = 64;
constexpr int kDefaultSndbuf = 16 << 20;

// CLI11 converts "-5" to 2^64 - 5 for an unsigned option and accepts "nan" and "inf" for a
// double one; these validators see the text first.
CLI::Validator whole_number(uint64_t min = 0) {
  return CLI::Validator(
      [min](std::string& text) -> std::string {
        const auto v = parse_count(text);
        if (!v) return "'" + text + "' is not a whole number >= 0 (digits only)";
        if (*v < min) return "must be at least " + std::to_string(min);
        return {};
      },
      "UINT");
}

CLI::Validator finite_number(double min, bool min_exclusive, double max = 1e12) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        const auto v = parse_finite(text);
        if (!v) return "'" + text + "' is not a finite number";
        if (min_exclusive ? !(*v > min) : !(*v >= min))
          return "must be " + std::string(min_exclusive ? "> " : ">= ") + CLI::detail::to_string(min);
        if (*v > max) return "must be at most " + CLI::detail::to_string(max);
        return {};
      },
      "NUMBER");
}

struct Bounds {
  double duration_s = 0;  // 0: none
  uint64_t count = 0;     // 0: none
};

uint64_t deadline_after(uint64_t start, double seconds) {
  if (seconds <= 0) return UINT64_MAX;
  const double ns = seconds * 1e9;
  return ns >= static_cast<double>(UINT64_MAX - start) ? UINT64_MAX : start + static_cast<uint64_t>(ns);
}

// Ends a run at its deadline or on SIGINT/SIGTERM, whichever comes first, and prints the live
// progress line once a second when stdout is a terminal (and the report is not JSON).
class RunClock {
 public:
  RunClock(uint64_t start, double duration_s, bool live)
      : start_(start), deadline_(deadline_after(start, duration_s)), live_(live), ticker_(start) {}

  uint64_t start() const noexcept { return start_; }
  uint64_t deadline() const noexcept { return deadline_; }
  bool over(uint64_t now) const noexcept { return stop_requested() || now >= deadline_; }

  void tick(uint64_t now, uint64_t sent, uint64_t errors) {
    if (!live_) return;
    if (const auto line = ticker_.poll(now, sent, errors)) {
      std::printf("\r%s\033[K", line->c_str());
      std::fflush(stdout);
      printed_ = true;
    }
  }

  // Waits until `t`, ticking; false when the run ends first (deadline or signal), in which
  // case nothing more may be sent.
  bool wait_until(uint64_t t, uint64_t sent, uint64_t errors) {
    for (;;) {
      const uint64_t now = now_ns();
      tick(now, sent, errors);
      if (over(now)) return false;
      if (now >= t) return true;
      uint64_t until = std::min(t, deadline_);
      if (live_) until = std::min(until, ticker_.next_due());
      if (!sleep_until_unless_stopped(until)) return false;
    }
  }

  // Clears the progress line so that the report starts on a clean line.
  void end() {
    if (printed_) std::printf("\r\033[K");
    std::fflush(stdout);
  }

 private:
  uint64_t start_, deadline_;
  bool live_;
  bool printed_ = false;
  LiveTicker ticker_;
};

bool live_stats_wanted(bool json) { return !json && ::isatty(STDOUT_FILENO) == 1; }

struct TxOptions {
  std::string target;
  std::string spoof;  // empty: the benchmarking range of the target's family
  bool allow_any_spoof = false;
  std::string iface;
  std::string dst_mac;
  int sndbuf = kDefaultSndbuf;
  std::string tx_method = "ring";
  bool json = false;
};

PacketSocket::Method tx_method(const TxOptions& o) {
  return o.tx_method == "ring" ? PacketSocket::Method::Ring : PacketSocket::Method::Mmsg;
}

Cidr checked_spoof(const TxOptions& o) {
  if (o.spoof.empty()) return kBenchmarkRange;
  std::string err;
  const auto c = parse_cidr(o.spoof, &err);
  if (!c) throw UsageError("--spoof: " + err);
  if (!c->within(kBenchmarkRange) && !o.allow_any_spoof)
    throw UsageError("--spoof " + c->to_string() + " is outside the benchmarking range " +
                     kBenchmarkRange.to_string() +
                     "; spoofing real addresses sends backscatter to real hosts. "
                     "Pass --allow-any-spoof if this is really what you want.");
  return *c;
}

Cidr6 checked_spoof6(const TxOptions& o) {
  if (o.spoof.empty()) return kBenchmarkRange6;
  std::string err;
  const auto c = parse_cidr6(o.spoof, &err);
  if (!c) throw UsageError("--spoof (the target is IPv6): " + err);
  if (!c->within(kBenchmarkRange6) && !o.allow_any_spoof)
    throw UsageError("--spoof " + c->to_string() + " is outside the IPv6 benchmarking range " +
                     kBenchmarkRange6.to_string() +
                     "; spoofing real addresses sends backscatter to real hosts. "
                     "Pass --allow-any-spoof if this is really what you want.");
  return *c;
}

bool is_v6_target(const std::string& text) { return !text.empty() && text[0] == '['; }

Endpoint6 checked_target6(const std::string& text) {
  std::string err;
  const auto e = parse_endpoint6(text, &err);
  if (!e) throw UsageError("--target: " + err);
  return *e;
}

Endpoint checked_target(const std::string& text) {
  std::string err;
  const auto e = parse_endpoint(text, &err);
  if (!e) throw UsageError("--target: " + err);
  return *e;
}

void check_dst_mac(const TxOptions& o) {
  if (!o.dst_mac.empty() && !parse_mac(o.dst_mac))
    throw UsageError("bad --dst-mac '" + o.dst_mac + "' (expected aa:bb:cc:dd:ee:ff)");
}

Egress checked_egress(uint32_t target, const TxOptions& o) {
  check_dst_mac(o);
  return resolve_egress(target, o.iface, o.dst_mac);
}

// What went wrong with the sending, for the report; empty when nothing did.
std::string send_failure(uint64_t sent, const PacketSocket& sock, bool interrupted) {
  if (sock.errors() > 0) {
    std::string e = std::to_string(sock.errors()) + " frames refused or lost by the device";
    if (sock.last_errno()) e += std::string(" (last error: ") + std::strerror(sock.last_errno()) + ")";
    return e;
  }
  if (sent == 0 && !interrupted) return "nothing was sent";
  return {};
}

nlohmann::json error_json(const std::string& error) {
  return error.empty() ? nlohmann::json(nullptr) : nlohmann::json(error);
}

// ---------------------------------------------------------------------------------------------
// syn | ack | rst | fin | mixed

struct FloodOptions : TxOptions {
  std::string kind;
  uint64_t rate = 0;
  Bounds bounds;
  uint64_t seed = 0;
  std::string malform = "none";
};

int run_flood(const FloodOptions& o) {
  const auto kind = parse_flood_kind(o.kind);
  if (!kind) throw UsageError("unknown flood kind " + o.kind);
  if (o.bounds.duration_s <= 0 && o.bounds.count == 0)
    throw UsageError("a flood needs --duration S or --count N (it must stop by itself)");
  const auto malform = parse_malform(o.malform);
  if (!malform) throw UsageError("unknown --malform kind " + o.malform);
  const bool v6 = is_v6_target(o.target);
  if (v6 && !malform_has_ipv6_form(*malform))
    throw UsageError("--malform " + o.malform + " has no IPv6 form (IPv6 has no IP header options)");
  if (*kind != FloodKind::Syn && malform_flags(*malform) != 0)
    throw UsageError("--malform " + o.malform + " sets its own flags: it is a syn flood's defect, not an " + o.kind +
                     " flood's");
  FrameSpec spec;
  std::optional<AddressIterator> addrs;
  std::optional<AddressIterator6> addrs6;
  std::string spoof_text;
  Egress eg;
  const uint64_t seed = o.seed ? o.seed : now_ns();
  if (v6) {
    const Endpoint6 target = checked_target6(o.target);
    const Cidr6 spoof = checked_spoof6(o);
    check_dst_mac(o);
    eg = resolve_egress6(target.ip, o.iface, o.dst_mac);
    spec.dst_ip6 = target.ip;
    spec.dst_port = target.port;
    addrs6.emplace(spoof, seed);
    spoof_text = spoof.to_string();
  } else {
    const Endpoint target = checked_target(o.target);
    const Cidr spoof = checked_spoof(o);
    eg = checked_egress(target.ip, o);
    spec.dst_ip = target.ip;
    spec.dst_port = target.port;
    addrs.emplace(spoof, seed);
    spoof_text = spoof.to_string();
  }
  spec.src_mac = eg.src_mac;
  spec.dst_mac = eg.dst_mac;
  spec.malform = *malform;
  const auto tmpl = FrameTemplate::make(spec);
  if (!tmpl) throw std::runtime_error("could not build the packet template");
  PacketSocket sock(eg.ifindex, o.sndbuf, kEthHeaderLen + static_cast<size_t>(eg.mtu), tx_method(o));

  PortIterator ports(seed >> 17);
  FastRandom rng(seed * 0x9E3779B97F4A7C15ULL);

  std::vector<uint8_t> storage(kBatch * kMaxFrameLen);
  uint8_t* frames[kBatch];
  size_t lens[kBatch];
  for (size_t i = 0; i < kBatch; ++i) {
    frames[i] = storage.data() + i * kMaxFrameLen;
    lens[i] = tmpl->length();
  }

  const uint64_t limit = o.bounds.count ? o.bounds.count : UINT64_MAX;
  const uint64_t chunk = pacing_chunk(o.rate, kBatch);
  RunClock clock(now_ns(), o.bounds.duration_s, live_stats_wanted(o.json));
  sock.set_deadline(clock.deadline());
  TokenBucket bucket(o.rate, pacing_burst(o.rate, kBatch), clock.start());
  uint64_t attempted = 0, sent = 0;

  for (;;) {
    const uint64_t now = now_ns();
    clock.tick(now, sent, sock.errors());
    if (attempted >= limit || clock.over(now)) break;
    const uint64_t want = std::min<uint64_t>(chunk, limit - attempted);
    const uint64_t n = bucket.take(now, want);
    if (n == 0) {
      if (!clock.wait_until(now + bucket.wait_ns(now, want), sent, sock.errors())) break;
      continue;
    }
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t r = rng.next();
      if (v6)
        tmpl->render6(frames[i], addrs6->next(), ports.next(), static_cast<uint32_t>(r),
                      static_cast<uint32_t>(r >> 32), flood_flags(*kind, attempted + i));
      else
        tmpl->render(frames[i], addrs->next(), ports.next(), static_cast<uint32_t>(r), static_cast<uint32_t>(r >> 32),
                     flood_flags(*kind, attempted + i));
    }
    sent += sock.send_batch(frames, lens, n);
    attempted += n;
  }
  const bool interrupted = stop_requested();
  sent += interrupted ? sock.abandon() : sock.finish();
  clock.end();
  const double elapsed = static_cast<double>(now_ns() - clock.start()) / 1e9;
  const double pps = elapsed > 0 ? static_cast<double>(sent) / elapsed : 0;
  const std::string error = send_failure(sent, sock, interrupted);
  if (o.json) {
    nlohmann::json j = {{"mode", o.kind},
                        {"target", o.target},
                        {"iface", eg.iface},
                        {"dst_mac", format_mac(eg.dst_mac)},
                        {"spoof", spoof_text},
                        {"malform", o.malform},
                        {"rate_target", o.rate},
                        {"sent", sent},
                        {"behind", bucket.behind()},
                        {"send_errors", sock.errors()},
                        {"device_full_waits", sock.full_waits()},
                        {"elapsed_s", elapsed},
                        {"pps", pps},
                        {"sndbuf", sock.sndbuf()},
                        {"tx_method", sock.method()},
                        {"interrupted", interrupted},
                        {"error", error_json(error)}};
    std::cout << j.dump() << "\n";
  } else {
    const std::string what = *malform == Malform::None ? o.kind : o.kind + " (malformed: " + o.malform + ")";
    std::printf("%s flood -> %s via %s (%s): sent %llu in %.3f s = %.0f pps (target %s), %llu send errors%s\n",
                what.c_str(), o.target.c_str(), eg.iface.c_str(), format_mac(eg.dst_mac).c_str(),
                static_cast<unsigned long long>(sent), elapsed, pps,
                o.rate ? std::to_string(o.rate).c_str() : "unlimited",
                static_cast<unsigned long long>(sock.errors()), interrupted ? " (interrupted)" : "");
    if (bucket.behind() != 0) {
      std::printf("the generator fell behind the rate by %llu packets (it was off the CPU longer than its %llu-packet "
                  "burst covers: a busy machine)\n",
                  static_cast<unsigned long long>(bucket.behind()), static_cast<unsigned long long>(bucket.burst()));
    }
  }
  if (!error.empty()) std::fprintf(stderr, "synflood: %s flood failed: %s\n", o.kind.c_str(), error.c_str());
  return error.empty() ? kExitDone : kExitFailed;
}

// ---------------------------------------------------------------------------------------------
// replay

struct ReplayOptions : TxOptions {
  std::string file;
  double speed = 1.0;
  uint64_t rate = 0;
  bool rate_set = false;    // --rate given: ignore capture timing (0 = as fast as possible)
  bool keep_sources = false;
  Bounds bounds;
};

struct PcapCloser {
  void operator()(pcap_t* p) const noexcept { pcap_close(p); }
};

int run_replay(const ReplayOptions& o) {
  // Captured sources go out as they are only when they are benchmarking addresses, unless the
  // operator opts in: otherwise replay would spoof whatever real hosts the capture saw.
  const bool v6 = is_v6_target(o.target);
  RewriteConfig cfg{0, 0, std::nullopt, std::nullopt};
  RewriteConfig6 cfg6;
  std::string sources;
  if (v6) {
    const Endpoint6 target = checked_target6(o.target);
    cfg6.dst_ip = target.ip;
    cfg6.dst_port = target.port;
    if (!o.keep_sources) cfg6.spoof = checked_spoof6(o);
    else if (!o.allow_any_spoof) cfg6.allowed_sources = kBenchmarkRange6;
    if (cfg6.spoof) sources = "mapped into " + cfg6.spoof->to_string();
  } else {
    const Endpoint target = checked_target(o.target);
    cfg.dst_ip = target.ip;
    cfg.dst_port = target.port;
    if (!o.keep_sources) cfg.spoof = checked_spoof(o);
    else if (!o.allow_any_spoof) cfg.allowed_sources = kBenchmarkRange;
    if (cfg.spoof) sources = "mapped into " + cfg.spoof->to_string();
  }
  if (o.keep_sources)
    sources = o.allow_any_spoof ? "kept" : "kept (benchmarking range only, " +
                                               (v6 ? kBenchmarkRange6.to_string() : kBenchmarkRange.to_string()) + ")";
  if (!(o.speed > 0)) throw UsageError("--speed must be > 0");

  char errbuf[PCAP_ERRBUF_SIZE] = {};
  std::unique_ptr<pcap_t, PcapCloser> pcap(
      pcap_open_offline_with_tstamp_precision(o.file.c_str(), PCAP_TSTAMP_PRECISION_NANO, errbuf));
  if (!pcap) throw std::runtime_error("cannot open " + o.file + ": " + errbuf);
  const auto link = link_type_from_dlt(pcap_datalink(pcap.get()));
  if (!link) {
    const char* name = pcap_datalink_val_to_name(pcap_datalink(pcap.get()));
    throw std::runtime_error("unsupported link type " + std::string(name ? name : "?") + " in " + o.file);
  }

  check_dst_mac(o);
  const Egress eg = v6 ? resolve_egress6(cfg6.dst_ip, o.iface, o.dst_mac) : resolve_egress(cfg.dst_ip, o.iface, o.dst_mac);
  PacketSocket sock(eg.ifindex, o.sndbuf, kEthHeaderLen + static_cast<size_t>(eg.mtu), tx_method(o));

  std::vector<uint8_t> storage(kBatch * 65536);
  uint8_t* frames[kBatch];
  size_t lens[kBatch];
  for (size_t i = 0; i < kBatch; ++i) frames[i] = storage.data() + i * 65536;

  std::array<uint64_t, kSkipReasonCount> skipped{};
  uint64_t oversize = 0, sent = 0, read = 0, queued = 0;
  const uint64_t limit = o.bounds.count ? o.bounds.count : UINT64_MAX;
  RunClock clock(now_ns(), o.bounds.duration_s, live_stats_wanted(o.json));
  sock.set_deadline(clock.deadline());
  TokenBucket bucket(o.rate, pacing_burst(o.rate, kBatch), clock.start());
  uint64_t first_ts = 0, floor_offset = 0;
  bool have_first = false;
  size_t pending = 0;
  uint64_t pending_due = 0;  // capture timing: when the newest pending frame is due

  // Sends the pending frames when they are due; frames whose time falls after the deadline or
  // after a signal are never sent.
  auto flush = [&]() {
    if (!pending) return;
    if (o.rate_set) {
      size_t done = 0;
      while (done < pending) {
        const uint64_t now = now_ns();
        clock.tick(now, sent, sock.errors());
        if (clock.over(now)) break;
        const uint64_t n = bucket.take(now, pending - done);
        if (!n) {
          if (!clock.wait_until(now + bucket.wait_ns(now, pending - done), sent, sock.errors())) break;
          continue;
        }
        sent += sock.send_batch(frames + done, lens + done, n);
        done += n;
      }
    } else if (clock.wait_until(pending_due, sent, sock.errors())) {
      sent += sock.send_batch(frames, lens, pending);
    }
    pending = 0;
  };

  pcap_pkthdr* hdr = nullptr;
  const u_char* data = nullptr;
  int rc = 0;
  while (queued < limit && !clock.over(now_ns()) && (rc = pcap_next_ex(pcap.get(), &hdr, &data)) == 1) {
    ++read;
    const uint64_t ts = static_cast<uint64_t>(hdr->ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(hdr->ts.tv_usec);
    const L3Location loc = locate_ip(std::span<const uint8_t>(data, hdr->caplen), *link);
    if (loc.skip != SkipReason::None || loc.version != (v6 ? 6 : 4)) {
      ++skipped[static_cast<size_t>(loc.skip != SkipReason::None ? loc.skip : SkipReason::OtherFamily)];
      continue;
    }
    if (loc.length > static_cast<size_t>(eg.mtu)) {
      ++oversize;  // e.g. a GRO/TSO super-packet captured on the host: cannot go on the wire
      continue;
    }
    uint8_t* frame = frames[pending];
    std::memcpy(frame + kEthHeaderLen, data + loc.offset, loc.length);
    size_t ip_len = 0;
    const std::span<uint8_t> ip(frame + kEthHeaderLen, loc.length);
    const SkipReason why = v6 ? rewrite_ipv6_tcp(ip, cfg6, ip_len) : rewrite_ipv4_tcp(ip, cfg, ip_len);
    if (why != SkipReason::None) {
      ++skipped[static_cast<size_t>(why)];
      continue;
    }
    std::memcpy(frame, eg.dst_mac.data(), 6);
    std::memcpy(frame + 6, eg.src_mac.data(), 6);
    frame[12] = v6 ? 0x86 : 0x08;
    frame[13] = v6 ? 0xDD : 0x00;
    const size_t frame_len = kEthHeaderLen + ip_len;
    lens[pending] = frame_len;
    if (!o.rate_set) {
      if (!have_first) {
        first_ts = ts;
        have_first = true;
      }
      floor_offset = replay_offset_ns(first_ts, ts, o.speed, floor_offset);
      const uint64_t due = clock.start() + floor_offset;
      // Frames due within the same half millisecond go out in one batch.
      if (pending && due > pending_due + 500'000) {
        flush();
        std::memcpy(frames[0], frame, frame_len);
        lens[0] = frame_len;
      }
      pending_due = due;
    }
    ++pending;
    ++queued;
    if (pending == kBatch) flush();
  }
  flush();
  const bool interrupted = stop_requested();
  sent += interrupted ? sock.abandon() : sock.finish();
  clock.end();
  std::string error;
  if (rc == -1) error = std::string("pcap read error: ") + pcap_geterr(pcap.get());
  pcap.reset();
  if (error.empty()) error = send_failure(sent, sock, interrupted);
  if (error == "nothing was sent") error = "nothing was sent (" + std::to_string(read) + " packets read, none replayable)";

  const double elapsed = static_cast<double>(now_ns() - clock.start()) / 1e9;
  nlohmann::json skip_json = nlohmann::json::object();
  uint64_t skipped_total = oversize;
  for (size_t i = 1; i < kSkipReasonCount; ++i) {
    skip_json[std::string(to_string(static_cast<SkipReason>(i)))] = skipped[i];
    skipped_total += skipped[i];
  }
  skip_json["oversize"] = oversize;
  if (o.json) {
    nlohmann::json j = {{"mode", "replay"},       {"file", o.file},
                        {"target", o.target},     {"read", read},
                        {"sources", sources},
                        {"timing", o.rate_set ? "rate" : "capture"},
                        {"sent", sent},           {"behind", bucket.behind()},
                        {"send_errors", sock.errors()},
                        {"device_full_waits", sock.full_waits()},
                        {"tx_method", sock.method()},
                        {"skipped", skip_json},   {"elapsed_s", elapsed},
                        {"pps", elapsed > 0 ? static_cast<double>(sent) / elapsed : 0},
                        {"interrupted", interrupted},
                        {"error", error_json(error)}};
    std::cout << j.dump() << "\n";
  } else {
    std::printf("replay %s -> %s: read %llu, sent %llu, skipped %llu (%s), %llu send errors, %.3f s%s\n",
                o.file.c_str(), o.target.c_str(), static_cast<unsigned long long>(read),
                static_cast<unsigned long long>(sent), static_cast<unsigned long long>(skipped_total),
                skip_json.dump().c_str(), static_cast<unsigned long long>(sock.errors()), elapsed,
                interrupted ? " (interrupted)" : "");
  }
  if (!error.empty()) std::fprintf(stderr, "synflood: replay failed: %s\n", error.c_str());
  return error.empty() ? kExitDone : kExitFailed;
}

// ---------------------------------------------------------------------------------------------
// probe

struct ProbeOptions {
  ProbeConfig cfg;
  std::optional<double> min_success;  // unset: at least one connection must succeed
  bool json = false;
};

int run_probe_cmd(ProbeOptions o) {
  std::optional<Endpoint> target;
  std::optional<Endpoint6> target6;
  if (is_v6_target(o.cfg.target))
    target6 = checked_target6(o.cfg.target);
  else
    target = checked_target(o.cfg.target);
  if (o.cfg.count == 0) throw UsageError("--count must be > 0");
  if (o.cfg.concurrency == 0) throw UsageError("--concurrency must be > 0");
  if (o.cfg.timeout_ms == 0) throw UsageError("--timeout-ms must be > 0");
  if (!o.cfg.http_path.empty() && o.cfg.http_path[0] != '/') throw UsageError("--http PATH must start with /");
  o.cfg.concurrency = std::min(o.cfg.concurrency, o.cfg.count);
  const uint64_t start = now_ns();
  const auto attempts = target6 ? run_probe(o.cfg, *target6) : run_probe(o.cfg, *target);
  const auto report = summarize_probe(o.cfg, attempts, static_cast<double>(now_ns() - start) / 1e9);
  const bool interrupted = stop_requested();
  const std::string error = probe_failure(report, o.min_success);
  if (o.json) {
    nlohmann::json j = to_json(report);
    j["min_success_pct"] = o.min_success ? nlohmann::json(*o.min_success) : nlohmann::json(nullptr);
    j["interrupted"] = interrupted;
    j["error"] = error_json(error);
    std::cout << j.dump() << "\n";
  } else {
    std::cout << to_text(report);
    if (interrupted) std::cout << "  interrupted after " << report.attempted << " of " << o.cfg.count << " connections\n";
  }
  if (!error.empty()) std::fprintf(stderr, "synflood: probe failed: %s\n", error.c_str());
  return error.empty() ? kExitDone : kExitFailed;
}

void add_tx_options(CLI::App* app, TxOptions& o) {
  app->add_option("--target", o.target, "Destination IPv4:PORT or [IPv6]:PORT")->required();
  app->add_option("--iface", o.iface, "Send on this interface (default: the route to the target)");
  app->add_option("--dst-mac", o.dst_mac,
                  "Destination MAC of the frames (default: the next hop's, from the neighbour table)");
  app->add_flag("--allow-any-spoof", o.allow_any_spoof,
                "Allow source addresses outside 198.18.0.0/15 (IPv6: 2001:2::/48); real addresses get "
                "the backscatter");
  app->add_option("--sndbuf", o.sndbuf,
                  "Socket send buffer in bytes (SO_SNDBUFFORCE). On veth the receive work runs on the "
                  "sender's CPU; a small buffer throttles the flood itself")
      ->capture_default_str()
      ->check(whole_number(4096) & CLI::Range(4096, 1 << 30));
  app->add_option("--tx-method", o.tx_method,
                  "ring: TPACKET_V2 transmit ring, one send() per batch (fastest; falls back to mmsg when "
                  "the kernel refuses it); mmsg: batched sendmmsg, one message header per frame")
      ->capture_default_str()
      ->check(CLI::IsMember({"mmsg", "ring"}));
  app->add_flag("--json", o.json, "Print the result as one JSON object (no live progress line)");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "synflood: TCP flood generator, pcap replayer and legitimate-client prober for stress tests.\n"
      "Run it only against hosts you own, ideally inside a lab of network namespaces. Floods\n"
      "spoof sources from 198.18.0.0/15 (RFC 2544), or 2001:2::/48 (RFC 5180) for an [IPv6]:PORT\n"
      "target, by default; replay maps captured sources into that range unless told otherwise.\n"
      "Every flood and replay stops at its --count or --duration (counted from the first send,\n"
      "after the next hop is resolved), and on SIGINT/SIGTERM within 50 ms, sending nothing\n"
      "after; an interrupted run says so in its report. On a terminal, runs print a progress\n"
      "line once a second.\n"
      "Exit status: 0 done (also when interrupted, if nothing failed); 1 ran but failed\n"
      "(nothing sent, frames refused by the device, a pcap read error, a probe in which no\n"
      "connection succeeded or below --min-success, or the run could not start); 2 bad\n"
      "command line (nothing sent).\n"
      "JSON reports carry \"error\": null, or what failed."};
  app.set_version_flag("--version", "synflood " SYNFLOOD_VERSION);
  app.require_subcommand(1);

  FloodOptions flood;
  std::vector<CLI::App*> flood_cmds;
  for (const char* kind : {"syn", "ack", "rst", "fin", "mixed"}) {
    const std::string desc =
        std::string(kind) == "mixed"
            ? "Flood a mix (per 8 packets: 4 SYN, 2 ACK, 1 RST, 1 FIN+ACK) from spoofed sources"
            : "Flood " + std::string(kind) + " segments from spoofed sources (AF_PACKET, see --tx-method)";
    CLI::App* cmd = app.add_subcommand(kind, desc);
    add_tx_options(cmd, flood);
    cmd->add_option("--rate", flood.rate, "Packets per second; 0 = as fast as possible")
        ->required()
        ->check(whole_number());
    cmd->add_option("--duration", flood.bounds.duration_s, "Stop after S seconds")
        ->check(finite_number(0, true));
    cmd->add_option("--count", flood.bounds.count, "Stop after N packets")->check(whole_number(1));
    cmd->add_option("--spoof", flood.spoof,
                    "Source range (CIDR) of the target's family; default 198.18.0.0/15 (RFC 2544), or "
                    "2001:2::/48 (RFC 5180) for an IPv6 target. Others need --allow-any-spoof");
    cmd->add_option("--seed", flood.seed, "Seed for addresses, ports and sequence numbers (default: clock)")
        ->check(whole_number());
    {
      const bool syn = std::string(kind) == "syn";
      std::string help =
          syn ? "Send SYNs with one named defect and nothing else wrong (IP checksum valid, TCP checksum "
                "valid over the TCP bytes sent), to check that a defence does not pass them to the server. "
                "All but ip-options also at an IPv6 target (fragments with a fragment header):"
              : "Send these segments with one named defect of the IP or TCP header (the flag defects "
                "belong to syn floods), e.g. forged ACKs with IP options, to check that a fast path does "
                "not hand them to a slower one. All but ip-options also at an IPv6 target:";
      std::vector<std::string> names{"none"};
      for (const auto& k : malform_kinds()) {
        if (!syn && malform_flags(k.kind) != 0) continue;
        help += "\n  " + std::string(k.name) + ": " + std::string(k.description);
        names.emplace_back(k.name);
      }
      cmd->add_option("--malform", flood.malform, help)->capture_default_str()->check(CLI::IsMember(names));
    }
    cmd->callback([&flood, cmd]() { flood.kind = cmd->get_name(); });
    flood_cmds.push_back(cmd);
  }

  ReplayOptions replay;
  CLI::App* rcmd = app.add_subcommand(
      "replay",
      "Replay the TCP packets of a pcap file at the target, IPv4 packets at an IPv4 target and IPv6 packets "
      "at an IPv6 one (everything else is skipped and counted)");
  rcmd->add_option("file", replay.file, "pcap file")->required()->check(CLI::ExistingFile);
  add_tx_options(rcmd, replay);
  auto* speed = rcmd->add_option("--speed", replay.speed,
                                 "Follow the capture's timing, scaled (2 = twice as fast); the default timing")
                    ->capture_default_str()
                    ->check(finite_number(0, true));
  auto* rrate = rcmd->add_option("--rate", replay.rate,
                                 "Ignore the capture's timing; send at this many packets per second "
                                 "(0 = as fast as possible, as for floods)")
                    ->check(whole_number());
  speed->excludes(rrate);
  auto* rspoof = rcmd->add_option("--spoof", replay.spoof,
                                  "Map sources into this range (one captured source -> one spoofed source); "
                                  "default 198.18.0.0/15, or 2001:2::/48 for an IPv6 target; others need "
                                  "--allow-any-spoof");
  rcmd->add_flag("--keep-sources", replay.keep_sources,
                 "Send from the captured source addresses; packets from outside 198.18.0.0/15 "
                 "(IPv6: 2001:2::/48) are skipped and counted unless --allow-any-spoof is given")
      ->excludes(rspoof);
  rcmd->add_option("--duration", replay.bounds.duration_s, "Stop after S seconds")->check(finite_number(0, true));
  rcmd->add_option("--count", replay.bounds.count, "Stop after N packets")->check(whole_number(1));

  ProbeOptions probe;
  CLI::App* pcmd = app.add_subcommand(
      "probe", "Legitimate clients: success %, connect and first-byte latency percentiles, failures by kind");
  pcmd->add_option("--target", probe.cfg.target, "Server IPv4:PORT or [IPv6]:PORT")->required();
  pcmd->add_option("--count", probe.cfg.count, "Connections to open")->required()->check(whole_number(1));
  pcmd->add_option("--concurrency", probe.cfg.concurrency, "Connections in flight at once")
      ->default_val(10)
      ->check(whole_number(1));
  pcmd->add_option("--timeout-ms", probe.cfg.timeout_ms,
                   "Per-connection deadline from connect() to success (handshake and, with --http or "
                   "--expect-banner, the first response byte)")
      ->default_val(2000)
      ->check(whole_number(1));
  auto* http = pcmd->add_option("--http", probe.cfg.http_path,
                                "Send GET PATH; success needs an HTTP 2xx/3xx status line; first-byte "
                                "latency is connect() to the first response byte");
  pcmd->add_flag("--expect-banner", probe.cfg.expect_banner,
                 "Send nothing and wait for the server to speak first (SMTP/SSH-like services)")
      ->excludes(http);
  pcmd->add_option("--min-success", probe.min_success,
                   "Exit 1 when fewer than PCT percent of the connections succeed (default: exit 1 only when "
                   "none did; 0: report only, never fail on the result)")
      ->check(finite_number(0, false, 100));
  pcmd->add_flag("--json", probe.json, "Print the result as one JSON object");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints help, the version, or the error
    return rc == 0 ? kExitDone : kExitUsage;
  }
  replay.rate_set = rrate->count() > 0;
  install_stop_signals();
  ::prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);  // wake-ups within ~1 us: pacing depends on it
  // A run that cannot start still answers --json with a report, so a script reading stdout
  // sees why.
  std::string mode = "?";
  bool json = false;
  auto report_error = [&](const char* what) {
    std::fprintf(stderr, "synflood: %s\n", what);
    if (json) std::cout << nlohmann::json{{"mode", mode}, {"sent", 0}, {"error", what}}.dump() << "\n";
  };
  try {
    for (CLI::App* cmd : flood_cmds)
      if (cmd->parsed()) {
        mode = cmd->get_name();
        json = flood.json;
        return run_flood(flood);
      }
    if (rcmd->parsed()) {
      mode = "replay";
      json = replay.json;
      return run_replay(replay);
    }
    if (pcmd->parsed()) {
      mode = "probe";
      json = probe.json;
      return run_probe_cmd(probe);
    }
  } catch (const UsageError& e) {
    report_error(e.what());
    return kExitUsage;
  } catch (const std::exception& e) {
    report_error(e.what());
    return kExitFailed;
  }
  return kExitUsage;
}
