#include "core/http_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <deque>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

namespace keyturn {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using SteadyClock = std::chrono::steady_clock;
using Strand = asio::strand<asio::io_context::executor_type>;

namespace {

constexpr std::size_t kReadChunk = 16 * 1024;
constexpr std::uint32_t kHeaderLimit = 64 * 1024;

// An allocator that overwrites what it frees: request header fields carry client
// secrets (Authorization), and the read buffer carries response bytes (tokens).
template <class T>
class ScrubbingAllocator {
  public:
    using value_type = T;
    ScrubbingAllocator() noexcept = default;
    template <class U>
    ScrubbingAllocator(const ScrubbingAllocator<U> &) noexcept {}
    T *allocate(std::size_t n) { return std::allocator<T>().allocate(n); }
    void deallocate(T *p, std::size_t n) noexcept {
        cleanse(p, n * sizeof(T));
        std::allocator<T>().deallocate(p, n);
    }
    template <class U>
    bool operator==(const ScrubbingAllocator<U> &) const noexcept {
        return true;
    }
};

using ReadBuffer = beast::basic_flat_buffer<ScrubbingAllocator<char>>;
using RequestMessage =
    http::request<http::span_body<const char>, http::basic_fields<ScrubbingAllocator<char>>>;
using ResponseParser = http::response_parser<http::buffer_body, ScrubbingAllocator<char>>;

// Appends to a string that holds secrets; growing it scrubs the block left behind.
void append_scrubbed(std::string &out, std::string_view bytes) {
    if (out.size() + bytes.size() > out.capacity()) {
        std::string bigger;
        bigger.reserve(std::max(out.capacity() * 2, out.size() + bytes.size()));
        bigger.append(out);
        cleanse(out.data(), out.capacity());
        out.swap(bigger);
    }
    out.append(bytes);
}

bool is_token_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool valid_token(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), is_token_char);
}

bool valid_field_value(std::string_view text) {
    return std::none_of(text.begin(), text.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return (u < 0x20 && c != '\t') || u == 0x7f;
    });
}

// Overwrites what a request that is not sent carries: its URL may hold a query with
// secrets, its header fields a client secret.
void scrub_request(HttpRequest &request) {
    cleanse(request.url);
    for (auto &header : request.headers)
        cleanse(header.second);
    cleanse(request.body.str());
}

bool iequals(std::string_view a, std::string_view b) {
    return beast::iequals(a, b);
}

// Methods that RFC 9110 defines as idempotent: sending one twice has the effect of
// sending it once.
bool idempotent(std::string_view method) {
    return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "PUT" ||
           method == "DELETE" || method == "TRACE";
}

bool is_ip_literal(const std::string &host) {
    error_code ec;
    asio::ip::make_address(host, ec);
    return !ec;
}

// The cause of a transport error, in words for operators.
std::string describe_error(const error_code &ec) {
    if (ec == asio::error::connection_refused) return "connection refused";
    if (ec == asio::error::connection_reset) return "connection reset";
    if (ec == asio::error::broken_pipe) return "connection closed (broken pipe)";
    if (ec == asio::error::eof || ec == http::error::end_of_stream) return "connection closed";
    if (ec == ssl::error::stream_truncated) return "connection closed without TLS close_notify";
    if (ec.category() == asio::error::get_ssl_category()) return "TLS error: " + ec.message();
    return ec.message();
}

// True for the alerts a server sends when it will not take this client's certificate
// (or its absence): trying again with the same settings cannot help.
bool certificate_refused(const error_code &ec) {
    if (ec.category() != asio::error::get_ssl_category()) return false;
    switch (ERR_GET_REASON(static_cast<unsigned long>(ec.value()))) {
        case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
        case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
        case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
            return true;
        default:
            return false;
    }
}

bool ended_early(const error_code &ec) {
    return ec == http::error::partial_message || ec == asio::error::eof ||
           ec == http::error::end_of_stream || ec == ssl::error::stream_truncated;
}

bool is_parse_error(const error_code &ec) {
    return ec.category() == http::make_error_code(http::error::bad_version).category() &&
           !ended_early(ec) && ec != http::error::body_limit;
}

std::string origin_key(const HttpUrl &url, const HttpTlsOptions &tls) {
    std::string key = std::string(url.scheme()) + "://" + url.host + ":" + std::to_string(url.port);
    if (url.tls) {
        key += '\n' + tls.ca_file + '\n' + tls.client_cert_file + '\n' + tls.client_key_file;
        key += tls.insecure_skip_verify ? "\ninsecure" : "\nverify";
    }
    return key;
}

// A connection to one origin. Every operation on it runs on its strand: the request
// that opened it runs there, and so does every later request that reuses it.
struct Connection {
    explicit Connection(Strand s) : strand(std::move(s)) {}

    beast::tcp_stream &tcp() { return tls ? beast::get_lowest_layer(*tls) : *plain; }

