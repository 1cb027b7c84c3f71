#include <cerrno>
#include <cstring>
#include <gtest/gtest.h>

#include <string>

#include "metrics.hpp"

using namespace syngate::gw;

TEST(Metrics, ParsesKernelQueueStats) {
  std::string proc =
      "    0  12345     3 2 65531   17    4 1000 1\n"
      "    8  12346     0 2 65531    0   99 555 1\n"
      "garbage line\n";
  auto q = parse_nfqueue_proc(proc);
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].queue, 0);
  EXPECT_EQ(q[0].portid, 12345u);
  EXPECT_EQ(q[0].waiting, 3u);
  EXPECT_EQ(q[0].queue_dropped, 17u);
  EXPECT_EQ(q[0].user_dropped, 4u);
  EXPECT_EQ(q[0].id_sequence, 1000u);
  EXPECT_EQ(q[1].queue, 8);
  EXPECT_EQ(q[1].user_dropped, 99u);
}

namespace {
GatewaySnapshot sample() {
  GatewaySnapshot s;
  WorkerSnapshot syn;
  syn.id = 0;
  syn.syn_only = true;
  syn.queue = 0;
  syn.engine.syn_received = 1000;
  syn.engine.cookies_sent = 990;
  syn.engine.drops[static_cast<size_t>(syngate::DropReason::SynAnswered)] = 990;
  syn.intake.netlink_enobufs = 3;
  WorkerSnapshot flow;
  flow.id = 1;
  flow.queue = 8;
  flow.engine.cookies_valid = 42;
  flow.engine.cookies_invalid = 7;
  flow.engine.flows_active = 5;
  flow.engine.drops[static_cast<size_t>(syngate::DropReason::CookieInvalid)] = 7;
  flow.intake.verdict_modified = 11;
  s.workers = {syn, flow};
  s.queues = {{0, 1, 2, 30, 4, 5000}, {8, 2, 0, 0, 0, 100}};
  s.rss_bytes = 123456;
  return s;
}
}  // namespace

TEST(Metrics, RendersPerWorkerSeries) {
  std::string text = render_prometheus(sample());
  EXPECT_NE(text.find("# TYPE syngate_syn_received_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("syngate_syn_received_total{worker=\"0\",kind=\"syn\",queue=\"0\"} 1000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("syngate_cookies_valid_total{worker=\"1\",kind=\"flow\",queue=\"8\"} 42\n"), std::string::npos);
  EXPECT_NE(text.find("syngate_flows_active{worker=\"1\",kind=\"flow\",queue=\"8\"} 5\n"), std::string::npos);
  EXPECT_NE(text.find("syngate_netlink_drops_total{worker=\"0\",kind=\"syn\",queue=\"0\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("syngate_verdicts_total{worker=\"1\",kind=\"flow\",queue=\"8\",verdict=\"accept_modified\"} 11\n"), std::string::npos);
  EXPECT_NE(text.find("syngate_queue_dropped_total{queue=\"0\"} 30\n"), std::string::npos);
  EXPECT_NE(text.find("syngate_queue_user_dropped_total{queue=\"0\"} 4\n"), std::string::npos);
  EXPECT_NE(text.find("syngate_resident_memory_bytes 123456\n"), std::string::npos);
  std::string reason(syngate::to_string(syngate::DropReason::CookieInvalid));
  EXPECT_NE(text.find("syngate_drops_total{worker=\"1\",kind=\"flow\",queue=\"8\",reason=\"" + reason + "\"} 7\n"),
            std::string::npos);
}

TEST(Metrics, EveryFamilyHasHelpAndType) {
  std::string text = render_prometheus(sample());
  size_t pos = 0;
  while ((pos = text.find("\n", pos)) != std::string::npos) {
    ++pos;
    if (pos >= text.size() || text[pos] == '#') continue;
    std::string name = text.substr(pos, text.find_first_of("{ ", pos) - pos);
    EXPECT_NE(text.find("# HELP " + name + " "), std::string::npos) << name;
    EXPECT_NE(text.find("# TYPE " + name + " "), std::string::npos) << name;
  }
}

TEST(Metrics, SumsAndSummary) {
  GatewaySnapshot now = sample();
  auto total = sum_engine(now.workers);
  EXPECT_EQ(total.cookies_sent, 990u);
  EXPECT_EQ(total.cookies_valid, 42u);
  GatewaySnapshot before = now;
  before.workers[0].engine.syn_received = 0;
  std::string line = summary_line(now, before, 2.0);
  EXPECT_NE(line.find("syn 500/s"), std::string::npos) << line;
  EXPECT_NE(line.find("queue drops 30"), std::string::npos) << line;
  EXPECT_EQ(line.find("(last:"), std::string::npos) << "no send failed: " << line;
  // A failed raw send says why (the errno of the latest), so that a count is not a mystery.
  now.workers[0].intake.emit_errors = 7;
  now.workers[0].intake.emit_last_errno = EPERM;
  line = summary_line(now, before, 2.0);
  EXPECT_NE(line.find("emit errors 7 (last: " + std::string(std::strerror(EPERM)) + ")"), std::string::npos) << line;
}

// A refused flow reset a client: the stop line says which limit refused it.
TEST(Metrics, SummarySaysWhyFlowsWereRefused) {
  GatewaySnapshot now = sample();
  for (auto& w : now.workers) w.engine.flows_refused = 0;
  std::string line = summary_line(now, now, 1.0);
  EXPECT_NE(line.find("refused 0 |"), std::string::npos) << line;
  now.workers[0].engine.flows_refused = 3;
  now.workers[0].engine.drops[static_cast<size_t>(syngate::DropReason::SourceLimit)] = 2;
  now.workers[1].engine.drops[static_cast<size_t>(syngate::DropReason::PairInUse)] = 1;
  line = summary_line(now, now, 1.0);
  EXPECT_NE(line.find("refused 3 (source_limit 2, pair_in_use 1) |"), std::string::npos) << line;
}
