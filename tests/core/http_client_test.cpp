// The HTTP client against servers started here, on 127.0.0.1: plain and TLS (with
// certificates made for the run by the openssl program), keep-alive, faults and
// timeouts. The client's io_context runs on two threads throughout.

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/http_client.hpp"

namespace keyturn {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using namespace std::chrono_literals;

constexpr std::string_view kSecret = "kt-secret-HTTP-5d1e";

bool contains(std::string_view text, std::string_view part) {
    return text.find(part) != std::string_view::npos;
}

// ---------------------------------------------------------------------------------
// Certificates for the run

struct Certs {
    std::filesystem::path dir;
    std::string path(const std::string &name) const { return (dir / name).string(); }
    std::string ca() const { return path("ca.pem"); }
};

bool openssl(const std::filesystem::path &dir, const std::string &args) {
    const std::string command =
        "cd '" + dir.string() + "' && openssl " + args + " >/dev/null 2>&1 </dev/null";
    return std::system(command.c_str()) == 0;
}

bool make_ca(const std::filesystem::path &dir, const std::string &name) {
    return openssl(dir,
                   "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                   "-keyout " +
                       name + ".key -out " + name + ".pem -days 2 -subj /CN=" + name +
                       " -addext basicConstraints=critical,CA:TRUE"
                       " -addext keyUsage=critical,keyCertSign,cRLSign");
}

bool make_leaf(const std::filesystem::path &dir, const std::string &name, const std::string &ca,
               const std::string &extensions) {
    std::ofstream(dir / (name + ".ext")) << "basicConstraints=critical,CA:FALSE\n"
                                         << "keyUsage=critical,digitalSignature\n"
                                         << extensions;
    return openssl(dir, "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " +
                            name + ".key -out " + name + ".csr -subj /CN=" + name) &&
           openssl(dir, "x509 -req -in " + name + ".csr -CA " + ca + ".pem -CAkey " + ca +
                            ".key -set_serial 0x" + std::to_string(std::rand() + 1000) +
                            " -days 2 -out " + name + ".pem -extfile " + name + ".ext");
}

// Made once for the whole file: a trusted CA, a server certificate for localhost and
// 127.0.0.1, one for a wrong name, one for the right names from an untrusted CA, and a
// client certificate.
const Certs *certs() {
    static std::optional<Certs> made = []() -> std::optional<Certs> {
        std::string pattern = (std::filesystem::temp_directory_path() / "keyturn-http-XXXXXX");
        if (::mkdtemp(pattern.data()) == nullptr) return std::nullopt;
        Certs c{pattern};
        const std::string server_names =
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
        const bool ok =
            make_ca(c.dir, "ca") && make_ca(c.dir, "rogue-ca") &&
            make_leaf(c.dir, "server", "ca", server_names) &&
            make_leaf(c.dir, "wrong", "ca",
                      "subjectAltName=DNS:wrong.invalid\nextendedKeyUsage=serverAuth\n") &&
            make_leaf(c.dir, "rogue", "rogue-ca", server_names) &&
            make_leaf(c.dir, "client", "ca", "extendedKeyUsage=clientAuth\n");
        if (!ok) return std::nullopt;
        return c;
    }();
    return made ? &*made : nullptr;
}

// ---------------------------------------------------------------------------------
// A test server: a coroutine per connection on its own io_context and thread.

struct Reply {
    enum class Then {
        keep_open,  // wait for the next request
        close,      // close the connection cleanly after writing
        reset,      // write, wait a moment, then reset the connection (RST)
        hang,       // write nothing more and keep the connection open
        drop,       // close without writing anything
    };
    std::string raw;
    Then then = Then::keep_open;
};

struct Seen {
    std::string method;
    std::string target;
    std::string body;
    std::string authorization;
    std::string content_length;
    std::size_t index_on_connection = 0;  // 0 for the first request on a connection
};

using Handler = std::function<Reply(const Seen &)>;

std::string response(int status, std::string_view body, std::string_view extra_headers = "") {
    return "HTTP/1.1 " + std::to_string(status) +
           " X\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
           std::string(extra_headers) + "\r\n" + std::string(body);
}

struct ServerTls {
    std::string cert;
    std::string key;
    std::string client_ca;  // non-empty: require a client certificate from this CA
};

class TestServer {
  public:
    explicit TestServer(Handler handler, std::optional<ServerTls> tls = std::nullopt)
        : handler_(std::move(handler)), acceptor_(io_) {
        if (tls) {
            ssl_.emplace(ssl::context::tls_server);
            ssl_->use_certificate_chain_file(tls->cert);
            ssl_->use_private_key_file(tls->key, ssl::context::pem);
            if (!tls->client_ca.empty()) {
                ssl_->load_verify_file(tls->client_ca);
                ssl_->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
            }
        }
        tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(tcp::acceptor::reuse_address(true));
        acceptor_.bind(endpoint);
        acceptor_.listen();
        port_ = acceptor_.local_endpoint().port();
        asio::co_spawn(io_, accept_loop(), asio::detached);
        thread_ = std::thread([this] { io_.run(); });
    }

