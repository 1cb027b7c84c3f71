#include "stats.hpp"
#include "probe_report.hpp"

#include <gtest/gtest.h>

#include <cerrno>

using namespace syngate::flood;

TEST(Stats, NearestRankPercentiles) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);  // unsorted on purpose
  const auto s = summarize(v);
  EXPECT_EQ(s.count, 100u);
  EXPECT_EQ(s.p50, 50);
  EXPECT_EQ(s.p90, 90);
  EXPECT_EQ(s.p99, 99);
  EXPECT_EQ(s.min, 1);
  EXPECT_EQ(s.max, 100);
  EXPECT_DOUBLE_EQ(s.mean, 50.5);
}

TEST(Stats, SmallAndEmptySamples) {
  std::vector<double> none;
  EXPECT_EQ(summarize(none).count, 0u);
  std::vector<double> three{3, 1, 2};
  const auto s = summarize(three);
  EXPECT_EQ(s.p50, 2);
  EXPECT_EQ(s.p99, 3);  // one slow sample out of three is the p99
}

TEST(Probe, ClassifiesErrors) {
  EXPECT_EQ(classify_errno(ECONNREFUSED, false), Failure::Refused);
  EXPECT_EQ(classify_errno(ECONNRESET, true), Failure::Reset);
  EXPECT_EQ(classify_errno(ETIMEDOUT, false), Failure::ConnectTimeout);
  EXPECT_EQ(classify_errno(EHOSTUNREACH, false), Failure::Other);
  EXPECT_EQ(failure_family(Failure::ResponseTimeout), "timeout");
  EXPECT_EQ(failure_family(Failure::Refused), "refused_rst");
  EXPECT_EQ(failure_family(Failure::BadResponse), "other");
}

TEST(Probe, HttpStatusLine) {
  EXPECT_EQ(http_status("HTTP/1.1 200 OK\r\n"), 200);
  EXPECT_EQ(http_status("HTTP/1.0 503 Service"), 503);
  EXPECT_EQ(http_status("HTTP/1.1 2"), 0);  // incomplete: wait for more
  EXPECT_EQ(http_status("HT"), 0);
  EXPECT_EQ(http_status("SSH-2.0-OpenSSH"), -1);
  EXPECT_EQ(http_status("HTTP/1.1 2x0 OK"), -1);
}

TEST(Probe, SummaryCountsSuccessAndFailuresSeparately) {
  std::vector<Attempt> a(10);
  for (int i = 0; i < 7; ++i) a[i] = {Failure::None, 1.0 + i, 2.0 + i};
  a[7].failure = Failure::ConnectTimeout;
  a[8].failure = Failure::Refused;
  a[9].failure = Failure::BadResponse;
  a[9].connect_ms = 500;  // a failed attempt's latency must not leak into the percentiles
  ProbeConfig cfg;
  cfg.target = "10.10.3.2:80";
  cfg.http_path = "/";
  const auto r = summarize_probe(cfg, a, 1.5);
  EXPECT_EQ(r.succeeded, 7u);
  EXPECT_DOUBLE_EQ(r.success_pct, 70.0);
  EXPECT_EQ(r.connect.max, 7.0);
  const auto j = to_json(r);
  EXPECT_EQ(j["failures"]["timeout"], 1);
  EXPECT_EQ(j["failures"]["refused_rst"], 1);
  EXPECT_EQ(j["failures"]["other"], 1);
  EXPECT_EQ(j["failures_detail"]["bad_response"], 1);
  EXPECT_EQ(j["check"], "http");
  EXPECT_EQ(j["first_byte_ms"]["p50"], 5.0);
}

// A run in which the target never answered fails by default, as ping and curl -f do;
// --min-success sets the bar instead, and 0 only reports.
TEST(Probe, TotalFailureFailsUnlessMinSuccessSaysOtherwise) {
  ProbeConfig cfg;
  cfg.target = "10.10.3.2:80";
  std::vector<Attempt> none(5);
  for (auto& a : none) a.failure = Failure::Refused;
  const auto dead = summarize_probe(cfg, none, 1.0);
  EXPECT_NE(probe_failure(dead, std::nullopt).find("none of the 5 connections succeeded"), std::string::npos)
      << probe_failure(dead, std::nullopt);
  EXPECT_EQ(probe_failure(dead, 0.0), "");
  EXPECT_NE(probe_failure(dead, 50.0), "");

  std::vector<Attempt> one(5, none[0]);
  one[0] = {Failure::None, 1.0, -1};
  const auto weak = summarize_probe(cfg, one, 1.0);
  EXPECT_EQ(probe_failure(weak, std::nullopt), "");
  EXPECT_NE(probe_failure(weak, 50.0).find("20.00% succeeded, below --min-success 50.00%"), std::string::npos);
  EXPECT_EQ(probe_failure(weak, 20.0), "");

  EXPECT_EQ(probe_failure(summarize_probe(cfg, {}, 0.0), 0.0), "no connection finished");
}
