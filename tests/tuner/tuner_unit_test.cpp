// Unit tests of tcptune's pure core: registry, profiles, sysctl.conf editing, plan/drift, journal,
// diagnose findings. No root, no syscalls beyond reading the shipped profiles.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "lib/args.hpp"
#include "lib/diagnose.hpp"
#include "lib/journal.hpp"
#include "lib/plan.hpp"
#include "lib/profile.hpp"
#include "lib/registry.hpp"
#include "lib/sysctl_conf.hpp"
#include "lib/value.hpp"

using namespace tcptune;

namespace {

ProfileSource mem_source(std::map<std::string, std::string> files, std::vector<std::string> dirs = {"/p"}) {
  ProfileSource s;
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(files));
  s.read = [shared](const std::string& p) -> std::optional<std::string> {
    auto it = shared->find(p);
    if (it == shared->end()) return std::nullopt;
    return it->second;
  };
  s.search_dirs = std::move(dirs);
  return s;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& e : v) s += e + "\n";
  return s;
}

}  // namespace

// ---------------- registry ----------------

TEST(Registry, RejectsValuesTheKernelAcceptsButThatMeanNothing) {
  const auto* sc = find_key("net.ipv4.tcp_syncookies");
  ASSERT_NE(sc, nullptr);
  EXPECT_TRUE(check_value(*sc, "2").ok);
  auto r = check_value(*sc, "3");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("0..2"), std::string::npos) << r.error;
  const auto* backlog = find_key("net.ipv4.tcp_max_syn_backlog");
  ASSERT_NE(backlog, nullptr);
  EXPECT_FALSE(check_value(*backlog, "-5").ok);
  EXPECT_FALSE(check_value(*backlog, "12abc").ok);
  EXPECT_EQ(check_value(*backlog, "+4096").value, "4096");
}

TEST(Registry, RemovedAndObsoleteKeysAreRefusedWithTheReason) {
  const auto* tw = find_key("net.ipv4.tcp_tw_recycle");
  ASSERT_NE(tw, nullptr);
  EXPECT_EQ(tw->status, Status::Removed);
  auto r = check_value(*tw, "0");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("4.12"), std::string::npos) << r.error;
  const auto* ll = find_key("net.ipv4.tcp_low_latency");
  ASSERT_NE(ll, nullptr);
  EXPECT_FALSE(check_value(*ll, "1").ok);
}

TEST(Registry, MultiValueKeys) {
  const auto* rmem = find_key("net.ipv4.tcp_rmem");
  ASSERT_NE(rmem, nullptr);
  EXPECT_EQ(check_value(*rmem, "4096\t131072   6291456\n").value, "4096 131072 6291456");
  EXPECT_FALSE(check_value(*rmem, "4096 131072").ok);            // too few
  EXPECT_FALSE(check_value(*rmem, "4096 8192 4096").ok);         // max below default
  const auto* ports = find_key("net.ipv4.ip_local_port_range");
  ASSERT_NE(ports, nullptr);
  EXPECT_TRUE(check_value(*ports, "10240 65535").ok);
  EXPECT_FALSE(check_value(*ports, "5000 4000").ok);
  EXPECT_FALSE(check_value(*ports, "80 65535").ok);  // would hand out service ports
}

TEST(Registry, ScopesMeasuredOnThisKernel) {
  EXPECT_EQ(find_key("net.core.somaxconn")->scope, Scope::PerNetns);
  EXPECT_EQ(find_key("net.ipv4.tcp_mem")->scope, Scope::Global);
  EXPECT_EQ(find_key("net.core.rmem_max")->scope, Scope::HostOnly);
  EXPECT_EQ(find_key("net.core.netdev_max_backlog")->scope, Scope::Global);
}

TEST(Registry, InterfacePatternsAndTextKeys) {
  const auto* rp = find_key("net.ipv4.conf.eth0.rp_filter");
  ASSERT_NE(rp, nullptr);
  EXPECT_EQ(rp->name, "net.ipv4.conf.*.rp_filter");
  EXPECT_EQ(find_key("net.ipv4.conf.rp_filter"), nullptr);
  EXPECT_EQ(find_key("net.ipv4.conf.a.b.rp_filter"), nullptr);
  const auto* cc = find_key("net.ipv4.tcp_congestion_control");
  ASSERT_NE(cc, nullptr);
  EXPECT_TRUE(check_value(*cc, "bbr").ok);
  EXPECT_FALSE(check_value(*cc, "bbr cubic").ok);
  EXPECT_FALSE(check_value(*cc, "../x").ok);
}

// ---------------- profiles ----------------