    ~TestServer() {
        io_.stop();
        thread_.join();
    }

    std::uint16_t port() const { return port_; }
    // The SNI name of each TLS connection, "(none)" when the client sent none.
    std::vector<std::string> server_names() const {
        std::lock_guard lock(mutex_);
        return server_names_;
    }
    int connections() const { return connections_.load(); }
    int requests() const { return requests_.load(); }
    std::string url(std::string_view path, std::string_view host = "127.0.0.1") const {
        return std::string(ssl_ ? "https://" : "http://") + std::string(host) + ":" +
               std::to_string(port_) + std::string(path);
    }

  private:
    asio::awaitable<void> accept_loop() {
        for (;;) {
            error_code ec;
            tcp::socket socket =
                co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
            if (ec) co_return;
            ++connections_;
            asio::co_spawn(io_, session(std::move(socket)), asio::detached);
        }
    }

    asio::awaitable<void> session(tcp::socket socket) {
        if (!ssl_) {
            co_await serve(socket, socket);
            co_return;
        }
        ssl::stream<tcp::socket> stream(std::move(socket), *ssl_);
        error_code ec;
        co_await stream.async_handshake(ssl::stream_base::server,
                                        asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return;
        if (const char *name =
                SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name)) {
            std::lock_guard lock(mutex_);
            server_names_.emplace_back(name);
        } else {
            std::lock_guard lock(mutex_);
            server_names_.emplace_back("(none)");
        }
        co_await serve(stream, stream.next_layer());
    }

    template <class Stream>
    asio::awaitable<void> serve(Stream &stream, tcp::socket &socket) {
        beast::flat_buffer buffer;
        for (std::size_t index = 0;; ++index) {
            http::request<http::string_body> request;
            error_code ec;
            co_await http::async_read(stream, buffer, request,
                                      asio::redirect_error(asio::use_awaitable, ec));
            if (ec) co_return;
            ++requests_;
            Seen seen{std::string(request.method_string()),
                      std::string(request.target()),
                      request.body(),
                      std::string(request[http::field::authorization]),
                      std::string(request[http::field::content_length]),
                      index};
            Reply reply = handler_(seen);
            if (!reply.raw.empty()) {
                co_await asio::async_write(stream, asio::buffer(reply.raw),
                                           asio::redirect_error(asio::use_awaitable, ec));
                if (ec) co_return;
            }
            switch (reply.then) {
                case Reply::Then::keep_open:
                    continue;
                case Reply::Then::close:
                case Reply::Then::drop:
                    socket.shutdown(tcp::socket::shutdown_both, ec);
                    socket.close(ec);
                    co_return;
                case Reply::Then::reset: {
                    asio::steady_timer pause(io_, 100ms);
                    co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                    socket.set_option(asio::socket_base::linger(true, 0), ec);
                    socket.close(ec);
                    co_return;
                }
                case Reply::Then::hang: {
                    asio::steady_timer pause(io_, 30s);
                    co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                    co_return;
                }
            }
        }
    }

    std::optional<ssl::context> ssl_;  // outlives the sessions, destroyed with io_
    Handler handler_;
    asio::io_context io_;
    tcp::acceptor acceptor_;
    std::uint16_t port_ = 0;
    std::atomic<int> connections_{0};
    std::atomic<int> requests_{0};
    mutable std::mutex mutex_;
    std::vector<std::string> server_names_;
    std::thread thread_;
};

Handler always(int status, std::string body, std::string extra_headers = "") {
    return [=](const Seen &) { return Reply{response(status, body, extra_headers)}; };
}

// ---------------------------------------------------------------------------------
// The fixture: a client on an io_context run by two threads.

class HttpClientTest : public ::testing::Test {
  protected:
    void SetUp() override {
        make_client({});
        for (int i = 0; i < 2; ++i)
            threads_.emplace_back([this] { io_.run(); });
    }

    void make_client(HttpClientOptions options) {
        client_.reset();
        options.log = [this](LogLevel level, std::string line) {
            std::lock_guard lock(log_mutex_);
            logs_.emplace_back(level, std::move(line));
        };
        client_.emplace(io_, std::move(options));
    }

    void TearDown() override {
        client_.reset();
        work_.reset();
        for (auto &t : threads_)
            t.join();
    }

