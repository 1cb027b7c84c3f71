// synflood: flood generator, pcap replayer and legitimate-client prober for stress tests.
// Everything it sends is bounded in count or time, and spoofed sources stay in the RFC 2544
// benchmarking range unless the operator explicitly says otherwise.
#include <pcap/pcap.h>
#include <signal.h>
#include <sys/prctl.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "addr.hpp"
#include "frame.hpp"
#include "malform.hpp"
#include "probe.hpp"
#include "probe_report.hpp"
#include "rate.hpp"
#include "rewrite.hpp"
#include "tx.hpp"

using namespace syngate::flood;

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }

void install_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

constexpr size_t kBatch = 64;
constexpr int kDefaultSndbuf = 16 << 20;

struct Bounds {
  double duration_s = 0;  // 0: none
  uint64_t count = 0;     // 0: none
};

struct TxOptions {
  std::string target;
  std::string spoof = kBenchmarkRange.to_string();
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
  std::string err;
  const auto c = parse_cidr(o.spoof, &err);
  if (!c) throw std::runtime_error("--spoof: " + err);
  if (!c->within(kBenchmarkRange) && !o.allow_any_spoof)
    throw std::runtime_error("--spoof " + c->to_string() + " is outside the benchmarking range " +
                             kBenchmarkRange.to_string() +
                             "; spoofing real addresses sends backscatter to real hosts. "
                             "Pass --allow-any-spoof if this is really what you want.");
  return *c;
}