TEST(Profile, ExtendsMergesChildOverParent) {
  auto src = mem_source({
      {"/p/base.toml", "[profile]\ndescription='b'\n[sysctl]\n\"net.core.somaxconn\" = 4096\n\"net.ipv4.tcp_sack\" = true\n"},
      {"/p/child.toml",
       "[profile]\nextends='base'\n[sysctl]\nnet.core.somaxconn = 8192\n\"net.ipv4.tcp_rmem\" = [4096, 87380, 6291456]\n"},
  });
  auto r = load_profile("child", src);
  ASSERT_TRUE(r.profile) << joined(r.errors);
  const auto& p = *r.profile;
  EXPECT_EQ(p.name, "child");
  EXPECT_EQ(p.chain, (std::vector<std::string>{"base", "child"}));
  ASSERT_EQ(p.settings.size(), 3u);
  EXPECT_EQ(p.find("net.core.somaxconn")->value, "8192");  // dotted (nested) TOML keys flatten
  EXPECT_EQ(p.find("net.core.somaxconn")->origin, "child");
  EXPECT_EQ(p.find("net.ipv4.tcp_sack")->value, "1");
  EXPECT_EQ(p.find("net.ipv4.tcp_sack")->origin, "base");
  EXPECT_EQ(p.find("net.ipv4.tcp_rmem")->value, "4096 87380 6291456");
}

TEST(Profile, ExtendsByRelativePathAndUnset) {
  auto src = mem_source({
      {"/x/base.toml", "[sysctl]\n\"net.core.somaxconn\" = 4096\n\"net.ipv4.tcp_sack\" = 1\n"},
      {"/x/sub/c.toml", "[profile]\nextends='../base.toml'\nunset=['net.ipv4.tcp_sack']\n"},
  });
  auto r = load_profile("/x/sub/c.toml", src);
  ASSERT_TRUE(r.profile) << joined(r.errors);
  EXPECT_EQ(r.profile->settings.size(), 1u);
  EXPECT_EQ(r.profile->find("net.ipv4.tcp_sack"), nullptr);
}

TEST(Profile, CollectsEveryErrorAndAppliesNothing) {
  auto src = mem_source({{"/p/bad.toml",
                          "[sysctl]\n\"net.ipv4.tcp_syncookies\" = 3\n\"net.ipv4.tcp_tw_recycle\" = 1\n\"net.ipv4.made_up\" = 1\n"
                          "\"net.ipv4.tcp_fin_timeout\" = 1.5\n\"net.core.somaxconn\" = 1024\n"}});
  auto r = load_profile("bad", src);
  EXPECT_FALSE(r.profile);
  auto all = joined(r.errors);
  EXPECT_EQ(r.errors.size(), 4u) << all;
  EXPECT_NE(all.find("tcp_syncookies"), std::string::npos);
  EXPECT_NE(all.find("removed in Linux 4.12"), std::string::npos);
  EXPECT_NE(all.find("unknown key"), std::string::npos);
  EXPECT_NE(all.find("unsupported value type"), std::string::npos);
  EXPECT_NE(all.find("/p/bad.toml:2"), std::string::npos) << "errors carry file:line";
}

TEST(Profile, AllowUnknown) {
  auto src = mem_source({{"/p/u.toml", "[profile]\nallow-unknown=['net.ipv4.tcp_pingpong_thresh']\n[sysctl]\n"
                                       "\"net.ipv4.tcp_pingpong_thresh\" = 3\n"}});
  auto r = load_profile("u", src);
  ASSERT_TRUE(r.profile) << joined(r.errors);
  EXPECT_EQ(r.profile->settings[0].def, nullptr);
  EXPECT_EQ(r.profile->settings[0].value, "3");
}

TEST(Profile, CyclesMissingParentsSyntaxAndUnknownFields) {
  auto src = mem_source({{"/p/a.toml", "[profile]\nextends='b'\n"},
                         {"/p/b.toml", "[profile]\nextends='a'\n"},
                         {"/p/orphan.toml", "[profile]\nextends='nope'\n"},
                         {"/p/syntax.toml", "[sysctl\n"},
                         {"/p/typo.toml", "[sysctls]\n\"net.core.somaxconn\" = 4096\n"},
                         {"/p/field.toml", "[profile]\nextend='base'\n"}});
  EXPECT_NE(joined(load_profile("a", src).errors).find("cycle"), std::string::npos);
  EXPECT_NE(joined(load_profile("orphan", src).errors).find("extends 'nope' not found"), std::string::npos);
  EXPECT_NE(joined(load_profile("syntax", src).errors).find("TOML syntax"), std::string::npos);
  EXPECT_NE(joined(load_profile("typo", src).errors).find("unknown table 'sysctls'"), std::string::npos);
  EXPECT_NE(joined(load_profile("field", src).errors).find("unknown profile field 'extend'"), std::string::npos);
  EXPECT_NE(joined(load_profile("missing", src).errors).find("not found"), std::string::npos);
}