    // Sends and waits (at most 10 s) for the result, checking that it arrives once, on
    // an io thread.
    HttpResult fetch(HttpRequest request) {
        struct Shared {
            std::promise<HttpResult> promise;
            std::atomic<int> calls{0};
        };
        auto shared = std::make_shared<Shared>();
        auto future = shared->promise.get_future();
        const auto caller = std::this_thread::get_id();
        client_->send(std::move(request), [shared, caller](HttpResult result) {
            EXPECT_NE(std::this_thread::get_id(), caller);
            if (++shared->calls == 1) shared->promise.set_value(std::move(result));
        });
        if (future.wait_for(10s) != std::future_status::ready) {
            ADD_FAILURE() << "no result within 10 s";
            return HttpResult{};
        }
        HttpResult result = future.get();
        EXPECT_EQ(shared->calls.load(), 1);
        return result;
    }

    HttpResult get(const std::string &url, HttpTlsOptions tls = {}) {
        HttpRequest request;
        request.url = url;
        request.tls = std::move(tls);
        return fetch(std::move(request));
    }

    std::vector<std::pair<LogLevel, std::string>> logs() {
        std::lock_guard lock(log_mutex_);
        return logs_;
    }

    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
    std::vector<std::thread> threads_;
    std::optional<HttpClient> client_;
    std::mutex log_mutex_;
    std::vector<std::pair<LogLevel, std::string>> logs_;
};

#define REQUIRE_CERTS()       \
    const Certs *c = certs(); \
    ASSERT_NE(c, nullptr) << "could not make test certificates with the openssl program"

// ---- plain HTTP

TEST_F(HttpClientTest, PlainGetReturnsStatusHeadersAndBody) {
    TestServer server(always(200, R"({"ok":true})", "Content-Type: application/json\r\n"));
    HttpResult r = get(server.url("/token?x=1"));
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body.str(), R"({"ok":true})");
    EXPECT_EQ(find_header(r.headers, "content-type"), "application/json");
    EXPECT_FALSE(r.reused_connection);
}

TEST_F(HttpClientTest, PlainPostSendsBodyHeadersAndLength) {
    std::mutex mutex;
    Seen seen;
    TestServer server([&](const Seen &s) {
        std::lock_guard lock(mutex);
        seen = s;
        return Reply{response(200, "{}")};
    });
    HttpRequest request;
    request.method = "POST";
    request.url = server.url("/oauth/token");
    request.headers = {{"Authorization", "Basic " + std::string(kSecret)},
                       {"Content-Type", "application/x-www-form-urlencoded"}};
    request.body = ScrubbedString("grant_type=refresh_token&refresh_token=" + std::string(kSecret));
    HttpResult r = fetch(std::move(request));
    ASSERT_TRUE(r.ok()) << r.error;
    std::lock_guard lock(mutex);
    EXPECT_EQ(seen.method, "POST");
    EXPECT_EQ(seen.target, "/oauth/token");
    EXPECT_EQ(seen.body, "grant_type=refresh_token&refresh_token=" + std::string(kSecret));
    EXPECT_EQ(seen.content_length, std::to_string(seen.body.size()));
    EXPECT_EQ(seen.authorization, "Basic " + std::string(kSecret));
}

TEST_F(HttpClientTest, ChunkedResponseIsAssembled) {
    TestServer server([](const Seen &) {
        return Reply{
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"};
    });
    HttpResult r = get(server.url("/"));
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.body.str(), "hello world");
}

TEST_F(HttpClientTest, KeepAliveCarriesTenRequestsOnOneConnection) {
    TestServer server(always(200, "ok"));
    for (int i = 0; i < 10; ++i) {
        HttpResult r = get(server.url("/n"));
        ASSERT_TRUE(r.ok()) << r.error;
        EXPECT_EQ(r.reused_connection, i > 0);
    }
    EXPECT_EQ(server.connections(), 1);
    EXPECT_EQ(server.requests(), 10);
    EXPECT_EQ(client_->idle_connections(), 1u);
}

TEST_F(HttpClientTest, HeadResponseHasNoBodyToWaitFor) {
    TestServer server(always(200, "not sent for HEAD"));
    HttpRequest request;
    request.method = "HEAD";
    request.url = server.url("/");
    request.options.request_timeout = 2s;
    HttpResult r = fetch(std::move(request));
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_TRUE(r.body.str().empty());
}

TEST_F(HttpClientTest, IdleConnectionsAreClosedAfterTheIdleTimeout) {
    HttpClientOptions options;
    options.idle_timeout = 100ms;
    make_client(std::move(options));
    TestServer server(always(200, "ok"));
    ASSERT_TRUE(get(server.url("/")).ok());
    EXPECT_EQ(client_->idle_connections(), 1u);
    for (int i = 0; i < 200 && client_->idle_connections() != 0; ++i)
        std::this_thread::sleep_for(10ms);  // bounded: 2 s
    EXPECT_EQ(client_->idle_connections(), 0u);
    HttpResult r = get(server.url("/"));
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_FALSE(r.reused_connection);
    EXPECT_EQ(server.connections(), 2);
}

