// The flow translation specification (include/syngate/spec/flow_spec.h) on its own: the edge
// cases every data path must agree on, and the same answers from its C compilation.
#include <gtest/gtest.h>

#include <random>

#include "syngate/spec/flow_spec.h"

extern "C" sg_u16 flow_spec_rescale_from_c(sg_u16 field, sg_u8 from, sg_u8 to);
extern "C" int flow_spec_rst_check_from_c(sg_u32 seq, sg_u32 sender_next, sg_u32 receiver_acked, sg_u32 window,
                                          int known);

namespace {

TEST(FlowSpec, WindowRescaleClampsAndNeverClosesAnOpenWindow) {
  EXPECT_EQ(sg_window_rescale(1000, 7, 7), 1000);
  EXPECT_EQ(sg_window_rescale(1000, 9, 7), 4000);
  EXPECT_EQ(sg_window_rescale(0xffff, 14, 0), 0xffff) << "clamped to 16 bits, not wrapped";
  EXPECT_EQ(sg_window_rescale(1, 0, 14), 1) << "an open window stays open";
  EXPECT_EQ(sg_window_rescale(0, 0, 14), 0) << "a zero window stays zero";
  EXPECT_EQ(sg_window_rescale(300, 7, 9), 75);
}

TEST(FlowSpec, ShiftsFollowWhatBothEndsNegotiated) {
  sg_flow_shifts s = sg_flow_window_shifts(SG_FLOW_NO_WSCALE, 1, 9, 7);
  EXPECT_EQ(s.client_sends, 0);
  EXPECT_EQ(s.server_sends, 0) << "no scaling unless both SYNs carried the option";
  EXPECT_EQ(s.client_reads, 0);
  s = sg_flow_window_shifts(6, 0, 0, 7);
  EXPECT_EQ(s.client_sends, 6);
  EXPECT_EQ(s.server_reads, 0) << "a backend that did not agree reads unscaled windows";
  EXPECT_EQ(s.client_reads, 7);
  s = sg_flow_window_shifts(6, 1, 10, 7);
  EXPECT_EQ(s.server_reads, 6);
  EXPECT_EQ(s.server_sends, 10);
}

TEST(FlowSpec, ResetIsExactOnlyAtWhatTheEndsSentAndAcknowledged) {
  const uint32_t acked = 0xfffffff0u, next = 0x00000010u;  // across the wrap
  EXPECT_EQ(sg_rst_check(acked, next, acked, 1000, 1), SG_RST_RESET);
  EXPECT_EQ(sg_rst_check(next, next, acked, 1000, 1), SG_RST_RESET);
  EXPECT_EQ(sg_rst_check(acked + 500, next, acked, 1000, 1), SG_RST_CHALLENGE);
  EXPECT_EQ(sg_rst_check(acked + 1001, next, acked, 1000, 1), SG_RST_OUT_OF_WINDOW);
  EXPECT_EQ(sg_rst_check(acked - 1, next, acked, 1000, 1), SG_RST_OUT_OF_WINDOW);
  EXPECT_EQ(sg_rst_check(acked + 5, acked + 4000, acked, 1000, 1), SG_RST_CHALLENGE)
      << "what the sender already sent is in range even past the last window";
  EXPECT_EQ(sg_rst_check(12345, next, acked, 1000, 0), SG_RST_CHALLENGE) << "unknown: the endpoint judges";
}

TEST(FlowSpec, OnlySegmentsThatFitMoveTheRecord) {
  const uint32_t acked = 1000, window = 65535, own_acked = 5000, peer_next = 9000;
  EXPECT_TRUE(sg_segment_plausible(1000, 6000, acked, window, own_acked, peer_next));
  EXPECT_TRUE(sg_segment_plausible(1000 + window, 5000, acked, window, own_acked, peer_next));
  EXPECT_FALSE(sg_segment_plausible(1000 + window + 2, 5000, acked, window, own_acked, peer_next));
  EXPECT_FALSE(sg_segment_plausible(1000, 9001, acked, window, own_acked, peer_next)) << "acks what was never sent";
  EXPECT_FALSE(sg_segment_plausible(1000, 4999, acked, window, own_acked, peer_next)) << "an ack going back";
  EXPECT_FALSE(sg_segment_plausible(0x80000000u, 6000, acked, window, own_acked, peer_next));
}

TEST(FlowSpec, TheCCompilationGivesTheSameAnswers) {
  std::mt19937 rng(42);
  for (int i = 0; i < 100000; ++i) {
    const auto field = static_cast<sg_u16>(rng());
    const auto from = static_cast<sg_u8>(rng() % 15), to = static_cast<sg_u8>(rng() % 15);
    ASSERT_EQ(flow_spec_rescale_from_c(field, from, to), sg_window_rescale(field, from, to));
    const uint32_t acked = static_cast<uint32_t>(rng()), window = rng() % (1u << 20);
    const uint32_t next = acked + rng() % (1u << 20), seq = acked + static_cast<uint32_t>(rng() % (1u << 22)) - (1u << 21);
    ASSERT_EQ(flow_spec_rst_check_from_c(seq, next, acked, window, 1), static_cast<int>(sg_rst_check(seq, next, acked, window, 1)));
  }
}

}  // namespace
