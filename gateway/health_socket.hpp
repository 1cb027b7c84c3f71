// The channel `syngate status --check` reads the daemon's health over: a unix socket in the
// instance's state directory (0700, the daemon's user), so no other local user can reach it, and
// credentials checked both ways with SO_PEERCRED: the daemon answers only root and its own user,
// and the client believes only a socket whose owner is root or the daemon's user, so a local
// user who managed to bind the path first still cannot fake "healthy". Unlike the metrics port,
// which any local user can bind while the daemon is down.
// Protocol: the client sends "health\n"; the daemon answers one line (health.hpp) and closes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace syngate::gw {

inline constexpr const char* kHealthSocketName = "health.sock";

class HealthSocket {
 public:
  // `sample` runs on the socket's thread every 200 ms and before each answer (the heartbeat
  // bookkeeping); `answer` renders the line. Peers whose uid is not in `allowed` get no answer.
  // Throws std::runtime_error when the socket cannot be made.
  HealthSocket(std::string path, std::function<void()> sample, std::function<std::string()> answer,
               std::vector<uid_t> allowed);
  ~HealthSocket();  // stops the thread, removes the socket
  HealthSocket(const HealthSocket&) = delete;
  HealthSocket& operator=(const HealthSocket&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct HealthQuery {
  enum class Result { Answered, NoAnswer, Untrusted } result = Result::NoAnswer;
  std::string line;   // the answer, when Answered
  std::string error;  // why not, otherwise
};

// Connects to `path`, checks the listening socket's owner against `trusted` (SO_PEERCRED),
// asks, and reads one line, all within `deadline`.
HealthQuery query_health(const std::string& path, const std::vector<uid_t>& trusted,
                         std::chrono::milliseconds deadline);

}  // namespace syngate::gw