TEST_F(HttpClientTest, IdleConnectionsPerOriginAreCapped) {
    HttpClientOptions options;
    options.max_idle_per_origin = 2;
    make_client(std::move(options));
    TestServer server([](const Seen &) {
        std::this_thread::sleep_for(20ms);  // keeps the exchanges overlapping
        return Reply{response(200, "ok")};
    });
    std::vector<std::future<HttpResult>> results;
    for (int i = 0; i < 4; ++i) {
        auto promise = std::make_shared<std::promise<HttpResult>>();
        results.push_back(promise->get_future());
        HttpRequest request;
        request.url = server.url("/");
        client_->send(std::move(request),
                      [promise](HttpResult result) { promise->set_value(std::move(result)); });
    }
    for (auto &result : results) {
        ASSERT_EQ(result.wait_for(5s), std::future_status::ready);
        EXPECT_TRUE(result.get().ok());
    }
    EXPECT_EQ(server.connections(), 4);
    EXPECT_EQ(client_->idle_connections(), 2u);
}

// Sends without waiting; the future holds the result.
std::future<HttpResult> send_async(HttpClient &client, HttpRequest request) {
    auto promise = std::make_shared<std::promise<HttpResult>>();
    auto future = promise->get_future();
    client.send(std::move(request),
                [promise](HttpResult result) { promise->set_value(std::move(result)); });
    return future;
}

TEST_F(HttpClientTest, AtMostTheCapOfRequestsRunPerOriginAndTheRestWaitTheirTurn) {
    HttpClientOptions options;
    options.max_connections_per_origin = 2;
    options.max_idle_per_origin = 2;
    make_client(std::move(options));
    std::mutex mutex;
    std::vector<std::string> order;
    TestServer server([&](const Seen &s) {
        std::this_thread::sleep_for(20ms);  // keeps the exchanges overlapping
        std::lock_guard lock(mutex);
        order.push_back(s.target);
        return Reply{response(200, "ok")};
    });
    std::vector<std::future<HttpResult>> results;
    for (int i = 0; i < 8; ++i) {
        HttpRequest request;
        request.url = server.url("/n" + std::to_string(i));
        results.push_back(send_async(*client_, std::move(request)));
    }
    EXPECT_GE(client_->waiting_requests(), 1u);
    int reused = 0;
    for (auto &result : results) {
        ASSERT_EQ(result.wait_for(5s), std::future_status::ready);
        HttpResult r = result.get();
        EXPECT_TRUE(r.ok()) << r.error;
        reused += r.reused_connection ? 1 : 0;
    }
    // Two connections carried all eight, and the waiting ones went in the order sent.
    EXPECT_EQ(server.connections(), 2);
    EXPECT_EQ(reused, 6);
    EXPECT_EQ(client_->waiting_requests(), 0u);
    std::lock_guard lock(mutex);
    ASSERT_EQ(order.size(), 8u);
    EXPECT_EQ(std::vector(order.begin() + 2, order.end()),
              (std::vector<std::string>{"/n2", "/n3", "/n4", "/n5", "/n6", "/n7"}));
}

TEST_F(HttpClientTest, ARequestThatWaitsPastItsTimeoutFailsWithoutWaitingMore) {
    HttpClientOptions options;
    options.max_connections_per_origin = 1;
    make_client(std::move(options));
    TestServer server([](const Seen &) { return Reply{"", Reply::Then::hang}; });
    HttpRequest slow;
    slow.url = server.url("/token");
    slow.options.request_timeout = 8s;
    auto first = send_async(*client_, std::move(slow));
    HttpRequest waiting;
    waiting.method = "POST";
    waiting.url = server.url("/token?code=" + std::string(kSecret));
    waiting.body = ScrubbedString("refresh_token=" + std::string(kSecret));
    waiting.options.request_timeout = 200ms;
    auto second = send_async(*client_, std::move(waiting));
    ASSERT_EQ(second.wait_for(5s), std::future_status::ready);
    // The first request is still in flight: the second did not wait for it to end.
    EXPECT_EQ(first.wait_for(0s), std::future_status::timeout);
    HttpResult r = second.get();
    EXPECT_EQ(r.kind, HttpErrorKind::timeout);
    EXPECT_TRUE(r.retryable);
    EXPECT_EQ(r.error, "POST " + server.url("/token") +
                           ": timed out after 0.2s (request) waiting for a free connection: 1 in "
                           "use to this origin, the most allowed");
    EXPECT_FALSE(contains(r.error, kSecret));
    EXPECT_EQ(server.requests(), 1);
    EXPECT_EQ(client_->waiting_requests(), 0u);
    client_->shutdown();
    ASSERT_EQ(first.wait_for(5s), std::future_status::ready);
}