    // True when the connection can carry another request: the server has not closed it
    // and sent nothing unasked. Does not block.
    bool looks_alive() {
        auto &socket = tcp().socket();
        if (!socket.is_open()) return false;
        char byte;
        const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }

    Strand strand;
    std::shared_ptr<ssl::context> ssl_context;  // declared first: outlives the stream
    std::optional<beast::tcp_stream> plain;
    std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
    SteadyClock::time_point idle_since{};
};

// Closes a connection on its own strand, where its stream's handlers run.
void close_on_strand(std::unique_ptr<Connection> connection) {
    if (!connection) return;
    Strand strand = connection->strand;
    asio::post(strand, [c = std::move(connection)] {
        error_code ignored;
        c->tcp().socket().close(ignored);
    });
}

// A request that came while its origin had max_connections_per_origin exchanges
// running. Every member is guarded by the client's mutex.
struct Waiting {
    Waiting(asio::io_context &io, HttpRequest r, HttpUrl u, std::function<void(HttpResult)> d,
            SteadyClock::time_point at)
        : request(std::move(r)), url(std::move(u)), done(std::move(d)), deadline(at), timer(io) {}

    HttpRequest request;
    HttpUrl url;
    std::function<void(HttpResult)> done;
    SteadyClock::time_point deadline;
    asio::steady_timer timer;  // ends the wait at the deadline
    bool taken = false;        // started, timed out or failed by shutdown
};

struct Origin {
    std::string key;
    HttpTlsOptions tls_options;
    bool tls = false;
    std::shared_ptr<ssl::context> ssl_context;  // loaded at first use
    std::vector<std::unique_ptr<Connection>> idle;
    std::size_t running = 0;                       // exchanges started and not yet finished
    std::deque<std::shared_ptr<Waiting>> waiting;  // oldest first; taken ones are skipped
};

class Exchange;

}  // namespace

// ---------------------------------------------------------------------------------
// The client's shared state: the pool, the exchanges in flight, the idle sweeper.

class HttpClient::Core : public std::enable_shared_from_this<Core> {
  public:
    Core(asio::io_context &io, HttpClientOptions options)
        : io_(io),
          options_(std::move(options)),
          sweep_strand_(asio::make_strand(io)),
          sweep_timer_(sweep_strand_) {}

    void send(HttpRequest request, std::function<void(HttpResult)> done);
    void shutdown();

    std::size_t idle_connections() const {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (const auto &[key, origin] : origins_)
            n += origin->idle.size();
        return n;
    }

    std::size_t waiting_requests() const {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (const auto &[key, origin] : origins_)
            n += std::count_if(origin->waiting.begin(), origin->waiting.end(),
                               [](const auto &w) { return !w->taken; });
        return n;
    }

    void log(LogLevel level, std::string line) const {
        if (options_.log) options_.log(level, std::move(line));
    }

    // The TLS context for an origin, loaded at its first use. Nothing, with the reason
    // in `error`, when a file cannot be loaded; the next request tries again.
    std::shared_ptr<ssl::context> tls_context(Origin &origin, std::string &error);

    // Hands a connection back after a complete exchange: kept for reuse, or closed
    // when the origin has enough idle ones or the client is shut down. Runs on the
    // connection's strand.
    void release(const std::shared_ptr<Origin> &origin, std::unique_ptr<Connection> connection);

    // An exchange has ended: its origin has room for the request that waited longest.
    void finished(Exchange *exchange, const std::shared_ptr<Origin> &origin);

  private:
    std::size_t max_running() const {
        return std::max<std::size_t>(1, options_.max_connections_per_origin);
    }
    // Makes the exchange for a request that may run now, on an idle connection of its
    // origin when one is fit for reuse; the caller spawns it. Called with mutex_ held.
    std::shared_ptr<Exchange> start_locked(const std::shared_ptr<Origin> &origin,
                                           HttpRequest request, const HttpUrl &url,
                                           std::function<void(HttpResult)> done,
                                           SteadyClock::time_point deadline);
    // Called with mutex_ held.
    void wait_locked(const std::shared_ptr<Origin> &origin, HttpRequest request, const HttpUrl &url,
                     std::function<void(HttpResult)> done, SteadyClock::time_point deadline);
    void wait_timed_out(const std::weak_ptr<Waiting> &weak, const std::shared_ptr<Origin> &origin);

    void schedule_sweep_locked();
    void wait_sweep(SteadyClock::duration after);
    void sweep();

    asio::io_context &io_;
    const HttpClientOptions options_;

    mutable std::mutex mutex_;
    bool shut_down_ = false;
    std::unordered_map<std::string, std::shared_ptr<Origin>> origins_;
    std::unordered_map<Exchange *, std::weak_ptr<Exchange>> active_;
    bool sweep_armed_ = false;

    // Only touched on sweep_strand_.
    Strand sweep_strand_;
    asio::steady_timer sweep_timer_;
};

