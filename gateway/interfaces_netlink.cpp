// The facts interfaces.hpp's rule works on, from rtnetlink (libmnl): what `ip -d link`, `ip route`
// and `ip route get fibmatch ADDR` print, without running them.
#include "interfaces.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <stdexcept>

namespace syngate::gw {

namespace {

std::string address_text(int family, const void* data) {
  char text[INET6_ADDRSTRLEN] = "";
  inet_ntop(family, data, text, sizeof text);
  return text;
}

// mnl_attr_for_each, which C++ will not compile (void* to nlattr*).
template <typename F>
void for_each_attr(const nlmsghdr* nlh, size_t header, F f) {
  const auto* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  for (auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, header));
       mnl_attr_ok(attr, static_cast<int>(tail - reinterpret_cast<const char*>(attr)));
       attr = mnl_attr_next(attr)) {
    f(attr);
  }
}

class Netlink {
 public:
  Netlink() : nl_(mnl_socket_open(NETLINK_ROUTE)) {
    if (!nl_ || mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
      const int err = errno;
      if (nl_) mnl_socket_close(nl_);
      throw std::runtime_error(std::string("rtnetlink: ") + std::strerror(err));
    }
    port_ = mnl_socket_get_portid(nl_);
  }
  ~Netlink() { mnl_socket_close(nl_); }
  Netlink(const Netlink&) = delete;
  Netlink& operator=(const Netlink&) = delete;

  // Sends the request and runs `cb` on every answer; returns 0 or the kernel's errno.
  int talk(nlmsghdr* request, mnl_cb_t cb, void* data) {
    request->nlmsg_seq = ++seq_;
    if (mnl_socket_sendto(nl_, request, request->nlmsg_len) < 0) return errno;
    static constexpr size_t kDumpBuffer = 32768;  // MNL_SOCKET_DUMP_SIZE in newer libmnl
    std::vector<char> storage(kDumpBuffer);
    char* buf = storage.data();
    for (;;) {
      const ssize_t n = mnl_socket_recvfrom(nl_, buf, storage.size());
      if (n < 0) return errno;
      const int rc = mnl_cb_run(buf, static_cast<size_t>(n), seq_, port_, cb, data);
      if (rc == MNL_CB_ERROR) return errno;
      if (rc == MNL_CB_STOP) return 0;
    }
  }

 private:
  mnl_socket* nl_;
  unsigned port_ = 0;
  unsigned seq_ = static_cast<unsigned>(time(nullptr));
};

int link_cb(const nlmsghdr* nlh, void* data) {
  auto* links = static_cast<std::vector<LinkFact>*>(data);
  const auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(nlh));
  LinkFact l;
  l.ifindex = ifi->ifi_index;
  l.up = (ifi->ifi_flags & IFF_UP) != 0;
  l.loopback = (ifi->ifi_flags & IFF_LOOPBACK) != 0;
  l.ethernet = ifi->ifi_type == ARPHRD_ETHER;
  for_each_attr(nlh, sizeof(*ifi), [&](const nlattr* attr) {
    if (mnl_attr_get_type(attr) == IFLA_IFNAME && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0) {
      l.name = mnl_attr_get_str(attr);
    }
  });
  links->push_back(std::move(l));
  return MNL_CB_OK;
}

// One route message, reduced to what the rule reads.
struct RouteMsg {
  int family = 0;
  uint8_t type = 0;
  uint8_t dst_len = 0;
  uint32_t table = 0;
  std::string dst;
  struct Hop {
    int ifindex = 0;
    std::string via;
  };
  std::vector<Hop> hops;
};

std::string gateway_of(int family, const nlattr* attr) {
  const size_t want = family == AF_INET6 ? 16 : 4;
  return mnl_attr_get_payload_len(attr) == want ? address_text(family, mnl_attr_get_payload(attr)) : "";
}

