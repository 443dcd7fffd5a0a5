#include "bindings/cli/control_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace keyturn::agent {

namespace {

// A status of many credentials is large; anything past this is not an answer.
constexpr std::size_t kMaxAnswerSize = 256u << 20;

[[noreturn]] void unreachable(const std::string &socket_path, const std::string &why) {
    throw AgentUnreachable("no agent answers on " + socket_path + ": " + why);
}

// Waits until `fd` is ready for `events` or the deadline passes.
bool wait_for(int fd, short events, std::chrono::steady_clock::time_point deadline) {
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{fd, events, 0};
        const int n = ::poll(&p, 1, static_cast<int>(left.count()));
        if (n > 0) return true;
        if (n < 0 && errno != EINTR) return false;
    }
}

}  // namespace

std::string call_agent(const std::string &socket_path, const std::string &request,
                       std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (socket_path.size() >= sizeof address.sun_path) unreachable(socket_path, "path too long");
    std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);

    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) unreachable(socket_path, std::strerror(errno));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};

    if (::connect(fd, reinterpret_cast<const sockaddr *>(&address), sizeof address) != 0) {
        unreachable(socket_path, std::strerror(errno));
    }

    const std::string line = request + "\n";
    std::size_t sent = 0;
    while (sent < line.size()) {
        if (!wait_for(fd, POLLOUT, deadline)) unreachable(socket_path, "timed out sending");
        const ssize_t n = ::send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) unreachable(socket_path, std::strerror(errno));
        sent += static_cast<std::size_t>(n);
    }

    std::string answer;
    char buffer[16384];
    for (;;) {
        if (!wait_for(fd, POLLIN, deadline))
            unreachable(socket_path, "timed out waiting for an answer");
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) unreachable(socket_path, std::strerror(errno));
        if (n == 0) break;
        answer.append(buffer, static_cast<std::size_t>(n));
        if (answer.find('\n') != std::string::npos) break;
        if (answer.size() > kMaxAnswerSize) unreachable(socket_path, "the answer is too large");
    }
    const std::size_t end = answer.find('\n');
    if (end == std::string::npos)
        unreachable(socket_path, "the connection closed without an answer");
    answer.resize(end);
    return answer;
}

}  // namespace keyturn::agent