// Every shipped profile loads, every key in it is per-netns (so it can be tried in a namespace), and
// every value carries a comment saying why.
TEST(ShippedProfiles, LoadAndEveryValueIsCommented) {
  namespace fs = std::filesystem;
  ProfileSource src;
  src.read = [](const std::string& p) -> std::optional<std::string> {
    std::ifstream f(p);
    if (!f) return std::nullopt;
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  src.search_dirs = {TCPTUNE_PROFILE_DIR};
  for (const char* name : {"base", "syn-flood-defense", "high-concurrency", "long-lived-connections", "gateway"}) {
    auto r = load_profile(name, src);
    ASSERT_TRUE(r.profile) << name << ": " << joined(r.errors);
    EXPECT_FALSE(r.profile->description.empty()) << name;
    for (const auto& s : r.profile->settings) {
      ASSERT_NE(s.def, nullptr) << s.key;
      EXPECT_EQ(s.def->scope, Scope::PerNetns) << name << ": " << s.key;
    }
    auto text = *src.read(std::string(TCPTUNE_PROFILE_DIR) + "/" + name + ".toml");
    auto lines = split_lines(text, nullptr);
    bool in_sysctl = false;
    for (size_t i = 0; i < lines.size(); ++i) {
      std::string t = trim(lines[i]);
      if (t.starts_with("[")) in_sysctl = t == "[sysctl]";
      if (!in_sysctl || t.empty() || t[0] == '#' || t[0] == '[') continue;
      // walk up through the value lines of this paragraph to its comment
      size_t j = i;
      while (j > 0 && !trim(lines[j - 1]).empty() && trim(lines[j - 1])[0] != '#') --j;
      ASSERT_GT(j, 0u);
      EXPECT_EQ(trim(lines[j - 1])[0], '#') << name << ":" << i + 1 << " has no comment: " << t;
    }
  }
}

// ---------------- sysctl.conf editing ----------------

TEST(SysctlConf, AppendKeepsEveryOtherByte) {
  std::string orig = "# keep me\r\nvm.swappiness=10\n\n  ; odd\nkernel.x = 1";  // CRLF line, no final newline
  auto r = set_block(orig, "p", {{"net.core.somaxconn", "4096"}});
  ASSERT_TRUE(r.error.empty());
  EXPECT_EQ(r.text.substr(0, orig.size()), orig);
  EXPECT_EQ(r.text[orig.size()], '\n');  // the only byte added to what was there
  auto parsed = parse_conf(r.text);
  ASSERT_TRUE(parsed.block.present);
  EXPECT_EQ(parsed.block.profile, "p");
  // removing the block gives back the file plus the newline that had to be added
  EXPECT_EQ(remove_block(r.text).text, orig + "\n");
}

TEST(SysctlConf, ReplaceInPlaceAndIdempotent) {
  std::string head = "# head\nnet.ipv4.tcp_sack = 1\n";
  std::string tail = "# tail comment\nvm.dirty_ratio = 5\n";
  std::string text = head + render_block("a", {{"net.core.somaxconn", "1"}}) + tail;
  auto r = set_block(text, "b", {{"net.core.somaxconn", "2"}, {"net.ipv4.tcp_rmem", "1 2 3"}});
  ASSERT_TRUE(r.error.empty());
  EXPECT_TRUE(r.text.starts_with(head));
  EXPECT_TRUE(r.text.ends_with(tail));
  EXPECT_NE(r.text.find("profile=b"), std::string::npos);
  EXPECT_EQ(r.text.find("profile=a"), std::string::npos);
  EXPECT_EQ(set_block(r.text, "b", {{"net.core.somaxconn", "2"}, {"net.ipv4.tcp_rmem", "1 2 3"}}).text, r.text);
  EXPECT_EQ(remove_block(r.text).text, head + tail);
  EXPECT_EQ(replace_block(r.text, block_text(text)).text, text);
}

TEST(SysctlConf, BrokenBlocksAreNotGuessed) {
  std::string two = render_block("a", {}) + render_block("b", {});
  EXPECT_FALSE(set_block(two, "c", {}).error.empty());
  std::string open = std::string(kBeginMarker) + ": profile=a\nx = 1\n";
  EXPECT_FALSE(set_block(open, "c", {}).error.empty());
}

TEST(SysctlConf, ParsesLikeSysctl) {
  auto p = parse_conf("a.b = 1\n-net/ipv4/tcp_sack=0\n# c = 2\n; d = 3\nbad line\n e.f =  4   5 \n");
  ASSERT_EQ(p.assignments.size(), 3u);
  EXPECT_EQ(p.assignments[1].key, "net.ipv4.tcp_sack");
  EXPECT_EQ(p.assignments[1].line, 2);
  EXPECT_EQ(p.assignments[2].value, "4 5");
}

TEST(SysctlConf, BootOrderFollowsSystemd) {
  BootFile conf{"/etc/sysctl.conf", "sysctl.conf", true, "k = 1\n"};
  std::vector<BootFile> cands = {
      {"/etc/sysctl.d/50-a.conf", "50-a.conf", false, "k = 5\n"},
      {"/etc/sysctl.d/99-sysctl.conf", "99-sysctl.conf", true, ""},
      {"/etc/sysctl.d/99-zz.conf", "99-zz.conf", false, "net.ipv4.conf.*.rp_filter = 2\n"},
      {"/usr/lib/sysctl.d/50-a.conf", "50-a.conf", false, "k = 7\n"},  // masked by /etc's 50-a.conf
      {"/usr/lib/sysctl.d/10-b.conf", "10-b.conf", false, "k = 3\nm = 4\n"},
  };
  bool linked = false;
  auto order = boot_order(cands, conf, &linked);
  EXPECT_TRUE(linked);
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order[0].path, "/usr/lib/sysctl.d/10-b.conf");
  EXPECT_EQ(order[1].path, "/etc/sysctl.d/50-a.conf");
  EXPECT_EQ(order[2].path, "/etc/sysctl.conf");
  auto k = boot_source(order, "k");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->path, "/etc/sysctl.conf");
  EXPECT_EQ(boot_source(order, "m")->value, "4");
  auto rp = boot_source(order, "net.ipv4.conf.eth0.rp_filter");
  ASSERT_TRUE(rp);
  EXPECT_EQ(rp->path, "/etc/sysctl.d/99-zz.conf");
  EXPECT_FALSE(boot_source(order, "nothing"));
  // not linked from sysctl.d: placed last, as procps does
  cands.erase(cands.begin() + 1);
  order = boot_order(cands, conf, &linked);
  EXPECT_FALSE(linked);
  EXPECT_EQ(order.back().path, "/etc/sysctl.conf");
}

