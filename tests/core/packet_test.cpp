// Packet parsing: kernel-captured fixtures checked field by field against tcpdump, every
// ParseError provoked by a minimal hand-made packet, truncation at every length, IP options, IPv6
// extension headers, TCP option edge cases, incremental setters against full recomputes.
//
// Hand-made packets are assembled byte by byte here (not with the library's builders) and their
// checksums come from a reference sum written here, so a builder bug cannot hide a parser bug.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "syngate_test/packet_fixtures.hpp"
#include "syngate/checksum.hpp"
#include "syngate/packet.hpp"

namespace syngate {
namespace {

using testing::Fixture;
using testing::fixtures;
using Bytes = std::vector<uint8_t>;

// ---- hand assembly --------------------------------------------------------------------------

uint16_t ref_checksum(const Bytes& b) {
  uint64_t s = 0;
  for (size_t i = 0; i < b.size(); i += 2) s += (uint32_t{b[i]} << 8) | (i + 1 < b.size() ? b[i + 1] : 0);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(~s & 0xffff);
}
void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
  put16(p, static_cast<uint16_t>(v >> 16));
  put16(p + 2, static_cast<uint16_t>(v));
}
uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t get32(const uint8_t* p) { return (uint32_t{get16(p)} << 16) | get16(p + 2); }

struct Seg {
  uint16_t sport = 40000;
  uint16_t dport = 80;
  uint32_t seq = 0x01020304;
  uint32_t ack = 0;
  uint8_t flags = tcp_flag::SYN;
  uint16_t window = 29200;
  Bytes options;               // padded with zeros to a multiple of 4
  Bytes payload;
  int data_offset_words = -1;  // override the computed data offset
};

Bytes tcp_bytes(const Seg& s) {
  Bytes opts = s.options;
  while (opts.size() % 4) opts.push_back(0);
  Bytes t(20 + opts.size() + s.payload.size(), 0);
  put16(&t[0], s.sport);
  put16(&t[2], s.dport);
  put32(&t[4], s.seq);
  put32(&t[8], s.ack);
  const int doff = s.data_offset_words >= 0 ? s.data_offset_words : static_cast<int>((20 + opts.size()) / 4);
  t[12] = static_cast<uint8_t>(doff << 4);
  t[13] = s.flags;
  put16(&t[14], s.window);
  std::copy(opts.begin(), opts.end(), t.begin() + 20);
  std::copy(s.payload.begin(), s.payload.end(), t.begin() + 20 + static_cast<long>(opts.size()));
  return t;
}

const uint8_t kSrc4[4] = {192, 0, 2, 1};
const uint8_t kDst4[4] = {198, 51, 100, 7};
const uint8_t kSrc6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
const uint8_t kDst6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd};

void fill_tcp_checksum(Bytes& pkt, size_t l4, bool v4) {
  put16(&pkt[l4 + 16], 0);
  Bytes pseudo;
  const size_t len = pkt.size() - l4;
  if (v4) {
    pseudo.assign(pkt.begin() + 12, pkt.begin() + 20);
    pseudo.insert(pseudo.end(), {0, 6, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)});
  } else {
    pseudo.assign(pkt.begin() + 8, pkt.begin() + 40);
    pseudo.insert(pseudo.end(), {0, 0, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len), 0, 0, 0, 6});
  }
  pseudo.insert(pseudo.end(), pkt.begin() + static_cast<long>(l4), pkt.end());
  put16(&pkt[l4 + 16], ref_checksum(pseudo));
}

struct V4 {
  Bytes ip_options;          // multiple of 4
  uint8_t proto = 6;
  uint16_t frag = 0x4000;    // DF
  int ihl_words = -1;        // override
  int total_length = -1;     // override
};

Bytes v4_packet(const Seg& s, const V4& ip = {}) {
  const Bytes tcp = tcp_bytes(s);
  const size_t hl = 20 + ip.ip_options.size();
  Bytes p(hl, 0);
  p[0] = static_cast<uint8_t>(0x40 | (ip.ihl_words >= 0 ? ip.ihl_words : static_cast<int>(hl / 4)));
  put16(&p[2], static_cast<uint16_t>(ip.total_length >= 0 ? ip.total_length : static_cast<int>(hl + tcp.size())));
  put16(&p[4], 0x1234);
  put16(&p[6], ip.frag);
  p[8] = 64;
  p[9] = ip.proto;
  std::memcpy(&p[12], kSrc4, 4);
  std::memcpy(&p[16], kDst4, 4);
  std::copy(ip.ip_options.begin(), ip.ip_options.end(), p.begin() + 20);
  put16(&p[10], ref_checksum(Bytes(p.begin(), p.begin() + static_cast<long>(hl))));
  p.insert(p.end(), tcp.begin(), tcp.end());
  if (ip.proto == 6 && tcp.size() >= 18) fill_tcp_checksum(p, hl, true);
  return p;
}

// ext: already-encoded extension headers; first_next: the Next Header value in the fixed header.
Bytes v6_packet(const Seg& s, const Bytes& ext = {}, uint8_t first_next = 6, int payload_length = -1) {
  const Bytes tcp = tcp_bytes(s);
  Bytes p(40, 0);
  p[0] = 0x60;
  put16(&p[4], static_cast<uint16_t>(payload_length >= 0 ? payload_length : static_cast<int>(ext.size() + tcp.size())));
  p[6] = first_next;
  p[7] = 57;
  std::memcpy(&p[8], kSrc6, 16);
  std::memcpy(&p[24], kDst6, 16);
  p.insert(p.end(), ext.begin(), ext.end());
  p.insert(p.end(), tcp.begin(), tcp.end());
  if (tcp.size() >= 18) fill_tcp_checksum(p, 40 + ext.size(), false);
  return p;
}

// An extension header of (hdr_ext_len + 1) * 8 bytes, PadN-filled.
Bytes ext_header(uint8_t next, uint8_t hdr_ext_len) {
  Bytes h((hdr_ext_len + 1) * 8u, 0);
  h[0] = next;
  h[1] = hdr_ext_len;
  h[2] = 1;  // PadN
  h[3] = static_cast<uint8_t>(h.size() - 4);
  return h;
}

