#include "nfqueue.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace syngate::gw {

namespace {
constexpr size_t kTxBytes = 512 * 1024;
[[noreturn]] void fail(const std::string& what, int err) {
  std::string hint;
  if (err == EPERM) hint = " (syngate needs CAP_NET_ADMIN: run as root or grant the capability)";
  if (err == EBUSY) hint = " (another process is bound to this queue: is syngate already running?)";
  throw std::runtime_error(what + ": " + std::strerror(err) + hint);
}
}  // namespace

NfQueue::NfQueue(uint16_t queue, const QueueOptions& options) : queue_(queue), opt_(options) {
  nl_ = mnl_socket_open(NETLINK_NETFILTER);
  if (!nl_) fail("queue " + std::to_string(queue) + ": netlink socket", errno);
  if (mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
    int e = errno;
    mnl_socket_close(nl_);
    fail("queue " + std::to_string(queue) + ": netlink bind", e);
  }
  fd_ = mnl_socket_get_fd(nl_);
  portid_ = mnl_socket_get_portid(nl_);
  // A large receive buffer absorbs bursts; FORCE bypasses rmem_max (we have CAP_NET_ADMIN).
  int rcv = static_cast<int>(opt_.rcvbuf_bytes);
  if (setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) != 0) {
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  }
  int snd = static_cast<int>(opt_.sndbuf_bytes);
  if (setsockopt(fd_, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd) != 0) {
    setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
  }
  timeval tv{static_cast<time_t>(opt_.recv_timeout_ms / 1000),
             static_cast<suseconds_t>((opt_.recv_timeout_ms % 1000) * 1000)};
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  rx_.resize(static_cast<size_t>(opt_.batch) * opt_.slot_bytes);
  msgs_.resize(opt_.batch);
  iov_.resize(opt_.batch);
  packets_.reserve(opt_.batch);
  tx_.resize(kTxBytes);
  try {
    configure(opt_, opt_.gso);
    gso_ = opt_.gso;
  } catch (const std::runtime_error&) {
    if (!opt_.gso) {
      mnl_socket_close(nl_);
      throw;
    }
    // Kernels without NFQA_CFG_F_GSO segment GSO packets before queueing: slower, still correct.
    try {
      configure(opt_, false);
      gso_ = false;
    } catch (...) {
      mnl_socket_close(nl_);
      throw;
    }
  }
}

NfQueue::~NfQueue() {
  if (nl_) mnl_socket_close(nl_);
}

void NfQueue::configure(const QueueOptions& o, bool gso) {
  // Everything in one message: the kernel applies the bind and then the parameters while
  // handling it, so no packet is queued to us with the default (metadata-only) copy mode.
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = nfq_nlmsg_put(buf.data(), NFQNL_MSG_CONFIG, queue_);
  nlh->nlmsg_flags |= NLM_F_ACK;
  uint32_t seq = static_cast<uint32_t>(queue_) + 1;
  nlh->nlmsg_seq = seq;
  nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
  nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, static_cast<int>(o.copy_range));
  nfq_nlmsg_cfg_put_qmaxlen(nlh, o.maxlen);
  uint32_t flags = (o.fail_open ? NFQA_CFG_F_FAIL_OPEN : 0) | (gso ? NFQA_CFG_F_GSO : 0);
  uint32_t mask = NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO;
  mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(flags));
  mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(mask));
  if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) {
    fail("queue " + std::to_string(queue_) + ": send config", errno);
  }
  wait_ack(seq);
}

void NfQueue::wait_ack(uint32_t seq) {
  // Packets may already be queued to us (rules installed before the daemon started); they are
  // dropped here so that none waits forever: TCP retransmits them a moment later.
  std::vector<char> buf(opt_.slot_bytes + MNL_SOCKET_BUFFER_SIZE);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR || errno == ENOBUFS) continue;
      fail("queue " + std::to_string(queue_) + ": waiting for the kernel's answer", errno);
    }
    size_t len = static_cast<size_t>(n);
    for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(nlh, static_cast<int>(len));
         nlh = mnl_nlmsg_next(nlh, reinterpret_cast<int*>(&len))) {
      if (nlh->nlmsg_type == NLMSG_ERROR && nlh->nlmsg_seq == seq) {
        auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
        if (err->error != 0) fail("queue " + std::to_string(queue_) + ": configure", -err->error);
        return;
      }
      if ((nlh->nlmsg_type & 0xff) == NFQNL_MSG_PACKET) {
        nlattr* attr[NFQA_MAX + 1] = {};
        if (nfq_nlmsg_parse(nlh, attr) >= 0 && attr[NFQA_PACKET_HDR]) {
          auto* ph = static_cast<nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(attr[NFQA_PACKET_HDR]));
          char vbuf[256];
          nlmsghdr* v = nfq_nlmsg_put(vbuf, NFQNL_MSG_VERDICT, queue_);
          nfq_nlmsg_verdict_put(v, static_cast<int>(ntohl(ph->packet_id)), NF_DROP);
          mnl_socket_sendto(nl_, v, v->nlmsg_len);
        }
      }
    }
  }
  throw std::runtime_error("queue " + std::to_string(queue_) + ": no answer from the kernel");
}