RouteMsg parse_route(const nlmsghdr* nlh) {
  const auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
  RouteMsg r;
  r.family = rtm->rtm_family;
  r.type = rtm->rtm_type;
  r.dst_len = rtm->rtm_dst_len;
  r.table = rtm->rtm_table;
  RouteMsg::Hop single;
  for_each_attr(nlh, sizeof(*rtm), [&](const nlattr* attr) {
    switch (mnl_attr_get_type(attr)) {
      case RTA_TABLE:
        if (mnl_attr_get_payload_len(attr) == 4) r.table = mnl_attr_get_u32(attr);
        break;
      case RTA_DST: r.dst = gateway_of(r.family, attr); break;
      case RTA_OIF:
        if (mnl_attr_get_payload_len(attr) == 4) single.ifindex = static_cast<int>(mnl_attr_get_u32(attr));
        break;
      case RTA_GATEWAY: single.via = gateway_of(r.family, attr); break;
      case RTA_MULTIPATH: {
        const auto* p = static_cast<const uint8_t*>(mnl_attr_get_payload(attr));
        size_t left = mnl_attr_get_payload_len(attr);
        while (left >= sizeof(rtnexthop)) {
          const auto* nh = reinterpret_cast<const rtnexthop*>(p);
          if (nh->rtnh_len < sizeof(rtnexthop) || nh->rtnh_len > left) break;
          RouteMsg::Hop hop;
          hop.ifindex = nh->rtnh_ifindex;
          const auto* a = reinterpret_cast<const uint8_t*>(RTNH_DATA(nh));
          size_t alen = nh->rtnh_len - RTNH_LENGTH(0);
          while (alen >= sizeof(nlattr)) {
            const auto* na = reinterpret_cast<const nlattr*>(a);
            if (na->nla_len < sizeof(nlattr) || na->nla_len > alen) break;
            if ((na->nla_type & NLA_TYPE_MASK) == RTA_GATEWAY) hop.via = gateway_of(r.family, na);
            const size_t step = NLA_ALIGN(na->nla_len);
            if (step >= alen) break;
            a += step;
            alen -= step;
          }
          r.hops.push_back(hop);
          const size_t step = RTNH_ALIGN(nh->rtnh_len);
          if (step >= left) break;
          p += step;
          left -= step;
        }
        break;
      }
      default: break;
    }
  });
  if (r.hops.empty() && single.ifindex != 0) r.hops.push_back(single);
  return r;
}

int route_cb(const nlmsghdr* nlh, void* data) {
  if (nlh->nlmsg_type == RTM_NEWROUTE) static_cast<std::vector<RouteMsg>*>(data)->push_back(parse_route(nlh));
  return MNL_CB_OK;
}

bool link_local_v6(const std::string& dst) {
  return dst.size() >= 4 && (dst.compare(0, 3, "fe8") == 0 || dst.compare(0, 3, "fe9") == 0 ||
                             dst.compare(0, 3, "fea") == 0 || dst.compare(0, 3, "feb") == 0);
}

}  // namespace

RoutingFacts read_routing_facts(const std::vector<Address>& services) {
  RoutingFacts facts;
  Netlink nl;
  char buf[MNL_SOCKET_BUFFER_SIZE];
  {
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_GETLINK;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
    ifi->ifi_family = AF_UNSPEC;
    if (const int err = nl.talk(nlh, link_cb, &facts.links)) {
      throw std::runtime_error(std::string("rtnetlink link dump: ") + std::strerror(err));
    }
  }
  for (const int family : {AF_INET, AF_INET6}) {
    std::vector<RouteMsg> routes;
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_GETROUTE;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
    rtm->rtm_family = static_cast<uint8_t>(family);
    if (const int err = nl.talk(nlh, route_cb, &routes)) {
      throw std::runtime_error(std::string("rtnetlink route dump: ") + std::strerror(err));
    }
    for (const RouteMsg& r : routes) {
      if (r.table == RT_TABLE_LOCAL || r.type != RTN_UNICAST) continue;
      if (r.family == AF_INET6 && link_local_v6(r.dst)) continue;
      for (const RouteMsg::Hop& h : r.hops) {
        if (r.dst_len == 0) facts.defaults.push_back({family == AF_INET6, h.ifindex, h.via});
        facts.routed.push_back({h.ifindex, (r.dst_len == 0 ? std::string(family == AF_INET6 ? "::" : "0.0.0.0")
                                                             : r.dst) + "/" + std::to_string(r.dst_len)});
      }
    }
  }
  for (const Address& address : services) {
    ServiceRouteFact fact;
    fact.address = address;
    const bool v4 = address.is_v4();
    std::vector<RouteMsg> answer;
    // fibmatch: the whole matching route, every nexthop of a multipath one, not the one a hash picks.
    for (const bool fibmatch : {true, false}) {
      nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
      nlh->nlmsg_type = RTM_GETROUTE;
      // The ACK ends the answer (a get has no NLMSG_DONE).
      nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
      auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
      rtm->rtm_family = v4 ? AF_INET : AF_INET6;
      rtm->rtm_dst_len = v4 ? 32 : 128;
      if (fibmatch) rtm->rtm_flags = RTM_F_FIB_MATCH;
      if (v4) {
        mnl_attr_put(nlh, RTA_DST, 4, address.v4_bytes().data());
      } else {
        mnl_attr_put(nlh, RTA_DST, 16, address.bytes.data());
      }
      answer.clear();
      const int err = nl.talk(nlh, route_cb, &answer);
      if (err == 0 || err == ENETUNREACH || err == EHOSTUNREACH) break;
    }
    if (!answer.empty()) {
      fact.local = answer.front().type == RTN_LOCAL;
      if (!fact.local && answer.front().type == RTN_UNICAST) {
        for (const RouteMsg::Hop& h : answer.front().hops) fact.ifindexes.push_back(h.ifindex);
      }
    }
    facts.services.push_back(std::move(fact));
  }
  return facts;
}

