#include "agent/sink_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace keyturn::agent {

namespace {

class Fd {
  public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    int get() const noexcept { return fd_; }
    int release() noexcept {
        int fd = fd_;
        fd_ = -1;
        return fd;
    }

  private:
    int fd_;
};

[[noreturn]] void fail(const std::string &path, const std::string &what, int err) {
    throw std::runtime_error("sink " + path + ": " + what + ": " + std::strerror(err));
}

}  // namespace

void write_sink_file(const std::string &path, std::string_view bytes, unsigned mode) {
    const std::size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "."
                            : slash == 0               ? "/"
                                                       : path.substr(0, slash);
    const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    std::string temp = (dir == "/" ? "" : dir) + "/." + name + ".tmp.XXXXXX";

    // mkostemp creates the file exclusively with mode 0600.
    Fd fd(::mkostemp(temp.data(), O_CLOEXEC));
    if (fd.get() < 0) fail(path, "cannot create a temporary file in " + dir, errno);
    try {
        std::size_t done = 0;
        while (done < bytes.size()) {
            ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) fail(path, "cannot write " + temp, errno);
            done += static_cast<std::size_t>(n);
        }
        // The final mode is set while the file is still under its temporary name, so
        // that the sink's name never shows a file with another mode.
        if (::fchmod(fd.get(), static_cast<mode_t>(mode)) != 0) {
            fail(path, "cannot set the mode of " + temp, errno);
        }
        if (::fsync(fd.get()) != 0) fail(path, "cannot fsync " + temp, errno);
        if (::close(fd.release()) != 0) fail(path, "cannot close " + temp, errno);
        if (::rename(temp.c_str(), path.c_str()) != 0) fail(path, "cannot rename over", errno);
    } catch (...) {
        ::unlink(temp.c_str());
        throw;
    }

    Fd dirfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dirfd.get() < 0) fail(path, "cannot open directory " + dir, errno);
    if (::fsync(dirfd.get()) != 0) fail(path, "cannot fsync directory " + dir, errno);
}

}  // namespace keyturn::agent