// Parses from an exactly-sized heap copy, so that any read past the end trips AddressSanitizer.
struct Parsed {
  std::unique_ptr<uint8_t[]> storage;
  ParseResult result;
};
Parsed parse_copy(const Bytes& b, size_t len) {
  Parsed p;
  p.storage.reset(new uint8_t[len ? len : 1]);
  if (len) std::memcpy(p.storage.get(), b.data(), len);
  p.result = parse_tcp_packet(std::span<uint8_t>(p.storage.get(), len));
  return p;
}
ParseError parse_error(const Bytes& b) { return parse_copy(b, b.size()).result.error; }

const Bytes kSynOptions = {2, 4, 0x05, 0xb4,                        // MSS 1460
                           4, 2,                                    // SACK permitted
                           8, 10, 0, 0, 0, 1, 0, 0, 0, 0,           // TS 1 0
                           1, 3, 3, 7};                             // NOP, wscale 7

// ---- kernel fixtures ------------------------------------------------------------------------

uint8_t flags_from(const std::string& text) {
  static const std::map<std::string, uint8_t> names = {
      {"FIN", tcp_flag::FIN}, {"SYN", tcp_flag::SYN}, {"RST", tcp_flag::RST}, {"PSH", tcp_flag::PSH},
      {"ACK", tcp_flag::ACK}, {"URG", tcp_flag::URG}, {"ECE", tcp_flag::ECE}, {"CWR", tcp_flag::CWR}};
  uint8_t f = 0;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t bar = text.find('|', start);
    const std::string name = text.substr(start, bar == std::string::npos ? std::string::npos : bar - start);
    if (name != "none") f |= names.at(name);
    if (bar == std::string::npos) break;
    start = bar + 1;
  }
  return f;
}

std::vector<SackBlock> sack_from(const std::string& text) {
  std::vector<SackBlock> out;
  std::istringstream in(text);
  for (std::string blk; in >> blk;) {
    const auto colon = blk.find(':');
    out.push_back({static_cast<uint32_t>(std::stoul(blk.substr(0, colon))),
                   static_cast<uint32_t>(std::stoul(blk.substr(colon + 1)))});
  }
  return out;
}

std::string kind_of(const std::string& name) { return name.substr(name.rfind('_') + 1); }

TEST(KernelFixtures, CoverEveryPacketKindInBothFamilies) {
  const auto& all = fixtures();
  ASSERT_GE(all.size(), 80u) << "fixtures missing from " << SYNGATE_FIXTURE_DIR;
  std::set<std::string> seen;
  for (const auto& f : all) seen.insert(f.at("family") + ":" + kind_of(f.name));
  for (const char* fam : {"4", "6"}) {
    for (const char* kind : {"syn", "synack", "ack", "data", "fin", "rst", "rstack", "sack1", "sack2", "sack3", "sack4"}) {
      EXPECT_TRUE(seen.count(std::string(fam) + ":" + kind)) << "no IPv" << fam << " " << kind << " fixture";
    }
  }
}

TEST(KernelFixtures, ParseAndMatchTcpdump) {
  for (const Fixture& f : fixtures()) {
    SCOPED_TRACE(f.name);
    Parsed p = parse_copy(f.bytes, f.bytes.size());
    ASSERT_EQ(p.result.error, ParseError::None) << to_string(p.result.error);
    const TcpPacket& pkt = p.result.packet;
    EXPECT_EQ(pkt.ip_version(), f.num("family"));
    EXPECT_EQ(pkt.is_v4(), f.at("family") == "4");
    EXPECT_EQ(pkt.src().to_string(), f.at("src"));
    EXPECT_EQ(pkt.dst().to_string(), f.at("dst"));
    EXPECT_EQ(pkt.src().is_v4(), pkt.is_v4());
    EXPECT_EQ(pkt.tuple(), (FlowTuple{*Address::parse(f.at("src")), *Address::parse(f.at("dst")),
                                      static_cast<uint16_t>(f.num("sport")), static_cast<uint16_t>(f.num("dport"))}));
    EXPECT_EQ(pkt.sport(), f.num("sport"));
    EXPECT_EQ(pkt.dport(), f.num("dport"));
    EXPECT_EQ(pkt.ttl(), f.num("ttl"));
    EXPECT_EQ(pkt.bytes().size(), f.num("ip_len"));
    EXPECT_EQ(pkt.bytes().data(), p.storage.get());
    EXPECT_EQ(pkt.tcp_offset(), pkt.is_v4() ? 20u : 40u);
    EXPECT_EQ(pkt.payload_len(), f.num("payload_len"));
    EXPECT_EQ(pkt.payload().size(), f.num("payload_len"));
    EXPECT_EQ(pkt.tcp_segment().size(), pkt.tcp_header_len() + pkt.payload_len());
    EXPECT_EQ(pkt.tcp_segment().data(), p.storage.get() + pkt.tcp_offset());
    EXPECT_EQ(pkt.payload().data(), p.storage.get() + pkt.tcp_offset() + pkt.tcp_header_len());
    EXPECT_EQ(pkt.flags(), flags_from(f.at("flags")));
    if (f.has("seq")) {
      EXPECT_EQ(pkt.seq(), f.num("seq"));
    }
    if (f.has("ack")) {
      EXPECT_EQ(pkt.ack(), f.num("ack"));
    }
    EXPECT_EQ(f.has("ack"), pkt.has(tcp_flag::ACK));  // tcpdump prints ack exactly when ACK is set
    EXPECT_EQ(pkt.window(), f.num("win"));
    EXPECT_EQ(pkt.checksum(), f.num("cksum"));

    const TcpOptions& o = pkt.options();
    EXPECT_EQ(o.has_mss, f.has("mss"));
    if (f.has("mss")) {
      EXPECT_EQ(o.mss, f.num("mss"));
    }
    EXPECT_EQ(o.has_wscale, f.has("wscale"));
    if (f.has("wscale")) {
      EXPECT_EQ(o.wscale, f.num("wscale"));
    }
    EXPECT_EQ(o.sack_permitted, f.has("sack_permitted"));
    EXPECT_EQ(o.has_timestamps, f.has("tsval"));
    if (f.has("tsval")) {
      EXPECT_EQ(o.tsval, f.num("tsval"));
      EXPECT_EQ(o.tsecr, f.num("tsecr"));
      // The recorded offset must point at the TSval bytes in the header, TSecr right after.
      ASSERT_GT(o.ts_offset, 20);
      ASSERT_LE(o.ts_offset + 8u, pkt.tcp_header_len());
      EXPECT_EQ(get32(pkt.tcp_segment().data() + o.ts_offset), o.tsval);
      EXPECT_EQ(get32(pkt.tcp_segment().data() + o.ts_offset + 4), o.tsecr);
      EXPECT_EQ(pkt.tcp_segment()[o.ts_offset - 2], tcp_option::TIMESTAMP);
    } else {
      EXPECT_EQ(o.ts_offset, 0);
    }
    const auto blocks = f.has("sack") ? sack_from(f.at("sack")) : std::vector<SackBlock>{};
    ASSERT_EQ(o.sack_count, blocks.size());
    for (size_t i = 0; i < blocks.size(); ++i) {
      EXPECT_EQ(o.sack[i], blocks[i]) << "block " << i;
      ASSERT_LE(o.sack_offset + 8 * (i + 1), pkt.tcp_header_len());
      EXPECT_EQ(get32(pkt.tcp_segment().data() + o.sack_offset + 8 * i), blocks[i].left);
      EXPECT_EQ(get32(pkt.tcp_segment().data() + o.sack_offset + 8 * i + 4), blocks[i].right);
    }
    if (blocks.empty()) {
      EXPECT_EQ(o.sack_offset, 0);
    }
  }
}

