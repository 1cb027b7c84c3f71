// The backend's SYN specification (include/syngate/spec/backend_syn_spec.h) on its own: what a
// proven cookie ACK asks the backend for, the option bytes a data path without the engine's
// packet builder writes (the same as the builder's, for every combination), and the same answers
// from its C compilation (the BPF programs' language).
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <random>
#include <vector>

#include "syngate/cookie.hpp"
#include "syngate/packet.hpp"
#include "syngate/spec/backend_syn_spec.h"

extern "C" sg_u32 backend_syn_spec_from_c(const struct sg_cookie_ack* a, sg_u8 announced_ws, sg_u16 cookie_mss,
                                          int room, struct sg_handshake* h, struct sg_backend_syn* s,
                                          sg_u8* options);

namespace syngate {
namespace {

// What our cookie SYN-ACK's TSval says it promised (cookie_spec.h), on a clock at `now_ms`.
uint32_t promised(uint32_t now_ms, bool has_wscale, uint8_t wscale, bool sack, bool ecn) {
  sg_syn_option_bits b{};
  b.has_wscale = has_wscale;
  b.wscale = wscale;
  b.sack_permitted = sack;
  b.ecn = ecn;
  return sg_encode_ts_options(now_ms, &b);
}

// A Linux client's cookie ACK: timestamps, SACK, window scale 7, ECN asked for.
sg_cookie_ack linux_cookie_ack() {
  sg_cookie_ack a{};
  a.seq = 0x10000001u;
  a.ack = 0x20000001u;
  a.has_ts = 1;
  a.tsval = 777777;
  a.tsecr = promised(5000, true, 7, true, true);
  a.window = 502;  // 502 << 7 = 64256 bytes
  return a;
}

// The options the engine's builder (build_backend_syn) writes for `s`.
std::vector<uint8_t> builder_options(const sg_backend_syn& s) {
  FlowTuple t;
  t.src = *Address::parse("10.10.1.2");
  t.dst = *Address::parse("10.10.3.2");
  t.sport = 40000;
  t.dport = 80;
  std::array<uint8_t, 128> out{};
  const size_t n = build_backend_syn(out, t, s);
  const size_t tcp = 20;
  const size_t doff = (out[tcp + 12] >> 4) * 4u;
  EXPECT_EQ(n, tcp + doff);
  EXPECT_EQ(out[tcp + 13], s.flags);
  EXPECT_EQ((uint32_t{out[tcp + 4]} << 24 | uint32_t{out[tcp + 5]} << 16 | uint32_t{out[tcp + 6]} << 8 | out[tcp + 7]), s.seq);
  EXPECT_EQ((out[tcp + 14] << 8 | out[tcp + 15]), s.window);
  return {out.begin() + tcp + 20, out.begin() + tcp + doff};
}

std::vector<uint8_t> spec_options(const sg_backend_syn& s) {
  uint8_t out[SG_BACKEND_SYN_MAX_OPTIONS + 4];
  std::memset(out, 0xee, sizeof out);
  const sg_u32 n = sg_backend_syn_write_options(&s, out);
  EXPECT_EQ(n % 4, 0u);
  EXPECT_LE(n, SG_BACKEND_SYN_MAX_OPTIONS);
  EXPECT_EQ(out[n], 0xee) << "written past its length";
  return {out, out + n};
}

TEST(BackendSynSpec, ALinuxClientsCookieAckAsksTheBackendForWhatItWasPromised) {
  const sg_cookie_ack a = linux_cookie_ack();
  sg_handshake h;
  sg_handshake_of_cookie_ack(&a, 9, &h);
  EXPECT_EQ(h.client_isn, 0x10000000u);
  EXPECT_EQ(h.cookie_isn, 0x20000000u);
  EXPECT_EQ(h.our_tsval, a.tsecr);
  EXPECT_EQ(h.client_tsval, 777777u);
  EXPECT_EQ(h.client_window, 502);
  EXPECT_EQ(h.client_ws, 7);
  EXPECT_EQ(h.announced_ws, 9);
  EXPECT_EQ(h.asked, SG_HS_TIMESTAMPS | SG_HS_SACK | SG_HS_ECN);

  sg_backend_syn s;
  sg_backend_syn_of(&h, 1460, 0, &s);
  EXPECT_EQ(s.seq, 0x10000000u);
  EXPECT_EQ(s.window, 64256);
  EXPECT_EQ(s.mss, 1460);
  EXPECT_EQ(s.flags, SG_TCP_SYN | SG_TCP_ECE | SG_TCP_CWR);
  // MSS 1460; SACK-permitted, the timestamps (TSecr 0); NOP, window scale 7.
  std::vector<uint8_t> want = {2, 4, 0x05, 0xb4, 4, 2, 8, 10};
  for (int shift = 24; shift >= 0; shift -= 8) want.push_back(static_cast<uint8_t>(777777u >> shift));
  want.insert(want.end(), {0, 0, 0, 0, 1, 3, 3, 7});
  EXPECT_EQ(spec_options(s), want);
}

TEST(BackendSynSpec, AClientWithoutTimestampsWasPromisedNothingElse) {
  sg_cookie_ack a = linux_cookie_ack();
  a.has_ts = 0;
  a.window = 64240;
  sg_handshake h;
  sg_handshake_of_cookie_ack(&a, 9, &h);
  EXPECT_EQ(h.asked, 0);
  EXPECT_EQ(h.client_ws, SG_FLOW_NO_WSCALE);
  EXPECT_EQ(h.our_tsval, 0u);
  sg_backend_syn s;
  sg_backend_syn_of(&h, 1460, 0, &s);
  EXPECT_EQ(s.flags, SG_TCP_SYN);
  EXPECT_EQ(s.window, 64240) << "unscaled";
  EXPECT_EQ(spec_options(s), (std::vector<uint8_t>{2, 4, 0x05, 0xb4}));
}

TEST(BackendSynSpec, AWindowBeyondSixteenBitsIsCappedNotWrapped) {
  sg_cookie_ack a = linux_cookie_ack();
  a.tsecr = promised(5000, true, 14, false, false);
  a.window = 0xffff;
  sg_handshake h;
  sg_handshake_of_cookie_ack(&a, 9, &h);
  sg_backend_syn s;
  sg_backend_syn_of(&h, 1460, 0, &s);
  EXPECT_EQ(s.window, 0xffff);
  EXPECT_EQ(s.wscale, 14);
  EXPECT_EQ(s.flags, SG_TCP_SYN) << "no ECN asked for";
  EXPECT_EQ(spec_options(s)[4], SG_OPT_NOP) << "no SACK promised: two NOPs before the timestamps";
}

// A client promised timestamps its backend does not send gets them supplied, 12 bytes more on
// each segment to it: the backend is asked for that much less, never below 64.
TEST(BackendSynSpec, RoomForSuppliedTimestampsLowersTheMssAndStopsAt64) {
  const sg_cookie_ack a = linux_cookie_ack();
  sg_handshake h;
  sg_handshake_of_cookie_ack(&a, 9, &h);
  const std::pair<uint16_t, uint16_t> cases[] = {{1460, 1448}, {536, 524}, {77, 65}, {76, 64}, {70, 64}, {1, 64}};
  for (const auto& [cookie_mss, asked] : cases) {
    sg_backend_syn s;
    sg_backend_syn_of(&h, cookie_mss, 1, &s);
    EXPECT_EQ(s.mss, asked) << cookie_mss;
    sg_backend_syn_of(&h, cookie_mss, 0, &s);
    EXPECT_EQ(s.mss, cookie_mss);
  }
}

// Every combination the cookie can promise, with random numbers: the spec's option bytes are the
// engine builder's, and the C compilation gives the same handshake, SYN and bytes.
TEST(BackendSynSpec, OptionBytesAreTheBuildersForEveryPromiseAndTheCCompilationAgrees) {
  std::mt19937 rng(23);
  int checked = 0;
  for (int has_ts = 0; has_ts <= 1; ++has_ts) {
    for (int ws = -1; ws <= 14; ++ws) {
      for (int sack = 0; sack <= 1; ++sack) {
        for (int ecn = 0; ecn <= 1; ++ecn) {
          for (int room = 0; room <= 1; ++room) {
            sg_cookie_ack a{};
            a.seq = rng();
            a.ack = rng();
            a.window = static_cast<uint16_t>(rng());
            a.has_ts = static_cast<sg_u8>(has_ts);
            a.tsval = rng();
            a.tsecr = promised(rng(), ws >= 0, static_cast<uint8_t>(ws < 0 ? 0 : ws), sack, ecn);
            const uint16_t mss = static_cast<uint16_t>(rng() % 9000);
            const uint8_t announced = static_cast<uint8_t>(rng() % 15);
            sg_handshake h;
            sg_handshake_of_cookie_ack(&a, announced, &h);
            sg_backend_syn s;
            sg_backend_syn_of(&h, mss, room, &s);
            EXPECT_EQ(s.has_ts, has_ts);
            EXPECT_EQ(s.has_wscale, has_ts && ws >= 0);
            EXPECT_EQ(s.sack_permitted, has_ts && sack);
            EXPECT_EQ((s.flags & SG_TCP_ECE) != 0, has_ts && ecn);
            const std::vector<uint8_t> mine = spec_options(s);
            EXPECT_EQ(mine, builder_options(s)) << "ts " << has_ts << " ws " << ws << " sack " << sack;

            sg_handshake hc;
            sg_backend_syn sc;
            uint8_t bytes[SG_BACKEND_SYN_MAX_OPTIONS];
            const sg_u32 n = backend_syn_spec_from_c(&a, announced, mss, room, &hc, &sc, bytes);
            EXPECT_EQ(std::memcmp(&hc, &h, sizeof h), 0);
            EXPECT_EQ(std::memcmp(&sc, &s, sizeof s), 0);
            EXPECT_EQ(std::vector<uint8_t>(bytes, bytes + n), mine);
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, 2 * 16 * 2 * 2 * 2);
}

}  // namespace
}  // namespace syngate
