// Small POSIX socket helpers shared by the host runtime (untrusted side): address parsing,
// listening and connecting on TCP. The host only ever moves ciphertext (TLS terminates inside the
// enclaves), so nothing here touches plaintext.
#pragma once

#include <cstdint>
#include <string>

#include "core/address.h"
#include "core/status.h"

namespace tenet::host {

using tenet::HostPort;
using tenet::parse_host_port;

// A listening TCP socket (SO_REUSEADDR, CLOEXEC). Returns the fd; `bound_port` gets the real port.
Result<int> listen_tcp(const HostPort& addr, int backlog, uint16_t* bound_port);
// A connected TCP socket, or an error within `timeout_ms`.
Result<int> connect_tcp(const HostPort& addr, int timeout_ms);

}  // namespace tenet::host
