// The hand-over specification (include/syngate/spec/handover_spec.h) on its own: what a backend's
// SYN-ACK makes of each kind of handshake, and the same answers from its C compilation (the BPF
// programs' language).
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "syngate/spec/handover_spec.h"

extern "C" void handover_spec_from_c(const struct sg_handshake* h, const struct sg_synack* s, struct sg_handover* o);

namespace {

// A Linux client: timestamps, SACK, window scale 7; our SYN-ACK announced 9.
sg_handshake linux_client() {
  sg_handshake h{};
  h.client_isn = 0x10000000u;
  h.cookie_isn = 0x20000000u;
  h.our_tsval = 5000;
  h.client_tsval = 777777;
  h.client_window = 502;  // 502 << 7 = 64256 bytes
  h.client_ws = 7;
  h.announced_ws = 9;
  h.asked = SG_HS_TIMESTAMPS | SG_HS_SACK;
  return h;
}
// A Linux backend's answer to it: window scale 10 (a big receive buffer).
sg_synack linux_backend(const sg_handshake& h) {
  sg_synack s{};
  s.seq = 0x30000000u;
  s.ack = h.client_isn + 1;
  s.window = 65160;
  s.has_ts = 1;
  s.tsval = 9000;
  s.has_wscale = 1;
  s.wscale = 10;
  s.sack_permitted = 1;
  return s;
}

TEST(HandoverSpec, OnlyTheExactAckOfOurSynAnswersIt) {
  const sg_handshake h = linux_client();
  sg_synack s = linux_backend(h);
  EXPECT_TRUE(sg_synack_answers(&h, &s));
  s.ack = h.client_isn;
  EXPECT_FALSE(sg_synack_answers(&h, &s));
  s.ack = h.client_isn + 2;
  EXPECT_FALSE(sg_synack_answers(&h, &s));
}

TEST(HandoverSpec, BothEndsWithEveryOption) {
  const sg_handshake h = linux_client();
  const sg_synack s = linux_backend(h);
  sg_handover o;
  sg_hand_over(&h, &s, &o);
  EXPECT_EQ(o.delta, 0x10000000u);
  EXPECT_EQ(o.tsoff, 4000u);
  EXPECT_TRUE(o.timestamps);
  EXPECT_FALSE(o.supply_timestamps);
  EXPECT_TRUE(o.backend_scales);
  EXPECT_EQ(o.backend_ws, 10);
  EXPECT_FALSE(o.sack_refused);
  EXPECT_EQ(o.shifts.client_sends, 7);
  EXPECT_EQ(o.shifts.server_reads, 7);
  EXPECT_EQ(o.shifts.server_sends, 10);
  EXPECT_EQ(o.shifts.client_reads, 9);
  // The backend's ACK, as the client would have sent it.
  EXPECT_EQ(o.to_backend.seq, h.client_isn + 1);
  EXPECT_EQ(o.to_backend.ack, s.seq + 1);
  EXPECT_EQ(o.to_backend.window, 502) << "the same shift both ways: unchanged";
  EXPECT_TRUE(o.to_backend.has_ts);
  EXPECT_EQ(o.to_backend.tsval, h.client_tsval);
  EXPECT_EQ(o.to_backend.tsecr, s.tsval);
  // The client's window update: the backend's window in our announced scale, our TSval.
  EXPECT_EQ(o.to_client.seq, h.cookie_isn + 1);
  EXPECT_EQ(o.to_client.ack, h.client_isn + 1);
  EXPECT_EQ(o.to_client.window, 65160 >> 9);
  EXPECT_TRUE(o.to_client.has_ts);
  EXPECT_EQ(o.to_client.tsval, sg_tsval_to_client(s.tsval, o.tsoff)) << "the backend's TSval as the client sees it";
  EXPECT_EQ(o.to_client.tsval, h.our_tsval);
  EXPECT_EQ(o.to_client.tsecr, h.client_tsval);
}

TEST(HandoverSpec, ABackendWithoutTimestampsLeavesThemToBeSupplied) {
  const sg_handshake h = linux_client();
  sg_synack s = linux_backend(h);
  s.has_ts = 0;
  s.tsval = 0;
  sg_handover o;
  sg_hand_over(&h, &s, &o);
  EXPECT_FALSE(o.timestamps);
  EXPECT_TRUE(o.supply_timestamps);
  EXPECT_EQ(o.tsoff, 0u);
  EXPECT_FALSE(o.to_backend.has_ts) << "a backend that refused timestamps gets none (RFC 7323)";
  EXPECT_TRUE(o.to_client.has_ts) << "the client was promised them";
}

TEST(HandoverSpec, AClientWithoutOptionsGetsNoneBack) {
  sg_handshake h = linux_client();
  h.asked = 0;
  h.client_ws = SG_FLOW_NO_WSCALE;
  h.client_window = 29200;
  const sg_synack s = linux_backend(h);  // a backend that offers them anyway
  sg_handover o;
  sg_hand_over(&h, &s, &o);
  EXPECT_FALSE(o.timestamps);
  EXPECT_FALSE(o.supply_timestamps);
  EXPECT_FALSE(o.backend_scales) << "scaling needs both SYNs";
  EXPECT_FALSE(o.sack_refused);
  EXPECT_FALSE(o.to_backend.has_ts);
  EXPECT_FALSE(o.to_client.has_ts);
  EXPECT_EQ(o.to_backend.window, 29200);
  EXPECT_EQ(o.to_client.window, 65160) << "unscaled both ways";
}

TEST(HandoverSpec, BackendRefusingScalingOrSack) {
  const sg_handshake h = linux_client();
  sg_synack s = linux_backend(h);
  s.has_wscale = 0;
  s.sack_permitted = 0;
  sg_handover o;
  sg_hand_over(&h, &s, &o);
  EXPECT_FALSE(o.backend_scales);
  EXPECT_TRUE(o.sack_refused);
  EXPECT_EQ(o.shifts.server_reads, 0);
  EXPECT_EQ(o.to_backend.window, 64256) << "the client's 502 << 7 bytes, unscaled";
  EXPECT_EQ(o.to_client.window, 65160 >> 9);
}

TEST(HandoverSpec, NumbersWrapModulo2To32) {
  sg_handshake h = linux_client();
  h.client_isn = 0xffffffffu;
  h.cookie_isn = 0xfffffff0u;
  h.our_tsval = 0xfffffff0u;
  sg_synack s = linux_backend(h);
  s.seq = 0x00000005u;
  s.tsval = 0x00000010u;
  ASSERT_TRUE(sg_synack_answers(&h, &s)) << "ack = 0";
  sg_handover o;
  sg_hand_over(&h, &s, &o);
  EXPECT_EQ(o.delta, 0x15u);
  EXPECT_EQ(o.tsoff, 0x20u);
  EXPECT_EQ(o.to_backend.seq, 0u);
  EXPECT_EQ(o.to_client.seq, 0xfffffff1u);
  EXPECT_EQ(o.to_client.ack, 0u);
  EXPECT_EQ(sg_seq_to_client(s.seq, o.delta), h.cookie_isn) << "the backend's ISN is the cookie's to the client";
}

TEST(HandoverSpec, TheCCompilationGivesTheSameAnswers) {
  std::mt19937 rng(23);
  for (int n = 0; n < 20000; ++n) {
    sg_handshake h{};
    h.client_isn = rng();
    h.cookie_isn = rng();
    h.our_tsval = rng();
    h.client_tsval = rng();
    h.client_window = static_cast<uint16_t>(rng());
    h.client_ws = rng() % 4 == 0 ? SG_FLOW_NO_WSCALE : static_cast<uint8_t>(rng() % 15);
    h.announced_ws = static_cast<uint8_t>(rng() % 15);
    h.asked = static_cast<uint8_t>(rng() % 4);
    sg_synack s{};
    s.seq = rng();
    s.ack = h.client_isn + 1;
    s.window = static_cast<uint16_t>(rng());
    s.has_ts = rng() % 2;
    s.tsval = s.has_ts ? rng() : 0;
    s.has_wscale = rng() % 2;
    s.wscale = s.has_wscale ? static_cast<uint8_t>(rng() % 15) : 0;
    s.sack_permitted = rng() % 2;
    sg_handover a, b;
    std::memset(&a, 0xa5, sizeof a);
    std::memset(&b, 0x5a, sizeof b);
    sg_hand_over(&h, &s, &a);
    handover_spec_from_c(&h, &s, &b);
    ASSERT_EQ(std::memcmp(&a, &b, sizeof a), 0) << "case " << n << ": every byte, padding included";
  }
}

}  // namespace