// ---------------- plan, drift, diff ----------------

namespace {
Profile two_key_profile() {
  auto src = mem_source({{"/p/t.toml", "[sysctl]\n\"net.core.somaxconn\" = 8192\n\"net.ipv4.tcp_rmem\" = [4096, 131072, 6291456]\n"}});
  return *load_profile("t", src).profile;
}
}  // namespace

TEST(Plan, ChangesAndIdempotence) {
  auto p = two_key_profile();
  LiveMap live{{"net.core.somaxconn", {true, "4096", ""}}, {"net.ipv4.tcp_rmem", {true, "4096 131072 6291456", ""}}};
  auto plan = make_plan(p, live, "# x\n");
  EXPECT_EQ(plan.live_changes(), 1u);
  EXPECT_TRUE(plan.conf_changes());
  EXPECT_TRUE(plan.problems.empty());
  live["net.core.somaxconn"].value = "8192";
  auto again = make_plan(p, live, plan.conf_after);
  EXPECT_TRUE(again.nothing_to_do());
  live.erase("net.ipv4.tcp_rmem");
  EXPECT_EQ(make_plan(p, live, "").problems.size(), 1u);
}

TEST(Plan, DriftLivePersistedAndBoot) {
  auto p = two_key_profile();
  LiveMap live{{"net.core.somaxconn", {true, "8192", ""}}, {"net.ipv4.tcp_rmem", {true, "4096\t131072\t6291456", ""}}};
  std::string conf = "# mine\n" + render_block("t", profile_kvs(p));
  BootFile cf{"/c", "sysctl.conf", true, conf};
  bool linked = false;
  auto order = boot_order({{"/d/99-sysctl.conf", "99-sysctl.conf", true, ""}}, cf, &linked);
  auto rep = compute_drift(p, live, "/c", conf, order, linked);
  EXPECT_FALSE(rep.drift);
  EXPECT_TRUE(rep.warnings.empty());

  live["net.core.somaxconn"].value = "128";  // changed behind tcptune's back
  rep = compute_drift(p, live, "/c", conf, order, linked);
  EXPECT_TRUE(rep.drift);
  EXPECT_FALSE(rep.rows[0].live_ok);
  EXPECT_TRUE(rep.rows[0].persisted_ok);

  live["net.core.somaxconn"].value = "8192";
  order = boot_order({{"/d/99-sysctl.conf", "99-sysctl.conf", true, ""}, {"/d/99-zzz.conf", "99-zzz.conf", false, "net.core.somaxconn=1024\n"}},
                     cf, &linked);
  rep = compute_drift(p, live, "/c", conf, order, linked);
  EXPECT_TRUE(rep.drift);
  EXPECT_FALSE(rep.rows[0].boot_ok);
  ASSERT_FALSE(rep.warnings.empty());
  EXPECT_NE(rep.warnings[0].find("/d/99-zzz.conf:1"), std::string::npos) << rep.warnings[0];

  // a later line in sysctl.conf itself also wins at boot
  std::string conf2 = conf + "net.core.somaxconn = 100\n";
  cf.text = conf2;
  order = boot_order({{"/d/99-sysctl.conf", "99-sysctl.conf", true, ""}}, cf, &linked);
  rep = compute_drift(p, live, "/c", conf2, order, linked);
  EXPECT_TRUE(rep.drift);
  EXPECT_NE(rep.rows[0].note.find("/c:"), std::string::npos);
}

TEST(Plan, UnifiedDiff) {
  EXPECT_EQ(unified_diff("a\n", "a\n", "x", "y"), "");
  auto d = unified_diff("1\n2\n3\n4\n5\n6\n7\n8\n", "1\n2\n3\n4\nfive\n6\n7\n8\n", "x", "y");
  EXPECT_EQ(d, "--- x\n+++ y\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n");
  auto add = unified_diff("", "a\n", "x", "y");
  EXPECT_EQ(add, "--- x\n+++ y\n@@ -0,0 +1,1 @@\n+a\n");
  auto nl = unified_diff("a", "a\n", "x", "y");
  EXPECT_NE(nl.find("No newline at end of file"), std::string::npos);
}

// ---------------- journal ----------------