TEST(KernelFixtures, ChecksumsVerify) {
  for (const Fixture& f : fixtures()) {
    SCOPED_TRACE(f.name);
    Bytes b = f.bytes;
    ParseResult r = parse_tcp_packet(b);
    ASSERT_TRUE(r);
    EXPECT_TRUE(r.packet.checksum_valid());
    // Full computation with the checksum field zeroed gives the kernel's value.
    Bytes seg(r.packet.tcp_segment().begin(), r.packet.tcp_segment().end());
    put16(&seg[16], 0);
    const uint16_t full = r.packet.is_v4()
                              ? tcp_checksum_v4(std::span<const uint8_t, 4>(b.data() + 12, 4),
                                                std::span<const uint8_t, 4>(b.data() + 16, 4), seg)
                              : tcp_checksum_v6(std::span<const uint8_t, 16>(b.data() + 8, 16),
                                                std::span<const uint8_t, 16>(b.data() + 24, 16), seg);
    EXPECT_EQ(full, f.num("cksum"));
    if (r.packet.is_v4()) {
      Bytes hdr(b.begin(), b.begin() + 20);
      const uint16_t stored = get16(&hdr[10]);
      put16(&hdr[10], 0);
      EXPECT_EQ(ipv4_header_checksum(hdr), stored);
    }
    // One flipped payload or header bit must be detected.
    b[b.size() - 1] ^= 0x01;
    EXPECT_FALSE(parse_tcp_packet(b).packet.checksum_valid());
  }
}

TEST(KernelFixtures, RecomputeReproducesKernelBytes) {
  for (const Fixture& f : fixtures()) {
    SCOPED_TRACE(f.name);
    Bytes b = f.bytes;
    ParseResult r = parse_tcp_packet(b);
    ASSERT_TRUE(r);
    b[r.packet.tcp_offset() + 16] ^= 0x5a;  // spoil it first so the recompute has work to do
    EXPECT_FALSE(r.packet.checksum_valid());
    r.packet.recompute_checksum();
    EXPECT_EQ(b, f.bytes);
    EXPECT_TRUE(r.packet.checksum_valid());
  }
}

// After each setter: the field reads back, the checksum still verifies, and it equals what a
// from-scratch recompute of the same bytes gives.
void expect_incremental_matches_full(const TcpPacket& pkt) {
  ASSERT_TRUE(pkt.checksum_valid());
  Bytes copy(pkt.bytes().begin(), pkt.bytes().end());
  ParseResult again = parse_tcp_packet(copy);
  ASSERT_TRUE(again);
  again.packet.recompute_checksum();
  EXPECT_EQ(pkt.checksum(), again.packet.checksum());
}

TEST(KernelFixtures, SettersMatchFullRecompute) {
  std::mt19937 rng(1624);
  for (const Fixture& f : fixtures()) {
    SCOPED_TRACE(f.name);
    for (int round = 0; round < 40; ++round) {
      Bytes b = f.bytes;
      ParseResult r = parse_tcp_packet(b);
      ASSERT_TRUE(r);
      TcpPacket& pkt = r.packet;
      auto value32 = [&]() -> uint32_t {
        switch (round % 5) {
          case 0: return 0;
          case 1: return 0xffffffff;
          default: return static_cast<uint32_t>(rng());
        }
      };
      const uint32_t seq = value32(), ack = value32();
      const uint16_t win = static_cast<uint16_t>(round % 5 == 1 ? 0xffff : value32());
      pkt.set_seq(seq);
      EXPECT_EQ(pkt.seq(), seq);
      expect_incremental_matches_full(pkt);
      pkt.set_ack(ack);
      EXPECT_EQ(pkt.ack(), ack);
      expect_incremental_matches_full(pkt);
      pkt.set_window(win);
      EXPECT_EQ(pkt.window(), win);
      expect_incremental_matches_full(pkt);

      const Bytes before_ts = b;
      const uint32_t tsval = value32(), tsecr = value32();
      pkt.set_tsval(tsval);
      pkt.set_tsecr(tsecr);
      if (pkt.options().has_timestamps) {
        EXPECT_EQ(pkt.options().tsval, tsval);
        EXPECT_EQ(pkt.options().tsecr, tsecr);
        ParseResult reread = parse_tcp_packet(b);
        ASSERT_TRUE(reread);
        EXPECT_EQ(reread.packet.options().tsval, tsval);
        EXPECT_EQ(reread.packet.options().tsecr, tsecr);
        expect_incremental_matches_full(pkt);
      } else {
        EXPECT_EQ(b, before_ts) << "set_tsval/tsecr wrote into a packet without timestamps";
      }

      for (size_t i = 0; i < kMaxSackBlocks; ++i) {
        const Bytes before = b;
        const SackBlock blk{value32(), value32()};
        pkt.set_sack_block(i, blk);
        if (i < pkt.options().sack_count) {
          EXPECT_EQ(pkt.options().sack[i], blk);
          ParseResult reread = parse_tcp_packet(b);
          ASSERT_TRUE(reread);
          EXPECT_EQ(reread.packet.options().sack[i], blk);
          expect_incremental_matches_full(pkt);
        } else {
          EXPECT_EQ(b, before) << "set_sack_block(" << i << ") beyond sack_count wrote bytes";
        }
      }
      // The untouched fields survive.
      EXPECT_EQ(pkt.sport(), f.num("sport"));
      EXPECT_EQ(pkt.dport(), f.num("dport"));
      EXPECT_EQ(pkt.flags(), flags_from(f.at("flags")));
      EXPECT_TRUE(std::equal(b.begin(), b.begin() + static_cast<long>(pkt.tcp_offset()), f.bytes.begin()));
    }
  }
}