namespace {

// One request, from the call to the result: the coroutine in run() and what it needs.
// Every member is used on strand_ only, apart from those set before it starts.
class Exchange : public std::enable_shared_from_this<Exchange> {
  public:
    Exchange(std::shared_ptr<HttpClient::Core> core, Strand strand, HttpRequest request,
             HttpUrl url, std::shared_ptr<Origin> origin, std::unique_ptr<Connection> connection,
             std::function<void(HttpResult)> done, SteadyClock::time_point deadline)
        : core_(std::move(core)),
          strand_(std::move(strand)),
          method_(std::move(request.method)),
          url_(std::move(url)),
          headers_(std::move(request.headers)),
          body_(std::move(request.body)),
          options_(request.options),
          done_(std::move(done)),
          origin_(std::move(origin)),
          connection_(std::move(connection)),
          reused_(connection_ != nullptr),
          resolver_(strand_),
          resolve_timer_(strand_),
          deadline_(deadline) {
        cleanse(request.url);
    }

    ~Exchange() {
        for (auto &header : headers_)
            cleanse(header.second);
    }

    const Strand &strand() const { return strand_; }

    static asio::awaitable<void> run(std::shared_ptr<Exchange> self);

    // Ends the exchange early: whatever it waits for completes with an error. On strand_.
    void cancel() {
        cancelled_ = true;
        resolver_.cancel();
        resolve_timer_.cancel();
        if (connection_) {
            error_code ignored;
            connection_->tcp().socket().close(ignored);
        }
    }

  private:
    struct Attempt {
        HttpResult result;
        // The request may be sent again on a new connection (see http_client.hpp).
        bool may_resend = false;
    };

    // A timeout for one phase: its own, or what is left of the request's when that
    // ends first, named accordingly in messages.
    struct Limit {
        SteadyClock::time_point at;
        Duration length;
        const char *phase;
    };

    Limit limit_for(Duration phase_timeout, const char *phase) const {
        const auto now = SteadyClock::now();
        if (now + phase_timeout < deadline_) return {now + phase_timeout, phase_timeout, phase};
        return {deadline_, options_.request_timeout, "request"};
    }

    HttpResult fail(HttpErrorKind kind, std::string_view cause) const {
        HttpResult result = make_http_failure(method_, url_, kind, cause);
        result.reused_connection = reused_;
        return result;
    }

    HttpResult timed_out(const Limit &limit) const {
        return fail(HttpErrorKind::timeout,
                    "timed out after " + format_seconds(limit.length) + " (" + limit.phase + ")");
    }

    HttpResult shut_down() const { return fail(HttpErrorKind::shut_down, "client shut down"); }

    asio::awaitable<HttpResult> perform();
    asio::awaitable<std::optional<HttpResult>> open();
    asio::awaitable<std::optional<HttpResult>> handshake();
    template <class Stream>
    asio::awaitable<Attempt> exchange(Stream &stream);
    RequestMessage build_request();
    void finish(HttpResult result);

    std::shared_ptr<HttpClient::Core> core_;
    const Strand strand_;
    const std::string method_;
    const HttpUrl url_;
    HttpHeaders headers_;
    ScrubbedString body_;
    const HttpRequestOptions options_;
    std::function<void(HttpResult)> done_;
    const std::shared_ptr<Origin> origin_;