TEST(Journal, RoundTripsExactBytes) {
  JournalEntry e;
  e.id = 7;
  e.state = "committed";
  e.profile = "p";
  e.netns = "ns";
  e.conf_path = "/etc/sysctl.conf";
  e.conf_existed = true;
  e.conf_mode = 0640;
  e.conf_before = "# \xc3\xa9t\xc3\xa9\r\nno newline";
  e.conf_after = e.conf_before + "\nx = 1\n";
  e.values = {{"net.core.somaxconn", "4096", "8192"}};
  std::string err;
  auto back = journal_from_json(journal_to_json(e), &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(back->conf_before, e.conf_before);
  EXPECT_EQ(back->conf_after, e.conf_after);
  EXPECT_EQ(back->conf_mode, 0640u);
  EXPECT_EQ(back->values[0].before, "4096");
  EXPECT_FALSE(journal_from_json("{\"version\": 1}", &err));
  EXPECT_EQ(journal_file_name(42), "000042.json");
  EXPECT_EQ(journal_id_from_name("000042.json"), 42u);
  EXPECT_FALSE(journal_id_from_name("lock"));
}

// ---------------- diagnose ----------------

TEST(Diagnose, ParsesProcCounters) {
  auto c = parse_proc_counters(
      "TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows\nTcpExt: 5 2 9\nIpExt: InNoRoutes\nIpExt: 3\n");
  EXPECT_EQ(c["TcpExt.SyncookiesSent"], 5);
  EXPECT_EQ(c["TcpExt.ListenOverflows"], 9);
  EXPECT_EQ(c["IpExt.InNoRoutes"], 3);
}

namespace {
bool has(const std::vector<Finding>& f, const std::string& id, Severity* sev = nullptr) {
  for (const auto& x : f)
    if (x.id == id) {
      if (sev) *sev = x.severity;
      return true;
    }
  return false;
}
}  // namespace

TEST(Diagnose, QuietHostHasNoFindings) {
  DiagInput in;
  in.sysctl = {{"net.ipv4.tcp_syncookies", "1"}, {"net.ipv4.ip_local_port_range", "32768 60999"}};
  for (int i = 0; i < 10; ++i) in.counts.add(0, 1);
  EXPECT_TRUE(diagnose(in).empty());
}

TEST(Diagnose, SynFloodSeverityDependsOnCookies) {
  DiagInput in;
  in.sysctl = {{"net.ipv4.tcp_syncookies", "1"}};
  for (int i = 0; i < 200; ++i) in.counts.add(0, 12);  // NEW_SYN_RECV request sockets
  EXPECT_EQ(in.counts.get(3), 200u);
  Severity s{};
  auto f = diagnose(in);
  ASSERT_TRUE(has(f, "syn-flood", &s));
  EXPECT_EQ(s, Severity::Warning);
  EXPECT_EQ(f[0].profile, "syn-flood-defense");
  in.sysctl["net.ipv4.tcp_syncookies"] = "0";
  f = diagnose(in);
  ASSERT_TRUE(has(f, "syn-flood", &s));
  EXPECT_EQ(s, Severity::Critical);
  EXPECT_TRUE(has(f, "syncookies-off"));
  in.thresholds.syn_recv = 500;
  EXPECT_FALSE(has(diagnose(in), "syn-flood"));
}

TEST(Diagnose, CloseWaitTimeWaitAndAcceptQueue) {
  DiagInput in;
  in.sysctl = {{"net.ipv4.tcp_syncookies", "1"}, {"net.ipv4.ip_local_port_range", "60000 60999"}};
  for (int i = 0; i < 70; ++i) in.counts.add(1, 8);
  for (int i = 0; i < 600; ++i) in.counts.add(0, 6);
  in.close_wait_owners = {{42, "leaky", 70}};
  in.listeners = {{"127.0.0.1:80", 11, 10}, {"127.0.0.1:81", 0, 10}};
  auto f = diagnose(in);
  ASSERT_TRUE(has(f, "close-wait-leak"));
  for (const auto& x : f)
    if (x.id == "close-wait-leak") {
      EXPECT_NE(x.detail.find("pid 42 (leaky) 70"), std::string::npos) << x.detail;
    }
  EXPECT_TRUE(has(f, "time-wait-pile"));  // 600 >= half of a 1000-port range
  ASSERT_TRUE(has(f, "accept-queue-overflow"));
  for (const auto& x : f)
    if (x.id == "accept-queue-overflow") {
      EXPECT_NE(x.detail.find("127.0.0.1:80 (11/10)"), std::string::npos);
      EXPECT_EQ(x.detail.find("127.0.0.1:81"), std::string::npos);
    }
  in.thresholds.close_wait = 100;
  in.thresholds.time_wait = 1000;
  in.listeners.clear();
  EXPECT_TRUE(diagnose(in).empty());
}

TEST(Diagnose, IntervalUsesDeltas) {
  DiagInput in;
  in.sysctl = {{"net.ipv4.tcp_syncookies", "1"}};
  in.counters = {{"TcpExt.SyncookiesSent", 100000}};  // an old flood
  in.delta = Counters{{"TcpExt.SyncookiesSent", 0}};
  in.interval_s = 5;
  EXPECT_TRUE(diagnose(in).empty());
  (*in.delta)["TcpExt.SyncookiesSent"] = 5000;
  EXPECT_TRUE(has(diagnose(in), "syn-flood"));
}

// ---------------- issue 14: defects found by trying the tool as an adversary ----------------

// systemd-sysctl (checked with 252 in a netns on the same files): a glob never overrides a key that
// some file names explicitly, whatever the file order; it fills in the other interfaces only.
TEST(Issue14, ExplicitKeyBeatsGlobAtBoot) {
  BootFile conf{"/etc/sysctl.conf", "sysctl.conf", true, "net.ipv4.conf.all.rp_filter = 1\n"};
  std::vector<BootFile> cands = {
      {"/etc/sysctl.d/99-sysctl.conf", "99-sysctl.conf", true, ""},
      {"/etc/sysctl.d/99-zz.conf", "99-zz.conf", false, "net.ipv4.conf.*.rp_filter = 2\n"},
  };
  bool linked = false;
  auto order = boot_order(cands, conf, &linked);
  auto all = boot_source(order, "net.ipv4.conf.all.rp_filter");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->path, "/etc/sysctl.conf");
  EXPECT_EQ(all->value, "1");
  auto lo = boot_source(order, "net.ipv4.conf.lo.rp_filter");
  ASSERT_TRUE(lo);
  EXPECT_EQ(lo->value, "2");
  // an explicit key in an earlier file still beats a later glob; a later explicit key beats both
  order.insert(order.begin(), BootFile{"/usr/lib/sysctl.d/10-x.conf", "10-x.conf", false, "net.ipv4.conf.lo.rp_filter = 0\n"});
  EXPECT_EQ(boot_source(order, "net.ipv4.conf.lo.rp_filter")->value, "0");
  order.push_back(BootFile{"/etc/sysctl.d/zz.conf", "zz.conf", false, "net.ipv4.conf.all.rp_filter = 2\n"});
  EXPECT_EQ(boot_source(order, "net.ipv4.conf.all.rp_filter")->path, "/etc/sysctl.d/zz.conf");
  // between globs, the last one wins
  order.push_back(BootFile{"/etc/sysctl.d/zzz.conf", "zzz.conf", false, "net.ipv4.conf.e*.rp_filter = 1\n"});
  EXPECT_EQ(boot_source(order, "net.ipv4.conf.eth0.rp_filter")->value, "1");
}