TEST(KernelFixtures, TruncatedAtEveryLengthIsAnError) {
  for (const Fixture& f : fixtures()) {
    SCOPED_TRACE(f.name);
    for (size_t len = 0; len < f.bytes.size(); ++len) {
      Parsed p = parse_copy(f.bytes, len);
      ASSERT_NE(p.result.error, ParseError::None) << "accepted a packet cut to " << len << " bytes";
    }
  }
}

TEST(KernelFixtures, PeekedTupleIsTheParsedOne) {
  for (const Fixture& f : fixtures()) {
    SCOPED_TRACE(f.name);
    Parsed p = parse_copy(f.bytes, f.bytes.size());
    ASSERT_EQ(p.result.error, ParseError::None);
    const std::optional<FlowTuple> peeked = peek_tcp_tuple(f.bytes);
    ASSERT_TRUE(peeked.has_value());
    EXPECT_EQ(*peeked, p.result.packet.tuple());
    // A hint never reads past the buffer: cut short, it gives up instead.
    EXPECT_FALSE(peek_tcp_tuple(std::span<const uint8_t>(f.bytes.data(), 39)).has_value());
  }
}

TEST(KernelFixtures, TrailingLinkPaddingIsIgnored) {
  for (const Fixture& f : fixtures()) {
    SCOPED_TRACE(f.name);
    Bytes b = f.bytes;
    b.insert(b.end(), 18, 0xee);  // what an Ethernet minimum-frame pad would add, and more
    Parsed p = parse_copy(b, b.size());
    ASSERT_EQ(p.result.error, ParseError::None);
    EXPECT_EQ(p.result.packet.bytes().size(), f.bytes.size());
    EXPECT_EQ(p.result.packet.payload_len(), f.num("payload_len"));
    EXPECT_TRUE(p.result.packet.checksum_valid());
  }
}

// ---- one test per ParseError ----------------------------------------------------------------

TEST(ParseErrors, ValidBaselinesParse) {
  // The minimal packets every error test below starts from must themselves be fine.
  EXPECT_EQ(parse_error(v4_packet(Seg{})), ParseError::None);
  EXPECT_EQ(parse_error(v6_packet(Seg{})), ParseError::None);
  Seg s;
  s.options = kSynOptions;
  Parsed p = parse_copy(v4_packet(s), v4_packet(s).size());
  ASSERT_EQ(p.result.error, ParseError::None);
  EXPECT_TRUE(p.result.packet.checksum_valid());
  Parsed q = parse_copy(v6_packet(s), v6_packet(s).size());
  ASSERT_EQ(q.result.error, ParseError::None);
  EXPECT_TRUE(q.result.packet.checksum_valid());
}

TEST(ParseErrors, Truncated) {
  EXPECT_EQ(parse_error({}), ParseError::Truncated);
  const Bytes v4 = v4_packet(Seg{});
  EXPECT_EQ(parse_copy(v4, 1).result.error, ParseError::Truncated);
  EXPECT_EQ(parse_copy(v4, 19).result.error, ParseError::Truncated);
  const Bytes v6 = v6_packet(Seg{});
  EXPECT_EQ(parse_copy(v6, 39).result.error, ParseError::Truncated);
  const ParseResult r = parse_tcp_packet({});
  EXPECT_FALSE(r);
}

TEST(ParseErrors, BadIpVersion) {
  for (uint8_t version : {0, 1, 5, 7, 15}) {
    Bytes b = v4_packet(Seg{});
    b[0] = static_cast<uint8_t>(version << 4 | 5);
    EXPECT_EQ(parse_error(b), ParseError::BadIpVersion) << int{version};
  }
}

TEST(ParseErrors, BadIpHeaderLength) {
  for (int ihl : {0, 1, 4}) {
    V4 ip;
    ip.ihl_words = ihl;
    EXPECT_EQ(parse_error(v4_packet(Seg{}, ip)), ParseError::BadIpHeaderLength) << ihl;
  }
  // IHL 15 (60 bytes) while the whole buffer is 40 bytes.
  V4 ip;
  ip.ihl_words = 15;
  ip.total_length = 40;
  EXPECT_EQ(parse_error(v4_packet(Seg{}, ip)), ParseError::BadIpHeaderLength);
}

TEST(ParseErrors, BadTotalLength) {
  V4 ip;
  ip.total_length = 41;  // one more than the buffer
  EXPECT_EQ(parse_error(v4_packet(Seg{}, ip)), ParseError::BadTotalLength);
  ip.total_length = 19;  // smaller than the IP header
  EXPECT_EQ(parse_error(v4_packet(Seg{}, ip)), ParseError::BadTotalLength);
  ip.total_length = 0xffff;
  EXPECT_EQ(parse_error(v4_packet(Seg{}, ip)), ParseError::BadTotalLength);
  EXPECT_EQ(parse_error(v6_packet(Seg{}, {}, 6, 21)), ParseError::BadTotalLength);
  EXPECT_EQ(parse_error(v6_packet(Seg{}, {}, 6, 0xffff)), ParseError::BadTotalLength);
}

