// diagnose benchmark: how long tcptune takes to count TCP sockets per state against `ss -tan`
// counting the same states, with 100k+ sockets in a network namespace this program creates.
//
// Child processes enter the netns, open N/2 loopback connections (both ends stay open) spread over
// listeners on 127.0.0.1..8, and hold them. The parent enters the same netns and times, R times:
//   scan  - tcptune's sock_diag count (tcptune_sys::scan_tcp, in process, no output)
//   cli   - `tcptune --json diagnose` as a process (what an operator runs; includes counters, findings)
//   ss    - `ss -tanH | awk` counting states (the usual way), and `ss -tan > /dev/null` (listing only)
// Wall and CPU time (user+sys) are both reported: on a shared machine wall time includes waiting for
// a core, CPU time does not. Everything stays inside the netns, deleted on every exit path.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "sys/system.hpp"

namespace {

std::string g_ns;
std::vector<pid_t> g_children;

void cleanup() {
  for (pid_t c : g_children) {
    ::kill(c, SIGKILL);
    ::waitpid(c, nullptr, 0);
  }
  g_children.clear();
  if (!g_ns.empty()) {
    std::string cmd = "ip netns del " + g_ns + " 2>/dev/null";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "warning: could not delete netns %s\n", g_ns.c_str());
    g_ns.clear();
  }
}

void on_signal(int) {
  cleanup();
  std::_Exit(130);
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "tuner_diag_bench: %s\n", msg.c_str());
  cleanup();
  std::exit(1);
}