TEST(Issue14, RegistryRefusesValuesThatCrippleTcpAndSaysWhy) {
  struct Case {
    const char* key;
    const char* value;
    const char* why;  // a word of the reason the error must give
  };
  for (const auto& c : {Case{"net.ipv4.tcp_mem", "1 2 3", "pressure"}, Case{"net.ipv4.tcp_rmem", "1 1 1", "segment"},
                        Case{"net.ipv4.tcp_wmem", "1 1 1", "segment"}, Case{"net.ipv4.tcp_synack_retries", "0", "lost"}}) {
    const auto* def = find_key(c.key);
    ASSERT_NE(def, nullptr) << c.key;
    auto r = check_value(*def, c.value);
    EXPECT_FALSE(r.ok) << c.key << " = " << c.value;
    EXPECT_NE(r.error.find("outside the meaningful range"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find(c.why), std::string::npos) << c.key << ": " << r.error;
  }
  EXPECT_TRUE(check_value(*find_key("net.ipv4.tcp_rmem"), "4096 131072 6291456").ok);
  EXPECT_TRUE(check_value(*find_key("net.ipv4.tcp_mem"), "94000 125000 188000").ok);
  EXPECT_TRUE(check_value(*find_key("net.ipv4.tcp_synack_retries"), "1").ok);
}

TEST(Issue14, MultiValueErrorsNameTheField) {
  auto r = check_value(*find_key("net.ipv4.ip_local_port_range"), "80 100");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("low port 80 is outside the meaningful range 1024..65535"), std::string::npos) << r.error;
  EXPECT_EQ(r.error.find("value 1"), std::string::npos) << r.error;
  r = check_value(*find_key("net.ipv4.tcp_rmem"), "4096 8192 100");
  EXPECT_NE(r.error.find("max 100"), std::string::npos) << r.error;
}

TEST(Issue14, DuplicateKeysInAnySpellingNameBothLines) {
  auto src = mem_source({{"/p/spell.toml", "[sysctl]\n\"net.core.somaxconn\" = 5000\nnet.core.somaxconn = 6000\n"},
                         {"/p/plain.toml", "[sysctl]\n\"net.core.somaxconn\" = 5000\n\"net.core.somaxconn\" = 6000\n"},
                         {"/p/bare.toml", "[sysctl]\nnet.core.somaxconn = 5000\n\n net . core . somaxconn = 6000\n"},
                         {"/p/table.toml", "[sysctl]\n\"net.core.somaxconn\" = 5000\n[sysctl.net.core]\nsomaxconn = 6000\n"}});
  for (const char* name : {"spell", "plain", "bare", "table"}) {
    auto r = load_profile(name, src);
    EXPECT_FALSE(r.profile) << name;
    auto all = joined(r.errors);
    EXPECT_NE(all.find("net.core.somaxconn is set twice"), std::string::npos) << name << ": " << all;
    EXPECT_NE(all.find("line 2"), std::string::npos) << name << ": " << all;
    EXPECT_EQ(all.find("nenet"), std::string::npos) << name << ": " << all;
  }
  EXPECT_NE(joined(load_profile("spell", src).errors).find("/p/spell.toml:3"), std::string::npos);
  EXPECT_NE(joined(load_profile("plain", src).errors).find("/p/plain.toml:3"), std::string::npos);
  EXPECT_NE(joined(load_profile("bare", src).errors).find("/p/bare.toml:4"), std::string::npos);
}