TEST(ParseErrors, Fragment) {
  for (uint16_t frag : {uint16_t{0x2000}, uint16_t{0x0001}, uint16_t{0x6000}, uint16_t{0x1fff}, uint16_t{0x20b9}}) {
    V4 ip;
    ip.frag = frag;
    EXPECT_EQ(parse_error(v4_packet(Seg{}, ip)), ParseError::Fragment) << std::hex << frag;
  }
  // DF alone and the reserved bit are not fragmentation.
  V4 ip;
  ip.frag = 0x0000;
  EXPECT_EQ(parse_error(v4_packet(Seg{}, ip)), ParseError::None);
  // IPv6 fragment header (8 bytes: next, reserved, offset/flags, id), first fragment and later.
  for (uint16_t offset_flags : {uint16_t{0x0001}, uint16_t{0x0000}, uint16_t{0x00b8}}) {
    Bytes frag = {6, 0, static_cast<uint8_t>(offset_flags >> 8), static_cast<uint8_t>(offset_flags), 0xde, 0xad, 0xbe, 0xef};
    EXPECT_EQ(parse_error(v6_packet(Seg{}, frag, 44)), ParseError::Fragment) << offset_flags;
  }
  // A fragment header behind a hop-by-hop header is found too.
  Bytes chain = ext_header(44, 0);
  chain.insert(chain.end(), {6, 0, 0, 1, 0, 0, 0, 1});
  EXPECT_EQ(parse_error(v6_packet(Seg{}, chain, 0)), ParseError::Fragment);
}

TEST(ParseErrors, NotTcp) {
  for (uint8_t proto : {1, 17, 58, 132, 255}) {
    V4 ip;
    ip.proto = proto;
    EXPECT_EQ(parse_error(v4_packet(Seg{}, ip)), ParseError::NotTcp) << int{proto};
  }
  EXPECT_EQ(parse_error(v6_packet(Seg{}, {}, 17)), ParseError::NotTcp);
  EXPECT_EQ(parse_error(v6_packet(Seg{}, {}, 58)), ParseError::NotTcp);
  EXPECT_EQ(parse_error(v6_packet(Seg{}, {}, 59)), ParseError::NotTcp);  // No Next Header
  // UDP behind a destination options header.
  EXPECT_EQ(parse_error(v6_packet(Seg{}, ext_header(17, 0), 60)), ParseError::NotTcp);
}

TEST(ParseErrors, BadIpv6ExtHeader) {
  // Hop-by-hop header claiming 2 * 8 bytes, but only 8 remain before the payload ends.
  Bytes hbh = ext_header(6, 0);
  hbh[1] = 1;
  Bytes b = v6_packet(Seg{}, hbh, 0);
  // Cut the payload right after the (too short) extension header.
  b.resize(48);
  put16(&b[4], 8);
  EXPECT_EQ(parse_error(b), ParseError::BadIpv6ExtHeader);
  // Extension header with not even its two fixed bytes inside the payload.
  Bytes c = v6_packet(Seg{}, {}, 60);
  c.resize(41);
  put16(&c[4], 1);
  EXPECT_EQ(parse_error(c), ParseError::BadIpv6ExtHeader);
  // Length field pointing far past the end.
  Bytes d = v6_packet(Seg{}, ext_header(6, 0), 43);
  d[41] = 200;
  EXPECT_EQ(parse_error(d), ParseError::BadIpv6ExtHeader);
}

TEST(ParseErrors, TruncatedTcpHeader) {
  for (int tcp_len : {0, 1, 12, 19}) {
    V4 ip;
    ip.total_length = 20 + tcp_len;
    Bytes b = v4_packet(Seg{}, ip);
    b.resize(20 + tcp_len);
    EXPECT_EQ(parse_error(b), ParseError::TruncatedTcpHeader) << tcp_len;
    Bytes c = v6_packet(Seg{}, {}, 6, tcp_len);
    c.resize(40 + tcp_len);
    EXPECT_EQ(parse_error(c), ParseError::TruncatedTcpHeader) << tcp_len;
  }
  // Behind IPv4 options and IPv6 extension headers too.
  V4 ip;
  ip.ip_options = {1, 1, 1, 0};
  ip.total_length = 24 + 10;
  Bytes b = v4_packet(Seg{}, ip);
  b.resize(34);
  EXPECT_EQ(parse_error(b), ParseError::TruncatedTcpHeader);
  Bytes c = v6_packet(Seg{}, ext_header(6, 0), 60, 8 + 10);
  c.resize(58);
  EXPECT_EQ(parse_error(c), ParseError::TruncatedTcpHeader);
}

TEST(ParseErrors, BadTcpDataOffset) {
  for (int doff : {0, 1, 4}) {
    Seg s;
    s.data_offset_words = doff;
    EXPECT_EQ(parse_error(v4_packet(s)), ParseError::BadTcpDataOffset) << doff;
    EXPECT_EQ(parse_error(v6_packet(s)), ParseError::BadTcpDataOffset) << doff;
  }
  // Data offset past the segment: 6 words on a 20-byte segment, 15 words on a 40-byte one.
  Seg s;
  s.data_offset_words = 6;
  EXPECT_EQ(parse_error(v4_packet(s)), ParseError::BadTcpDataOffset);
  s.data_offset_words = 15;
  s.payload.assign(20, 0);
  EXPECT_EQ(parse_error(v4_packet(s)), ParseError::BadTcpDataOffset);
  EXPECT_EQ(parse_error(v6_packet(s)), ParseError::BadTcpDataOffset);
  // ...while the same offset over exactly 60 bytes is fine (the "payload" becomes options: NOPs).
  s.payload.assign(40, tcp_option::NOP);
  EXPECT_EQ(parse_error(v4_packet(s)), ParseError::None);
}

// ---- TCP options ----------------------------------------------------------------------------

ParseError options_error(const Bytes& opts) {
  Seg s;
  s.options = opts;
  return parse_error(v4_packet(s));
}

TEST(ParseErrors, MappedAddressInIpv6) {
  // ::ffff:198.18.0.1 as source, then as destination: either would alias an IPv4 flow.
  for (size_t at : {size_t{8}, size_t{24}}) {
    Bytes p = v6_packet(Seg{});
    std::fill(p.begin() + static_cast<long>(at), p.begin() + static_cast<long>(at) + 10, 0);
    p[at + 10] = 0xff;
    p[at + 11] = 0xff;
    p[at + 12] = 198;
    p[at + 13] = 18;
    p[at + 14] = 0;
    p[at + 15] = 1;
    EXPECT_EQ(parse_error(p), ParseError::MappedAddress) << "address at offset " << at;
  }
}

