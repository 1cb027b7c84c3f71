// The engine tells a FlowObserver about every flow it creates and frees (the XDP fast path keeps
// its flow map by it): a missed free would let a dead flow's forged packets through XDP, a missed
// create would make XDP drop a live flow's packets.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "syngate_test/engine_harness.hpp"

namespace syngate::test {
namespace {

struct Recorder : FlowObserver {
  std::vector<FlowTuple> live;
  int created = 0, freed = 0;
  void flow_created(const FlowTuple& t) noexcept override {
    ++created;
    live.push_back(t);
  }
  void flow_freed(const FlowTuple& t) noexcept override {
    ++freed;
    auto it = std::find(live.begin(), live.end(), t);
    EXPECT_NE(it, live.end()) << "freed a flow never reported created";
    if (it != live.end()) live.erase(it);
  }
};

class FlowObserverTest : public EngineTest {
 protected:
  Recorder rec;
  void SetUp() override {
    EngineTest::SetUp();
    start();
    engine->set_flow_observer(&rec);
  }
};

TEST_F(FlowObserverTest, CreatedOnTheCookieAckWithTheClientToServerTuple) {
  Conn c = Conn::v4();
  learn_cookie(c);
  EXPECT_EQ(rec.created, 0) << "a SYN creates no flow";
  feed(c.third_ack());
  ASSERT_EQ(rec.live.size(), 1u);
  EXPECT_EQ(rec.live[0], c.c2s);
}

TEST_F(FlowObserverTest, AnObserverSetLaterHearsOfTheFlowsAlreadyThere) {
  engine->set_flow_observer(nullptr);
  Conn a = Conn::v4(40011);
  establish(a);
  Conn b = Conn::v6(40012);
  open_to_backend_syn(b);
  Recorder late;
  engine->set_flow_observer(&late);
  ASSERT_EQ(late.live.size(), 2u);
  EXPECT_NE(std::find(late.live.begin(), late.live.end(), a.c2s), late.live.end());
  EXPECT_NE(std::find(late.live.begin(), late.live.end(), b.c2s), late.live.end());
  engine->set_flow_observer(&rec);  // `late` goes out of scope before the engine
}

TEST_F(FlowObserverTest, ForgedAcksCreateNothing) {
  Conn c = Conn::v4();
  learn_cookie(c);
  c.cookie_isn ^= 0x100;
  feed(c.third_ack());
  EXPECT_EQ(rec.created, 0);
}

TEST_F(FlowObserverTest, FreedWhenTheBackendNeverAnswersAndAfterLinger) {
  Conn a = Conn::v4(40001);
  open_to_backend_syn(a);
  Conn b = Conn::v6(40002);
  establish(b);
  ASSERT_EQ(rec.live.size(), 2u);
  // a: backend silent through every retry -> RST to the client, flow freed.
  // b: idle past established_idle_s -> freed.
  for (int i = 0; i < 4000; ++i) {
    now += kSecond;
    engine->advance(now, sink);
  }
  EXPECT_TRUE(rec.live.empty());
  EXPECT_EQ(rec.freed, 2);
  EXPECT_EQ(counters().flows_active, 0u);
}

TEST_F(FlowObserverTest, EveryFlowFreedIsOneThatWasCreatedUnderTableChurn) {
  cfg.max_flows = 4;
  engine.emplace(cfg, *jar);
  engine->set_flow_observer(&rec);
  for (uint16_t port = 41000; port < 41040; ++port) {
    Conn c = Conn::v4(port);
    establish(c);
    // Reset by the client: the flow lingers and is the first evicted when the table is full.
    SegmentSpec rst{.tuple = c.c2s, .seq = c.client_next, .ack = c.cookie_isn + 1,
                    .flags = tcp_flag::RST | tcp_flag::ACK, .window = 0};
    feed(make(rst));
  }
  EXPECT_EQ(rec.created, 40);
  EXPECT_GE(rec.freed, 36) << "a table of 4 must have evicted lingering flows";
  EXPECT_EQ(static_cast<uint64_t>(rec.live.size()), counters().flows_active);
  EXPECT_EQ(rec.created - rec.freed, static_cast<int>(counters().flows_active));
}

}  // namespace
}  // namespace syngate::test
