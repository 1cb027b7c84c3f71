// What a worker needs from the packets' way in and way out, as interfaces: the daemon plugs in
// NFQUEUE (NfQueue) and the raw sockets (RawSender), the unit tests a scripted queue and a
// capturing sender, so the per-packet loop runs without root.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "syngate/engine.hpp"

namespace syngate::gw {

struct QueuedPacket {
  uint32_t id = 0;
  std::span<uint8_t> data;  // the (possibly truncated) packet, in our receive buffer: mutable
  size_t capacity = 0;      // bytes writable from data.data() (>= data.size()): room to grow into
  uint32_t original_length = 0;
  bool truncated = false;
  bool checksum_ready = true;  // false: NFQA_SKB_CSUMNOTREADY
  uint32_t mark = 0;           // skb->mark as queued (NFQA_MARK)
};

struct ReceiveStats {
  uint64_t enobufs = 0;
  uint64_t errors = 0;
};

// Packets waiting for a verdict. Verdicts are given in the order the packets were received and
// may be held until flush().
class PacketQueue {
 public:
  virtual ~PacketQueue() = default;
  // Waits up to the queue's receive timeout (or not at all when nonblocking) for packets, then
  // takes what is ready. Returns the packets, valid until the next call; an empty result means
  // timeout or error.
  virtual const std::vector<QueuedPacket>& receive(bool nonblocking, ReceiveStats& stats) = 0;
  // Whether the last receive took every packet that was waiting (it returned less than a batch):
  // what was queued before it has then all been received.
  virtual bool took_everything() const noexcept = 0;
  virtual void verdict(uint32_t id, bool accept) = 0;
  // Accept, with the packet's new bytes, and its new skb->mark when `mark` is set.
  virtual void verdict_modified(uint32_t id, std::span<const uint8_t> bytes, std::optional<uint32_t> mark) = 0;
  // Hands the packet, untouched, to another queue (NF_QUEUE): it re-enters at the same hook, after
  // the rule that queued it, and the next queue's worker gives it its verdict.
  virtual void verdict_to_queue(uint32_t id, uint16_t queue) = 0;
  // Sends the verdicts held so far.
  virtual void flush(ReceiveStats& stats) = 0;
};

// A PacketSink that holds packets until flush(), so that a batch leaves in one system call.
class BatchSender : public PacketSink {
 public:
  virtual bool pending() const noexcept = 0;
  virtual void flush() = 0;

  uint64_t sent = 0;    // packets that left
  uint64_t errors = 0;  // packets that could not be sent
  int last_errno = 0;   // why the latest of them failed (0: a packet the sender refused itself)
};

}  // namespace syngate::gw