TEST(ParseErrors, BadTcpOptionLengthZeroOneOrPastEnd) {
  EXPECT_EQ(options_error({30, 0, 0, 0}), ParseError::BadTcpOption);      // length 0
  EXPECT_EQ(options_error({30, 1, 0, 0}), ParseError::BadTcpOption);      // length 1
  EXPECT_EQ(options_error({30, 5, 0, 0}), ParseError::BadTcpOption);      // runs past the header
  EXPECT_EQ(options_error({1, 1, 1, 30}), ParseError::BadTcpOption);      // kind with no length byte
  EXPECT_EQ(options_error({2, 4, 5, 180, 8, 10, 0, 0}), ParseError::BadTcpOption);  // TS cut by the header end
  EXPECT_EQ(options_error({2, 0, 0, 0}), ParseError::BadTcpOption);       // a known kind with length 0
}

TEST(ParseErrors, BadTcpOptionWrongFixedLengths) {
  EXPECT_EQ(options_error({2, 3, 5, 0}), ParseError::BadTcpOption);                 // MSS len 3
  EXPECT_EQ(options_error({2, 5, 5, 180, 0, 0, 0, 0}), ParseError::BadTcpOption);   // MSS len 5
  EXPECT_EQ(options_error({3, 2, 1, 1}), ParseError::BadTcpOption);                 // WS len 2
  EXPECT_EQ(options_error({3, 4, 7, 0}), ParseError::BadTcpOption);                 // WS len 4
  EXPECT_EQ(options_error({4, 3, 0, 0}), ParseError::BadTcpOption);                 // SACK-permitted len 3
  EXPECT_EQ(options_error({8, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}), ParseError::BadTcpOption);  // TS len 9
  EXPECT_EQ(options_error({8, 11, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}), ParseError::BadTcpOption); // TS len 11
  EXPECT_EQ(options_error({8, 8, 0, 0, 0, 1, 0, 0}), ParseError::BadTcpOption);     // TS len 8
  EXPECT_EQ(options_error({5, 2, 1, 1}), ParseError::BadTcpOption);                 // SACK without blocks
  EXPECT_EQ(options_error({5, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0}), ParseError::BadTcpOption);   // SACK len 9
  EXPECT_EQ(options_error({5, 11, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0}), ParseError::BadTcpOption);  // SACK len 11
  EXPECT_EQ(options_error({5, 14, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0}), ParseError::BadTcpOption);  // 1.5 blocks
}

TEST(TcpOptions, UnknownKindsAreSkipped) {
  Seg s;
  s.options = {30, 4, 0x12, 0x34,              // MPTCP-ish, unknown to us
               2, 4, 0x05, 0x78,               // MSS 1400
               34, 2,                          // TFO cookie request (len 2)
               254, 6, 0xf9, 0x89, 0xaa, 0xbb, // experimental
               3, 3, 9,                        // wscale 9
               0};
  Parsed p = parse_copy(v4_packet(s), v4_packet(s).size());
  ASSERT_EQ(p.result.error, ParseError::None);
  const TcpOptions& o = p.result.packet.options();
  EXPECT_TRUE(o.has_mss);
  EXPECT_EQ(o.mss, 1400);
  EXPECT_TRUE(o.has_wscale);
  EXPECT_EQ(o.wscale, 9);
  EXPECT_FALSE(o.sack_permitted);
  EXPECT_FALSE(o.has_timestamps);
  EXPECT_EQ(o.sack_count, 0);
}

TEST(TcpOptions, EndOfListStopsParsing) {
  // After END the rest of the option space is padding, whatever it holds (Linux stops there too).
  Seg s;
  s.options = {2, 4, 0x05, 0xb4, 0, 30, 0, 99};
  Parsed p = parse_copy(v4_packet(s), v4_packet(s).size());
  ASSERT_EQ(p.result.error, ParseError::None);
  EXPECT_TRUE(p.result.packet.options().has_mss);
  EXPECT_EQ(p.result.packet.options().mss, 1460);
}

TEST(TcpOptions, WindowScaleAbove14IsClamped) {
  for (int ws : {0, 7, 14, 15, 16, 100, 255}) {
    TcpOptions o;
    const Bytes opts = {3, 3, static_cast<uint8_t>(ws)};
    ASSERT_EQ(parse_tcp_options(opts, o), ParseError::None);
    EXPECT_TRUE(o.has_wscale);
    EXPECT_EQ(o.wscale, std::min(ws, 14)) << ws;
  }
}

TEST(TcpOptions, SackOneToFourBlocks) {
  for (size_t n = 1; n <= 4; ++n) {
    Bytes opts = {1, 1, 5, static_cast<uint8_t>(2 + 8 * n)};
    std::vector<SackBlock> blocks;
    for (size_t i = 0; i < n; ++i) {
      const SackBlock b{0xfffffff0u + static_cast<uint32_t>(100 * i), static_cast<uint32_t>(0x10 + 100 * i)};
      blocks.push_back(b);
      opts.resize(opts.size() + 8);
      put32(&opts[opts.size() - 8], b.left);
      put32(&opts[opts.size() - 4], b.right);
    }
    TcpOptions o;
    ASSERT_EQ(parse_tcp_options(opts, o, 20), ParseError::None) << n;
    ASSERT_EQ(o.sack_count, n);
    EXPECT_EQ(o.sack_offset, 20 + 4);
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(o.sack[i], blocks[i]);

    // The same inside a real packet, after timestamps where they fit (3 blocks at most).
    Seg s;
    s.flags = tcp_flag::ACK;
    s.options = {1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6};
    if (n <= 3) s.options.insert(s.options.end(), opts.begin(), opts.end());
    else s.options = opts;
    Bytes pkt = v4_packet(s);
    Parsed p = parse_copy(pkt, pkt.size());
    ASSERT_EQ(p.result.error, ParseError::None);
    const TcpOptions& po = p.result.packet.options();
    ASSERT_EQ(po.sack_count, n);
    EXPECT_EQ(po.sack_offset, n <= 3 ? 20 + 12 + 4 : 24);
    if (n <= 3) {
      EXPECT_TRUE(po.has_timestamps);
      EXPECT_EQ(po.ts_offset, 24);
      EXPECT_EQ(po.tsval, 5u);
      EXPECT_EQ(po.tsecr, 6u);
    }
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(po.sack[i], blocks[i]);
    EXPECT_TRUE(p.result.packet.checksum_valid());
  }
}

