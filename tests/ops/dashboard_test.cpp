// The Grafana dashboard (deploy/grafana/syngate-dashboard.json) and the alerting rules
// (deploy/prometheus/syngate-rules.yml) may only name metrics syngate exports: every metric name in
// every expression must be a family render_prometheus writes (or Prometheus's own `up`).
#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "metrics.hpp"
#include "status.hpp"

using namespace syngate::gw;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::set<std::string> exported_families() {
  GatewaySnapshot snap;
  snap.workers.push_back({});
  snap.queues.push_back({});
  std::set<std::string> out;
  for (const auto& m : parse_prometheus_text(render_prometheus(snap))) out.insert(m.name);
  return out;
}

// Metric names in a PromQL expression: identifiers outside strings, label sets, ranges and
// grouping clauses that are not functions, keywords or numbers.
std::set<std::string> metric_names(const std::string& expr) {
  static const std::set<std::string> keywords = {"by",  "without", "on",   "ignoring", "group_left", "group_right",
                                                 "and", "or",      "unless", "bool",   "offset",     "inf", "nan"};
  // Aggregations may put their grouping clause before the parenthesis: `sum by (x) (...)`.
  static const std::set<std::string> aggregations = {"sum",    "min",     "max",      "avg",          "count", "group",
                                                     "stddev", "stdvar",  "topk",     "bottomk",      "quantile",
                                                     "count_values"};
  std::string s;
  // Drop quoted strings, {...} and [...]; keep everything else.
  int brace = 0, bracket = 0;
  for (size_t i = 0; i < expr.size(); ++i) {
    char c = expr[i];
    if (c == '"' || c == '\'' || c == '`') {
      size_t j = i + 1;
      while (j < expr.size() && expr[j] != c) j += expr[j] == '\\' ? 2 : 1;
      i = j;
      s += ' ';
      continue;
    }
    if (c == '{') ++brace;
    if (c == '[') ++bracket;
    if (brace == 0 && bracket == 0) s += c;
    else s += ' ';
    if (c == '}') --brace;
    if (c == ']') --bracket;
  }
  std::set<std::string> out;
  size_t i = 0;
  std::string prev_word;
  while (i < s.size()) {
    char c = s[i];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_' || s[j] == ':')) ++j;
      std::string word = s.substr(i, j - i);
      size_t k = j;
      while (k < s.size() && s[k] == ' ') ++k;
      const bool call = k < s.size() && s[k] == '(';
      const bool grouping = call && keywords.count(word);
      if (grouping) {
        // by (...), on (...), group_left (...): label names, skip the parentheses
        size_t close = s.find(')', k);
        i = close == std::string::npos ? s.size() : close + 1;
        continue;
      }
      if (!call && !keywords.count(word) && !aggregations.count(word) && !(word.size() > 1 && word[0] == '_' && word[1] == '_')) out.insert(word);
      i = j;
      prev_word = word;
      continue;
    }
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '$') {
      // numbers (1e3) and Grafana variables ($__range) are not metrics
      size_t j = i + 1;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_' || s[j] == '.')) ++j;
      i = j;
      continue;
    }
    ++i;
  }
  return out;
}

void collect_exprs(const nlohmann::json& node, std::vector<std::string>& out) {
  if (node.is_object()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (it.key() == "expr" && it->is_string()) out.push_back(it->get<std::string>());
      else collect_exprs(*it, out);
    }
  } else if (node.is_array()) {
    for (const auto& e : node) collect_exprs(e, out);
  }
}

}  // namespace

TEST(PromqlNames, ScannerFindsMetricsAndSkipsTheRest) {
  EXPECT_EQ(metric_names("sum by (instance, reason) (rate(syngate_drops_total{instance=~\"$instance\",reason!~\"a|b\"}[$__rate_interval]))"),
            std::set<std::string>{"syngate_drops_total"});
  EXPECT_EQ(metric_names("a > 1e3 and on (queue) max by (queue) (b{kind=\"flow\"}) / time() - c offset 5m"),
            (std::set<std::string>{"a", "b", "c"}));
  EXPECT_EQ(metric_names("rate({__name__=~\"syngate_xdp_.*_total\"}[1m])"), std::set<std::string>{});
}

TEST(Dashboard, ParsesAndNamesOnlyExportedMetrics) {
  const auto dash = nlohmann::json::parse(read_file(std::string(SYNGATE_SOURCE_DIR) + "/deploy/grafana/syngate-dashboard.json"));
  EXPECT_EQ(dash.at("uid"), "syngate");
  ASSERT_TRUE(dash.at("panels").is_array());
  std::vector<std::string> exprs;
  collect_exprs(dash.at("panels"), exprs);
  ASSERT_GE(exprs.size(), 20u);
  auto exported = exported_families();
  exported.insert("up");
  std::set<std::string> used;
  for (const auto& e : exprs) {
    const auto names = metric_names(e);
    for (const auto& n : names) {
      EXPECT_TRUE(exported.count(n)) << "dashboard expression names " << n << ", which syngate does not export: " << e;
      used.insert(n);
    }
    if (names.empty()) {
      EXPECT_NE(e.find("__name__=~\"syngate_xdp_"), std::string::npos) << "expression with no metric: " << e;
    }
  }
  // The headline series are on the dashboard.
  for (const char* m : {"syngate_syn_received_total", "syngate_cookies_sent_total", "syngate_cookies_valid_total",
                        "syngate_cookies_invalid_total", "syngate_flows_active", "syngate_drops_total",
                        "syngate_queue_dropped_total", "syngate_start_time_seconds"}) {
    EXPECT_TRUE(used.count(m)) << m;
  }
  // Every panel has a unique id and a grid position.
  std::set<int> ids;
  for (const auto& p : dash.at("panels")) {
    EXPECT_TRUE(ids.insert(p.at("id").get<int>()).second) << p.dump();
    EXPECT_TRUE(p.at("gridPos").contains("w"));
  }
}

TEST(AlertRules, NameOnlyExportedMetrics) {
  // YAML without a YAML library: the rules file keeps every expression under `expr:`, either on
  // the line or as an indented `|` block.
  std::istringstream in(read_file(std::string(SYNGATE_SOURCE_DIR) + "/deploy/prometheus/syngate-rules.yml"));
  std::vector<std::string> exprs;
  std::string line;
  bool in_block = false;
  size_t block_indent = 0;
  while (std::getline(in, line)) {
    const size_t indent = line.find_first_not_of(' ');
    if (in_block) {
      if (indent != std::string::npos && indent > block_indent) {
        exprs.back() += " " + line.substr(indent);
        continue;
      }
      in_block = false;
    }
    const size_t at = line.find("expr:");
    if (at == std::string::npos || line.find('#') < at) continue;
    std::string rest = line.substr(at + 5);
    rest.erase(0, rest.find_first_not_of(' '));
    exprs.push_back(rest == "|" ? "" : rest);
    in_block = rest == "|";
    block_indent = at;
  }
  ASSERT_GE(exprs.size(), 7u);
  auto exported = exported_families();
  exported.insert("up");
  for (const auto& e : exprs) {
    const auto names = metric_names(e);
    EXPECT_FALSE(names.empty()) << e;
    for (const auto& n : names) EXPECT_TRUE(exported.count(n)) << n << " in: " << e;
  }
}