    std::unique_ptr<Connection> connection_;
    bool reused_;
    tcp::resolver resolver_;
    asio::steady_timer resolve_timer_;
    bool resolve_timed_out_ = false;
    bool cancelled_ = false;
    const SteadyClock::time_point deadline_;
};

asio::awaitable<void> Exchange::run(std::shared_ptr<Exchange> self) {
    HttpResult result;
    try {
        HttpResult performed = co_await self->perform();
        result = std::move(performed);
    } catch (const std::exception &e) {
        result = self->fail(HttpErrorKind::connection, std::string("internal error: ") + e.what());
    }
    // A complete response stays what it is: a token endpoint may have rotated a token,
    // and the caller must see the new one even while shutting down.
    if (self->cancelled_ && result.status == 0) result = self->shut_down();
    self->finish(std::move(result));
}

void Exchange::finish(HttpResult result) {
    if (connection_) close_on_strand(std::move(connection_));
    core_->finished(this, origin_);
    for (auto &header : headers_)
        cleanse(header.second);
    cleanse(body_.str());
    auto done = std::move(done_);
    if (done) done(std::move(result));
}

// The exchange, top to bottom: a connection (reused, or opened and secured), the
// request, the response; once more on a new connection when a reused one turned out
// stale and resending is safe.
asio::awaitable<HttpResult> Exchange::perform() {
    for (int attempt = 0;; ++attempt) {
        if (cancelled_) co_return shut_down();
        if (!connection_) {
            reused_ = false;
            std::optional<HttpResult> failure = co_await open();
            if (!failure && origin_->tls) failure = co_await handshake();
            if (failure) co_return std::move(*failure);
        }

        // Two statements, not a conditional expression: GCC 12 mishandles temporaries of a
        // co_await inside ?:.
        Attempt outcome;
        if (connection_->tls) {
            outcome = co_await exchange(*connection_->tls);
        } else {
            outcome = co_await exchange(*connection_->plain);
        }
        if (outcome.may_resend && reused_ && attempt == 0 && !cancelled_) {
            core_->log(LogLevel::debug, outcome.result.error +
                                            " (on a reused connection); sending again on a new "
                                            "connection");
            close_on_strand(std::move(connection_));
            continue;
        }
        co_return std::move(outcome.result);
    }
}

// Resolves the host (unless it is an IP literal) and connects, within the connect
// timeout.
asio::awaitable<std::optional<HttpResult>> Exchange::open() {
    const Limit limit = limit_for(options_.connect_timeout, "connect");
    if (limit.at <= SteadyClock::now()) co_return timed_out(limit);

    std::vector<tcp::endpoint> endpoints;
    error_code ec;
    const asio::ip::address address = asio::ip::make_address(url_.host, ec);
    if (!ec) {
        endpoints.emplace_back(address, url_.port);
    } else {
        resolve_timed_out_ = false;
        resolve_timer_.expires_at(limit.at);
        resolve_timer_.async_wait([self = shared_from_this()](const error_code &wait_ec) {
            if (wait_ec) return;  // cancelled: the lookup ended first
            self->resolve_timed_out_ = true;
            self->resolver_.cancel();
        });
        auto results = co_await resolver_.async_resolve(
            url_.host, std::to_string(url_.port), asio::redirect_error(asio::use_awaitable, ec));
        resolve_timer_.cancel();
        if (cancelled_) co_return shut_down();
        if (resolve_timed_out_) co_return timed_out(limit);
        if (ec)
            co_return fail(HttpErrorKind::resolve, "could not resolve the host: " + ec.message());
        for (const auto &entry : results)
            endpoints.push_back(entry.endpoint());
    }

    connection_ = std::make_unique<Connection>(strand_);
    connection_->plain.emplace(strand_);
    connection_->plain->expires_at(limit.at);
    co_await connection_->plain->async_connect(endpoints,
                                               asio::redirect_error(asio::use_awaitable, ec));
    if (cancelled_) co_return shut_down();
    if (ec == beast::error::timeout) co_return timed_out(limit);
    if (ec) co_return fail(HttpErrorKind::connect, "connect failed: " + describe_error(ec));
    connection_->plain->expires_never();
    connection_->plain->socket().set_option(tcp::no_delay(true), ec);  // best effort
    co_return std::nullopt;
}

// Secures the new connection: the origin's context, SNI, the name check, then the
// handshake within its timeout.
asio::awaitable<std::optional<HttpResult>> Exchange::handshake() {
    std::string error;
    auto context = core_->tls_context(*origin_, error);
    if (!context) co_return fail(HttpErrorKind::tls_setup, error);
    connection_->ssl_context = context;
    connection_->tls.emplace(std::move(*connection_->plain), *context);
    connection_->plain.reset();

    SSL *ssl = connection_->tls->native_handle();
    const bool literal = is_ip_literal(url_.host);
    // SNI carries host names only (RFC 6066): never an IP literal.
    if (!literal && SSL_set_tlsext_host_name(ssl, url_.host.c_str()) != 1) {
        co_return fail(HttpErrorKind::tls_setup, "could not set the TLS server name");
    }
    if (!origin_->tls_options.insecure_skip_verify) {
        // The certificate must name the URL's host: a DNS name against its DNS names
        // (no partial wildcards), an IP literal against its IP addresses. OpenSSL checks
        // it during the handshake, so a mismatch fails the handshake with its reason.
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        const int ok = literal ? X509_VERIFY_PARAM_set1_ip_asc(param, url_.host.c_str())
                               : X509_VERIFY_PARAM_set1_host(param, url_.host.c_str(), 0);
        if (ok != 1) co_return fail(HttpErrorKind::tls_setup, "could not set up name checking");
    }

    const Limit limit = limit_for(options_.handshake_timeout, "TLS handshake");
    if (limit.at <= SteadyClock::now()) co_return timed_out(limit);
    connection_->tcp().expires_at(limit.at);
    error_code ec;
    co_await connection_->tls->async_handshake(ssl::stream_base::client,
                                               asio::redirect_error(asio::use_awaitable, ec));
    if (cancelled_) co_return shut_down();
    if (ec == beast::error::timeout) co_return timed_out(limit);
    if (ec) {
        const long verify = SSL_get_verify_result(ssl);
        if (!origin_->tls_options.insecure_skip_verify && verify != X509_V_OK) {
            co_return fail(HttpErrorKind::tls_verify,
                           std::string("TLS handshake failed: certificate verify failed (") +
                               X509_verify_cert_error_string(verify) + ")");
        }
        if (certificate_refused(ec)) {
            co_return fail(HttpErrorKind::tls_verify,
                           "TLS handshake failed: the server refused the client certificate (" +
                               ec.message() + ")");
        }
        co_return fail(HttpErrorKind::tls_handshake, "TLS handshake failed: " + describe_error(ec));
    }
    connection_->tcp().expires_never();
    co_return std::nullopt;
}

RequestMessage Exchange::build_request() {
    RequestMessage request;
    request.version(11);
    request.method_string(method_);
    request.target(url_.target);
    request.set(http::field::host, url_.host_header());
    for (const auto &[name, value] : headers_)
        request.insert(name, value);
    if (!find_header(headers_, "User-Agent")) request.set(http::field::user_agent, "keyturn");
    if (!body_.str().empty() || method_ == "POST" || method_ == "PUT" || method_ == "PATCH") {
        request.body() = boost::span<const char>(body_.str().data(), body_.str().size());
        request.prepare_payload();
    }
    return request;
}

// One request and its response on the current connection, within what is left of the
// request timeout.
template <class Stream>
asio::awaitable<Exchange::Attempt> Exchange::exchange(Stream &stream) {
    const Limit limit{deadline_, options_.request_timeout, "request"};
    if (deadline_ <= SteadyClock::now()) co_return Attempt{timed_out(limit)};
    connection_->tcp().expires_at(deadline_);

    error_code ec;
    RequestMessage request = build_request();
    co_await http::async_write(stream, request, asio::redirect_error(asio::use_awaitable, ec));
    if (cancelled_) co_return Attempt{shut_down()};
    if (ec == beast::error::timeout) co_return Attempt{timed_out(limit)};
    if (ec) {
        // Not every byte reached the socket: the server cannot hold the whole request,
        // so sending it again cannot make it act twice.
        co_return Attempt{
            fail(HttpErrorKind::connection, "sending the request failed: " + describe_error(ec)),
            true};
    }

    ReadBuffer buffer;
    std::optional<ResponseParser> parser;
    for (;;) {
        parser.emplace();
        parser->header_limit(kHeaderLimit);
        parser->body_limit(options_.max_body_bytes);
        if (method_ == "HEAD") parser->skip(true);  // its Content-Length announces no body
        co_await http::async_read_header(stream, buffer, *parser,
                                         asio::redirect_error(asio::use_awaitable, ec));
        if (cancelled_) co_return Attempt{shut_down()};
        if (ec == beast::error::timeout) co_return Attempt{timed_out(limit)};
        if (ec == http::error::body_limit) {
            co_return Attempt{
                fail(HttpErrorKind::body_too_large,
                     "response body over " + std::to_string(options_.max_body_bytes) + " bytes")};
        }
        if (ec && is_parse_error(ec)) {
            co_return Attempt{fail(HttpErrorKind::malformed_response,
                                   "malformed response header (" + ec.message() + ")")};
        }
        if (certificate_refused(ec)) {
            // With TLS 1.3 the server checks the client's certificate after the
            // handshake has completed on this side: its refusal arrives here.
            co_return Attempt{
                fail(HttpErrorKind::tls_verify,
                     "the server refused the client certificate (" + ec.message() + ")")};
        }
        if (ec && !parser->got_some() && buffer.size() == 0) {
            // Nothing came back. On a reused connection this is usually a server that
            // closed it while idle; an idempotent request may go again.
            co_return Attempt{
                fail(HttpErrorKind::connection, describe_error(ec) + " before any response byte"),
                idempotent(method_)};
        }
        if (ec) {
            co_return Attempt{
                fail(HttpErrorKind::connection, describe_error(ec) + " in the response header")};
        }
        const int status = parser->get().result_int();
        // An interim response (100 Continue, 103 Early Hints) precedes the real one.
        if (status < 100 || status >= 200 || status == 101) break;
    }

    std::optional<std::uint64_t> expected;
    if (auto length = parser->content_length()) expected = *length;
    ScrubbedString body;
    std::array<char, kReadChunk> chunk;
    std::size_t received = 0;
    while (!parser->is_done()) {
        parser->get().body().data = chunk.data();
        parser->get().body().size = chunk.size();
        co_await http::async_read(stream, buffer, *parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
        const std::size_t n = chunk.size() - parser->get().body().size;
        const bool over = n > options_.max_body_bytes - received;
        if (!over) append_scrubbed(body.str(), {chunk.data(), n});
        cleanse(chunk.data(), n);
        received += over ? 0 : n;

        if (cancelled_) co_return Attempt{shut_down()};
        if (over || ec == http::error::body_limit) {
            co_return Attempt{
                fail(HttpErrorKind::body_too_large,
                     "response body over " + std::to_string(options_.max_body_bytes) + " bytes")};
        }
        if (!ec) continue;
        if (ec == beast::error::timeout) co_return Attempt{timed_out(limit)};
        if (ended_early(ec)) {
            co_return Attempt{fail(HttpErrorKind::truncated_body,
                                   describe_truncation("connection closed", received, expected))};
        }
        if (ec == asio::error::connection_reset) {
            co_return Attempt{fail(HttpErrorKind::truncated_body,
                                   describe_truncation("connection reset", received, expected))};
        }
        if (is_parse_error(ec)) {
            co_return Attempt{fail(HttpErrorKind::malformed_response,
                                   "malformed response body (" + ec.message() + ") after " +
                                       std::to_string(received) + " body bytes")};
        }
        co_return Attempt{fail(HttpErrorKind::connection,
                               describe_truncation(describe_error(ec), received, expected))};
    }

    const auto &message = parser->get();
    HttpHeaders headers;
    for (const auto &field : message)
        headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    Attempt outcome{make_http_response(method_, url_, message.result_int(), std::move(headers),
                                       std::move(body), std::chrono::system_clock::now())};
    outcome.result.reused_connection = reused_;

    // Bytes past the response mean the server and this client disagree on where it
    // ended: such a connection is not reused.
    if (message.keep_alive() && buffer.size() == 0) {
        connection_->tcp().expires_never();
        core_->release(origin_, std::move(connection_));
    }
    co_return std::move(outcome);
}

}  // namespace

// ---------------------------------------------------------------------------------
// Core

void HttpClient::Core::send(HttpRequest request, std::function<void(HttpResult)> done) {
    auto reject = [this, &done, &request](HttpResult result) {
        scrub_request(request);
        asio::post(io_, [done = std::move(done), result = std::move(result)]() mutable {
            done(std::move(result));
        });
    };
    auto invalid = [&](const HttpUrl &url, std::string_view why) {
        reject(make_http_failure(request.method, url, HttpErrorKind::invalid_request, why));
    };

    if (!valid_token(request.method)) {
        HttpResult result;
        result.kind = HttpErrorKind::invalid_request;
        result.error = "HTTP request: the method is not a valid HTTP method name";
        return reject(std::move(result));
    }
    std::string url_error;
    std::optional<HttpUrl> url = parse_http_url(request.url, &url_error);
    if (!url) {
        HttpResult result;
        result.kind = HttpErrorKind::invalid_request;
        result.error = request.method + ": " + url_error;
        return reject(std::move(result));
    }
    for (std::size_t i = 0; i < request.headers.size(); ++i) {
        const auto &[name, value] = request.headers[i];
        if (!valid_token(name) || !valid_field_value(value)) {
            return invalid(
                *url, "header field " + std::to_string(i + 1) + " has an invalid name or value");
        }
        for (std::string_view reserved : {"Host", "Content-Length", "Transfer-Encoding"}) {
            if (iequals(name, reserved)) {
                return invalid(*url, "header field " + std::string(reserved) +
                                         " is set by the client, not the request");
            }
        }
    }
    const HttpTlsOptions &tls = request.tls;
    if (tls.client_cert_file.empty() != tls.client_key_file.empty()) {
        return invalid(*url, "a client certificate needs its key, and a key its certificate");
    }
    const HttpRequestOptions &o = request.options;
    if (o.connect_timeout <= Duration::zero() || o.handshake_timeout <= Duration::zero() ||
        o.request_timeout <= Duration::zero()) {
        return invalid(*url, "timeouts must be positive");
    }

    // The request timeout runs from this call, through any wait for room at the origin.
    const auto deadline = SteadyClock::now() + o.request_timeout;
    bool first_use = false;
    std::shared_ptr<Exchange> exchange;
    {
        std::unique_lock lock(mutex_);
        if (shut_down_) {
            lock.unlock();
            return reject(make_http_failure(request.method, *url, HttpErrorKind::shut_down,
                                            "client shut down"));
        }
        const std::string key = origin_key(*url, tls);
        auto &origin = origins_[key];
        if (!origin) {
            first_use = true;
            origin = std::make_shared<Origin>();
            origin->key = key;
            origin->tls = url->tls;
            origin->tls_options = tls;
        }
        if (origin->running < max_running()) {
            exchange = start_locked(origin, std::move(request), *url, std::move(done), deadline);
        } else {
            wait_locked(origin, std::move(request), *url, std::move(done), deadline);
        }
    }
    if (first_use && url->tls && tls.insecure_skip_verify) {
        log(LogLevel::warning, "HTTPS to " + std::string(url->scheme()) + "://" +
                                   url->host_header() +
                                   " without certificate verification (insecure_skip_verify): "
                                   "the server's identity is not checked");
    }
    if (exchange) asio::co_spawn(exchange->strand(), Exchange::run(exchange), asio::detached);
}

std::shared_ptr<Exchange> HttpClient::Core::start_locked(const std::shared_ptr<Origin> &origin,
                                                         HttpRequest request, const HttpUrl &url,
                                                         std::function<void(HttpResult)> done,
                                                         SteadyClock::time_point deadline) {
    // The most recently used connection first: the least likely to have been closed by
    // the server.
    std::unique_ptr<Connection> connection;
    while (!origin->idle.empty() && !connection) {
        connection = std::move(origin->idle.back());
        origin->idle.pop_back();
        if (SteadyClock::now() - connection->idle_since >= options_.idle_timeout ||
            !connection->looks_alive()) {
            close_on_strand(std::move(connection));
        }
    }
    Strand strand = connection ? connection->strand : asio::make_strand(io_);
    auto exchange =
        std::make_shared<Exchange>(shared_from_this(), strand, std::move(request), url, origin,
                                   std::move(connection), std::move(done), deadline);
    active_[exchange.get()] = exchange;
    ++origin->running;
    return exchange;
}

void HttpClient::Core::wait_locked(const std::shared_ptr<Origin> &origin, HttpRequest request,
                                   const HttpUrl &url, std::function<void(HttpResult)> done,
                                   SteadyClock::time_point deadline) {
    auto waiting =
        std::make_shared<Waiting>(io_, std::move(request), url, std::move(done), deadline);
    // The timer's handler holds the request weakly: the queue owns it, and a request
    // that starts in time takes its timer with it, which cancels the wait.
    waiting->timer.expires_at(deadline);
    waiting->timer.async_wait([weak_core = weak_from_this(), weak = std::weak_ptr(waiting),
                               origin](const error_code &ec) {
        if (ec) return;
        if (auto core = weak_core.lock()) core->wait_timed_out(weak, origin);
    });
    origin->waiting.push_back(std::move(waiting));
}

void HttpClient::Core::wait_timed_out(const std::weak_ptr<Waiting> &weak,
                                      const std::shared_ptr<Origin> &origin) {
    HttpRequest request;
    HttpUrl url;
    std::function<void(HttpResult)> done;
    std::size_t running = 0;  // the origin's exchanges, each on a connection of its own
    {
        std::lock_guard lock(mutex_);
        auto waiting = weak.lock();
        if (!waiting || waiting->taken) return;
        waiting->taken = true;
        request = std::move(waiting->request);
        url = waiting->url;
        done = std::move(waiting->done);
        running = origin->running;
    }
    HttpResult result = make_http_failure(
        request.method, url, HttpErrorKind::timeout,
        "timed out after " + format_seconds(request.options.request_timeout) +
            " (request) waiting for a free connection: " + std::to_string(running) +
            " in use to this origin, the most allowed");
    scrub_request(request);
    done(std::move(result));
}

void HttpClient::Core::finished(Exchange *exchange, const std::shared_ptr<Origin> &origin) {
    std::vector<std::shared_ptr<Exchange>> next;
    {
        std::lock_guard lock(mutex_);
        active_.erase(exchange);
        --origin->running;
        while (!shut_down_ && origin->running < max_running() && !origin->waiting.empty()) {
            std::shared_ptr<Waiting> waiting = std::move(origin->waiting.front());
            origin->waiting.pop_front();
            if (waiting->taken) continue;
            waiting->taken = true;
            waiting->timer.cancel();
            next.push_back(start_locked(origin, std::move(waiting->request), waiting->url,
                                        std::move(waiting->done), waiting->deadline));
        }
    }
    for (auto &e : next)
        asio::co_spawn(e->strand(), Exchange::run(e), asio::detached);
}

std::shared_ptr<ssl::context> HttpClient::Core::tls_context(Origin &origin, std::string &error) {
    std::lock_guard lock(mutex_);
    if (origin.ssl_context) return origin.ssl_context;

    const HttpTlsOptions &o = origin.tls_options;
    auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
    SSL_CTX *native = context->native_handle();
    error_code ec;
    if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1) {
        error = "could not require TLS 1.2 or later";
        return nullptr;
    }
    context->set_options(ssl::context::default_workarounds | ssl::context::no_compression);
    // An encrypted key file must not make OpenSSL ask for a pass phrase on a terminal.
    context->set_password_callback(
        [](std::size_t, ssl::context::password_purpose) { return std::string(); });

