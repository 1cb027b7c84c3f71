// The one drop vocabulary (syngate/spec/drop_reasons.h): its C view (the specification, the BPF
// program) and its C++ view (the SYN decision, the engine, metrics, status) are the same list,
// and every reason has a label of its own that Prometheus accepts.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "syngate/bpf/xdp_abi.h"
#include "syngate/drop_reason.hpp"
#include "syngate/spec/syn_rules.h"

extern "C" int drop_reasons_count_from_c(void);
extern "C" int drop_reasons_syn_count_from_c(void);
extern "C" const char* drop_reason_label_from_c(int r);
extern "C" int drop_reason_is_work_from_c(int r);
extern "C" int xdp_outcome_count_from_c(void);

namespace syngate {
namespace {

// What can be checked while compiling is checked here, in every build of this test.
constexpr bool labels_unique() {
  for (size_t i = 0; i < kDropReasonCount; ++i) {
    for (size_t j = i + 1; j < kDropReasonCount; ++j) {
      if (kDropReasonLabels[i] == kDropReasonLabels[j]) return false;
    }
  }
  return true;
}
static_assert(labels_unique(), "two reasons share a metrics label");
static_assert(static_cast<int>(DropReason::None) == SG_OK);
static_assert(static_cast<int>(DropReason::Count_) == SG_R_COUNT_);
static_assert(drop_reason(SG_R_BAD_OPTION) == DropReason::BadTcpOption);
static_assert(is_syn_decision_reason(DropReason::BackscatterBudget));
static_assert(!is_syn_decision_reason(DropReason::SynAnswered));
static_assert(!is_syn_decision_reason(DropReason::None));
static_assert(kSynDropReasonEnd == static_cast<size_t>(DropReason::SynAnswered));
static_assert(drop_reason_labelled("table_full") == DropReason::TableFull);
static_assert(!drop_reason_labelled("none"));
static_assert(is_normal_work(DropReason::SynAnswered) && !is_normal_work(DropReason::CookieInvalid));

// The spec's functions return reasons of the SYN decision, never a flow path's.
TEST(DropReasons, SpecReturnsSynDecisionReasons) {
  for (int e = SG_PE_NONE; e <= SG_PE_MAPPED_ADDRESS; ++e) {
    const DropReason r = drop_reason(sg_reason_of_parse_error(static_cast<sg_parse_error>(e)));
    EXPECT_EQ(e == SG_PE_NONE, r == DropReason::None) << e;
    EXPECT_EQ(e != SG_PE_NONE, is_syn_decision_reason(r)) << e;
  }
  EXPECT_TRUE(is_syn_decision_reason(drop_reason(sg_policy_verdict(SG_POLICY_MATCH_DENY, 0))));
  EXPECT_TRUE(is_syn_decision_reason(drop_reason(sg_policy_verdict(SG_POLICY_NO_MATCH, 1))));
}

TEST(DropReasons, CAndCxxViewsAgree) {
  ASSERT_EQ(drop_reasons_count_from_c(), static_cast<int>(kDropReasonCount));
  EXPECT_EQ(drop_reasons_syn_count_from_c(), static_cast<int>(kSynDropReasonEnd));
  for (size_t i = 0; i < kDropReasonCount; ++i) {
    const auto r = static_cast<DropReason>(i);
    EXPECT_EQ(std::string_view(drop_reason_label_from_c(static_cast<int>(i))), to_string(r)) << i;
    EXPECT_EQ(drop_reason_is_work_from_c(static_cast<int>(i)) != 0, is_normal_work(r)) << i;
  }
  EXPECT_EQ(std::string_view(drop_reason_label_from_c(SG_R_COUNT_)), "none");
  EXPECT_EQ(to_string(DropReason::Count_), "unknown");
}

// Labels are what dashboards and alert rules match on: lowercase snake case, unique, each one
// naming its own reason.
TEST(DropReasons, LabelsAreUniqueMetricLabels) {
  std::set<std::string_view> seen;
  for (size_t i = 1; i < kDropReasonCount; ++i) {
    const std::string_view label = kDropReasonLabels[i];
    ASSERT_FALSE(label.empty()) << i;
    EXPECT_TRUE(seen.insert(label).second) << label;
    for (char c : label) EXPECT_TRUE((c >= 'a' && c <= 'z') || c == '_' || (c >= '0' && c <= '9')) << label;
    EXPECT_EQ(drop_reason_labelled(label), static_cast<DropReason>(i)) << label;
  }
  EXPECT_EQ(seen.size(), kDropReasonCount - 1);
}

// The labels dashboards, alert rules (deploy/) and the README use today: renaming one breaks them.
TEST(DropReasons, PublishedLabelsStay) {
  const char* published[] = {
      "none",         "truncated",           "bad_ip_header",           "fragment",
      "ip_options",   "bad_data_offset",     "bad_tcp_option",          "invalid_flags",
      "denied",       "not_allowed",         "backscatter_budget",      "syn_answered",
      "cookie_invalid", "no_flow",           "table_full",              "source_limit",
      "new_flow_rate", "early_data_overflow", "backend_synack_consumed", "backend_synack_unexpected",
      "backend_timeout", "backend_reset",    "stale_segment",           "rst_out_of_window",
      "icmp_no_flow"};
  ASSERT_LE(std::size(published), kDropReasonCount);
  for (size_t i = 0; i < std::size(published); ++i) EXPECT_EQ(kDropReasonLabels[i], published[i]) << i;
}

// The README's table of reason values has one row per reason, in the list's order: operators read
// it to know what a label means.
TEST(DropReasons, ReadmeDocumentsEveryReason) {
  std::ifstream in(SYNGATE_README);
  ASSERT_TRUE(in) << SYNGATE_README;
  std::stringstream text;
  text << in.rdbuf();
  const std::string readme = text.str();
  const size_t table = readme.find("| reason | meaning |");
  ASSERT_NE(table, std::string::npos);
  size_t at = table;
  for (size_t i = 1; i < kDropReasonCount; ++i) {
    const std::string row = "\n| `" + std::string(kDropReasonLabels[i]) + "` |";
    const size_t found = readme.find(row, table);
    ASSERT_NE(found, std::string::npos) << "README has no row for " << kDropReasonLabels[i];
    EXPECT_GT(found, at) << kDropReasonLabels[i] << " is out of the list's order";
    at = found;
  }
}

// The XDP program's view: its per-reason map (sg_reasons) has one slot per reason of the list, and
// its outcome counters (xdp_abi.h: SG_XDP_OUTCOMES) that stand for one reason carry that reason's
// label, so syngate_xdp_packets_total{outcome="cookie_invalid"} and
// syngate_drops_total{reason="cookie_invalid"} count the same thing.
struct Outcome {
  std::string_view label;
  int reason;
};
constexpr Outcome kOutcomes[] = {
#define OUTCOME_(e, label, reason) {label, reason},
    SG_XDP_OUTCOMES(OUTCOME_)
#undef OUTCOME_
};
static_assert(std::size(kOutcomes) == SG_XDP_COUNTER_COUNT);

TEST(DropReasons, XdpOutcomesAgreeWithTheVocabulary) {
  EXPECT_EQ(xdp_outcome_count_from_c(), SG_XDP_COUNTER_COUNT);
  std::set<std::string_view> seen;
  for (const Outcome& o : kOutcomes) {
    EXPECT_TRUE(seen.insert(o.label).second) << o.label;
    ASSERT_GE(o.reason, 0);
    ASSERT_LT(o.reason, SG_R_COUNT_);
    const std::optional<DropReason> named = drop_reason_labelled(o.label);
    if (o.reason != SG_OK) {
      EXPECT_EQ(to_string(static_cast<DropReason>(o.reason)), o.label);
    } else {
      EXPECT_FALSE(named) << o.label << " is a reason's label: the outcome should carry that reason";
    }
  }
  // Published labels of syngate_xdp_packets_total{outcome}.
  const char* published[] = {"syn_answered", "cookie_valid",     "cookie_invalid", "flow_passed",
                             "no_flow",      "invalid_flags",    "malformed",      "passed_unhandled",
                             "passed_other", "tx_error",         "syn_refused"};
  ASSERT_LE(std::size(published), std::size(kOutcomes));
  for (size_t i = 0; i < std::size(published); ++i) EXPECT_EQ(kOutcomes[i].label, published[i]) << i;
}

}  // namespace
}  // namespace syngate
