// The workers' per-packet loop without root: a scripted queue hands them batches of real packet
// bytes and records the verdicts it is given; a capturing sender records what they emit. Both
// write one log, so the order of verdicts and emitted packets on the wire can be checked.
#include <gtest/gtest.h>

#include <deque>
#include <stdexcept>
#include <string>
#include <vector>

#include "syngate_test/icmp_builder.hpp"
#include "syngate_test/engine_harness.hpp"
#include "syngate_test/fake_kernel_side.hpp"
#include "packet_io.hpp"
#include "shared_state.hpp"
#include "worker.hpp"

namespace syngate::gw {
namespace {

using test::Bytes;
using test::Conn;
using test::kMs;
using test::kSecond;
using test::Seen;

// What left the worker, in the order it would have reached the kernel.
struct Wire {
  enum class Kind { Accept, Drop, Modified, Emitted, NextQueue };
  struct Entry {
    Kind kind;
    uint32_t id = 0;  // verdicts
    Bytes bytes;      // modified verdicts and emitted packets
    uint16_t queue = 0;  // NextQueue: where to
  };
  std::vector<Entry> entries;

  std::vector<Kind> kinds() const {
    std::vector<Kind> k;
    for (const auto& e : entries) k.push_back(e.kind);
    return k;
  }
  std::vector<Bytes> emitted() const {
    std::vector<Bytes> out;
    for (const auto& e : entries) {
      if (e.kind == Kind::Emitted) out.push_back(e.bytes);
    }
    return out;
  }
  // Every packet put on the wire with new bytes: modified verdicts and emitted packets.
  std::vector<Bytes> rewritten() const {
    std::vector<Bytes> out;
    for (const auto& e : entries) {
      if (e.kind == Kind::Emitted || e.kind == Kind::Modified) out.push_back(e.bytes);
    }
    return out;
  }
  void clear() { entries.clear(); }
};
using K = Wire::Kind;

struct Scripted {
  Bytes bytes;
  bool truncated = false;
};

// Verdicts are held until flush(), as NfQueue holds them.
class ScriptedQueue final : public PacketQueue {
 public:
  explicit ScriptedQueue(Wire& wire) : wire_(wire) {}

  void add_batch(std::vector<Scripted> packets) { script_.push_back(std::move(packets)); }

  const std::vector<QueuedPacket>& receive(bool, ReceiveStats&) override {
    current_.clear();
    held_.clear();
    if (!script_.empty()) {
      held_ = std::move(script_.front());
      script_.pop_front();
      for (Scripted& s : held_) {
        QueuedPacket p;
        p.id = next_id_++;
        // In a slot with room behind it, as NfQueue's receive buffer gives.
        const size_t length = s.bytes.size();
        s.bytes.resize(length + kSlotRoom);
        p.data = std::span<uint8_t>(s.bytes.data(), length);
        p.capacity = s.bytes.size();
        p.original_length = static_cast<uint32_t>(length);
        p.truncated = s.truncated;
        p.mark = queued_mark;
        current_.push_back(p);
      }
    }
    return current_;
  }
  // The script holds what is waiting: the receive took everything when no batch is left.
  bool took_everything() const noexcept override { return script_.empty(); }
  void verdict(uint32_t id, bool accept) override { held_verdicts_.push_back({accept ? K::Accept : K::Drop, id, {}}); }
  void verdict_modified(uint32_t id, std::span<const uint8_t> bytes, std::optional<uint32_t> mark) override {
    held_verdicts_.push_back({K::Modified, id, Bytes(bytes.begin(), bytes.end())});
    marks.push_back(mark);
  }
  void verdict_to_queue(uint32_t id, uint16_t queue) override {
    held_verdicts_.push_back({K::NextQueue, id, {}, queue});
  }
  void flush(ReceiveStats&) override {
    for (auto& v : held_verdicts_) wire_.entries.push_back(std::move(v));
    held_verdicts_.clear();
  }
  size_t unflushed() const { return held_verdicts_.size(); }
  std::vector<std::optional<uint32_t>> marks;  // of each modified verdict
  uint32_t queued_mark = 0;                    // skb->mark of every packet received
  static constexpr size_t kSlotRoom = 2048;