    if (o.insecure_skip_verify) {
        context->set_verify_mode(ssl::verify_none);
    } else {
        context->set_verify_mode(ssl::verify_peer);
        if (o.ca_file.empty()) {
            context->set_default_verify_paths(ec);
            if (ec) {
                error = "could not load the system's CA certificates: " + ec.message();
                return nullptr;
            }
        } else {
            context->load_verify_file(o.ca_file, ec);
            if (ec) {
                error = "could not load the CA file \"" + o.ca_file + "\": " + ec.message();
                return nullptr;
            }
        }
    }
    if (!o.client_cert_file.empty()) {
        context->use_certificate_chain_file(o.client_cert_file, ec);
        if (ec) {
            error = "could not load the client certificate file \"" + o.client_cert_file +
                    "\": " + ec.message();
            return nullptr;
        }
        context->use_private_key_file(o.client_key_file, ssl::context::pem, ec);
        if (ec) {
            error =
                "could not load the client key file \"" + o.client_key_file + "\": " + ec.message();
            return nullptr;
        }
        if (SSL_CTX_check_private_key(native) != 1) {
            error = "the client key does not match the client certificate";
            return nullptr;
        }
    }
    origin.ssl_context = context;
    return context;
}

void HttpClient::Core::release(const std::shared_ptr<Origin> &origin,
                               std::unique_ptr<Connection> connection) {
    {
        std::lock_guard lock(mutex_);
        if (!shut_down_ && origin->idle.size() < options_.max_idle_per_origin &&
            options_.idle_timeout > Duration::zero()) {
            connection->idle_since = SteadyClock::now();
            origin->idle.push_back(std::move(connection));
            schedule_sweep_locked();
            return;
        }
    }
    // On the connection's strand already: close it here.
    error_code ignored;
    connection->tcp().socket().close(ignored);
}