TEST_F(HttpClientTest, ShutdownEndsTheRequestsThatWait) {
    HttpClientOptions options;
    options.max_connections_per_origin = 1;
    make_client(std::move(options));
    TestServer server([](const Seen &) { return Reply{"", Reply::Then::hang}; });
    std::vector<std::future<HttpResult>> results;
    for (int i = 0; i < 4; ++i) {
        HttpRequest request;
        request.url = server.url("/token");
        results.push_back(send_async(*client_, std::move(request)));
    }
    for (int i = 0; i < 200 && server.requests() == 0; ++i)
        std::this_thread::sleep_for(5ms);  // bounded: 1 s
    EXPECT_EQ(client_->waiting_requests(), 3u);
    client_->shutdown();
    for (auto &result : results) {
        ASSERT_EQ(result.wait_for(5s), std::future_status::ready);
        HttpResult r = result.get();
        EXPECT_EQ(r.kind, HttpErrorKind::shut_down) << r.error;
    }
    EXPECT_EQ(client_->waiting_requests(), 0u);
    EXPECT_EQ(server.requests(), 1);
}

TEST_F(HttpClientTest, ConnectionTheServerClosedIsNotReused) {
    TestServer server([](const Seen &) { return Reply{response(200, "ok"), Reply::Then::close}; });
    ASSERT_TRUE(get(server.url("/")).ok());
    // The server's FIN reaches the client's socket shortly after the response.
    std::this_thread::sleep_for(50ms);
    HttpResult r = get(server.url("/"));
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_FALSE(r.reused_connection);
    EXPECT_EQ(server.connections(), 2);
}

// The server answers the first request on each connection and drops the second
// without a byte: what a server closing an idle keep-alive connection looks like.
Handler answers_once_per_connection() {
    return [](const Seen &s) {
        if (s.index_on_connection == 0) return Reply{response(200, "ok")};
        return Reply{"", Reply::Then::drop};
    };
}

TEST_F(HttpClientTest, IdempotentRequestIsResentWhenReusedConnectionDropsIt) {
    TestServer server(answers_once_per_connection());
    ASSERT_TRUE(get(server.url("/")).ok());
    HttpResult r = get(server.url("/"));
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_FALSE(r.reused_connection);
    EXPECT_EQ(server.connections(), 2);
    EXPECT_EQ(server.requests(), 3);
}

TEST_F(HttpClientTest, PostIsNotResentAfterItWasWrittenInFull) {
    TestServer server(answers_once_per_connection());
    HttpRequest first;
    first.method = "POST";
    first.url = server.url("/token");
    ASSERT_TRUE(fetch(std::move(first)).ok());

    HttpRequest second;
    second.method = "POST";
    second.url = server.url("/token");
    HttpResult r = fetch(std::move(second));
    EXPECT_EQ(r.kind, HttpErrorKind::connection);
    EXPECT_TRUE(r.retryable);
    EXPECT_TRUE(r.reused_connection);
    EXPECT_TRUE(contains(r.error, "before any response byte")) << r.error;
    EXPECT_EQ(server.requests(), 2);
    EXPECT_EQ(server.connections(), 1);
}

// ---- statuses

TEST_F(HttpClientTest, TooManyRequestsCarriesRetryAfter) {
    TestServer server(always(429, R"({"error":"slow_down"})", "Retry-After: 7\r\n"));
    HttpResult r = get(server.url("/token"));
    EXPECT_EQ(r.kind, HttpErrorKind::http_status);
    EXPECT_EQ(r.status, 429);
    EXPECT_TRUE(r.retryable);
    EXPECT_EQ(r.retry_after, Duration(7s));
    EXPECT_EQ(r.body.str(), R"({"error":"slow_down"})");
}

TEST_F(HttpClientTest, ServiceUnavailableIsRetryable) {
    TestServer server(always(503, "down"));
    HttpResult r = get(server.url("/token"));
    EXPECT_EQ(r.status, 503);
    EXPECT_TRUE(r.retryable);
    EXPECT_FALSE(r.retry_after);
    EXPECT_TRUE(contains(r.error, "HTTP 503")) << r.error;
}

TEST_F(HttpClientTest, UnauthorizedIsNotRetryable) {
    TestServer server(always(401, R"({"error":"invalid_client"})"));
    HttpResult r = get(server.url("/token"));
    EXPECT_EQ(r.status, 401);
    EXPECT_FALSE(r.retryable);
}