 private:
  Wire& wire_;
  std::deque<std::vector<Scripted>> script_;
  std::vector<Scripted> held_;
  std::vector<QueuedPacket> current_;
  std::vector<Wire::Entry> held_verdicts_;
  uint32_t next_id_ = 1;
};

class CapturingSender final : public BatchSender {
 public:
  explicit CapturingSender(Wire& wire) : wire_(wire) {}
  void send(std::span<const uint8_t> packet) override { held_.emplace_back(packet.begin(), packet.end()); }
  bool pending() const noexcept override { return !held_.empty(); }
  void flush() override {
    for (auto& b : held_) wire_.entries.push_back({K::Emitted, 0, std::move(b)});
    sent += held_.size();
    held_.clear();
  }

 private:
  Wire& wire_;
  std::vector<Bytes> held_;
};

const Service kService{*Address::parse("10.10.3.2"), 80};
const Service kService6{*Address::parse("fd00:10:10:3::2"), 80};

CookieSecrets other_secrets() {
  CookieSecrets s;
  for (size_t i = 0; i < 16; ++i) {
    s.current[i] = static_cast<uint8_t>(0x40 + i);
    s.previous[i] = static_cast<uint8_t>(0xc0 + i);
  }
  return s;
}

class WorkerTest : public ::testing::Test {
 protected:
  Wire wire;
  ScriptedQueue queue{wire};
  CapturingSender sender{wire};
  SharedSecrets secrets;
  SharedPolicy policy;
  uint64_t now = 1000 * kSecond;
  WorkerClock clock = [this] { return now; };