void HttpClient::Core::schedule_sweep_locked() {
    if (sweep_armed_ || shut_down_) return;
    sweep_armed_ = true;
    asio::post(sweep_strand_, [weak = weak_from_this(), after = options_.idle_timeout] {
        if (auto self = weak.lock()) self->wait_sweep(after);
    });
}

void HttpClient::Core::wait_sweep(SteadyClock::duration after) {
    sweep_timer_.expires_after(after);
    sweep_timer_.async_wait([weak = weak_from_this()](const error_code &ec) {
        if (ec) return;  // cancelled by shutdown()
        if (auto self = weak.lock()) self->sweep();
    });
}

// Closes the connections idle for idle_timeout, and waits for the next to reach it.
void HttpClient::Core::sweep() {
    std::vector<std::unique_ptr<Connection>> expired;
    std::optional<SteadyClock::time_point> next;
    bool rearm = false;
    {
        std::lock_guard lock(mutex_);
        const auto now = SteadyClock::now();
        for (auto &[key, origin] : origins_) {
            auto &idle = origin->idle;
            for (auto it = idle.begin(); it != idle.end();) {
                if (now - (*it)->idle_since >= options_.idle_timeout) {
                    expired.push_back(std::move(*it));
                    it = idle.erase(it);
                } else {
                    const auto at = (*it)->idle_since + options_.idle_timeout;
                    if (!next || at < *next) next = at;
                    ++it;
                }
            }
        }
        rearm = next.has_value() && !shut_down_;
        sweep_armed_ = rearm;
    }
    for (auto &connection : expired)
        close_on_strand(std::move(connection));
    if (rearm) wait_sweep(*next - SteadyClock::now());
}

