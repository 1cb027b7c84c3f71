// Interface facts the kernel gives by ioctl (for when rtnetlink cannot be read, and the driver
// name, which rtnetlink does not report): see interfaces.hpp.
#include "interfaces.hpp"

#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace syngate::gw {

std::vector<std::string> default_interfaces() {
  std::vector<std::string> out;
  struct if_nameindex* list = if_nameindex();
  if (!list) return out;
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  for (struct if_nameindex* i = list; fd >= 0 && i->if_index != 0; ++i) {
    ifreq req{};
    std::strncpy(req.ifr_name, i->if_name, IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFFLAGS, &req) != 0) continue;
    if ((req.ifr_flags & IFF_UP) && !(req.ifr_flags & IFF_LOOPBACK)) out.emplace_back(i->if_name);
  }
  if (fd >= 0) close(fd);
  if_freenameindex(list);
  return out;
}

std::string interface_driver(const std::string& interface) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  ethtool_drvinfo info{};
  info.cmd = ETHTOOL_GDRVINFO;
  ifreq req{};
  std::strncpy(req.ifr_name, interface.c_str(), IFNAMSIZ - 1);
  req.ifr_data = reinterpret_cast<char*>(&info);
  const int rc = ioctl(fd, SIOCETHTOOL, &req);
  close(fd);
  if (rc != 0) return "";
  return std::string(info.driver, strnlen(info.driver, sizeof info.driver));
}

}  // namespace syngate::gw
