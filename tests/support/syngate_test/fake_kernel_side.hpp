// The kernel side (the tc programs) as the engine sees it, for tests without root: it records the
// handshakes offered, takes one's SYN-ACK when the test says so (the record consumed, the report
// queued, the entries written) and gives the reports to the engine that asks.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "syngate/flow_table.hpp"
#include "syngate/packet.hpp"
#include "syngate/spec/backend_syn_spec.h"
#include "syngate/spec/handover_spec.h"
#include "syngate_test/engine_harness.hpp"

namespace syngate::test {

// The kernel side as the engine sees it: it takes an offered SYN-ACK when the test says so.
struct FakeKernelSide : FlowObserver, KernelFlowState {
  bool offer = true;  // handshake_sent's answer
  struct Record {
    FlowTuple flow;
    sg_handshake hs;
    uint32_t generation;  // the flow's, which its entries will carry
  };
  std::vector<Record> records;
  size_t count(const FlowTuple& t) const {
    return static_cast<size_t>(std::count_if(records.begin(), records.end(), [&](const Record& r) { return r.flow == t; }));
  }
  std::deque<KernelHandOver> reports;
  int withdrawals = 0;
  void flow_created(const FlowTuple&) noexcept override {}
  // One counter for the engine's flows (new_generation) and the programs' opens (open), as the
  // daemon's; what each flow was released with.
  uint32_t generation = 100;
  uint32_t new_generation() noexcept override { return ++generation; }
  void generation_at_least(uint32_t g) noexcept override { generation = std::max(generation, g); }
  std::vector<std::pair<FlowTuple, uint32_t>> freed, offered, discards;
  void flow_freed(const FlowTuple& t, uint32_t g) noexcept override { freed.emplace_back(t, g); }
  std::vector<std::pair<FlowTuple, FlowTranslation>> kept;  // flow_established: the entries claimed
  void flow_established(const FlowTuple& t, const FlowTranslation& x, uint32_t) noexcept override { kept.emplace_back(t, x); }
  bool handshake_sent(const FlowTuple& t, const sg_handshake& h, uint32_t g) noexcept override {
    if (offer) records.push_back({t, h, g});
    if (offer) offered.emplace_back(t, g);
    return offer;
  }
  bool withdraw_handshake(const FlowTuple& t) noexcept override {
    ++withdrawals;
    return std::erase_if(records, [&](const Record& r) { return r.flow == t; }) == 1;
  }
  void take_handed_over(std::vector<KernelHandOver>& out, const std::function<bool(const KernelHandOver&)>& mine) noexcept override {
    std::erase_if(reports, [&](const KernelHandOver& k) {
      if (!mine(k)) return false;
      out.push_back(k);
      return true;
    });
  }
  // What the program does with the backend's SYN-ACK: the record consumed, the report queued.
  bool take(const FlowTuple& t, const Bytes& synack) {
    const auto record = std::find_if(records.begin(), records.end(), [&](const Record& r) { return r.flow == t; });
    if (record == records.end()) return false;
    const sg_handshake h = record->hs;
    const uint32_t g = record->generation;
    records.erase(record);
    Bytes copy = synack;
    ParseResult r = parse_tcp_packet(copy);
    const TcpOptions& o = r.packet.options();
    KernelHandOver k{t, {}};
    k.synack.seq = r.packet.seq();
    k.synack.ack = r.packet.ack();
    k.synack.window = r.packet.window();
    k.synack.has_ts = o.has_timestamps;
    k.synack.tsval = o.has_timestamps ? o.tsval : 0;
    k.synack.has_wscale = o.has_wscale;
    k.synack.wscale = o.has_wscale ? o.wscale : 0;
    k.synack.sack_permitted = o.sack_permitted;
    k.synack.has_mss = o.has_mss;
    k.synack.mss = o.has_mss ? o.mss : 0;
    reports.push_back(k);
    sg_handover ho;
    sg_hand_over(&h, &k.synack, &ho);
    FlowTranslation x;
    x.delta = ho.delta;
    x.tsoff = ho.tsoff;
    x.timestamps = ho.timestamps;
    x.shifts = ho.shifts;
    std::erase_if(entries, [&](const Entries& e) { return e.flow == t; });  // written over
    entries.push_back({t, x, g, false});
    return true;
  }
  // The entries the program wrote (or a test put there), as handed_over_translation reads them back.
  struct Entries {
    FlowTuple flow;
    FlowTranslation x;
    uint32_t generation;
    bool closed = false;  // a FIN, an RST or the engine's punt recorded
  };
  std::vector<Entries> entries;
  std::optional<FlowTranslation> handed_over_translation(const FlowTuple& t, uint32_t g) noexcept override {
    for (const Entries& e : entries) {
      if (e.flow != t) continue;
      if (g != 0 && e.closed && sg_seq_before(e.generation, g)) return std::nullopt;  // an older connection's
      return e.x;
    }
    return std::nullopt;
  }
  // Closes the programs recorded (generation 0: a release's before it was reported), until an
  // engine takes them as its own.
  std::deque<KernelClose> closing;
  void take_closing(std::vector<FlowTuple>& out, const std::function<bool(const KernelClose&)>& mine) noexcept override {
    std::erase_if(closing, [&](const KernelClose& k) {
      if (!mine(k)) return false;
      out.push_back(k.flow);
      return true;
    });
  }
  // Flows the program opened from cookie ACKs (sg_tc_cookie_ack), reported in order.
  std::deque<KernelOpened> opened_reports;
  std::vector<FlowTuple> discarded;
  void take_opened(std::vector<KernelOpened>& out) noexcept override {
    out.insert(out.end(), opened_reports.begin(), opened_reports.end());
    opened_reports.clear();
  }
  void discard(const FlowTuple& t, uint32_t g) noexcept override {
    discarded.push_back(t);
    discards.emplace_back(t, g);
    std::erase_if(entries, [&](const Entries& e) { return e.flow == t; });
  }
  // What the program does with a client's cookie ACK (its cookie's MSS `mss`): the backend's SYN
  // sent, the record written, the flow reported (`over_closed`: over the closed entries of the
  // pair's previous flow). Returns the record.
  sg_handshake open(const Bytes& cookie_ack, uint16_t mss, bool room, uint8_t announced_ws, bool over_closed = false) {
    Bytes copy = cookie_ack;
    ParseResult r = parse_tcp_packet(copy);
    EXPECT_TRUE(r);
    const TcpOptions& o = r.packet.options();
    const sg_cookie_ack a{r.packet.seq(), r.packet.ack(), o.has_timestamps ? o.tsval : 0u,
                          o.has_timestamps ? o.tsecr : 0u, r.packet.window(), o.has_timestamps, 0};
    KernelOpened k;
    k.flow = r.packet.tuple();
    sg_handshake_of_cookie_ack(&a, announced_ws, &k.handshake);
    k.mss = mss;
    k.room_for_timestamps = room;
    k.over_closed = over_closed;
    k.generation = ++generation;
    records.push_back({k.flow, k.handshake, k.generation});
    opened_reports.push_back(k);
    return k.handshake;
  }
  // What the programs recorded of a flow (read), when the test says.
  std::vector<std::pair<FlowTuple, KernelFlowView>> views;
  int reads = 0;
  bool read(const FlowTuple& t, KernelFlowView& out) noexcept override {
    ++reads;
    for (const auto& [flow, v] : views) {
      if (flow == t) {
        out = v;
        return true;
      }
    }
    return false;
  }
  bool may_be_overtaken(const FlowTuple&) noexcept override { return false; }
  uint64_t lost = 0;  // reports the ring had no room for (reports_lost)
  uint64_t reports_lost() noexcept override { return lost; }
  std::vector<FlowTuple> punts;  // flows whose segments the engine took back (punt)
  void punt(const FlowTuple& t, uint32_t) noexcept override { punts.push_back(t); }
};

}  // namespace syngate::test