TEST(TcpOptions, OffsetsFollowBaseOffset) {
  const Bytes opts = {1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 5, 10, 0, 0, 0, 3, 0, 0, 0, 4};
  TcpOptions o;
  ASSERT_EQ(parse_tcp_options(opts, o, 0), ParseError::None);
  EXPECT_EQ(o.ts_offset, 3);   // odd offsets are legal on the wire
  EXPECT_EQ(o.sack_offset, 14);
  TcpOptions p;
  ASSERT_EQ(parse_tcp_options(opts, p, 100), ParseError::None);
  EXPECT_EQ(p.ts_offset, 103);
  EXPECT_EQ(p.sack_offset, 114);
  EXPECT_EQ(p.tsval, 1u);
  EXPECT_EQ(p.tsecr, 2u);
  EXPECT_EQ(p.sack[0], (SackBlock{3, 4}));
}

TEST(TcpOptions, EmptyAndPaddingOnly) {
  TcpOptions o;
  EXPECT_EQ(parse_tcp_options({}, o), ParseError::None);
  EXPECT_EQ(parse_tcp_options(Bytes{1, 1, 1, 1}, o), ParseError::None);
  EXPECT_EQ(parse_tcp_options(Bytes{0, 0, 0, 0}, o), ParseError::None);
  EXPECT_FALSE(o.has_mss || o.has_wscale || o.sack_permitted || o.has_timestamps || o.sack_count);
}

// Setters on odd-offset fields (legal, if unusual, option alignment) still keep the checksum right.
TEST(TcpOptions, SettersAtOddOffsetsKeepChecksum) {
  Seg s;
  s.flags = tcp_flag::ACK;
  s.options = {1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 5, 10, 0, 0, 0, 3, 0, 0, 0, 4};
  s.payload = {'h', 'i', '!'};
  for (bool v4 : {true, false}) {
    Bytes b = v4 ? v4_packet(s) : v6_packet(s);
    ParseResult r = parse_tcp_packet(b);
    ASSERT_TRUE(r);
    ASSERT_TRUE(r.packet.checksum_valid());
    r.packet.set_tsval(0xdeadbeef);
    r.packet.set_tsecr(0x01020304);
    r.packet.set_sack_block(0, {0xfffffffe, 0x00000005});
    EXPECT_TRUE(r.packet.checksum_valid());
    expect_incremental_matches_full(r.packet);
    ParseResult again = parse_tcp_packet(b);
    ASSERT_TRUE(again);
    EXPECT_EQ(again.packet.options().tsval, 0xdeadbeefu);
    EXPECT_EQ(again.packet.options().tsecr, 0x01020304u);
    EXPECT_EQ(again.packet.options().sack[0], (SackBlock{0xfffffffe, 5}));
  }
}

// ---- IP header variants ---------------------------------------------------------------------

TEST(IpHeaders, Ipv4OptionsAreSkipped) {
  Seg s;
  s.options = kSynOptions;
  s.payload = {1, 2, 3, 4, 5};
  for (const Bytes& ipopt : {Bytes{0x94, 0x04, 0x00, 0x00},                        // router alert
                             Bytes{1, 1, 1, 0},                                    // NOPs + EOL
                             Bytes(40, 1)}) {                                      // max IHL
    V4 ip;
    ip.ip_options = ipopt;
    Bytes b = v4_packet(s, ip);
    Parsed p = parse_copy(b, b.size());
    ASSERT_EQ(p.result.error, ParseError::None) << ipopt.size();
    const TcpPacket& pkt = p.result.packet;
    EXPECT_EQ(pkt.tcp_offset(), 20 + ipopt.size());
    EXPECT_EQ(pkt.sport(), s.sport);
    EXPECT_EQ(pkt.seq(), s.seq);
    EXPECT_EQ(pkt.options().mss, 1460);
    EXPECT_EQ(pkt.payload_len(), 5u);
    EXPECT_EQ(pkt.payload()[4], 5);
    EXPECT_EQ(pkt.src(), Address::from_v4(std::span<const uint8_t, 4>(kSrc4, 4)));
    EXPECT_TRUE(pkt.checksum_valid());
  }
}

TEST(IpHeaders, Ipv4PaddingAfterTotalLengthIgnored) {
  Seg s;
  s.payload = {9, 8, 7};
  Bytes b = v4_packet(s);
  const size_t real = b.size();
  b.insert(b.end(), {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff});
  Parsed p = parse_copy(b, b.size());
  ASSERT_EQ(p.result.error, ParseError::None);
  EXPECT_EQ(p.result.packet.bytes().size(), real);
  EXPECT_EQ(p.result.packet.payload_len(), 3u);
  EXPECT_TRUE(p.result.packet.checksum_valid());
  p.result.packet.set_seq(77);
  EXPECT_TRUE(p.result.packet.checksum_valid());
  EXPECT_EQ(p.storage[real], 0xff);  // padding untouched
}

TEST(IpHeaders, Ipv6ExtensionHeadersAreSkipped) {
  Seg s;
  s.options = kSynOptions;
  s.payload = {0xaa, 0xbb};
  // hop-by-hop (8) -> destination options (16) -> routing (type 4, segments left 0: 24) -> TCP
  Bytes chain = ext_header(60, 0);
  Bytes dst = ext_header(43, 1);
  Bytes rh = ext_header(6, 2);
  rh[2] = 4;  // routing type (SRH), segments left 0
  rh[3] = 0;
  chain.insert(chain.end(), dst.begin(), dst.end());
  chain.insert(chain.end(), rh.begin(), rh.end());
  Bytes b = v6_packet(s, chain, 0);
  Parsed p = parse_copy(b, b.size());
  ASSERT_EQ(p.result.error, ParseError::None) << to_string(p.result.error);
  const TcpPacket& pkt = p.result.packet;
  EXPECT_EQ(pkt.ip_version(), 6);
  EXPECT_EQ(pkt.tcp_offset(), 40u + 8 + 16 + 24);
  EXPECT_EQ(pkt.sport(), s.sport);
  EXPECT_EQ(pkt.dport(), s.dport);
  EXPECT_EQ(pkt.options().wscale, 7);
  EXPECT_EQ(pkt.payload_len(), 2u);
  EXPECT_EQ(pkt.ttl(), 57);
  EXPECT_EQ(pkt.dst(), Address::from_v6(std::span<const uint8_t, 16>(kDst6, 16)));
  EXPECT_TRUE(pkt.checksum_valid());
  // Each kind alone as well.
  for (uint8_t kind : {uint8_t{0}, uint8_t{43}, uint8_t{60}}) {
    Bytes one = v6_packet(s, ext_header(6, 0), kind);
    Parsed q = parse_copy(one, one.size());
    ASSERT_EQ(q.result.error, ParseError::None) << int{kind};
    EXPECT_EQ(q.result.packet.tcp_offset(), 48u);
    EXPECT_TRUE(q.result.packet.checksum_valid());
  }
}