  void SetUp() override {
    secrets.publish(test::fixed_secrets());
    policy.publish(nullptr, {kService, kService6});
  }
  WorkerSetup setup(bool fail_open = false) {
    WorkerSetup s;
    s.id = 3;
    s.queue = 7;
    s.engine.services = {kService, kService6};
    s.engine.max_flows = 64;
    s.engine.max_flows_per_source = 0;
    s.fail_open = fail_open;
    s.advance_interval_ns = 100 * kMs;
    return s;
  }
  // One turn over one scripted batch; every verdict must have left by its end.
  size_t turn_with(Worker& w, std::vector<Scripted> batch) {
    queue.add_batch(std::move(batch));
    const size_t n = w.turn(false);
    EXPECT_EQ(queue.unflushed(), 0u) << "verdicts left held after the turn";
    return n;
  }
  bool cookie_validates(const CookieSecrets& with, const Conn& c, const Seen& synack) {
    return CookieJar(with).check(c.c2s, c.client_isn, synack.pkt.seq(), cookie_counter(now)).has_value();
  }
};

// ---- SynWorker ---------------------------------------------------------------------------------

TEST_F(WorkerTest, SynWorkerAnswersASynWithACookieAndDropsIt) {
  SynWorker w(setup(), queue, sender, secrets, policy, clock);
  Conn c = Conn::v4();
  EXPECT_EQ(turn_with(w, {{c.syn()}}), 1u);
  ASSERT_EQ(wire.kinds(), (std::vector<K>{K::Drop, K::Emitted}));
  Seen synack(wire.entries[1].bytes);
  EXPECT_TRUE(synack.pkt.has(tcp_flag::SYN | tcp_flag::ACK));
  EXPECT_EQ(synack.pkt.tuple(), c.c2s.reversed()) << "from the service to the client";
  EXPECT_EQ(synack.pkt.ack(), c.client_isn + 1);
  EXPECT_TRUE(cookie_validates(test::fixed_secrets(), c, synack));
  EXPECT_FALSE(cookie_validates(other_secrets(), c, synack));

  const WorkerSnapshot s = w.snapshot();
  EXPECT_TRUE(s.syn_only);
  EXPECT_EQ(s.id, 3u);
  EXPECT_EQ(s.queue, 7u);
  EXPECT_EQ(s.engine.syn_received, 1u);
  EXPECT_EQ(s.engine.cookies_sent, 1u);
  EXPECT_EQ(s.engine.drop(DropReason::SynAnswered), 1u);
  EXPECT_EQ(s.intake.batches, 1u);
  EXPECT_EQ(s.intake.verdict_drop, 1u);
  EXPECT_EQ(s.intake.emitted, 1u);
}

TEST_F(WorkerTest, SynWorkerDropsASynWithAMalformedOptionSilently) {
  SynWorker w(setup(), queue, sender, secrets, policy, clock);
  Bytes b = Conn::v4().syn();
  ASSERT_TRUE(test::set_tcp_options(b, {2, 4, 0x05, 0xb4, 8, 0}));  // a zero-length option among normal ones
  turn_with(w, {{b}});
  EXPECT_EQ(wire.kinds(), (std::vector<K>{K::Drop}));
  const WorkerSnapshot s = w.snapshot();
  EXPECT_EQ(s.engine.drop(DropReason::BadTcpOption), 1u);
  EXPECT_EQ(s.engine.syn_received, 0u);
}

TEST_F(WorkerTest, SynWorkerAcceptsWhatIsNotForAService) {
  SynWorker w(setup(), queue, sender, secrets, policy, clock);
  Conn other = Conn::v4();
  other.c2s.dport = 8080;
  turn_with(w, {{other.syn()}});
  EXPECT_EQ(wire.kinds(), (std::vector<K>{K::Accept}));
  EXPECT_EQ(w.snapshot().engine.passed_through, 1u);
  EXPECT_EQ(w.snapshot().intake.verdict_accept, 1u);
}

TEST_F(WorkerTest, SynWorkerDropsANonSynForAServiceAsNoFlow) {
  SynWorker w(setup(), queue, sender, secrets, policy, clock);
  Conn c = Conn::v4();
  c.cookie_isn = 0x12345678;
  turn_with(w, {{c.third_ack()}});
  EXPECT_EQ(wire.kinds(), (std::vector<K>{K::Drop}));
  EXPECT_EQ(w.snapshot().engine.drop(DropReason::NoFlow), 1u);
}

TEST_F(WorkerTest, SynWorkerDropsATruncatedPacketWithoutDecidingOnIt) {
  SynWorker w(setup(), queue, sender, secrets, policy, clock);
  // Whole SYN bytes, flagged truncated: answering it would show the decision ran.
  turn_with(w, {{Conn::v4().syn(), true}});
  EXPECT_EQ(wire.kinds(), (std::vector<K>{K::Drop}));
  const WorkerSnapshot s = w.snapshot();
  EXPECT_EQ(s.engine.packets, 1u);
  EXPECT_EQ(s.engine.syn_received, 0u);
  EXPECT_EQ(s.intake.truncated, 1u);
  EXPECT_EQ(s.intake.verdict_drop, 1u);
}

TEST_F(WorkerTest, SynWorkerAnswersWithNewSecretsFromTheNextBatch) {
  SynWorker w(setup(), queue, sender, secrets, policy, clock);
  Conn c = Conn::v4();
  turn_with(w, {{c.syn()}});
  ASSERT_EQ(wire.emitted().size(), 1u);
  EXPECT_TRUE(cookie_validates(test::fixed_secrets(), c, Seen(wire.emitted()[0])));
  wire.clear();
  secrets.publish(other_secrets());
  turn_with(w, {{c.syn()}});
  ASSERT_EQ(wire.emitted().size(), 1u);
  Seen synack(wire.emitted()[0]);
  EXPECT_TRUE(cookie_validates(other_secrets(), c, synack));
  EXPECT_FALSE(cookie_validates(test::fixed_secrets(), c, synack));
}

TEST_F(WorkerTest, SynWorkerProtectsServicesAddedByAReload) {
  SynWorker w(setup(), queue, sender, secrets, policy, clock);
  Conn c = Conn::v4();
  c.c2s.dport = 8080;
  turn_with(w, {{c.syn()}});
  EXPECT_EQ(wire.kinds(), (std::vector<K>{K::Accept}));
  wire.clear();
  policy.publish(nullptr, {kService, {kService.address, 8080}});
  turn_with(w, {{c.syn()}});
  EXPECT_EQ(wire.kinds(), (std::vector<K>{K::Drop, K::Emitted}));
}

TEST_F(WorkerTest, SynWorkerAppliesASourcePolicyPublishedByAReload) {
  SynWorker w(setup(), queue, sender, secrets, policy, clock);
  auto deny = std::make_shared<SourcePolicy>();
  deny->add(*Prefix::parse("10.10.1.0/24"), true);
  policy.publish(deny, {kService, kService6});
  turn_with(w, {{Conn::v4().syn()}});
  EXPECT_EQ(wire.kinds(), (std::vector<K>{K::Drop}));
  EXPECT_EQ(w.snapshot().engine.drop(DropReason::Denied), 1u);
}

// ---- FlowWorker --------------------------------------------------------------------------------

class FlowWorkerTest : public WorkerTest {
 protected:
  // The client's SYN goes through a SYN worker of its own that shares the secrets, as in the
  // daemon; `c` learns the cookie and TSval from its SYN-ACK.
  void learn_cookie(Conn& c) {
    Wire syn_wire;
    ScriptedQueue syn_queue{syn_wire};
    CapturingSender syn_sender{syn_wire};
    SynWorker syn_worker(setup(), syn_queue, syn_sender, secrets, policy, clock);
    syn_queue.add_batch({{c.syn()}});
    syn_worker.turn(false);
    ASSERT_EQ(syn_wire.emitted().size(), 1u);
    Seen synack(syn_wire.emitted()[0]);
    c.cookie_isn = synack.pkt.seq();
    c.synack_tsval = synack.pkt.options().tsval;
  }
  Bytes not_for_a_service(uint16_t sport) {
    Conn o = Conn::v4(sport);
    o.c2s.dport = 8080;
    o.cookie_isn = 1;
    return o.third_ack();
  }
};

TEST_F(FlowWorkerTest, ACookieAckFromTheSynWorkersSynAckOpensTheBackendConnection) {
  FlowWorker w(setup(), queue, sender, secrets, policy, clock);
  Conn c = Conn::v4();
  learn_cookie(c);
  turn_with(w, {{c.third_ack()}});
  ASSERT_EQ(wire.kinds(), (std::vector<K>{K::Modified})) << "the SYN takes the cookie ACK's place";
  Seen syn(wire.entries[0].bytes);
  EXPECT_EQ(syn.pkt.flags(), tcp_flag::SYN);
  EXPECT_EQ(syn.pkt.tuple(), c.c2s) << "the client's own tuple, towards the backend";
  EXPECT_EQ(syn.pkt.seq(), c.client_isn);
  const WorkerSnapshot s = w.snapshot();
  EXPECT_FALSE(s.syn_only);
  EXPECT_EQ(s.engine.cookies_valid, 1u);
  EXPECT_EQ(s.engine.backend_syns_sent, 1u);
  EXPECT_EQ(s.engine.flows_active, 1u);
  EXPECT_EQ(s.flow_table_capacity, 64u);
  EXPECT_GT(s.flow_table_bytes, 0u);
}

TEST_F(FlowWorkerTest, ACookieMadeWithOldSecretsFailsOnceTheWorkerHasNewOnes) {
  FlowWorker w(setup(), queue, sender, secrets, policy, clock);
  Conn c = Conn::v4();
  learn_cookie(c);
  secrets.publish(other_secrets());  // current and previous both replaced
  turn_with(w, {{c.third_ack()}});
  EXPECT_EQ(wire.kinds(), (std::vector<K>{K::Drop}));
  EXPECT_EQ(w.snapshot().engine.drop(DropReason::CookieInvalid), 1u);
}

TEST_F(FlowWorkerTest, EmittedPacketsFollowTheVerdictsOfThePacketsBeforeThem) {
  FlowWorker w(setup(), queue, sender, secrets, policy, clock);
  Conn c = Conn::v4();
  learn_cookie(c);
  // A cookie ACK carrying data is dropped (its data buffered) and the backend SYN sent.
  const Bytes request = {'G', 'E', 'T'};
  turn_with(w, {{not_for_a_service(50001)}, {c.third_ack(request)}, {not_for_a_service(50002)}});
  ASSERT_EQ(wire.kinds(), (std::vector<K>{K::Accept, K::Drop, K::Emitted, K::Accept}));
  EXPECT_EQ(wire.entries[0].id, 1u);
  EXPECT_EQ(wire.entries[1].id, 2u);
  EXPECT_EQ(wire.entries[3].id, 3u);
}

TEST_F(FlowWorkerTest, TranslatedPacketsLeaveAsModifiedVerdictsWithTheNewBytes) {
  FlowWorker w(setup(), queue, sender, secrets, policy, clock);
  Conn c = Conn::v4();
  learn_cookie(c);
  turn_with(w, {{c.third_ack()}});
  ASSERT_EQ(wire.kinds(), (std::vector<K>{K::Modified})) << "the cookie ACK's verdict carries the backend SYN";
  Seen backend_syn(wire.entries[0].bytes);
  turn_with(w, {{c.backend_synack(backend_syn.pkt.options().tsval)}});
  wire.clear();
  // The backend speaks first.
  const std::string hello = "220 hello\r\n";
  SegmentSpec s{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1, .ack = c.client_isn + 1,
                .flags = tcp_flag::ACK | tcp_flag::PSH, .window = c.backend_window,
                .payload = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(hello.data()), hello.size())};
  s.options.has_timestamps = true;
  s.options.tsval = c.backend_ts + 100;
  s.options.tsecr = 1001;
  turn_with(w, {{test::make(s)}});
  ASSERT_EQ(wire.kinds(), (std::vector<K>{K::Modified}));
  Seen out(wire.entries[0].bytes);
  EXPECT_EQ(out.pkt.seq(), c.cookie_isn + 1) << "in the client's sequence space";
  EXPECT_EQ(out.pkt.payload_len(), hello.size());
  w.publish();  // the turns ran at one instant: the snapshot was published before them
  EXPECT_EQ(w.snapshot().intake.verdict_modified, 3u) << "the backend SYN, the client's window update, the data";
  EXPECT_EQ(w.snapshot().engine.translated, 1u);
}

// With the kernel path on, what the engine rewrote carries the translated bit on top of the
// packet's own mark (an operator's bits kept), so that neither the queue rules nor tc egress take
// it again; without it the verdict leaves the mark alone.
TEST_F(FlowWorkerTest, RewrittenPacketsCarryTheVerdictMarkBitOnTopOfTheirOwn) {
  for (const uint32_t bits : {0u, 0x40000000u}) {
    Wire w_wire;
    ScriptedQueue q{w_wire};
    CapturingSender snd{w_wire};
    WorkerSetup s = setup();
    s.verdict_mark_bits = bits;
    FlowWorker w(s, q, snd, secrets, policy, clock);
    Conn c = Conn::v4();
    learn_cookie(c);
    q.add_batch({{c.third_ack()}});
    w.turn(false);
    Seen backend_syn(w_wire.rewritten().at(0));
    q.add_batch({{c.backend_synack(backend_syn.pkt.options().tsval)}});
    w.turn(false);
    q.queued_mark = 0x5;  // an operator's MARK
    SegmentSpec d{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1, .ack = c.client_isn + 1,
                  .flags = tcp_flag::ACK, .window = c.backend_window};
    d.options.has_timestamps = true;
    d.options.tsval = c.backend_ts + 1;
    d.options.tsecr = 1001;
    q.add_batch({{test::make(d)}});
    w.turn(false);
    // The backend SYN and the client's window update took their packets' places, then the data.
    ASSERT_EQ(q.marks.size(), 3u);
    for (size_t i = 0; i < q.marks.size(); ++i) {
      const uint32_t own = i == 2 ? 0x5u : 0u;  // the operator's MARK was on the data packet only
      if (bits == 0) {
        EXPECT_FALSE(q.marks[i].has_value()) << i;
      } else {
        EXPECT_EQ(q.marks[i], std::optional<uint32_t>(bits | own)) << i;
      }
    }
  }
}

// The rules queue ICMP errors to the first flow queue, whatever worker owns the flow: a worker
// without it hands the error, untouched, to the next flow queue; the one that has it translates
// the quote; the last one drops an error nobody has a flow for.
TEST_F(FlowWorkerTest, AnIcmpErrorMovesAlongTheFlowQueuesToTheWorkerThatHasItsFlow) {
  WorkerSetup first_setup = setup();
  first_setup.queue = 8;
  first_setup.engine.icmp_next_queue = true;
  Wire first_wire;
  ScriptedQueue first_queue{first_wire};
  CapturingSender first_sender{first_wire};
  FlowWorker first(first_setup, first_queue, first_sender, secrets, policy, clock);
  WorkerSetup owner_setup = setup();
  owner_setup.queue = 9;
  FlowWorker owner(owner_setup, queue, sender, secrets, policy, clock);

  Conn c = Conn::v4();
  learn_cookie(c);
  turn_with(owner, {{c.third_ack()}});
  Seen backend_syn(wire.rewritten().at(0));
  turn_with(owner, {{c.backend_synack(backend_syn.pkt.options().tsval)}});
  wire.clear();
  const std::string data(1400, 'd');
  SegmentSpec s{.tuple = c.c2s.reversed(), .seq = c.backend_isn + 1, .ack = c.client_isn + 1,
                .flags = tcp_flag::ACK, .window = c.backend_window,
                .payload = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size())};
  const Bytes sent = test::make(s);
  turn_with(owner, {{sent}});
  ASSERT_EQ(wire.kinds(), (std::vector<K>{K::Modified}));
  const Bytes err = test::icmp_error(wire.entries[0].bytes, *Address::parse("10.10.4.2"), c.c2s.dst, 3, 4, 1280, 548);
  wire.clear();

