#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "health.hpp"
#include "health_socket.hpp"

using namespace syngate::gw;

namespace {

HealthSnapshot healthy_snapshot() {
  HealthSnapshot s;
  s.worker_idle_s = {0.1, 0.05};
  s.tick_age_s = 0.5;
  s.rules_in_place = 1;
  return s;
}

}  // namespace

TEST(Health, EveryWorkerMovingRulesInPlaceIsHealthy) {
  const HealthVerdict v = judge_health(healthy_snapshot());
  EXPECT_TRUE(v.healthy);
  EXPECT_TRUE(v.problems.empty());
  EXPECT_EQ(v.summary, "2 worker(s) making progress, rules in place, fast path off");
}

TEST(Health, OneStuckWorkerIsEnough) {
  HealthSnapshot s = healthy_snapshot();
  s.worker_idle_s[1] = 2.5;
  const HealthVerdict v = judge_health(s);
  EXPECT_FALSE(v.healthy);
  ASSERT_EQ(v.problems.size(), 1u);
  EXPECT_EQ(v.problems[0], "worker 1 made no progress for 2.5 s");
  s.worker_idle_s[1] = 1.9;
  EXPECT_TRUE(judge_health(s).healthy) << "a quiet turn waits at most 100 ms: 1.9 s is still progress";
}

TEST(Health, RulesMissingOrNotYetCheckedIsUnhealthy) {
  HealthSnapshot s = healthy_snapshot();
  s.rules_in_place = 0;
  EXPECT_FALSE(judge_health(s).healthy);
  s.rules_in_place = -1;
  EXPECT_FALSE(judge_health(s).healthy) << "before the first check nothing is known: not yet";
}

TEST(Health, AStaleMainThreadOrNoWorkersIsUnhealthy) {
  HealthSnapshot s = healthy_snapshot();
  s.tick_age_s = 6;
  EXPECT_FALSE(judge_health(s).healthy);
  s = healthy_snapshot();
  s.worker_idle_s.clear();
  EXPECT_FALSE(judge_health(s).healthy);
}

TEST(Health, TheFastPathCountsOnlyWhenRequired) {
  HealthSnapshot s = healthy_snapshot();
  s.fast_path_interfaces = 0;  // auto mode, attached nowhere: NFQUEUE serves
  EXPECT_TRUE(judge_health(s).healthy);
  s.fast_path_required = true;
  EXPECT_FALSE(judge_health(s).healthy);
  s.fast_path_interfaces = -1;  // required, but it never started
  EXPECT_FALSE(judge_health(s).healthy);
  s.fast_path_interfaces = 2;
  const HealthVerdict v = judge_health(s);
  EXPECT_TRUE(v.healthy);
  EXPECT_EQ(v.summary, "2 worker(s) making progress, rules in place, fast path on 2 interface(s)");
}

TEST(Health, TheAnswerIsOneLineTheClientReadsBack) {
  HealthSnapshot s = healthy_snapshot();
  s.rules_in_place = 0;
  const std::string line = health_answer(s, judge_health(s));
  ASSERT_EQ(line.find('\n'), line.size() - 1);
  const HealthVerdict back = parse_health_answer(line.substr(0, line.size() - 1));
  EXPECT_FALSE(back.healthy);
  EXPECT_EQ(back.problems, judge_health(s).problems);
}

TEST(Health, AnythingElseIsNotAnAnswer) {
  EXPECT_THROW(parse_health_answer("HTTP/1.1 200 OK"), std::runtime_error);
  EXPECT_THROW(parse_health_answer(R"({"healthy":"yes","problems":[]})"), std::runtime_error);
  EXPECT_THROW(parse_health_answer(R"({"healthy":true,"problems":["worker 0 stuck"]})"), std::runtime_error);
  EXPECT_THROW(parse_health_answer(R"({"healthy":true})"), std::runtime_error);
  EXPECT_TRUE(parse_health_answer(R"({"healthy":true,"problems":[]})").healthy);
}

