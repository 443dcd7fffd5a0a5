// A token endpoint for the HTTP refresh benchmark: HTTP/1.1 on 127.0.0.1, keep-alive,
// one fixed JSON answer to every POST. It runs in a process of its own so that the
// CPU time of each client is measured apart from the server's.
//
//   http_endpoint [--port P] [--port-file FILE]
//
//   POST <any path>   200 {"access_token": "...", "token_type": "Bearer",
//                          "expires_in": 3600}
//   GET /stats        200 {"connections": N, "requests": M, "cpu_s": S}: connections
//                     accepted, token answers given and this process's CPU seconds so
//                     far, so that a benchmark can tell how many connections a client
//                     opened for its requests
//
// Port 0 (the default) takes a free port. The port is printed on standard output as
// "listening 127.0.0.1:<port>" and, with --port-file, written to FILE once the socket
// listens. SIGINT or SIGTERM ends the process.
//
// One thread, callback handlers, the answer serialised once at start: the server should
// cost far less per request than any client measured against it.

#include <sys/resource.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

constexpr std::string_view kTokenBody =
    R"({"access_token":"kt-bench-0123456789abcdef0123456789abcdef","token_type":"Bearer",)"
    R"("expires_in":3600})";

// Requests carry a small JSON body; anything larger is a client bug.
constexpr std::uint64_t kBodyLimit = 64 * 1024;

struct Counters {
    std::uint64_t connections = 0;
    std::uint64_t requests = 0;
};

std::string serialise(http::status status, std::string_view content_type, std::string_view body,
                      bool keep_alive) {
    http::response<http::string_body> response{status, 11};
    response.set(http::field::server, "keyturn-bench");
    response.set(http::field::content_type, content_type);
    response.keep_alive(keep_alive);
    response.body() = std::string(body);
    response.prepare_payload();
    std::ostringstream out;
    out << response;
    return out.str();
}

double cpu_seconds() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    auto seconds = [](const timeval &t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// The two token answers, for a connection that stays open and one that closes.
struct Answers {
    std::string token_keep_alive;
    std::string token_close;
    std::string not_found;
};

// One accepted connection: read a request, answer it, read the next, until the client
// closes or asks to close.
class Session : public std::enable_shared_from_this<Session> {
  public:
    Session(tcp::socket socket, const Answers &answers, Counters &counters)
        : socket_(std::move(socket)), answers_(answers), counters_(counters) {}

    void start() { do_read(); }

  private:
    void do_read() {
        parser_.emplace();
        parser_->body_limit(kBodyLimit);
        http::async_read(
            socket_, buffer_, *parser_,
            [self = shared_from_this()](error_code ec, std::size_t) { self->on_read(ec); });
    }

    void on_read(error_code ec) {
        // The client closed the connection between requests: the normal end.
        if (ec == http::error::end_of_stream) return close();
        if (ec) return close();

        const auto &request = parser_->get();
        keep_alive_ = request.keep_alive();
        if (request.method() == http::verb::post) {
            ++counters_.requests;
            answer_ = keep_alive_ ? &answers_.token_keep_alive : &answers_.token_close;
        } else if (request.method() == http::verb::get && request.target() == "/stats") {
            char body[160];
            std::snprintf(body, sizeof body,
                          "{\"connections\":%llu,\"requests\":%llu,\"cpu_s\":%.3f}\n",
                          static_cast<unsigned long long>(counters_.connections),
                          static_cast<unsigned long long>(counters_.requests), cpu_seconds());
            stats_ = serialise(http::status::ok, "application/json", body, keep_alive_);
            answer_ = &stats_;
        } else {
            answer_ = &answers_.not_found;
            keep_alive_ = false;
        }
        asio::async_write(socket_, asio::buffer(*answer_),
                          [self = shared_from_this()](error_code write_ec, std::size_t) {
                              self->on_write(write_ec);
                          });
    }

    void on_write(error_code ec) {
        if (ec || !keep_alive_) return close();
        do_read();
    }

    void close() {
        error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_send, ignored);
        socket_.close(ignored);
    }

    tcp::socket socket_;
    const Answers &answers_;
    Counters &counters_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    const std::string *answer_ = nullptr;
    std::string stats_;
    bool keep_alive_ = true;
};

class Listener {
  public:
    Listener(asio::io_context &io, unsigned short port, const Answers &answers, Counters &counters)
        : acceptor_(io), answers_(answers), counters_(counters) {
        const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(asio::socket_base::reuse_address(true));
        acceptor_.bind(endpoint);
        // The kernel caps the backlog at net.core.somaxconn; a client that opens
        // thousands of connections at once should meet the largest queue allowed.
        acceptor_.listen(65535);
    }

    unsigned short port() const { return acceptor_.local_endpoint().port(); }

    void do_accept() {
        acceptor_.async_accept(
            [this](error_code ec, tcp::socket socket) { on_accept(ec, std::move(socket)); });
    }

  private:
    void on_accept(error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted) return;  // shutting down
        if (!ec) {
            ++counters_.connections;
            error_code ignored;
            socket.set_option(tcp::no_delay(true), ignored);
            std::make_shared<Session>(std::move(socket), answers_, counters_)->start();
        } else {
            // Out of descriptors or a connection reset while queued: keep accepting.
            std::fprintf(stderr, "http_endpoint: accept failed: %s\n", ec.message().c_str());
        }
        do_accept();
    }

    tcp::acceptor acceptor_;
    const Answers &answers_;
    Counters &counters_;
};

[[noreturn]] void usage(int status) {
    std::fprintf(status == 0 ? stdout : stderr,
                 "usage: http_endpoint [--port P] [--port-file FILE]\n");
    std::exit(status);
}

}  // namespace

int main(int argc, char **argv) {
    unsigned short port = 0;
    std::string port_file;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--port" && i + 1 < argc) {
            port = static_cast<unsigned short>(std::atoi(argv[++i]));
        } else if (arg == "--port-file" && i + 1 < argc) {
            port_file = argv[++i];
        } else if (arg == "-h" || arg == "--help") {
            usage(0);
        } else {
            usage(2);
        }
    }

    Answers answers;
    answers.token_keep_alive = serialise(http::status::ok, "application/json", kTokenBody, true);
    answers.token_close = serialise(http::status::ok, "application/json", kTokenBody, false);
    answers.not_found = serialise(http::status::not_found, "text/plain", "not found\n", false);
    Counters counters;

    try {
        asio::io_context io(1);
        Listener listener(io, port, answers, counters);
        listener.do_accept();
        asio::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([&io](error_code, int) { io.stop(); });

        if (!port_file.empty()) {
            // Written to a temporary name and renamed, so a reader never sees half a port.
            const std::string temporary = port_file + ".tmp";
            std::ofstream(temporary) << listener.port() << '\n';
            std::rename(temporary.c_str(), port_file.c_str());
        }
        std::printf("listening 127.0.0.1:%u\n", listener.port());
        std::fflush(stdout);
        io.run();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "http_endpoint: %s\n", e.what());
        return 1;
    }
    std::printf("stopped: %llu connections, %llu token answers, %.3f CPU s\n",
                static_cast<unsigned long long>(counters.connections),
                static_cast<unsigned long long>(counters.requests), cpu_seconds());
    return 0;
}