  first_queue.add_batch({{err}});
  first.turn(false);
  ASSERT_EQ(first_wire.kinds(), (std::vector<K>{K::NextQueue}));
  EXPECT_EQ(first_wire.entries[0].queue, 9u);
  first.publish();
  EXPECT_EQ(first.snapshot().intake.verdict_next_queue, 1u);
  EXPECT_EQ(first.snapshot().engine.icmp_passed_on, 1u);

  turn_with(owner, {{err}});
  ASSERT_EQ(wire.kinds(), (std::vector<K>{K::Modified}));
  const Bytes& out = wire.entries[0].bytes;
  EXPECT_EQ(test::icmp_checksum_residue(out), 0);
  EXPECT_TRUE(std::equal(sent.begin() + 24, sent.begin() + 36, out.begin() + 48 + 4)) << "seq back in the backend's space";
  EXPECT_TRUE(std::equal(sent.begin() + 20, sent.begin() + 24, out.begin() + 48));

  // An error about a connection no worker has: the last one drops it.
  Conn stranger = Conn::v4(41000);
  SegmentSpec t{.tuple = stranger.c2s.reversed(), .seq = 5, .ack = 6, .flags = tcp_flag::ACK, .window = 1};
  wire.clear();
  turn_with(owner, {{test::icmp_error(test::make(t), *Address::parse("10.10.4.2"), c.c2s.dst, 3, 4, 1280)}});
  EXPECT_EQ(wire.kinds(), (std::vector<K>{K::Drop}));
  owner.publish();
  EXPECT_EQ(owner.snapshot().engine.drop(DropReason::IcmpNoFlow), 1u);
  EXPECT_EQ(owner.snapshot().engine.icmp_translated, 1u);
}