TEST_F(HttpClientTest, RedirectIsRefusedNotFollowed) {
    TestServer server([](const Seen &s) {
        if (s.target == "/elsewhere") return Reply{response(200, "followed")};
        return Reply{response(302, "", "Location: /elsewhere\r\n")};
    });
    HttpResult r = get(server.url("/token"));
    EXPECT_EQ(r.kind, HttpErrorKind::redirect);
    EXPECT_FALSE(r.retryable);
    EXPECT_TRUE(contains(r.error, "redirect refused")) << r.error;
    EXPECT_EQ(server.requests(), 1);
}

// ---- broken responses

TEST_F(HttpClientTest, BodyOverTheCapFails) {
    TestServer server(always(200, std::string(2000, 'x')));
    HttpRequest request;
    request.url = server.url("/big");
    request.options.max_body_bytes = 1000;
    HttpResult r = fetch(std::move(request));
    EXPECT_EQ(r.kind, HttpErrorKind::body_too_large);
    EXPECT_TRUE(contains(r.error, "response body over 1000 bytes")) << r.error;
}

TEST_F(HttpClientTest, ChunkedBodyOverTheCapFails) {
    TestServer server([](const Seen &) {
        std::string chunk(600, 'y');
        return Reply{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n" + chunk +
                     "\r\n258\r\n" + chunk + "\r\n0\r\n\r\n"};
    });
    HttpRequest request;
    request.url = server.url("/big");
    request.options.max_body_bytes = 1000;
    HttpResult r = fetch(std::move(request));
    EXPECT_EQ(r.kind, HttpErrorKind::body_too_large);
}

TEST_F(HttpClientTest, ResetMidBodyIsARetryableTruncation) {
    TestServer server([](const Seen &) {
        std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 512\r\n\r\n";
        return Reply{head + std::string(120, 'z'), Reply::Then::reset};
    });
    HttpResult r = get(server.url("/token?code=" + std::string(kSecret)));
    EXPECT_EQ(r.kind, HttpErrorKind::truncated_body);
    EXPECT_TRUE(r.retryable);
    EXPECT_TRUE(contains(r.error, "connection reset after 120 of 512 body bytes")) << r.error;
    EXPECT_FALSE(contains(r.error, kSecret)) << r.error;
}

TEST_F(HttpClientTest, CloseMidBodyIsARetryableTruncation) {
    TestServer server([](const Seen &) {
        return Reply{"HTTP/1.1 200 OK\r\nContent-Length: 512\r\n\r\n" + std::string(100, 'z'),
                     Reply::Then::close};
    });
    HttpResult r = get(server.url("/token"));
    EXPECT_EQ(r.kind, HttpErrorKind::truncated_body);
    EXPECT_TRUE(r.retryable);
    EXPECT_TRUE(contains(r.error, "connection closed after 100 of 512 body bytes")) << r.error;
}

TEST_F(HttpClientTest, BrokenChunkingIsRetryable) {
    TestServer server([](const Seen &) {
        return Reply{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n",
                     Reply::Then::close};
    });
    HttpResult r = get(server.url("/"));
    EXPECT_FALSE(r.ok());
    EXPECT_TRUE(r.retryable);
}

TEST_F(HttpClientTest, MalformedResponseIsRetryable) {
    TestServer server([](const Seen &) {
        return Reply{"HELLO THERE\r\n\r\n", Reply::Then::close};
    });
    HttpResult r = get(server.url("/"));
    EXPECT_EQ(r.kind, HttpErrorKind::malformed_response);
    EXPECT_TRUE(r.retryable);
}

// ---- connections and timeouts

TEST_F(HttpClientTest, RefusedConnectionIsRetryable) {
    std::uint16_t port;
    {
        TestServer server(always(200, ""));
        port = server.port();
    }
    HttpResult r = get("http://127.0.0.1:" + std::to_string(port) + "/token");
    EXPECT_EQ(r.kind, HttpErrorKind::connect);
    EXPECT_TRUE(r.retryable);
    EXPECT_TRUE(contains(r.error, "connection refused")) << r.error;
}

TEST_F(HttpClientTest, ConnectTimeoutNamesThePhase) {
    // A listener with a full accept queue: the kernel drops further SYNs, so a connect
    // neither succeeds nor fails.
    int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(listener, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr *>(&address), sizeof address), 0);
    ASSERT_EQ(::listen(listener, 0), 0);
    socklen_t length = sizeof address;
    ::getsockname(listener, reinterpret_cast<sockaddr *>(&address), &length);
    std::vector<int> fillers;
    for (int i = 0; i < 4; ++i) {
        int s = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        ::connect(s, reinterpret_cast<sockaddr *>(&address), sizeof address);
        fillers.push_back(s);
    }
    std::this_thread::sleep_for(50ms);

    HttpRequest request;
    request.url = "http://127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/token";
    request.options.connect_timeout = 300ms;
    const auto start = std::chrono::steady_clock::now();
    HttpResult r = fetch(std::move(request));
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(r.kind, HttpErrorKind::timeout) << r.error;
    EXPECT_TRUE(r.retryable);
    EXPECT_TRUE(contains(r.error, "timed out after 0.3s (connect)")) << r.error;
    EXPECT_LT(took, 3s);
    for (int s : fillers)
        ::close(s);
    ::close(listener);
}

