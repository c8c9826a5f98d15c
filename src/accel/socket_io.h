// Blocking Unix-stream socket helpers shared by the accelerator server and client: whole-buffer
// reads and gathered writes that retry on EINTR and short transfers, never raise SIGPIPE, and
// report errors that name the peer.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <sys/uio.h>

#include "core/status.h"

namespace tenet::accel {

// Reads exactly `size` bytes. kDataLoss on EOF (with `eof_at_start` set when no byte came),
// kFailedPrecondition on a receive timeout.
Status read_full(int fd, void* data, size_t size, bool* eof_at_start = nullptr);
// Writes every byte of every iovec (MSG_NOSIGNAL).
Status write_all(int fd, std::span<const iovec> parts);
// Connects to the socket at `path`; receive/send timeouts of `timeout_s` (0: none).
Result<int> connect_unix(const std::string& path, int timeout_s);
// Binds and listens at `path`, replacing a stale socket file (one nothing listens on) but never
// another kind of file or a live socket.
Result<int> listen_unix(const std::string& path, int backlog);

}  // namespace tenet::accel