TEST_F(FlowWorkerTest, AServiceRemovedByAReloadDrainsWhileItHasFlows) {
  FlowWorker w(setup(), queue, sender, secrets, policy, clock);
  Conn c = Conn::v4();
  learn_cookie(c);
  turn_with(w, {{c.third_ack()}});
  EXPECT_TRUE(w.draining_services().empty());
  policy.publish(nullptr, {kService6});
  EXPECT_EQ(w.turn(false), 0u);
  EXPECT_EQ(w.draining_services(), (std::vector<Service>{kService}));
}

TEST_F(FlowWorkerTest, TimersRunOnlyOnceTheAdvanceIntervalHasPassed) {
  WorkerSetup st = setup();
  st.engine.backend_retry_initial_ms = 1000;
  st.advance_interval_ns = 2 * kSecond;
  FlowWorker w(st, queue, sender, secrets, policy, clock);
  Conn c = Conn::v4();
  learn_cookie(c);
  turn_with(w, {{c.third_ack()}});
  ASSERT_EQ(wire.rewritten().size(), 1u);
  wire.clear();
  now += 1500 * kMs;  // the backend SYN's retry is due, the interval has not passed
  EXPECT_EQ(w.turn(false), 0u);
  EXPECT_TRUE(wire.entries.empty());
  now += 500 * kMs;
  EXPECT_EQ(w.turn(false), 0u);
  ASSERT_EQ(wire.emitted().size(), 1u);
  Seen retry(wire.emitted()[0]);
  EXPECT_EQ(retry.pkt.flags(), tcp_flag::SYN);
  EXPECT_EQ(retry.pkt.seq(), c.client_isn);
  EXPECT_EQ(w.snapshot().engine.backend_syn_retries, 1u);
}