void HttpClient::Core::shutdown() {
    std::vector<std::unique_ptr<Connection>> idle;
    std::vector<std::shared_ptr<Exchange>> active;
    std::vector<std::shared_ptr<Waiting>> waiting;
    {
        std::lock_guard lock(mutex_);
        if (shut_down_) return;
        shut_down_ = true;
        for (auto &[key, origin] : origins_) {
            for (auto &connection : origin->idle)
                idle.push_back(std::move(connection));
            origin->idle.clear();
            for (auto &w : origin->waiting) {
                if (w->taken) continue;
                w->taken = true;
                w->timer.cancel();
                waiting.push_back(std::move(w));
            }
            origin->waiting.clear();
        }
        for (auto &[pointer, weak] : active_) {
            if (auto exchange = weak.lock()) active.push_back(std::move(exchange));
        }
    }
    for (auto &connection : idle)
        close_on_strand(std::move(connection));
    // Requests that never started end as they would have had they started.
    for (auto &w : waiting) {
        HttpResult result = make_http_failure(w->request.method, w->url, HttpErrorKind::shut_down,
                                              "client shut down");
        scrub_request(w->request);
        asio::post(io_, [done = std::move(w->done), result = std::move(result)]() mutable {
            done(std::move(result));
        });
    }
    for (auto &exchange : active) {
        const Strand strand = exchange->strand();
        asio::post(strand, [exchange = std::move(exchange)] { exchange->cancel(); });
    }
    asio::post(sweep_strand_, [self = shared_from_this()] { self->sweep_timer_.cancel(); });
}

// ---------------------------------------------------------------------------------
// HttpClient

HttpClient::HttpClient(asio::io_context &io, HttpClientOptions options)
    : core_(std::make_shared<Core>(io, std::move(options))) {}

HttpClient::~HttpClient() {
    core_->shutdown();
}

void HttpClient::send(HttpRequest request, std::function<void(HttpResult)> done) {
    core_->send(std::move(request), std::move(done));
}

void HttpClient::shutdown() {
    core_->shutdown();
}

std::size_t HttpClient::idle_connections() const {
    return core_->idle_connections();
}

std::size_t HttpClient::waiting_requests() const {
    return core_->waiting_requests();
}

}  // namespace keyturn
