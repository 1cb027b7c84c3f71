// The engine's PacketSink for a worker: copies each packet into an arena and sends the batch with
// sendmmsg through raw sockets (IPv4: IPPROTO_RAW implies IP_HDRINCL; IPv6: an AF_INET6
// IPPROTO_RAW socket takes the whole IPv6 header too, so the source address is ours to choose).
// Every packet carries SO_MARK so that the rules let it through instead of queueing it again.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <span>
#include <vector>

#include "packet_io.hpp"

namespace syngate::gw {

class RawSender final : public BatchSender {
 public:
  RawSender(uint32_t mark, uint32_t sndbuf_bytes, bool need_v4, bool need_v6);
  ~RawSender() override;
  RawSender(const RawSender&) = delete;
  RawSender& operator=(const RawSender&) = delete;

  void send(std::span<const uint8_t> packet) override;
  bool pending() const noexcept override { return !entries_.empty(); }
  void flush() override;

 private:
  struct Entry {
    size_t offset;
    size_t length;
    bool v6;
  };
  void flush_family(bool v6);

  int fd4_ = -1;
  int fd6_ = -1;
  std::vector<uint8_t> arena_;
  size_t used_ = 0;
  std::vector<Entry> entries_;
  std::vector<struct mmsghdr> msgs_;
  std::vector<struct iovec> iov_;
  std::vector<struct sockaddr_storage> names_;
};

}  // namespace syngate::gw
