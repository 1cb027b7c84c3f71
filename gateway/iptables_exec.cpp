#include "iptables_exec.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

extern char** environ;

namespace syngate::gw {

ProcessResult run_process(const std::string& binary, const std::vector<std::string>& args,
                          const std::string* stdin_text) {
  ProcessResult result;
  int out[2], in[2];
  if (pipe2(out, O_CLOEXEC) != 0) return result;
  if (pipe2(in, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    return result;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, out[1], 2);
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, binary.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(in[0]);
  close(out[1]);
  if (rc != 0) {
    close(in[1]);
    close(out[0]);
    result.output = binary + ": " + std::strerror(rc);
    return result;
  }
  if (stdin_text) {
    const char* p = stdin_text->data();
    size_t left = stdin_text->size();
    while (left > 0) {
      ssize_t n = write(in[1], p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  close(in[1]);
  char buf[4096];
  for (;;) {
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.output.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  // posix_spawnp reports a missing binary through exit 127 of the child on glibc.
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (result.status == 127) result.status = -1;
  return result;
}

namespace {

bool works(const std::string& binary) {
  return run_process(binary, {"-w", "-t", "mangle", "-S", "INPUT"}).status == 0;
}

// "iptables v1.8.9 (nf_tables)" -> nft; "(legacy)" -> legacy.
std::string variant_of(const std::string& binary) {
  auto r = run_process(binary, {"--version"});
  if (r.status != 0) return "";
  if (r.output.find("nf_tables") != std::string::npos) return "nft";
  if (r.output.find("legacy") != std::string::npos) return "legacy";
  return "";
}

Backend named(const std::string& name) {
  return {name, "iptables-" + name, "ip6tables-" + name};
}

}  // namespace

Backend choose_backend(IptablesBackend preference) {
  if (preference == IptablesBackend::Nft || preference == IptablesBackend::Legacy) {
    Backend b = named(std::string(to_string(preference)));
    if (!works(b.v4)) {
      throw std::runtime_error(b.v4 + " does not work here (gateway.iptables = \"" + b.name +
                               "\"); install it or set gateway.iptables = \"auto\"");
    }
    return b;
  }
  if (works("iptables")) {
    std::string v = variant_of("iptables");
    if (!v.empty() && works("iptables-" + v)) return named(v);
    if (!v.empty()) return {v, "iptables", "ip6tables"};
  }
  for (const char* name : {"nft", "legacy"}) {
    Backend b = named(name);
    if (works(b.v4)) return b;
  }
  throw std::runtime_error("no working iptables found (tried iptables, iptables-nft, iptables-legacy "
                           "with `-t mangle -S INPUT`); install the iptables package");
}

std::vector<Backend> available_backends(IptablesBackend preference) {
  if (preference != IptablesBackend::Auto) return {choose_backend(preference)};
  std::vector<Backend> out;
  for (const char* name : {"nft", "legacy"}) {
    Backend b = named(name);
    if (works(b.v4)) out.push_back(b);
  }
  if (out.empty()) out.push_back(choose_backend(preference));
  return out;
}

void apply_plan(const Backend& backend, const std::vector<RuleCommand>& plan, bool need_v6) {
  for (const RuleCommand& cmd : plan) {
    const std::string& bin = cmd.v6 ? backend.v6 : backend.v4;
    // A family we do not protect may lack its binary (or the kernel its IPv6 tables): cleanup
    // commands for it are best effort.
    bool best_effort = cmd.v6 && !need_v6;
    auto fail = [&](const std::string& shown, const ProcessResult& r) {
      if (best_effort) return;
      throw std::runtime_error("`" + shown + "` failed (exit " + std::to_string(r.status) +
                               "): " + r.output);
    };
    switch (cmd.kind) {
      case RuleCommand::Kind::Run: {
        auto r = run_process(bin, cmd.args);
        if (r.status != 0) fail(render(bin, cmd.args), r);
        break;
      }
      case RuleCommand::Kind::Optional:
        run_process(bin, cmd.args);
        break;
      case RuleCommand::Kind::Restore: {
        std::string restore = bin + "-restore";
        auto r = run_process(restore, cmd.args, &cmd.restore_input);
        if (r.status != 0) fail(render(restore, cmd.args) + " <<'EOF'\n" + cmd.restore_input + "EOF", r);
        break;
      }
      case RuleCommand::Kind::Ensure: {
        // Same rule with -C (and without the insert position) tells whether it is there.
        std::vector<std::string> check = cmd.args;
        for (size_t i = 0; i < check.size(); ++i) {
          if (check[i] == "-I" || check[i] == "-A") {
            bool has_pos = check[i] == "-I" && i + 2 < check.size() &&
                           check[i + 2].find_first_not_of("0123456789") == std::string::npos;
            check[i] = "-C";
            if (has_pos) check.erase(check.begin() + static_cast<long>(i) + 2);
            break;
          }
        }
        if (run_process(bin, check).status == 0) break;
        auto r = run_process(bin, cmd.args);
        if (r.status != 0) fail(render(bin, cmd.args), r);
        break;
      }
      case RuleCommand::Kind::RemoveAll:
        for (int i = 0; i < 64 && run_process(bin, cmd.args).status == 0; ++i) {
        }
        break;
    }
  }
}

std::string show_rules(const Backend& backend, const std::string& chain) {
  std::string out;
  for (bool v6 : {false, true}) {
    const std::string& bin = v6 ? backend.v6 : backend.v4;
    for (const char* table : {"raw", "mangle"}) {
      auto all = run_process(bin, {"-w", "-t", table, "-S"});
      if (all.status != 0) continue;
      std::string body;
      size_t pos = 0;
      while (pos < all.output.size()) {
        size_t nl = all.output.find('\n', pos);
        if (nl == std::string::npos) nl = all.output.size();
        std::string line = all.output.substr(pos, nl - pos);
        pos = nl + 1;
        // Our chain's declaration, its rules, and every jump into it.
        if (line == "-N " + chain || line.rfind("-A " + chain + " ", 0) == 0 ||
            line.find("-j " + chain) != std::string::npos) {
          body += line + "\n";
        }
      }
      if (!body.empty()) out += "# " + bin + " -t " + table + "\n" + body;
    }
  }
  return out;
}

}  // namespace syngate::gw