TEST(HeartbeatWatch, IdleTimeCountsFromTheLastMove) {
  HeartbeatWatch w;
  w.observe({5, 9}, 10.0);
  w.observe({6, 9}, 11.0);
  w.observe({6, 9}, 13.5);
  EXPECT_EQ(w.idle_s(13.5), (std::vector<double>{2.5, 3.5}));
  w.observe({6, 9, 1}, 14.0);
  EXPECT_EQ(w.idle_s(14.0), (std::vector<double>{0, 0, 0})) << "another worker count starts over";
}

// How long a query waits: the answer (or the close) comes as soon as the socket's thread runs,
// which on a loaded CI machine can take longer than a second; nothing here is timed.
constexpr std::chrono::milliseconds kPatience{10000};

class HealthSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sg-health.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir = tmpl;
    path = dir + "/" + kHealthSocketName;
  }
  void TearDown() override { rmdir(dir.c_str()); }
  std::string dir, path;
  std::atomic<int> samples{0};
};

TEST_F(HealthSocketTest, AnswersATrustedPeerOnceWithOneLine) {
  {
    HealthSocket s(path, [this] { ++samples; }, [] { return std::string("{\"healthy\":true,\"problems\":[]}\n"); },
                   {geteuid()});
    struct stat st;
    ASSERT_EQ(lstat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << "only the daemon's user may connect";
    const HealthQuery q = query_health(path, {geteuid()}, std::chrono::milliseconds(2000));
    ASSERT_EQ(q.result, HealthQuery::Result::Answered) << q.error;
    EXPECT_EQ(q.line, "{\"healthy\":true,\"problems\":[]}");
    EXPECT_GE(samples.load(), 1) << "the heartbeats are sampled before each answer";
  }
  struct stat st;
  EXPECT_NE(lstat(path.c_str(), &st), 0) << "the socket goes with the daemon";
  const HealthQuery gone = query_health(path, {geteuid()}, std::chrono::milliseconds(500));
  EXPECT_EQ(gone.result, HealthQuery::Result::NoAnswer);
}

TEST_F(HealthSocketTest, TheDaemonRefusesAPeerOfAnotherUser) {
  const uid_t other = geteuid() == 4242 ? 4243 : 4242;
  HealthSocket s(path, [] {}, [] { return std::string("{\"healthy\":true,\"problems\":[]}\n"); }, {other});
  const HealthQuery q = query_health(path, {geteuid()}, kPatience);
  EXPECT_EQ(q.result, HealthQuery::Result::NoAnswer);
  EXPECT_NE(q.error.find("closed without an answer"), std::string::npos) << q.error;
}

TEST_F(HealthSocketTest, TheClientDoesNotBelieveASocketHeldByAnotherUser) {
  // What a local user who bound the path first looks like to the client: a socket whose owner
  // is neither root nor the daemon's user, whatever it answers.
  HealthSocket s(path, [] {}, [] { return std::string("{\"healthy\":true,\"problems\":[]}\n"); }, {geteuid()});
  const uid_t other = geteuid() == 4242 ? 4243 : 4242;
  const HealthQuery q = query_health(path, {other}, kPatience);
  EXPECT_EQ(q.result, HealthQuery::Result::Untrusted);
  EXPECT_TRUE(q.line.empty());
}

TEST_F(HealthSocketTest, AStaleSocketOfAKilledDaemonIsReplaced) {
  // What a kill -9 leaves: the file, bound once, nobody listening.
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  close(fd);
  HealthSocket again(path, [] {}, [] { return std::string("{\"healthy\":false,\"problems\":[\"p\"]}\n"); },
                     {geteuid()});
  const HealthQuery q = query_health(path, {geteuid()}, kPatience);
  ASSERT_EQ(q.result, HealthQuery::Result::Answered) << q.error;
  EXPECT_FALSE(parse_health_answer(q.line).healthy);
}