// The engine's timers run on the timer clock, but what its sweep learns (a hand-over the tc program
// reported between batches) is stamped on the cookie clock, which the daemon and the SYN answers
// read it by. The worker once passed the sweep a bare number, the timer time standing for both: a
// backend without SACK learnt there was taken as learnt an hour off, so forgotten at once, and its
// clients went on being promised SACK (gateway_backend_sack with tc_handshake on).
TEST_F(FlowWorkerTest, TheSweepLearnsOnTheCookieClock) {
  const uint64_t cookie_ahead = 3600 * kSecond;  // the clocks differ, as boot time and wall time do
  clock = [this, cookie_ahead] { return EngineClock{now + cookie_ahead, now}; };
  WorkerSetup st = setup();
  st.engine.backend_facts = std::make_shared<BackendFacts>();
  FlowWorker w(st, queue, sender, secrets, policy, clock);
  test::FakeKernelSide side;
  w.engine().set_flow_observer(&side);
  w.engine().set_kernel_state(&side);
  Conn c = Conn::v4();
  c.backend_synack_opts.sack_permitted = false;
  learn_cookie(c);
  turn_with(w, {{c.third_ack()}});
  ASSERT_EQ(side.records.size(), 1u) << "the bare cookie ACK's handshake offered to the kernel side";
  const Seen syn(wire.entries.at(0).bytes);
  ASSERT_TRUE(side.take(c.c2s, c.backend_synack(syn.pkt.options().tsval)));
  now += st.advance_interval_ns;
  EXPECT_EQ(w.turn(false), 0u) << "no packet: the report is taken by the sweep";
  EXPECT_EQ(w.snapshot().engine.kernel_handshakes, 1u);
  const uint32_t cookie_ms = static_cast<uint32_t>((now + cookie_ahead) / kMs);
  EXPECT_NE(st.engine.backend_facts->service_flags(kService, cookie_ms) & SG_SERVICE_BACKEND_LACKS_SACK, 0u)
      << "learnt on the cookie clock";
  w.engine().set_flow_observer(nullptr);
  w.engine().set_kernel_state(nullptr);
}

