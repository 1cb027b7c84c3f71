// `syngate status`: parsing of the metrics text, the report built from two scrapes, and its
// rendering, against two scrapes captured from a real syngate during a flood
// (fixtures/metrics_flood_{a,b}.txt, made by capture_metrics.sh) and against synthetic scrapes.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "metrics.hpp"
#include "status.hpp"

using namespace syngate::gw;

namespace {

std::string read_fixture(const std::string& name) {
  std::ifstream in(std::string(SYNGATE_OPS_FIXTURES) + "/" + name);
  EXPECT_TRUE(in.good()) << name;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Scrape scrape_of(const std::string& text, double t) { return Scrape{parse_prometheus_text(text), t}; }

// Sum of a metric over the series whose labels include every given pair.
double sum_of(const Scrape& s, const std::string& name, const std::map<std::string, std::string>& match = {}) {
  double total = 0;
  for (const auto& m : s.samples) {
    if (m.name != name) continue;
    bool ok = true;
    for (const auto& [k, v] : match) {
      auto it = m.labels.find(k);
      ok = ok && it != m.labels.end() && it->second == v;
    }
    if (ok) total += m.value;
  }
  return total;
}

std::set<std::string> family_names(const std::vector<MetricSample>& samples) {
  std::set<std::string> out;
  for (const auto& m : samples) out.insert(m.name);
  return out;
}

}  // namespace

TEST(StatusParse, SeriesLabelsValuesAndComments) {
  auto s = parse_prometheus_text(
      "# HELP x something\n"
      "# TYPE x counter\n"
      "\n"
      "x 12\n"
      "y{a=\"1\",b=\"q\\\"uo\\\\te\\n\"} 3.5 1700000000000\r\n"
      "  z{} +Inf\n"
      "w{a=\"x\",} -2e3\n");
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].name, "x");
  EXPECT_TRUE(s[0].labels.empty());
  EXPECT_EQ(s[0].value, 12);
  EXPECT_EQ(s[1].labels.at("a"), "1");
  EXPECT_EQ(s[1].labels.at("b"), "q\"uo\\te\n");
  EXPECT_EQ(s[1].value, 3.5);  // the timestamp is not the value
  EXPECT_TRUE(std::isinf(s[2].value));
  EXPECT_EQ(s[3].value, -2000);
}

TEST(StatusParse, MalformedLinesNameTheirNumber) {
  for (const char* bad : {"x{a=\"1\" 3\n", "x{a=1} 3\n", "x\n", "x abc\n", "1x 3\n", "x{a=\"1} 3\n"}) {
    try {
      parse_prometheus_text(std::string("ok 1\n") + bad);
      FAIL() << "accepted: " << bad;
    } catch (const MetricsParseError& e) {
      EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
    }
  }
}

// Every family in the captured text must still be rendered by render_prometheus, so a renamed
// or removed metric breaks this test and not an operator's screen. New families are fine.
TEST(StatusFixture, CapturedFamiliesAreStillRendered) {
  GatewaySnapshot snap;
  WorkerSnapshot w;
  w.syn_only = true;
  snap.workers.push_back(w);
  snap.queues.push_back({});
  const auto rendered = family_names(parse_prometheus_text(render_prometheus(snap)));
  const auto captured = family_names(parse_prometheus_text(read_fixture("metrics_flood_a.txt")));
  for (const auto& name : captured) EXPECT_TRUE(rendered.count(name)) << name << " is no longer rendered";
  EXPECT_GT(captured.size(), 20u);
}