void sh(const std::string& cmd) {
  if (std::system(cmd.c_str()) != 0) die("command failed: " + cmd);
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double cpu_ms(int who) {
  struct rusage ru {};
  ::getrusage(who, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

struct Sample {
  std::vector<double> wall, cpu;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Runs a shell command; records wall and CPU time (the command's children included) into s.
void timed(Sample& s, const std::string& cmd, std::string* out) {
  double c0 = cpu_ms(RUSAGE_CHILDREN);
  double t0 = now_ms();
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) die("popen " + cmd);
  char buf[65536];
  size_t n;
  std::string text;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
    if (out) text.append(buf, n);
  int rc = ::pclose(p);
  s.wall.push_back(now_ms() - t0);
  s.cpu.push_back(cpu_ms(RUSAGE_CHILDREN) - c0);
  // tcptune diagnose exits 1 when it has findings; anything else non-zero is a failure.
  if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) > 1) die("command failed: " + cmd);
  if (out) *out = std::move(text);
}

// Child: open `conns` loopback connections and hold them until the parent goes away. Several
// children share the work because RLIMIT_NOFILE's hard limit may be low and not raisable (e.g. a
// container without CAP_SYS_RESOURCE); each child uses its own listener ports.
[[noreturn]] void hold_sockets(int index, long conns, int ready_fd, int hold_fd) {
  if (auto e = tcptune::sys::enter_netns(g_ns); !e.empty()) {
    std::fprintf(stderr, "child: %s\n", e.c_str());
    std::_Exit(1);
  }
  struct rlimit rl {};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &rl);
  // Ephemeral ports are unique per destination: spread over 8 addresses x 2 ports per child.
  std::vector<int> listeners;
  std::vector<sockaddr_in> addrs;
  for (int host = 1; host <= 8; ++host)
    for (int port : {9000 + 2 * index, 9001 + 2 * index}) {
      int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      int one = 1;
      ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(port));
      a.sin_addr.s_addr = htonl(0x7f000000u | static_cast<uint32_t>(host));
      if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 4096) != 0) {
        std::perror("child: bind/listen");
        std::_Exit(1);
      }
      listeners.push_back(l);
      addrs.push_back(a);
    }
  for (long i = 0; i < conns; ++i) {
    size_t k = static_cast<size_t>(i) % listeners.size();
    int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || ::connect(c, reinterpret_cast<sockaddr*>(&addrs[k]), sizeof addrs[k]) != 0) {
      std::fprintf(stderr, "child: connection %ld: %s\n", i, std::strerror(errno));
      std::_Exit(1);
    }
    if (::accept4(listeners[k], nullptr, nullptr, SOCK_CLOEXEC) < 0) {
      std::fprintf(stderr, "child: accept %ld: %s\n", i, std::strerror(errno));
      std::_Exit(1);
    }
  }
  char x = 'r';
  if (::write(ready_fd, &x, 1) != 1) std::_Exit(1);
  while (::read(hold_fd, &x, 1) < 0 && errno == EINTR) {
  }  // returns when the parent exits or closes its end
  std::_Exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  long sockets = 120000;
  int runs = 7;
  std::string tcptune_bin;
  CLI::App app{"diagnose benchmark: tcptune's sock_diag state count vs `ss -tan`, 100k+ sockets in a private netns (root)"};
  app.add_option("--sockets", sockets, "TCP sockets to create (both ends of loopback connections)")->capture_default_str();
  app.add_option("--runs", runs, "timed repetitions (the median is reported)")->capture_default_str();
  app.add_option("--tcptune", tcptune_bin, "path of the tcptune binary, to time `tcptune --json diagnose` end to end");
  CLI11_PARSE(app, argc, argv);
  if (::geteuid() != 0) die("needs root (it creates a network namespace)");
  if (sockets < 2 || runs < 1) die("bad --sockets/--runs");

  g_ns = "tcptune-bench-" + std::to_string(::getpid());
  ::signal(SIGINT, on_signal);
  ::signal(SIGTERM, on_signal);
  sh("ip netns add " + g_ns);
  sh("ip -n " + g_ns + " link set lo up");
  // A per-netns key, inside the bench netns only: the whole ephemeral range.
  sh("ip netns exec " + g_ns + " sh -c 'echo \"1024 65535\" > /proc/sys/net/ipv4/ip_local_port_range'");

  int ready[2], hold[2];
  if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(hold, O_CLOEXEC) != 0) die("pipe");
  long conns = sockets / 2;
  struct rlimit rl {};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  long per_child = std::max<long>(1000, (static_cast<long>(std::min<rlim_t>(rl.rlim_max, 1 << 20)) - 64) / 2);
  int children = static_cast<int>((conns + per_child - 1) / per_child);
  double t0 = now_ms();
  for (int i = 0; i < children; ++i) {
    long n = std::min(per_child, conns - i * per_child);
    pid_t c = ::fork();
    if (c < 0) die("fork");
    if (c == 0) {
      ::close(ready[0]);
      ::close(hold[1]);
      hold_sockets(i, n, ready[1], hold[0]);
    }
    g_children.push_back(c);
  }
  ::close(ready[1]);
  ::close(hold[0]);
  char x;
  for (int i = 0; i < children; ++i)
    if (::read(ready[0], &x, 1) != 1) die("socket holder failed");
  std::printf("netns %s: %ld sockets created by %d processes in %.1f s\n", g_ns.c_str(), 2 * conns, children, (now_ms() - t0) / 1000);

  // From here on this process and the commands it runs live in the netns.
  if (auto e = tcptune::sys::enter_netns(g_ns); !e.empty()) die(e);
  Sample t_scan, t_cli, t_ss_count, t_ss_list;
  tcptune::StateCounts counts;
  std::string ss_out;
  for (int r = 0; r < runs; ++r) {
    double c0 = cpu_ms(RUSAGE_THREAD);
    double a = now_ms();
    auto scan = tcptune::sys::scan_tcp(false);
    t_scan.wall.push_back(now_ms() - a);
    t_scan.cpu.push_back(cpu_ms(RUSAGE_THREAD) - c0);
    if (!scan.error.empty()) die(scan.error);
    counts = scan.counts;
    if (!tcptune_bin.empty()) timed(t_cli, tcptune_bin + " --json diagnose > /dev/null", nullptr);
    timed(t_ss_count, "ss -tanH | awk '{c[$1]++} END {for (s in c) print s, c[s]}'", &ss_out);
    timed(t_ss_list, "ss -tan > /dev/null", nullptr);
  }
  // The two counts must agree, or the timing compares different work.
  std::map<std::string, long> ss;
  std::istringstream in(ss_out);
  std::string st;
  long n;
  while (in >> st >> n) ss[st] = n;
  long est = static_cast<long>(counts.get(1)), listen = static_cast<long>(counts.get(10));
  std::printf("states (tcptune / ss): ESTABLISHED %ld / %ld, LISTEN %ld / %ld, total %llu\n", est, ss["ESTAB"], listen, ss["LISTEN"],
              static_cast<unsigned long long>(counts.total()));
  if (est != ss["ESTAB"] || listen != ss["LISTEN"]) die("tcptune and ss disagree on the counts");

  std::printf("median of %d runs                          wall ms    cpu ms\n", runs);
  auto row = [](const char* what, const Sample& s) { std::printf("  %-38s %9.1f %9.1f\n", what, median(s.wall), median(s.cpu)); };
  row("tcptune sock_diag count (in process)", t_scan);
  if (!t_cli.wall.empty()) row("tcptune --json diagnose (process)", t_cli);
  row("ss -tanH | awk (count states)", t_ss_count);
  row("ss -tan > /dev/null (list only)", t_ss_list);
  double cw = median(t_ss_count.wall), cc = median(t_ss_count.cpu);
  std::printf("ratio ss-count / tcptune-scan: %.1fx wall, %.1fx cpu", cw / median(t_scan.wall), cc / median(t_scan.cpu));
  if (!t_cli.wall.empty())
    std::printf("; ss-count / tcptune-diagnose: %.1fx wall, %.1fx cpu", cw / median(t_cli.wall), cc / median(t_cli.cpu));
  std::printf("\n");
  ::close(hold[1]);
  cleanup();
  return 0;
}