Endpoint checked_target(const std::string& text) {
  std::string err;
  const auto e = parse_endpoint(text, &err);
  if (!e) throw std::runtime_error("--target: " + err);
  return *e;
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
  if (!kind) throw std::runtime_error("unknown flood kind " + o.kind);
  if (o.bounds.duration_s <= 0 && o.bounds.count == 0)
    throw std::runtime_error("a flood needs --duration S or --count N (it must stop by itself)");
  const Endpoint target = checked_target(o.target);
  const Cidr spoof = checked_spoof(o);
  const Egress eg = resolve_egress(target.ip, o.iface, o.dst_mac);
  const auto malform = parse_malform(o.malform);
  if (!malform) throw std::runtime_error("unknown --malform kind " + o.malform);
  const auto tmpl = FrameTemplate::make({eg.src_mac, eg.dst_mac, target.ip, target.port, 1460, *malform});
  if (!tmpl) throw std::runtime_error("could not build the packet template");
  PacketSocket sock(eg.ifindex, o.sndbuf, kEthHeaderLen + static_cast<size_t>(eg.mtu), tx_method(o));

  const uint64_t seed = o.seed ? o.seed : now_ns();
  AddressIterator addrs(spoof, seed);
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
  const uint64_t start = now_ns();
  const uint64_t deadline =
      o.bounds.duration_s > 0 ? start + static_cast<uint64_t>(o.bounds.duration_s * 1e9) : UINT64_MAX;
  TokenBucket bucket(o.rate, pacing_burst(o.rate, kBatch), start);
  uint64_t attempted = 0, sent = 0, last = start;

  for (uint64_t now = start; attempted < limit && now < deadline && !g_stop.load(std::memory_order_relaxed);
       now = now_ns()) {
    const uint64_t want = std::min<uint64_t>(chunk, limit - attempted);
    const uint64_t n = bucket.take(now, want);
    if (n == 0) {
      sleep_until_ns(std::min(deadline, now + bucket.wait_ns(now, want)));
      continue;
    }
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t r = rng.next();
      tmpl->render(frames[i], addrs.next(), ports.next(), static_cast<uint32_t>(r), static_cast<uint32_t>(r >> 32),
                   flood_flags(*kind, attempted + i));
    }
    sent += sock.send_batch(frames, lens, n);
    attempted += n;
    last = now_ns();
  }
  sent += sock.finish();
  last = now_ns();
  const double elapsed = static_cast<double>(last - start) / 1e9;
  const double pps = elapsed > 0 ? static_cast<double>(sent) / elapsed : 0;
  if (o.json) {
    nlohmann::json j = {{"mode", o.kind},
                        {"target", o.target},
                        {"iface", eg.iface},
                        {"dst_mac", format_mac(eg.dst_mac)},
                        {"spoof", spoof.to_string()},
                        {"malform", o.malform},
                        {"rate_target", o.rate},
                        {"sent", sent},
                        {"send_errors", sock.errors()},
                        {"device_full_waits", sock.full_waits()},
                        {"elapsed_s", elapsed},
                        {"pps", pps},
                        {"sndbuf", sock.sndbuf()},
                        {"tx_method", sock.method()},
                        {"interrupted", g_stop.load()}};
    std::cout << j.dump() << "\n";
  } else {
    const std::string what = *malform == Malform::None ? o.kind : o.kind + " (malformed: " + o.malform + ")";
    std::printf("%s flood -> %s via %s (%s): sent %llu in %.3f s = %.0f pps (target %s), %llu send errors\n",
                what.c_str(), o.target.c_str(), eg.iface.c_str(), format_mac(eg.dst_mac).c_str(),
                static_cast<unsigned long long>(sent), elapsed, pps,
                o.rate ? std::to_string(o.rate).c_str() : "unlimited",
                static_cast<unsigned long long>(sock.errors()));
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// replay

struct ReplayOptions : TxOptions {
  std::string file;
  double speed = 1.0;
  uint64_t rate = 0;
  bool spoof_set = false;
  Bounds bounds;
};

int run_replay(const ReplayOptions& o) {
  const Endpoint target = checked_target(o.target);
  RewriteConfig cfg{target.ip, target.port, std::nullopt};
  if (o.spoof_set) cfg.spoof = checked_spoof(o);
  if (!(o.speed > 0)) throw std::runtime_error("--speed must be > 0");

  char errbuf[PCAP_ERRBUF_SIZE] = {};
  pcap_t* pcap = pcap_open_offline_with_tstamp_precision(o.file.c_str(), PCAP_TSTAMP_PRECISION_NANO, errbuf);
  if (!pcap) throw std::runtime_error("cannot open " + o.file + ": " + errbuf);
  const auto link = link_type_from_dlt(pcap_datalink(pcap));
  if (!link) {
    const std::string name = pcap_datalink_val_to_name(pcap_datalink(pcap)) ? pcap_datalink_val_to_name(pcap_datalink(pcap)) : "?";
    pcap_close(pcap);
    throw std::runtime_error("unsupported link type " + name + " in " + o.file);
  }

  const Egress eg = resolve_egress(target.ip, o.iface, o.dst_mac);
  PacketSocket sock(eg.ifindex, o.sndbuf, kEthHeaderLen + static_cast<size_t>(eg.mtu), tx_method(o));

  std::vector<uint8_t> storage(kBatch * 65536);
  uint8_t* frames[kBatch];
  size_t lens[kBatch];
  for (size_t i = 0; i < kBatch; ++i) frames[i] = storage.data() + i * 65536;

  std::array<uint64_t, kSkipReasonCount> skipped{};
  uint64_t oversize = 0, sent = 0, read = 0, queued = 0;
  const uint64_t limit = o.bounds.count ? o.bounds.count : UINT64_MAX;
  const uint64_t start = now_ns();
  const uint64_t deadline =
      o.bounds.duration_s > 0 ? start + static_cast<uint64_t>(o.bounds.duration_s * 1e9) : UINT64_MAX;
  TokenBucket bucket(o.rate, pacing_burst(o.rate, kBatch), start);
  uint64_t first_ts = 0, floor_offset = 0;
  bool have_first = false;
  size_t pending = 0;
  uint64_t pending_due = 0;  // --speed: when the newest pending frame is due

  auto flush = [&]() {
    if (!pending) return;
    if (o.rate) {
      size_t done = 0;
      while (done < pending && !g_stop.load()) {
        const uint64_t now = now_ns();
        const uint64_t n = bucket.take(now, pending - done);
        if (!n) {
          sleep_until_ns(now + bucket.wait_ns(now, pending - done));
          continue;
        }
        sent += sock.send_batch(frames + done, lens + done, n);
        done += n;
      }
    } else {
      sleep_until_ns(pending_due);
      sent += sock.send_batch(frames, lens, pending);
    }
    pending = 0;
  };

  pcap_pkthdr* hdr = nullptr;
  const u_char* data = nullptr;
  int rc = 0;
  while (queued < limit && !g_stop.load() && now_ns() < deadline && (rc = pcap_next_ex(pcap, &hdr, &data)) == 1) {
    ++read;
    const uint64_t ts = static_cast<uint64_t>(hdr->ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(hdr->ts.tv_usec);
    const L3Location loc = locate_ip(std::span<const uint8_t>(data, hdr->caplen), *link);
    if (loc.skip != SkipReason::None) {
      ++skipped[static_cast<size_t>(loc.skip)];
      continue;
    }
    if (loc.length > static_cast<size_t>(eg.mtu)) {
      ++oversize;  // e.g. a GRO/TSO super-packet captured on the host: cannot go on the wire
      continue;
    }
    uint8_t* frame = frames[pending];
    std::memcpy(frame + kEthHeaderLen, data + loc.offset, loc.length);
    size_t ip_len = 0;
    const SkipReason why = rewrite_ipv4_tcp(std::span<uint8_t>(frame + kEthHeaderLen, loc.length), cfg, ip_len);
    if (why != SkipReason::None) {
      ++skipped[static_cast<size_t>(why)];
      continue;
    }
    std::memcpy(frame, eg.dst_mac.data(), 6);
    std::memcpy(frame + 6, eg.src_mac.data(), 6);
    frame[12] = 0x08;
    frame[13] = 0x00;
    lens[pending] = kEthHeaderLen + ip_len;
    if (!o.rate) {
      if (!have_first) {
        first_ts = ts;
        have_first = true;
      }
      floor_offset = replay_offset_ns(first_ts, ts, o.speed, floor_offset);
      const uint64_t due = start + floor_offset;
      // Frames due within the same half millisecond go out in one batch.
      if (pending && due > pending_due + 500'000) {
        flush();
        std::memcpy(frames[0], frame, lens[pending]);
        lens[0] = lens[pending];
      }
      pending_due = due;
    }
    ++pending;
    ++queued;
    if (pending == kBatch) flush();
  }
  flush();
  sent += sock.finish();
  // The error text lives in the pcap handle, so it is printed before the handle is closed.
  if (rc == -1) std::fprintf(stderr, "synflood: pcap read error: %s\n", pcap_geterr(pcap));
  pcap_close(pcap);

  const double elapsed = static_cast<double>(now_ns() - start) / 1e9;
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
                        {"sent", sent},           {"send_errors", sock.errors()},
                        {"device_full_waits", sock.full_waits()},
                        {"tx_method", sock.method()},
                        {"skipped", skip_json},   {"elapsed_s", elapsed},
                        {"pps", elapsed > 0 ? static_cast<double>(sent) / elapsed : 0},
                        {"interrupted", g_stop.load()}};
    std::cout << j.dump() << "\n";
  } else {
    std::printf("replay %s -> %s: read %llu, sent %llu, skipped %llu (%s), %llu send errors, %.3f s\n",
                o.file.c_str(), o.target.c_str(), static_cast<unsigned long long>(read),
                static_cast<unsigned long long>(sent), static_cast<unsigned long long>(skipped_total),
                skip_json.dump().c_str(), static_cast<unsigned long long>(sock.errors()), elapsed);
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// probe

struct ProbeOptions {
  ProbeConfig cfg;
  bool json = false;
};

int run_probe_cmd(ProbeOptions o) {
  const Endpoint target = checked_target(o.cfg.target);
  if (o.cfg.count == 0) throw std::runtime_error("--count must be > 0");
  if (o.cfg.concurrency == 0) throw std::runtime_error("--concurrency must be > 0");
  if (o.cfg.timeout_ms == 0) throw std::runtime_error("--timeout-ms must be > 0");
  if (!o.cfg.http_path.empty() && o.cfg.http_path[0] != '/') throw std::runtime_error("--http PATH must start with /");
  o.cfg.concurrency = std::min(o.cfg.concurrency, o.cfg.count);
  const uint64_t start = now_ns();
  const auto attempts = run_probe(o.cfg, target);
  const auto report = summarize_probe(o.cfg, attempts, static_cast<double>(now_ns() - start) / 1e9);
  if (o.json)
    std::cout << to_json(report).dump() << "\n";
  else
    std::cout << to_text(report);
  return 0;
}

void add_tx_options(CLI::App* app, TxOptions& o) {
  app->add_option("--target", o.target, "Destination IP:PORT (IPv4)")->required();
  app->add_option("--iface", o.iface, "Send on this interface (default: the route to the target)");
  app->add_option("--dst-mac", o.dst_mac,
                  "Destination MAC of the frames (default: the next hop's, from the neighbour table)");
  app->add_flag("--allow-any-spoof", o.allow_any_spoof,
                "Allow a --spoof range outside 198.18.0.0/15 (real addresses get the backscatter)");
  app->add_option("--sndbuf", o.sndbuf,
                  "Socket send buffer in bytes (SO_SNDBUFFORCE). On veth the receive work runs on the "
                  "sender's CPU; a small buffer throttles the flood itself")
      ->capture_default_str()
      ->check(CLI::Range(4096, 1 << 30));
  app->add_option("--tx-method", o.tx_method,
                  "ring: TPACKET_V2 transmit ring, one send() per batch (fastest; falls back to mmsg when "
                  "the kernel refuses it); mmsg: batched sendmmsg, one message header per frame")
      ->capture_default_str()
      ->check(CLI::IsMember({"mmsg", "ring"}));
  app->add_flag("--json", o.json, "Print the result as one JSON object");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "synflood: TCP flood generator, pcap replayer and legitimate-client prober for stress tests.\n"
      "Run it only against hosts you own, ideally inside a lab of network namespaces. Floods\n"
      "spoof sources from 198.18.0.0/15 (RFC 2544) by default and always stop by themselves."};
  app.require_subcommand(1);

  FloodOptions flood;
  std::vector<CLI::App*> flood_cmds;
  for (const char* kind : {"syn", "ack", "rst", "fin", "mixed"}) {
    const std::string desc =
        std::string(kind) == "mixed"
            ? "Flood a mix (per 8 packets: 4 SYN, 2 ACK, 1 RST, 1 FIN+ACK) from spoofed sources"
            : "Flood " + std::string(kind) + " segments from spoofed sources (AF_PACKET, batched sendmmsg)";
    CLI::App* cmd = app.add_subcommand(kind, desc);
    add_tx_options(cmd, flood);
    cmd->add_option("--rate", flood.rate, "Packets per second; 0 = as fast as possible")->required();
    cmd->add_option("--duration", flood.bounds.duration_s, "Stop after S seconds")->check(CLI::PositiveNumber);
    cmd->add_option("--count", flood.bounds.count, "Stop after N packets")->check(CLI::PositiveNumber);
    cmd->add_option("--spoof", flood.spoof, "Source range (CIDR)")->capture_default_str();
    cmd->add_option("--seed", flood.seed, "Seed for addresses, ports and sequence numbers (default: clock)");
    if (std::string(kind) == "syn") {
      std::string help =
          "Send SYNs with one named defect (and nothing else wrong: IP and TCP checksums valid), to check "
          "that a defence does not pass them to the server:";
      std::vector<std::string> names{"none"};
      for (const auto& k : malform_kinds()) {
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
      "replay", "Replay the TCP packets of a pcap file at the target (other protocols are skipped and counted)");
  rcmd->add_option("file", replay.file, "pcap file")->required()->check(CLI::ExistingFile);
  add_tx_options(rcmd, replay);
  auto* speed = rcmd->add_option("--speed", replay.speed, "Time scale relative to the capture (2 = twice as fast)")
                    ->capture_default_str();
  auto* rrate = rcmd->add_option("--rate", replay.rate, "Ignore capture timing; send at this many packets per second");
  speed->excludes(rrate);
  auto* rspoof = rcmd->add_option("--spoof", replay.spoof,
                                  "Map sources into this range (one captured source -> one spoofed source); "
                                  "default: keep the captured sources");
  rcmd->add_option("--duration", replay.bounds.duration_s, "Stop after S seconds")->check(CLI::PositiveNumber);
  rcmd->add_option("--count", replay.bounds.count, "Stop after N packets")->check(CLI::PositiveNumber);

  ProbeOptions probe;
  CLI::App* pcmd = app.add_subcommand(
      "probe", "Legitimate clients: success %, connect and first-byte latency percentiles, failures by kind");
  pcmd->add_option("--target", probe.cfg.target, "Server IP:PORT (IPv4)")->required();
  pcmd->add_option("--count", probe.cfg.count, "Connections to open")->required();
  pcmd->add_option("--concurrency", probe.cfg.concurrency, "Connections in flight at once")->default_val(10);
  pcmd->add_option("--timeout-ms", probe.cfg.timeout_ms,
                   "Per-connection deadline from connect() to success (handshake and, with --http or "
                   "--expect-banner, the first response byte)")
      ->default_val(2000);
  auto* http = pcmd->add_option("--http", probe.cfg.http_path,
                                "Send GET PATH; success needs an HTTP 2xx/3xx status line; first-byte "
                                "latency is connect() to the first response byte");
  pcmd->add_flag("--expect-banner", probe.cfg.expect_banner,
                 "Send nothing and wait for the server to speak first (SMTP/SSH-like services)")
      ->excludes(http);
  pcmd->add_flag("--json", probe.json, "Print the result as one JSON object");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  replay.spoof_set = rspoof->count() > 0;
  install_signals();
  ::prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);  // wake-ups within ~1 us: pacing depends on it
  try {
    for (CLI::App* cmd : flood_cmds)
      if (cmd->parsed()) return run_flood(flood);
    if (rcmd->parsed()) return run_replay(replay);
    if (pcmd->parsed()) return run_probe_cmd(probe);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "synflood: %s\n", e.what());
    return 2;
  }
  return 1;
}