TEST(StatusReport, RatesFromTheCapturedScrapes) {
  const Scrape a = scrape_of(read_fixture("metrics_flood_a.txt"), 100.0);
  const Scrape b = scrape_of(read_fixture("metrics_flood_b.txt"), 101.0);
  const StatusReport r = build_status(a, b, 1000, sum_of(b, "syngate_start_time_seconds") + 3725, "127.0.0.1:9470");

  // The capture: one SYN worker on queue 0, two flow workers on queues 8 and 9, during a flood.
  ASSERT_EQ(r.workers.size(), 3u);
  EXPECT_EQ(r.workers[0].kind, "syn");
  EXPECT_EQ(r.workers[0].queue, "0");
  EXPECT_EQ(r.workers[1].kind, "flow");
  EXPECT_EQ(r.workers[2].kind, "flow");
  EXPECT_EQ(r.interval_s, 1.0);
  EXPECT_EQ(r.uptime_s, 3725);

  const double syn = sum_of(b, "syngate_syn_received_total") - sum_of(a, "syngate_syn_received_total");
  EXPECT_GT(syn, 1000) << "the fixture was captured during a flood";
  EXPECT_DOUBLE_EQ(r.total.syn_rate, syn);
  EXPECT_DOUBLE_EQ(r.workers[0].syn_rate, syn);
  EXPECT_DOUBLE_EQ(r.total.cookies_sent_rate,
                   sum_of(b, "syngate_cookies_sent_total") - sum_of(a, "syngate_cookies_sent_total"));
  EXPECT_DOUBLE_EQ(r.drops.at("syn_answered").total, sum_of(b, "syngate_drops_total", {{"reason", "syn_answered"}}));
  EXPECT_DOUBLE_EQ(r.drops.at("syn_answered").rate,
                   sum_of(b, "syngate_drops_total", {{"reason", "syn_answered"}}) -
                       sum_of(a, "syngate_drops_total", {{"reason", "syn_answered"}}));

  // Flow tables: active flows per worker, use against max_flows = 1000 each.
  const double active = sum_of(b, "syngate_flows_active");
  EXPECT_GT(active, 0) << "the client's requests left lingering flows";
  EXPECT_EQ(static_cast<double>(r.total.flows_active), active);
  ASSERT_TRUE(r.workers[1].table_use);
  EXPECT_DOUBLE_EQ(*r.workers[1].table_use, static_cast<double>(r.workers[1].flows_active) / 1000);
  ASSERT_TRUE(r.total.table_use);
  EXPECT_DOUBLE_EQ(*r.total.table_use, active / 2000);
  EXPECT_FALSE(r.workers[0].table_use) << "a SYN worker has no flow table";

  // Queues take the kind of the worker bound to them.
  ASSERT_EQ(r.queues.size(), 3u);
  EXPECT_EQ(r.queues[0].queue, "0");
  EXPECT_EQ(r.queues[0].kind, "syn");
  EXPECT_EQ(r.queues[1].kind, "flow");
  EXPECT_TRUE(r.xdp.empty());
  EXPECT_FALSE(r.restarted);
}

TEST(StatusRender, TextShowsWhatAnOperatorAsksFirst) {
  const Scrape a = scrape_of(read_fixture("metrics_flood_a.txt"), 100.0);
  const Scrape b = scrape_of(read_fixture("metrics_flood_b.txt"), 102.0);
  const StatusReport r = build_status(a, b, 1000, sum_of(b, "syngate_start_time_seconds") + 90061, "127.0.0.1:9470");
  const std::string text = render_status_text(r);
  EXPECT_NE(text.find("syngate at 127.0.0.1:9470: UP, uptime 1d 01h 01m"), std::string::npos) << text;
  EXPECT_NE(text.find("over the last 2.0 s"), std::string::npos) << text;
  for (const char* part : {"worker", "SYN/s", "cookies/s", "valid/s", "invalid/s", "flows/s", "table use",
                           "syn_answered (normal)", "kernel queues", "XDP fast path: not in use", "process: RSS"}) {
    EXPECT_NE(text.find(part), std::string::npos) << part << "\n" << text;
  }
  // The SYN rate of the total row is half the two-second delta.
  char want[32];
  const double syn = (sum_of(b, "syngate_syn_received_total") - sum_of(a, "syngate_syn_received_total")) / 2;
  std::snprintf(want, sizeof want, "%.0f", syn);
  EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;

  const nlohmann::json j = status_to_json(r);
  EXPECT_EQ(j["up"], true);
  EXPECT_EQ(j["workers"].size(), 3u);
  EXPECT_DOUBLE_EQ(j["total"]["syn_rate"].get<double>(), syn);
  EXPECT_TRUE(j["xdp"].is_null());
  EXPECT_TRUE(j["drops"].contains("syn_answered"));
}

namespace {
// A minimal daemon: one flow worker on queue 8 with the given counters.
std::string daemon_text(double packets, double waiting, double qdrops, double start, const std::string& extra = "") {
  std::ostringstream o;
  o << "syngate_packets_total{worker=\"0\",kind=\"flow\",queue=\"8\"} " << packets << "\n"
    << "syngate_flows_active{worker=\"0\",kind=\"flow\",queue=\"8\"} 950\n"
    << "syngate_drops_total{worker=\"0\",kind=\"flow\",queue=\"8\",reason=\"table_full\"} " << packets / 10 << "\n"
    << "syngate_queue_waiting{queue=\"8\"} " << waiting << "\n"
    << "syngate_queue_dropped_total{queue=\"8\"} " << qdrops << "\n"
    << "syngate_queue_user_dropped_total{queue=\"8\"} 0\n"
    << "syngate_reloads_total{result=\"ok\"} 2\n"
    << "syngate_reloads_total{result=\"failed\"} 1\n"
    << "syngate_start_time_seconds " << start << "\n"
    << extra;
  return o.str();
}
}  // namespace

