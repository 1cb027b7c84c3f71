// One NFQUEUE queue bound through libmnl and the nfq_nlmsg_* API: batched receive (recvmmsg),
// batched verdicts (runs of equal verdicts become one NFQNL_MSG_VERDICT_BATCH; rewritten packets
// get their own verdict carrying the new bytes), all verdicts of a batch in one sendto.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "packet_io.hpp"

struct mnl_socket;

namespace syngate::gw {

struct QueueOptions {
  uint32_t copy_range = 0xffff;  // clamped by the kernel to 0xffff - NLA_HDRLEN
  uint32_t maxlen = 4096;
  bool fail_open = false;        // NFQA_CFG_F_FAIL_OPEN: accept instead of drop when full
  bool gso = true;               // NFQA_CFG_F_GSO: take GSO packets whole, checksum maybe not ready
  uint32_t rcvbuf_bytes = 16u << 20;
  uint32_t sndbuf_bytes = 4u << 20;
  uint32_t batch = 64;           // messages per recvmmsg
  uint32_t slot_bytes = 65536 + 1024;  // one message; must hold copy_range plus attributes
  uint32_t recv_timeout_ms = 100;
};

class NfQueue final : public PacketQueue {
 public:
  // Binds the queue and configures it in one message; throws std::runtime_error with the reason
  // (e.g. another process holds the queue, or no CAP_NET_ADMIN).
  NfQueue(uint16_t queue, const QueueOptions& options);
  ~NfQueue() override;
  NfQueue(const NfQueue&) = delete;
  NfQueue& operator=(const NfQueue&) = delete;

  uint16_t queue() const noexcept { return queue_; }
  bool gso_enabled() const noexcept { return gso_; }

  // Waits up to recv_timeout_ms (or not at all when nonblocking) for packets, then takes what is
  // ready, up to `batch` messages. Returns the packets; an empty result means timeout or error.
  const std::vector<QueuedPacket>& receive(bool nonblocking, ReceiveStats& stats) override;
  bool took_everything() const noexcept override { return took_everything_; }

  // Verdicts, in the order the packets were received.
  void verdict(uint32_t id, bool accept) override;
  void verdict_modified(uint32_t id, std::span<const uint8_t> bytes, std::optional<uint32_t> mark) override;
  // NF_QUEUE to `queue`; with fail_open, bypassed (accepted) when nothing listens there.
  void verdict_to_queue(uint32_t id, uint16_t queue) override;
  // Sends what is pending (the caller flushes before emitting packets so that ordering holds).
  void flush(ReceiveStats& stats) override;

 private:
  void close_run();
  void reserve(size_t bytes, ReceiveStats* stats);
  void configure(const QueueOptions& options, bool gso);
  void wait_ack(uint32_t seq);

  mnl_socket* nl_ = nullptr;
  int fd_ = -1;
  uint32_t portid_ = 0;
  uint16_t queue_;
  bool gso_ = true;
  QueueOptions opt_;

  std::vector<uint8_t> rx_;
  std::vector<struct mmsghdr> msgs_;
  std::vector<struct iovec> iov_;
  std::vector<QueuedPacket> packets_;
  bool took_everything_ = true;

  std::vector<char> tx_;
  size_t tx_used_ = 0;
  bool run_open_ = false;
  bool run_accept_ = false;
  uint32_t run_last_ = 0;
  ReceiveStats* pending_stats_ = nullptr;
};

}  // namespace syngate::gw
