#include "core/address.h"

namespace tenet {

Result<HostPort> parse_host_port(const std::string& text) {
  std::string host;
  std::string port;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return invalid_argument("address '{}' is not [HOST]:PORT", text);
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos) return invalid_argument("address '{}' is not HOST:PORT", text);
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) {
    return invalid_argument("address '{}' has no valid port", text);
  }
  const unsigned long p = std::stoul(port);
  if (p > 65535) return invalid_argument("port {} out of range in '{}'", p, text);
  return HostPort{host, static_cast<uint16_t>(p)};
}

}  // namespace tenet