TEST(Issue14, ExtendsCycleNamesTheChainAndLine) {
  auto src = mem_source({{"/p/a.toml", "[profile]\nextends='b'\n"},
                         {"/p/b.toml", "# b\n[profile]\nextends='c'\n"},
                         {"/p/c.toml", "[profile]\ndescription='c'\nextends='a'\n"},
                         {"/p/self.toml", "[profile]\nextends='self'\n"}});
  auto all = joined(load_profile("a", src).errors);
  EXPECT_NE(all.find("/p/c.toml:3: extends cycle: a -> b -> c -> a"), std::string::npos) << all;
  all = joined(load_profile("self", src).errors);
  EXPECT_NE(all.find("/p/self.toml:2: extends cycle: self -> self"), std::string::npos) << all;
}

TEST(Issue14, CorruptJournalSaysWhatIsWrongInItsOwnWords) {
  std::string err;
  EXPECT_FALSE(journal_from_json("{\"version\": 1, \"id\": 1, \"state\": \"commi", &err));
  EXPECT_NE(err.find("not valid JSON"), std::string::npos) << err;
  EXPECT_EQ(err.find("[json."), std::string::npos) << err;
  EXPECT_EQ(err.find("parse_error"), std::string::npos) << err;
  EXPECT_FALSE(journal_from_json("{\"version\": 1, \"id\": \"x\"}", &err));
  EXPECT_NE(err.find("'id'"), std::string::npos) << err;
  EXPECT_EQ(err.find("[json."), std::string::npos) << err;
  EXPECT_FALSE(journal_from_json("{\"version\": 1, \"id\": 3}", &err));
  EXPECT_NE(err.find("'state' is missing"), std::string::npos) << err;
}

TEST(Issue14, CommandLineNumbersAndNetnsNames) {
  EXPECT_EQ(parse_count("0"), 0u);
  EXPECT_EQ(parse_count("128"), 128u);
  for (const char* bad : {"", "-1", "+1", " 1", "1.5", "1e3", "nan", "inf", "18446744073709551616"}) EXPECT_FALSE(parse_count(bad)) << bad;
  EXPECT_EQ(parse_seconds("5"), 5.0);
  EXPECT_EQ(parse_seconds("0.25"), 0.25);
  for (const char* bad : {"", "0", "0.0", "-1", "nan", "inf", "-inf", "1e3", " 1", "3600.5", "99999", "."}) EXPECT_FALSE(parse_seconds(bad)) << bad;
  EXPECT_EQ(netns_name_error("lab-gw"), "");
  for (const char* bad : {"", ".", "..", "a/b", "/var/run/netns/x", "-x", "a\nb"}) EXPECT_NE(netns_name_error(bad), "") << bad;
  EXPECT_NE(netns_name_error("").find("host"), std::string::npos);
}

namespace {
Profile profile_from(const std::string& name, const std::string& toml) {
  auto r = load_profile(name, mem_source({{"/p/" + name + ".toml", toml}}));
  EXPECT_TRUE(r.profile) << joined(r.errors);
  return *r.profile;
}
JournalEntry entry(unsigned long id, const std::string& profile, std::vector<JournalValue> values, const std::string& conf_after) {
  JournalEntry e;
  e.id = id;
  e.state = "committed";
  e.profile = profile;
  e.conf_path = "/c";
  e.values = std::move(values);
  e.conf_after = conf_after;
  return e;
}
}  // namespace

TEST(Issue14, ProfileSwitchRestoresKeysTheNewProfileDropsOrSaysWhyNot) {
  auto old_p = profile_from("old", "[sysctl]\n\"net.ipv4.tcp_tw_reuse\" = 1\n\"net.ipv4.tcp_fin_timeout\" = 15\n"
                                   "\"net.core.somaxconn\" = 8192\n\"net.ipv4.tcp_sack\" = 1\n\"net.ipv4.tcp_retries2\" = 9\n");
  auto new_p = profile_from("new", "[sysctl]\n\"net.core.somaxconn\" = 4096\n");
  std::string conf = render_block("old", profile_kvs(old_p));
  // old changed tw_reuse, fin_timeout, retries2 and somaxconn; sack was already 1
  std::vector<JournalEntry> history{entry(1, "old",
                                          {{"net.ipv4.tcp_tw_reuse", "2", "1"},
                                           {"net.ipv4.tcp_fin_timeout", "60", "15"},
                                           {"net.ipv4.tcp_retries2", "15", "9"},
                                           {"net.core.somaxconn", "4096", "8192"}},
                                          conf)};
  LiveMap live{{"net.ipv4.tcp_tw_reuse", {true, "1", ""}},
               {"net.ipv4.tcp_fin_timeout", {true, "30", ""}},  // changed by someone since
               {"net.ipv4.tcp_sack", {true, "1", ""}},
               {"net.ipv4.tcp_retries2", {true, "15", ""}}};  // already back
  auto d = dropped_keys(conf, new_p, history, live);
  ASSERT_EQ(d.size(), 4u);
  std::map<std::string, Dropped> by;
  for (auto& x : d) by[x.key] = x;
  EXPECT_EQ(by["net.ipv4.tcp_tw_reuse"].restore_to, "2");
  EXPECT_FALSE(by["net.ipv4.tcp_fin_timeout"].restore_to);
  EXPECT_NE(by["net.ipv4.tcp_fin_timeout"].note.find("someone else"), std::string::npos);
  EXPECT_FALSE(by["net.ipv4.tcp_sack"].restore_to);
  EXPECT_FALSE(by["net.ipv4.tcp_sack"].kept);
  EXPECT_FALSE(by["net.ipv4.tcp_retries2"].restore_to);
  for (auto& x : d) EXPECT_FALSE(x.kept) << x.key;
  // no journal for the block: nothing is known, every live key is kept and said so
  auto unknown = dropped_keys(conf, new_p, {}, live);
  ASSERT_EQ(unknown.size(), 4u);
  for (auto& x : unknown) {
    EXPECT_TRUE(x.kept) << x.key;
    EXPECT_FALSE(x.restore_to) << x.key;
    EXPECT_NE(x.note.find("left as is"), std::string::npos) << x.note;
  }
  // the same profile again drops nothing
  EXPECT_TRUE(dropped_keys(conf, old_p, history, live).empty());
}