// ---- What every worker kind shares -------------------------------------------------------------

// A worker whose per-packet answer throws, as an engine bug would.
class ThrowingWorker final : public Worker {
 public:
  ThrowingWorker(WorkerSetup setup, PacketQueue& q, BatchSender& s, SharedSecrets& sec, SharedPolicy& pol,
                 WorkerClock clock, bool std_exception)
      : Worker(false, std::move(setup), q, s, sec, pol, std::move(clock)), std_exception_(std_exception) {}

 private:
  Decision decide(const QueuedPacket&, const EngineClock&) override {
    if (std_exception_) throw std::runtime_error("engine bug");
    throw 42;
  }
  void use_policy(const std::shared_ptr<const SourcePolicy>&, const std::vector<Service>&) override {}
  EngineCounters counters() const override { return {}; }
  bool std_exception_;
};

TEST_F(WorkerTest, APacketWhoseHandlingThrowsGetsTheFailModeVerdict) {
  for (bool fail_open : {false, true}) {
    for (bool std_exception : {true, false}) {
      SCOPED_TRACE(std::string(fail_open ? "fail open" : "fail closed") + (std_exception ? ", std" : ", other"));
      wire.clear();
      ThrowingWorker w(setup(fail_open), queue, sender, secrets, policy, clock, std_exception);
      turn_with(w, {{Conn::v4().syn()}, {Conn::v4(40001).syn()}});
      const K expected = fail_open ? K::Accept : K::Drop;
      EXPECT_EQ(wire.kinds(), (std::vector<K>{expected, expected}));
      const WorkerSnapshot s = w.snapshot();
      EXPECT_EQ(s.intake.exceptions, 2u);
      EXPECT_EQ(fail_open ? s.intake.verdict_accept : s.intake.verdict_drop, 2u);
    }
  }
}

TEST_F(WorkerTest, CountersArePublishedEveryTenthOfASecond) {
  SynWorker w(setup(), queue, sender, secrets, policy, clock);
  turn_with(w, {{Conn::v4().syn()}});
  EXPECT_EQ(w.snapshot().engine.syn_received, 1u);
  now += 50 * kMs;
  turn_with(w, {{Conn::v4(40001).syn()}});
  EXPECT_EQ(w.snapshot().engine.syn_received, 1u) << "published again before 100 ms";
  now += 50 * kMs;
  w.turn(false);
  EXPECT_EQ(w.snapshot().engine.syn_received, 2u);
  EXPECT_EQ(w.heartbeat(), 3u);
}

}  // namespace
}  // namespace syngate::gw
