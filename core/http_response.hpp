#pragma once
// The pure half of keyturn's HTTP client: URLs, the result of an exchange, how a
// result is classified (retry or not, and when), and reading a response body as a
// JSON object. Nothing here does I/O, so every rule is tested without sockets.
//
// What a result's text may hold: the method, the endpoint (scheme://host:port/path,
// never the query string, which may carry secrets), the status and the cause. Never a
// header value and never a body.

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/clock.hpp"
#include "core/secret.hpp"

namespace keyturn {

// An http or https URL, split into what a request needs.
struct HttpUrl {
    bool tls = false;  // https
    std::string host;  // a name, an IPv4 literal, or an IPv6 literal without brackets
    std::uint16_t port = 0;
    std::string target;  // path and query, as sent on the request line; "/" at least

    // "http" or "https".
    std::string_view scheme() const noexcept { return tls ? "https" : "http"; }
    // True when the host is an IPv6 literal (it is written in brackets).
    bool ipv6_literal() const noexcept { return host.find(':') != std::string::npos; }
    // The Host header: the host (bracketed when IPv6), and the port unless it is the
    // scheme's default.
    std::string host_header() const;
    // scheme://host:port/path, without the query: safe for messages and logs.
    std::string endpoint() const;
};

// Parses an absolute http:// or https:// URL. Returns nothing, with the reason in
// *error, for any other scheme, user information ("user:pass@", refused because it
// would put a secret in the URL), an empty or malformed host, a port outside 1..65535,
// or whitespace and control characters anywhere. A fragment is dropped. The reason
// never quotes the URL.
std::optional<HttpUrl> parse_http_url(std::string_view text, std::string *error);

// Header fields in the order they were received or are to be sent. Names compare
// without regard to case.
using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

// The value of the first field named `name`, or nothing.
std::optional<std::string_view> find_header(const HttpHeaders &headers, std::string_view name);

// What ended an exchange.
enum class HttpErrorKind {
    none,                // a response with a 2xx status
    invalid_request,     // the URL, a header or an option could not be used; nothing was sent
    tls_setup,           // a CA file, client certificate or key could not be loaded
    resolve,             // the host name could not be resolved
    connect,             // the connection was refused, or the host unreachable
    tls_verify,          // the server's certificate was not accepted
    tls_handshake,       // the handshake failed for another reason
    timeout,             // connect, handshake or the whole request took too long
    connection,          // reset or closed before the response was complete
    truncated_body,      // fewer body bytes than announced, or chunking cut short
    malformed_response,  // not a valid HTTP/1.x response
    body_too_large,      // the body passed the request's cap
    redirect,            // a 3xx status: redirects are never followed
    http_status,         // any other status outside 2xx
    shut_down,           // the client was shut down before the exchange ended
};

// "none", "invalid_request", ... as spelled above.
const char *http_error_kind_name(HttpErrorKind kind) noexcept;

// Whether a failure of this kind may succeed when tried again later. For http_status
// the status decides (classify_http_status); this answers false.
bool http_error_retryable(HttpErrorKind kind) noexcept;

// The longest wait a Retry-After header may ask for; longer values are cut to it.
inline constexpr Duration kMaxRetryAfter = std::chrono::hours(24);

// Reads a Retry-After value: delta-seconds ("120") or an HTTP-date (the IMF-fixdate
// "Sun, 06 Nov 1994 08:49:37 GMT", and the obsolete RFC 850 and asctime forms) taken
// relative to `now`. A date in the past is a wait of zero; a wait past kMaxRetryAfter
// is cut to it. Returns nothing for anything else.
std::optional<Duration> parse_retry_after(std::string_view value, TimePoint now);

// How a status is treated.
struct HttpStatusVerdict {
    HttpErrorKind kind = HttpErrorKind::none;  // none, redirect or http_status
    bool retryable = false;
    // Only for 429 and 503 with a readable Retry-After header.
    std::optional<Duration> retry_after;
};

// 2xx succeeds. 3xx is a refused redirect, not retryable. 429 and 503 are retryable
// and honour Retry-After; 408 and every other 5xx are retryable; every other status
// (400, 401, 403 and the rest of 4xx, 1xx) is not.
HttpStatusVerdict classify_http_status(int status, const HttpHeaders &headers, TimePoint now);

// The outcome of one exchange, handed to the caller's completion exactly once.
struct HttpResult {
    HttpErrorKind kind = HttpErrorKind::none;
    // The response status, 0 when no complete response header arrived.
    int status = 0;
    // Response header fields and body, when a complete response arrived (also for a
    // non-2xx status: an OAuth2 error body says why). The body may carry tokens.
    HttpHeaders headers;
    ScrubbedString body;
    bool retryable = false;
    std::optional<Duration> retry_after;
    // Empty on success; otherwise "<METHOD> <endpoint>: <cause>".
    std::string error;
    // True when the response came over a connection that an earlier request used.
    bool reused_connection = false;

    bool ok() const noexcept { return kind == HttpErrorKind::none; }
};

// "<METHOD> <endpoint>".
std::string describe_exchange(std::string_view method, const HttpUrl &url);

// A failure without a (complete) response: kind, retryable from the kind, and the
// error "<METHOD> <endpoint>: <cause>".
HttpResult make_http_failure(std::string_view method, const HttpUrl &url, HttpErrorKind kind,
                             std::string_view cause);

// A complete response, classified by classify_http_status. For a status outside 2xx
// the error reads, for example, `POST https://h:443/token: HTTP 503 (Service
// Unavailable); retry after 4s`, or `...: HTTP 302 (Found): redirect refused`.
HttpResult make_http_response(std::string_view method, const HttpUrl &url, int status,
                              HttpHeaders headers, ScrubbedString body, TimePoint now);

// The cause for a body that ended early, such as "connection reset after 120 of 512
// body bytes" (`how` is "connection reset"); without a Content-Length it reads
// "... after 120 body bytes".
std::string describe_truncation(std::string_view how, std::size_t received,
                                std::optional<std::uint64_t> expected);

// "5s", "0.25s", "1.5s": a duration as messages show it.
std::string format_seconds(Duration d);

// A server's own words (an error code, a description) made fit for a log line:
// control characters and quotes become spaces, and past `max` bytes it is cut with
// "...". What a server says about a failure never holds the client's secrets, but
// it may be long or hostile.
std::string tidy_server_text(std::string_view text, std::size_t max = 200);

// A response body read as a JSON object, kept in scrubbing storage (it holds tokens).
struct HttpJsonBody {
    std::optional<boost::json::object> object;
    // When there is no object: what was wrong ("response body is empty", "response body
    // is not valid JSON (syntax error at byte 17)", "response body is a JSON array, not
    // an object"). It never quotes the body.
    std::string error;
    // A malformed body may be a server's passing fault: true whenever there is an error.
    bool retryable = false;
};

HttpJsonBody parse_json_object_body(std::string_view body);

}  // namespace keyturn
