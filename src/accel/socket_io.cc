// Unix-stream socket helpers (see socket_io.h).
#include "accel/socket_io.h"

#include <cerrno>
#include <cstring>
#include <vector>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace tenet::accel {
namespace {

sockaddr_un unix_addr(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), std::min(path.size(), sizeof(addr.sun_path) - 1));
  return addr;
}

}  // namespace

Status read_full(int fd, void* data, size_t size, bool* eof_at_start) {
  auto* p = static_cast<uint8_t*>(data);
  size_t done = 0;
  if (eof_at_start) *eof_at_start = false;
  while (done < size) {
    const ssize_t n = ::recv(fd, p + done, size - done, 0);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n == 0) {
      if (done == 0 && eof_at_start) *eof_at_start = true;
      return data_loss("connection closed after {} of {} bytes", done, size);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return failed_precondition("timed out waiting for the peer ({} of {} bytes)", done, size);
    } else if (errno != EINTR) {
      return data_loss("recv failed: {}", std::strerror(errno));
    }
  }
  return ok_status();
}

Status write_all(int fd, std::span<const iovec> parts) {
  std::vector<iovec> iov(parts.begin(), parts.end());
  size_t first = 0;
  while (first < iov.size()) {
    if (iov[first].iov_len == 0) {
      ++first;
      continue;
    }
    msghdr msg{};
    msg.msg_iov = iov.data() + first;
    msg.msg_iovlen = std::min<size_t>(iov.size() - first, IOV_MAX);
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return failed_precondition("timed out sending to the peer");
      return data_loss("send failed: {}", std::strerror(errno));
    }
    size_t left = static_cast<size_t>(n);
    while (left > 0 && first < iov.size()) {
      const size_t take = std::min(left, iov[first].iov_len);
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + take;
      iov[first].iov_len -= take;
      left -= take;
      if (iov[first].iov_len == 0) ++first;
    }
  }
  return ok_status();
}

Result<int> connect_unix(const std::string& path, int timeout_s) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return internal_error("socket(AF_UNIX): {}", std::strerror(errno));
  if (timeout_s > 0) {
    timeval tv{};
    tv.tv_sec = timeout_s;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  const sockaddr_un addr = unix_addr(path);
  int rc;
  do {
    rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    ::close(fd);
    return failed_precondition("cannot connect to accelerator at unix:{}: {}", path, std::strerror(err));
  }
  return fd;
}

Result<int> listen_unix(const std::string& path, int backlog) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return failed_precondition("unix:{} exists and is not a socket", path);
    auto live = connect_unix(path, 1);
    if (live.ok()) {
      ::close(*live);
      return failed_precondition("unix:{} is in use by another server", path);
    }
    ::unlink(path.c_str());  // stale socket of a server that is gone
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return internal_error("socket(AF_UNIX): {}", std::strerror(errno));
  const sockaddr_un addr = unix_addr(path);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    ::close(fd);
    return failed_precondition("cannot bind unix:{}: {}", path, std::strerror(err));
  }
  if (::listen(fd, backlog) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return failed_precondition("cannot listen on unix:{}: {}", path, std::strerror(err));
  }
  return fd;
}

}  // namespace tenet::accel