TEST_F(HttpClientTest, RequestTimeoutWhenTheServerNeverAnswers) {
    TestServer server([](const Seen &) { return Reply{"", Reply::Then::hang}; });
    HttpRequest request;
    request.url = server.url("/token");
    request.options.request_timeout = 300ms;
    HttpResult r = fetch(std::move(request));
    EXPECT_EQ(r.kind, HttpErrorKind::timeout);
    EXPECT_TRUE(r.retryable);
    EXPECT_EQ(r.error, "GET " + server.url("/token") + ": timed out after 0.3s (request)");
}

TEST_F(HttpClientTest, InvalidRequestsFailWithoutSendingOrQuoting) {
    HttpResult scheme = get("ftp://127.0.0.1/token");
    EXPECT_EQ(scheme.kind, HttpErrorKind::invalid_request);
    EXPECT_TRUE(contains(scheme.error, "scheme must be http or https")) << scheme.error;

    HttpRequest header;
    header.url = "http://127.0.0.1:9/token";
    header.headers = {{"X-Secret", std::string(kSecret) + "\r\nInjected: 1"}};
    HttpResult injected = fetch(std::move(header));
    EXPECT_EQ(injected.kind, HttpErrorKind::invalid_request);
    EXPECT_FALSE(contains(injected.error, kSecret)) << injected.error;
}

TEST_F(HttpClientTest, MessagesNeverCarryQueryHeadersOrBodies) {
    TestServer server(always(400, R"({"error":"invalid_grant","token":"kt-secret-HTTP-5d1e"})"));
    HttpRequest request;
    request.method = "POST";
    request.url = server.url("/token?client_secret=" + std::string(kSecret));
    request.headers = {{"Authorization", "Bearer " + std::string(kSecret)}};
    request.body = ScrubbedString("refresh_token=" + std::string(kSecret));
    HttpResult r = fetch(std::move(request));
    EXPECT_EQ(r.status, 400);
    EXPECT_FALSE(r.retryable);
    EXPECT_EQ(r.error, "POST " + server.url("/token") + ": HTTP 400 (Bad Request)");
}

// ---- TLS

TEST_F(HttpClientTest, HttpsWithCaFileSucceedsByNameAndByAddress) {
    REQUIRE_CERTS();
    TestServer server(always(200, "secure"),
                      ServerTls{c->path("server.pem"), c->path("server.key")});
    HttpTlsOptions tls;
    tls.ca_file = c->ca();
    HttpResult by_name = get(server.url("/token", "localhost"), tls);
    ASSERT_TRUE(by_name.ok()) << by_name.error;
    EXPECT_EQ(by_name.body.str(), "secure");
    HttpResult by_address = get(server.url("/token"), tls);
    ASSERT_TRUE(by_address.ok()) << by_address.error;
    // Reused for a second request on the same origin.
    HttpResult again = get(server.url("/token"), tls);
    ASSERT_TRUE(again.ok()) << again.error;
    EXPECT_TRUE(again.reused_connection);
    // SNI names a host, never an address.
    EXPECT_EQ(server.server_names(), (std::vector<std::string>{"localhost", "(none)"}));
}

TEST_F(HttpClientTest, HttpsRefusesACertificateForAnotherName) {
    REQUIRE_CERTS();
    TestServer server(always(200, "x"), ServerTls{c->path("wrong.pem"), c->path("wrong.key")});
    HttpTlsOptions tls;
    tls.ca_file = c->ca();
    HttpResult r = get(server.url("/token", "localhost"), tls);
    EXPECT_EQ(r.kind, HttpErrorKind::tls_verify);
    EXPECT_FALSE(r.retryable);
    EXPECT_EQ(r.error, "GET https://localhost:" + std::to_string(server.port()) +
                           "/token: TLS handshake failed: certificate verify failed (hostname "
                           "mismatch)");
    HttpResult by_address = get(server.url("/token"), tls);
    EXPECT_TRUE(contains(by_address.error, "certificate verify failed (IP address mismatch)"))
        << by_address.error;
}