TEST(StatusReport, WarnsAboutStuckWorkersFlowQueueDropsAndFullTables) {
  const Scrape a = scrape_of(daemon_text(500, 40, 3, 1000), 10);
  const Scrape b = scrape_of(daemon_text(500, 64, 10, 1000), 12);
  const StatusReport r = build_status(a, b, 1000, 2000, "x");
  ASSERT_EQ(r.workers.size(), 1u);
  EXPECT_TRUE(r.workers[0].stalled);
  EXPECT_EQ(r.queues[0].kind, "flow");
  EXPECT_DOUBLE_EQ(r.queues[0].dropped.rate, 3.5);
  std::string all;
  for (const auto& w : r.warnings) all += w + "\n";
  EXPECT_NE(all.find("worker 0 (flow, queue 8) took no packet in 2.0 s while 64 wait"), std::string::npos) << all;
  EXPECT_NE(all.find("flow queue 8: the kernel dropped 7 packets in 2.0 s"), std::string::npos) << all;
  EXPECT_NE(all.find("flow table 95% full"), std::string::npos) << all;
  EXPECT_NE(all.find("1 SIGHUP reload(s) failed since start"), std::string::npos) << all;
  EXPECT_NE(render_status_text(r).find("attention:"), std::string::npos);

  // A working worker with an empty queue raises none of these.
  const Scrape c = scrape_of(daemon_text(900, 0, 10, 1000), 14);
  const StatusReport ok = build_status(b, c, 0, 2000, "x");
  EXPECT_FALSE(ok.workers[0].stalled);
  EXPECT_FALSE(ok.workers[0].table_use) << "max_flows unknown without a configuration";
  for (const auto& w : ok.warnings) {
    EXPECT_EQ(w.find("took no packet"), std::string::npos) << w;
    EXPECT_EQ(w.find("flow queue"), std::string::npos) << w;
  }
}

// The rules deleted under the daemon (syngate_rules_in_place 0): status says so; 1, or a daemon
// too old to export it, raises nothing.
TEST(StatusReport, WarnsWhenTheRulesAreMissing) {
  const std::string base = daemon_text(500, 0, 10, 1000);
  auto warned = [&](const std::string& extra) {
    const StatusReport r = build_status(scrape_of(base + extra, 10), scrape_of(base + extra, 12), 0, 2000, "x");
    for (const auto& w : r.warnings) {
      if (w.find("iptables rules are missing") != std::string::npos) return true;
    }
    return false;
  };
  EXPECT_TRUE(warned("syngate_rules_in_place 0\n"));
  EXPECT_FALSE(warned("syngate_rules_in_place 1\n"));
  EXPECT_FALSE(warned(""));
}

// Without --config, status knew no table size and showed "?" for table use; the daemon exports
// its own (syngate_flow_table_capacity), which is also right after a reload changed the file.
TEST(StatusReport, TableUseFromTheDaemonsOwnCapacity) {
  const std::string capacity = "syngate_flow_table_capacity{worker=\"0\",kind=\"flow\",queue=\"8\"} 1000\n";
  const StatusReport r = build_status(scrape_of(daemon_text(500, 0, 0, 1000, capacity), 10),
                                      scrape_of(daemon_text(900, 0, 0, 1000, capacity), 12), 0, 2000, "x");
  ASSERT_EQ(r.workers.size(), 1u);
  ASSERT_TRUE(r.workers[0].table_use);
  EXPECT_DOUBLE_EQ(*r.workers[0].table_use, 0.95);
  ASSERT_TRUE(r.total.table_use);
  EXPECT_DOUBLE_EQ(*r.total.table_use, 0.95);
  std::string all;
  for (const auto& w : r.warnings) all += w + "\n";
  EXPECT_NE(all.find("flow table 95% full (engine.max_flows = 1000)"), std::string::npos) << all;
  // The daemon's figure wins over a configuration that says otherwise.
  const StatusReport c = build_status(scrape_of(daemon_text(500, 0, 0, 1000, capacity), 10),
                                      scrape_of(daemon_text(900, 0, 0, 1000, capacity), 12), 4000, 2000, "x");
  EXPECT_DOUBLE_EQ(*c.workers[0].table_use, 0.95);
}