TEST(IpHeaders, Ipv6PaddingAfterPayloadLengthIgnored) {
  Bytes b = v6_packet(Seg{});
  const size_t real = b.size();
  b.resize(real + 9, 0x77);
  Parsed p = parse_copy(b, b.size());
  ASSERT_EQ(p.result.error, ParseError::None);
  EXPECT_EQ(p.result.packet.bytes().size(), real);
  EXPECT_EQ(p.result.packet.payload_len(), 0u);
}

TEST(Parse, CraftedPacketsTruncatedAtEveryLength) {
  Seg s;
  s.options = kSynOptions;
  s.payload = {1, 2, 3};
  V4 ip;
  ip.ip_options = {1, 1, 1, 0};
  Bytes chain = ext_header(60, 0);
  Bytes d = ext_header(6, 1);
  chain.insert(chain.end(), d.begin(), d.end());
  for (const Bytes& b : {v4_packet(s), v4_packet(s, ip), v6_packet(s), v6_packet(s, chain, 0)}) {
    ASSERT_EQ(parse_error(b), ParseError::None);
    for (size_t len = 0; len < b.size(); ++len) {
      ASSERT_NE(parse_copy(b, len).result.error, ParseError::None) << len << " of " << b.size();
    }
  }
}

TEST(Parse, FailedParseLeavesNoView) {
  Bytes b = v4_packet(Seg{});
  b[9] = 17;
  ParseResult r = parse_tcp_packet(b);
  EXPECT_FALSE(r);
  EXPECT_EQ(r.error, ParseError::NotTcp);
  EXPECT_TRUE(r.packet.bytes().empty());
}

TEST(Parse, ErrorNamesAreDistinct) {
  std::set<std::string> names;
  for (int e = 0; e <= static_cast<int>(ParseError::MappedAddress); ++e) {
    const auto name = to_string(static_cast<ParseError>(e));
    EXPECT_FALSE(name.empty());
    EXPECT_TRUE(names.insert(std::string(name)).second) << name;
  }
}

// ---- sequence arithmetic --------------------------------------------------------------------

TEST(SeqArithmetic, WrapsAround2To31Boundary) {
  for (uint32_t a : {0u, 1u, 0x7fffffffu, 0x80000000u, 0xfffffff0u, 0xffffffffu, 0x12345678u}) {
    SCOPED_TRACE(a);
    EXPECT_FALSE(seq_before(a, a));
    EXPECT_FALSE(seq_after(a, a));
    EXPECT_TRUE(seq_before_eq(a, a));
    EXPECT_TRUE(seq_after_eq(a, a));
    EXPECT_TRUE(seq_before(a, a + 1));
    EXPECT_TRUE(seq_after(a + 1, a));
    // The largest forward distance still counts as "after"...
    EXPECT_TRUE(seq_after(a + 0x7fffffffu, a));
    EXPECT_TRUE(seq_before(a, a + 0x7fffffffu));
    EXPECT_FALSE(seq_before(a + 0x7fffffffu, a));
    // ...one more and it is read as "before" (half the space each way).
    EXPECT_TRUE(seq_before(a + 0x80000001u, a));
    EXPECT_FALSE(seq_after(a + 0x80000001u, a));
    // Exactly 2^31 apart: never both before and after.
    EXPECT_FALSE(seq_before(a + 0x80000000u, a) && seq_after(a + 0x80000000u, a));
  }
  EXPECT_TRUE(seq_after(5u, 0xfffffff0u));
  EXPECT_TRUE(seq_before(0xfffffff0u, 5u));
  EXPECT_TRUE(seq_after_eq(0u, 0xffffffffu));
  EXPECT_FALSE(seq_before_eq(0u, 0xffffffffu));
  static_assert(seq_before(0xffffffffu, 0u) && seq_after(0u, 0xffffffffu));
}

// ---- addresses ------------------------------------------------------------------------------

TEST(Address, V4AndV6RoundTrip) {
  const auto a = Address::parse("10.77.0.1");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->is_v4());
  EXPECT_EQ(a->v4_host_order(), 0x0a4d0001u);
  EXPECT_EQ(*a, Address::from_v4(0x0a4d0001u));
  EXPECT_EQ(a->to_string(), "10.77.0.1");
  const uint8_t raw[4] = {10, 77, 0, 1};
  EXPECT_EQ(*a, Address::from_v4(std::span<const uint8_t, 4>(raw, 4)));
  EXPECT_EQ(a->v4_bytes()[0], 10);

  const auto b = Address::parse("2001:db8::abcd");
  ASSERT_TRUE(b);
  EXPECT_FALSE(b->is_v4());
  EXPECT_EQ(*b, Address::from_v6(std::span<const uint8_t, 16>(kDst6, 16)));
  EXPECT_EQ(b->to_string(), "2001:db8::abcd");
  EXPECT_NE(*a, *b);
  EXPECT_FALSE(Address::parse("").has_value());
  EXPECT_FALSE(Address::parse("10.77.0.256").has_value());
  EXPECT_FALSE(Address::parse("not an address").has_value());
  EXPECT_FALSE(Address::parse("1:2:3:4:5:6:7:8:9").has_value());
  EXPECT_FALSE(Address::parse(std::string(200, '1')).has_value());
}

TEST(Address, TupleReversal) {
  const FlowTuple t{*Address::parse("192.0.2.1"), *Address::parse("198.51.100.7"), 1234, 80};
  const FlowTuple r = t.reversed();
  EXPECT_EQ(r.src, t.dst);
  EXPECT_EQ(r.dst, t.src);
  EXPECT_EQ(r.sport, 80);
  EXPECT_EQ(r.dport, 1234);
  EXPECT_EQ(r.reversed(), t);
}

}  // namespace
}  // namespace syngate