TEST_F(HttpClientTest, HttpsRefusesAnUntrustedCa) {
    REQUIRE_CERTS();
    TestServer server(always(200, "x"), ServerTls{c->path("rogue.pem"), c->path("rogue.key")});
    HttpTlsOptions tls;
    tls.ca_file = c->ca();
    HttpResult r = get(server.url("/token"), tls);
    EXPECT_EQ(r.kind, HttpErrorKind::tls_verify);
    EXPECT_TRUE(contains(r.error, "certificate verify failed")) << r.error;

    // The system's store does not trust the test CA either.
    HttpResult system = get(server.url("/token"));
    EXPECT_EQ(system.kind, HttpErrorKind::tls_verify) << system.error;
}

TEST_F(HttpClientTest, InsecureSkipVerifyConnectsAndWarnsOnce) {
    REQUIRE_CERTS();
    TestServer server(always(200, "x"), ServerTls{c->path("rogue.pem"), c->path("rogue.key")});
    HttpTlsOptions tls;
    tls.insecure_skip_verify = true;
    ASSERT_TRUE(get(server.url("/a", "localhost"), tls).ok());
    ASSERT_TRUE(get(server.url("/b", "localhost"), tls).ok());
    int warnings = 0;
    for (const auto &[level, line] : logs()) {
        if (level == LogLevel::warning && contains(line, "without certificate verification")) {
            ++warnings;
        }
    }
    EXPECT_EQ(warnings, 1);
}

TEST_F(HttpClientTest, MutualTlsNeedsTheClientCertificate) {
    REQUIRE_CERTS();
    TestServer server(always(200, "mtls"),
                      ServerTls{c->path("server.pem"), c->path("server.key"), c->ca()});
    HttpTlsOptions with;
    with.ca_file = c->ca();
    with.client_cert_file = c->path("client.pem");
    with.client_key_file = c->path("client.key");
    HttpResult r = get(server.url("/token"), with);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.body.str(), "mtls");

    HttpTlsOptions without;
    without.ca_file = c->ca();
    HttpResult refused = get(server.url("/token"), without);
    EXPECT_EQ(refused.kind, HttpErrorKind::tls_verify) << refused.error;
    EXPECT_FALSE(refused.retryable);
    EXPECT_TRUE(contains(refused.error, "refused the client certificate")) << refused.error;
}

TEST_F(HttpClientTest, MissingCaFileIsASetupFailure) {
    HttpTlsOptions tls;
    tls.ca_file = "/nonexistent/keyturn-ca.pem";
    TestServer server(always(200, "x"));
    HttpResult r = get("https://127.0.0.1:" + std::to_string(server.port()) + "/", tls);
    EXPECT_EQ(r.kind, HttpErrorKind::tls_setup);
    EXPECT_FALSE(r.retryable);
    EXPECT_TRUE(contains(r.error, "CA file")) << r.error;
}

// ---- shutdown

TEST_F(HttpClientTest, ShutdownEndsRequestsInFlight) {
    TestServer server([](const Seen &) { return Reply{"", Reply::Then::hang}; });
    auto promise = std::make_shared<std::promise<HttpResult>>();
    auto future = promise->get_future();
    HttpRequest request;
    request.url = server.url("/token");
    client_->send(std::move(request),
                  [promise](HttpResult result) { promise->set_value(std::move(result)); });
    for (int i = 0; i < 200 && server.requests() == 0; ++i)
        std::this_thread::sleep_for(5ms);  // bounded: 1 s
    client_->shutdown();
    ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
    HttpResult r = future.get();
    EXPECT_EQ(r.kind, HttpErrorKind::shut_down);
    EXPECT_TRUE(contains(r.error, "client shut down")) << r.error;

    HttpResult later = get(server.url("/token"));
    EXPECT_EQ(later.kind, HttpErrorKind::shut_down);
}

TEST_F(HttpClientTest, DestroyingTheClientEndsEveryRequest) {
    TestServer server([](const Seen &) { return Reply{"", Reply::Then::hang}; });
    TestServer idle(always(200, "ok"));
    ASSERT_TRUE(get(idle.url("/")).ok());  // leaves an idle connection in the pool
    auto ended = std::make_shared<std::atomic<int>>(0);
    for (int i = 0; i < 8; ++i) {
        HttpRequest request;
        request.url = server.url("/token");
        client_->send(std::move(request), [ended](HttpResult result) {
            EXPECT_EQ(result.kind, HttpErrorKind::shut_down);
            ++*ended;
        });
    }
    for (int i = 0; i < 200 && server.requests() < 8; ++i)
        std::this_thread::sleep_for(5ms);  // bounded: 1 s
    client_.reset();
    for (int i = 0; i < 500 && ended->load() < 8; ++i)
        std::this_thread::sleep_for(5ms);  // bounded: 2.5 s
    EXPECT_EQ(ended->load(), 8);
}

}  // namespace
}  // namespace keyturn
