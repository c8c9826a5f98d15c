// HOST:PORT addresses as every tenet command and server takes them.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace tenet {

struct HostPort {
  std::string host;  // empty: all interfaces (listening only)
  uint16_t port = 0;
  std::string to_string() const { return host + ":" + std::to_string(port); }
};

// "HOST:PORT", "[v6]:PORT" or ":PORT". Port 0 means "pick a free one" where listening.
Result<HostPort> parse_host_port(const std::string& text);

}  // namespace tenet