TEST(Issue14, VerifyReportsLiveValuesNoFileRestores) {
  auto p = profile_from("new", "[sysctl]\n\"net.core.somaxconn\" = 4096\n");
  std::string conf = render_block("new", profile_kvs(p));
  BootFile cf{"/c", "sysctl.conf", true, conf};
  bool linked = false;
  auto order = boot_order({{"/d/99-sysctl.conf", "99-sysctl.conf", true, ""}}, cf, &linked);
  LiveMap live{{"net.core.somaxconn", {true, "4096", ""}}, {"net.ipv4.tcp_tw_reuse", {true, "1", ""}}};
  JournalEntry kept = entry(2, "new", {}, conf);
  kept.kept = {{"net.ipv4.tcp_tw_reuse", "1"}};
  auto rep = compute_drift(p, live, "/c", conf, order, linked, {kept});
  EXPECT_TRUE(rep.drift);
  ASSERT_EQ(rep.rows.size(), 2u);
  EXPECT_TRUE(rep.rows[1].stale);
  EXPECT_EQ(rep.rows[1].key, "net.ipv4.tcp_tw_reuse");
  EXPECT_NE(rep.rows[1].note.find("no file restores it at boot"), std::string::npos) << rep.rows[1].note;
  // a file that restores the value at boot, or the value being back where it was, is no drift
  auto order2 = boot_order({{"/d/99-sysctl.conf", "99-sysctl.conf", true, ""}, {"/d/50-x.conf", "50-x.conf", false, "net.ipv4.tcp_tw_reuse = 1\n"}},
                           cf, &linked);
  EXPECT_FALSE(compute_drift(p, live, "/c", conf, order2, linked, {kept}).drift);
  auto restored = entry(1, "old", {{"net.ipv4.tcp_tw_reuse", "2", "1"}}, conf);
  auto back = entry(2, "new", {{"net.ipv4.tcp_tw_reuse", "1", "2"}}, conf);
  live["net.ipv4.tcp_tw_reuse"].value = "2";
  EXPECT_FALSE(compute_drift(p, live, "/c", conf, order, linked, {restored, back}).drift);
  live["net.ipv4.tcp_tw_reuse"].value = "1";  // applied by old, dropped by nothing since: drift
  EXPECT_TRUE(compute_drift(p, live, "/c", conf, order, linked, {restored}).drift);
}

TEST(Issue14, StatusSummarizesEachScope) {
  auto a = entry(1, "high-concurrency", {{"net.ipv4.tcp_tw_reuse", "2", "1"}, {"net.core.somaxconn", "4096", "65535"}}, "");
  auto b = entry(2, "long-lived-connections", {{"net.ipv4.tcp_tw_reuse", "1", "2"}, {"net.ipv4.tcp_keepalive_time", "7200", "300"}}, "");
  auto other = entry(3, "base", {{"net.core.somaxconn", "4096", "1024"}}, "");
  other.netns = "ns1";
  other.state = "pending";
  EXPECT_TRUE(in_scope(a, "", "/c"));
  EXPECT_FALSE(in_scope(other, "", "/c"));
  auto s = summarize({b, other, a});
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].netns, "");
  EXPECT_EQ(s[0].latest.profile, "long-lived-connections");
  EXPECT_EQ(s[0].entries, 2u);
  EXPECT_FALSE(s[0].interrupted);
  ASSERT_EQ(s[0].changed.size(), 2u);  // tw_reuse is back where it was
  EXPECT_EQ(s[0].changed[0].key, "net.core.somaxconn");
  EXPECT_EQ(s[0].changed[0].by, "high-concurrency");
  EXPECT_EQ(s[0].changed[1].key, "net.ipv4.tcp_keepalive_time");
  EXPECT_EQ(s[0].changed[1].before, "7200");
  EXPECT_EQ(s[1].netns, "ns1");
  EXPECT_TRUE(s[1].interrupted);
}