const std::vector<QueuedPacket>& NfQueue::receive(bool nonblocking, ReceiveStats& stats) {
  packets_.clear();
  for (uint32_t i = 0; i < opt_.batch; ++i) {
    iov_[i] = {rx_.data() + static_cast<size_t>(i) * opt_.slot_bytes, opt_.slot_bytes};
    std::memset(&msgs_[i].msg_hdr, 0, sizeof(msghdr));
    msgs_[i].msg_hdr.msg_iov = &iov_[i];
    msgs_[i].msg_hdr.msg_iovlen = 1;
    msgs_[i].msg_len = 0;
  }
  int flags = nonblocking ? MSG_DONTWAIT : MSG_WAITFORONE;
  int n = recvmmsg(fd_, msgs_.data(), opt_.batch, flags, nullptr);
  took_everything_ = n < static_cast<int>(opt_.batch);
  if (n < 0) {
    if (errno == ENOBUFS) ++stats.enobufs;
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ++stats.errors;
    return packets_;
  }
  for (int i = 0; i < n; ++i) {
    auto* base = static_cast<uint8_t*>(iov_[i].iov_base);
    int len = static_cast<int>(msgs_[i].msg_len);
    if (msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) {
      ++stats.errors;  // cannot happen with slot_bytes >= copy range; counted if it does
    }
    for (auto* nlh = reinterpret_cast<nlmsghdr*>(base); mnl_nlmsg_ok(nlh, len);
         nlh = mnl_nlmsg_next(nlh, &len)) {
      if (nlh->nlmsg_type == NLMSG_ERROR) {
        auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
        if (err->error != 0) ++stats.errors;
        continue;
      }
      if ((nlh->nlmsg_type & 0xff) != NFQNL_MSG_PACKET) continue;
      nlattr* attr[NFQA_MAX + 1] = {};
      if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR]) {
        ++stats.errors;
        continue;
      }
      auto* ph = static_cast<nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(attr[NFQA_PACKET_HDR]));
      QueuedPacket p;
      p.id = ntohl(ph->packet_id);
      if (attr[NFQA_PAYLOAD]) {
        p.data = {static_cast<uint8_t*>(mnl_attr_get_payload(attr[NFQA_PAYLOAD])),
                  mnl_attr_get_payload_len(attr[NFQA_PAYLOAD])};
      }
      p.original_length = static_cast<uint32_t>(p.data.size());
      // The payload is the message's last attribute (nfnetlink_queue puts it there) and the
      // message has the slot to itself: what follows it in the slot is free.
      p.capacity = p.data.empty() ? 0 : static_cast<size_t>(base + opt_.slot_bytes - p.data.data());
      if (attr[NFQA_CAP_LEN]) {
        p.original_length = ntohl(mnl_attr_get_u32(attr[NFQA_CAP_LEN]));
        p.truncated = p.original_length > p.data.size();
      }
      if (attr[NFQA_MARK]) p.mark = ntohl(mnl_attr_get_u32(attr[NFQA_MARK]));
      if (attr[NFQA_SKB_INFO]) {
        uint32_t info = ntohl(mnl_attr_get_u32(attr[NFQA_SKB_INFO]));
        p.checksum_ready = !(info & NFQA_SKB_CSUMNOTREADY);
      }
      packets_.push_back(p);
    }
  }
  return packets_;
}

void NfQueue::reserve(size_t bytes, ReceiveStats* stats) {
  if (tx_used_ + bytes <= tx_.size()) return;
  if (mnl_socket_sendto(nl_, tx_.data(), tx_used_) < 0 && stats) ++stats->errors;
  tx_used_ = 0;
}

void NfQueue::close_run() {
  if (!run_open_) return;
  reserve(256, pending_stats_);
  nlmsghdr* nlh = nfq_nlmsg_put(tx_.data() + tx_used_, NFQNL_MSG_VERDICT_BATCH, queue_);
  nfq_nlmsg_verdict_put(nlh, static_cast<int>(run_last_), run_accept_ ? NF_ACCEPT : NF_DROP);
  tx_used_ += NLMSG_ALIGN(nlh->nlmsg_len);
  run_open_ = false;
}

void NfQueue::verdict(uint32_t id, bool accept) {
  // Every packet before `id` already has its verdict in the buffer, so "all pending up to id"
  // is exactly this run.
  if (run_open_ && run_accept_ == accept) {
    run_last_ = id;
    return;
  }
  close_run();
  run_open_ = true;
  run_accept_ = accept;
  run_last_ = id;
}

void NfQueue::verdict_modified(uint32_t id, std::span<const uint8_t> bytes, std::optional<uint32_t> mark) {
  close_run();
  reserve(bytes.size() + 256, pending_stats_);
  nlmsghdr* nlh = nfq_nlmsg_put(tx_.data() + tx_used_, NFQNL_MSG_VERDICT, queue_);
  nfq_nlmsg_verdict_put(nlh, static_cast<int>(id), NF_ACCEPT);
  if (mark) nfq_nlmsg_verdict_put_mark(nlh, *mark);
  nfq_nlmsg_verdict_put_pkt(nlh, bytes.data(), static_cast<uint32_t>(bytes.size()));
  tx_used_ += NLMSG_ALIGN(nlh->nlmsg_len);
}

void NfQueue::verdict_to_queue(uint32_t id, uint16_t queue) {
  close_run();
  reserve(256, pending_stats_);
  nlmsghdr* nlh = nfq_nlmsg_put(tx_.data() + tx_used_, NFQNL_MSG_VERDICT, queue_);
  uint32_t verdict = NF_QUEUE_NR(queue);
  if (opt_.fail_open) verdict |= NF_VERDICT_FLAG_QUEUE_BYPASS;
  nfq_nlmsg_verdict_put(nlh, static_cast<int>(id), static_cast<int>(verdict));
  tx_used_ += NLMSG_ALIGN(nlh->nlmsg_len);
}

void NfQueue::flush(ReceiveStats& stats) {
  pending_stats_ = &stats;
  close_run();
  if (tx_used_ > 0) {
    if (mnl_socket_sendto(nl_, tx_.data(), tx_used_) < 0) ++stats.errors;
    tx_used_ = 0;
  }
}

}  // namespace syngate::gw