// An interface named up"link broke every scrape: the writer left the quote bare. Written through
// prometheus_label_value, the name comes back whole.
TEST(StatusParse, LabelValuesWithQuotesAndBackslashesRoundTrip) {
  const std::string name = "up\"link\\x";
  const std::string text = daemon_text(1, 0, 0, 1, "syngate_xdp_attached{interface=\"" + prometheus_label_value(name) +
                                                       "\",mode=\"native\"} 1\n");
  const Scrape s = scrape_of(text, 0);
  bool found = false;
  for (const auto& m : s.samples) {
    if (m.name != "syngate_xdp_attached") continue;
    found = true;
    EXPECT_EQ(m.labels.at("interface"), name);
    EXPECT_EQ(m.labels.at("mode"), "native");
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(prometheus_label_value("a\nb"), "a\\nb");
}

TEST(StatusReport, RestartCountsFromZero) {
  const Scrape a = scrape_of(daemon_text(5000, 0, 0, 1000), 10);
  const Scrape b = scrape_of(daemon_text(300, 0, 0, 1005), 11);
  const StatusReport r = build_status(a, b, 0, 1010, "x");
  EXPECT_TRUE(r.restarted);
  EXPECT_DOUBLE_EQ(r.workers[0].packets_rate, 300) << "a counter that went down restarted from 0";
  EXPECT_DOUBLE_EQ(r.uptime_s, 5);
}

TEST(StatusReport, XdpSeriesShownWhenPresent) {
  const std::string xdp0 = "syngate_xdp_syn_cookies_total{ifindex=\"3\"} 100\nsyngate_xdp_attached{ifindex=\"3\"} 1\n";
  const std::string xdp1 = "syngate_xdp_syn_cookies_total{ifindex=\"3\"} 400\nsyngate_xdp_attached{ifindex=\"3\"} 1\n";
  const StatusReport r = build_status(scrape_of(daemon_text(1, 0, 0, 1, xdp0), 0),
                                      scrape_of(daemon_text(2, 0, 0, 1, xdp1), 3), 0, 10, "x");
  ASSERT_EQ(r.xdp.size(), 2u);
  EXPECT_EQ(r.xdp[0].series, "syngate_xdp_syn_cookies_total{ifindex=\"3\"}");
  ASSERT_TRUE(r.xdp[0].rate);
  EXPECT_DOUBLE_EQ(*r.xdp[0].rate, 100);
  EXPECT_FALSE(r.xdp[1].rate) << "a gauge has no rate";
  const std::string text = render_status_text(r);
  EXPECT_EQ(text.find("not in use"), std::string::npos);
  EXPECT_NE(text.find("syngate_xdp_syn_cookies_total{ifindex=\"3\"}"), std::string::npos) << text;
  EXPECT_EQ(status_to_json(r)["xdp"].size(), 2u);
}

TEST(StatusReport, SegmentsTranslatedInTheKernelAndInTheEngine) {
  const std::string tc0 = "syngate_tc_packets_total{outcome=\"translated\"} 1000\n"
                          "syngate_tc_packets_total{outcome=\"punted\"} 7\nsyngate_translated_total{worker=\"1\"} 10\n";
  const std::string tc1 = "syngate_tc_packets_total{outcome=\"translated\"} 4000\n"
                          "syngate_tc_packets_total{outcome=\"punted\"} 9\nsyngate_translated_total{worker=\"1\"} 13\n";
  const StatusReport r = build_status(scrape_of(daemon_text(1, 0, 0, 1, tc0), 0),
                                      scrape_of(daemon_text(2, 0, 0, 1, tc1), 3), 0, 10, "x");
  ASSERT_TRUE(r.translated_kernel);
  EXPECT_DOUBLE_EQ(r.translated_kernel->total, 4000);
  EXPECT_DOUBLE_EQ(r.translated_kernel->rate, 1000);
  EXPECT_DOUBLE_EQ(r.translated_engine.total, 13);
  EXPECT_DOUBLE_EQ(r.translated_engine.rate, 1);
  const std::string text = render_status_text(r);
  EXPECT_NE(text.find("segments translated: engine 13 (1.00/s), kernel 4000 (1000/s)"), std::string::npos) << text;
  EXPECT_EQ(status_to_json(r)["translated"]["kernel"]["total"], 4000);
  const StatusReport off = build_status(scrape_of(daemon_text(1, 0, 0, 1, ""), 0),
                                        scrape_of(daemon_text(2, 0, 0, 1, ""), 3), 0, 10, "x");
  EXPECT_FALSE(off.translated_kernel);
  EXPECT_TRUE(status_to_json(off)["translated"]["kernel"].is_null());
}

TEST(StatusReport, RefusesTextWithoutSyngateMetrics) {
  const Scrape other = scrape_of("node_load1 0.5\ngo_goroutines 12\n", 1);
  EXPECT_THROW(build_status(other, other, 0, 0, "x"), std::runtime_error);
}

TEST(StatusRender, DownScreenAndDurations) {
  EXPECT_NE(render_down_text("127.0.0.1:9470", "nothing answers: Connection").find("DOWN"), std::string::npos);
  EXPECT_EQ(down_to_json("a", "b")["up"], false);
  EXPECT_EQ(format_duration(42.7), "42s");
  EXPECT_EQ(format_duration(61), "1m 01s");
  EXPECT_EQ(format_duration(3 * 3600 + 2 * 60 + 1), "3h 02m 01s");
  EXPECT_EQ(format_duration(2 * 86400 + 3 * 3600 + 4 * 60), "2d 03h 04m");
  EXPECT_EQ(format_duration(-5), "0s");
}

// Found by fuzz_status_metrics: a label value that is not UTF-8 (the daemon's or whatever answers
// on its port) made `syngate status --json` abort in the JSON dump. It prints as U+FFFD.
TEST(StatusJson, LabelBytesThatAreNotUtf8) {
  const std::string text = "syngate_packets_total{worker=\"0\",kind=\"syn\",queue=\"q\x86\"} 5\n";
  const Scrape a = scrape_of(text, 100.0);
  const StatusReport r = build_status(a, a, 0, 2e9, "127.0.0.1:9470");
  const std::string out = json_text(status_to_json(r));
  EXPECT_NE(out.find("q\xef\xbf\xbd"), std::string::npos) << out;
  const std::string down = json_text(down_to_json("127.0.0.1:9470", "metrics line 1: \xff"));
  EXPECT_NE(down.find("\xef\xbf\xbd"), std::string::npos) << down;
  EXPECT_THROW((void)status_to_json(r).dump(), nlohmann::json::type_error) << "the finding: a plain dump throws";
}

// Found by fuzz_status_metrics (UBSan): a gauge outside an integer's range (negative, NaN,
// 1e300) was cast to one, which is undefined. Counts below 0 or NaN read as 0; past the range
// they saturate.
TEST(StatusReport, GaugesOutsideTheIntegerRange) {
  const std::string text =
      "syngate_flows_active{worker=\"1\",kind=\"flow\",queue=\"8\"} 1e300\n"
      "syngate_flows_active{worker=\"2\",kind=\"flow\",queue=\"9\"} -5\n"
      "syngate_flows_active{worker=\"3\",kind=\"flow\",queue=\"10\"} NaN\n"
      "syngate_queue_waiting{queue=\"8\"} +Inf\n"
      "syngate_queue_waiting{queue=\"9\"} -Inf\n"
      "syngate_start_time_seconds 1e300\n";
  const Scrape a = scrape_of(text, 100.0);
  const StatusReport r = build_status(a, a, 1000, 2e9, "127.0.0.1:9470");
  ASSERT_EQ(r.workers.size(), 3u);
  EXPECT_EQ(r.workers[0].flows_active, UINT64_MAX);
  EXPECT_EQ(r.workers[1].flows_active, 0u);
  EXPECT_EQ(r.workers[2].flows_active, 0u);
  std::map<std::string, uint64_t> waiting;
  for (const QueueStatus& q : r.queues) waiting[q.queue] = q.waiting;
  EXPECT_EQ(waiting["8"], UINT64_MAX);
  EXPECT_EQ(waiting["9"], 0u);
  EXPECT_EQ(format_duration(1e300), format_duration(1.8446744073709552e19));
  EXPECT_EQ(format_duration(-1), "0s");
  // A start time past any calendar is not shown (casting it to time_t was undefined behaviour).
  EXPECT_EQ(render_status_text(r).find("since"), std::string::npos);
}