namespace {

int fwmark_rule_cb(const nlmsghdr* nlh, void* data) {
  auto* out = static_cast<std::vector<std::string>*>(data);
  const auto* frh = static_cast<const fib_rule_hdr*>(mnl_nlmsg_get_payload(nlh));
  uint32_t mark = 0, mask = 0xffffffffu, priority = 0;
  bool has_mark = false;
  for_each_attr(nlh, sizeof(fib_rule_hdr), [&](const nlattr* a) {
    switch (mnl_attr_get_type(a)) {
      case FRA_FWMARK: has_mark = true; mark = mnl_attr_get_u32(a); break;
      case FRA_FWMASK: has_mark = true; mask = mnl_attr_get_u32(a); break;
      case FRA_PRIORITY: priority = mnl_attr_get_u32(a); break;
      default: break;
    }
  });
  // `ip rule` leaves out a zero mark with a zero mask: it selects nothing by mark.
  if (!has_mark || (mark == 0 && mask == 0)) return MNL_CB_OK;
  char text[96];
  std::snprintf(text, sizeof text, "%s priority %u: %sfwmark 0x%x/0x%x", frh->family == AF_INET6 ? "ipv6" : "ipv4",
                priority, (frh->flags & FIB_RULE_INVERT) ? "not " : "", mark, mask);
  out->push_back(text);
  return MNL_CB_OK;
}

}  // namespace

std::vector<std::string> read_fwmark_rules() {
  std::vector<std::string> rules;
  Netlink nl;
  char buf[MNL_SOCKET_BUFFER_SIZE];
  for (const int family : {AF_INET, AF_INET6}) {
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_GETRULE;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    auto* frh = static_cast<fib_rule_hdr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(fib_rule_hdr)));
    frh->family = static_cast<uint8_t>(family);
    if (const int err = nl.talk(nlh, fwmark_rule_cb, &rules)) {
      throw std::runtime_error(std::string("rtnetlink rule dump: ") + std::strerror(err));
    }
  }
  return rules;
}

LinkWatcher::LinkWatcher() {
  fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd_ < 0) throw std::runtime_error(std::string("rtnetlink watcher: ") + std::strerror(errno));
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_IPV4_RULE;
  if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    close(fd_);
    throw std::runtime_error(std::string("rtnetlink watcher: ") + std::strerror(err));
  }
  // IPv6 rules have no bit in the legacy group mask.
  const int v6_rules = RTNLGRP_IPV6_RULE;
  if (setsockopt(fd_, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &v6_rules, sizeof v6_rules) != 0) {
    const int err = errno;
    close(fd_);
    throw std::runtime_error(std::string("rtnetlink watcher, IPv6 rules: ") + std::strerror(err));
  }
}

LinkWatcher::~LinkWatcher() {
  if (fd_ >= 0) close(fd_);
}

bool LinkWatcher::changed() {
  bool any = false;
  char buf[8192];
  for (;;) {
    const ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      any = true;
      continue;
    }
    // ENOBUFS: the kernel dropped announcements; something changed.
    if (n < 0 && errno == ENOBUFS) {
      any = true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return any;
  }
}

}  // namespace syngate::gw
