#include "attest/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tenet::attest {

Result<crypto::Bytes> read_pseudo_file(const std::string& path, size_t max_size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return not_found("cannot open '{}': {}", path, std::strerror(errno));
  crypto::Bytes out;
  uint8_t buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      return internal_error("reading '{}': {}", path, std::strerror(e));
    }
    if (n == 0) break;
    if (static_cast<size_t>(n) > max_size - out.size()) {
      ::close(fd);
      return out_of_range("'{}' holds more than {} bytes", path, max_size);
    }
    out.insert(out.end(), buf, buf + n);
  }
  ::close(fd);
  return out;
}

Status write_pseudo_file(const std::string& path, crypto::ByteSpan data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return not_found("cannot open '{}' for writing: {}", path, std::strerror(errno));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      return internal_error("writing '{}': {}", path, std::strerror(e));
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) return internal_error("closing '{}': {}", path, std::strerror(errno));
  return ok_status();
}

}  // namespace tenet::attest
