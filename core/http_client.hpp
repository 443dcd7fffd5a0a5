#pragma once
// An HTTP/1.1 client for token endpoints, on the engine's io_context.
//
// What it does, and does not:
// - http:// and https:// only. HTTPS verifies the server by default: its chain against
//   the system's CA store (or a CA file), and its name against the URL's host (a DNS
//   name, or an IP literal against the certificate's IP addresses). SNI is sent for
//   host names. TLS 1.2 is the oldest version offered. A client certificate and key
//   may be given for mutual TLS.
// - Redirects are never followed: a token endpoint that answers 3xx gets a failure
//   "redirect refused" (following one could carry a refresh token or a client secret
//   to another server).
// - Connections are kept alive and reused, per origin: scheme, host, port and the TLS
//   settings (CA file, client certificate and key, verification on or off). At most
//   `max_connections_per_origin` exchanges run at once per origin, each on a connection
//   of its own; later requests wait, in the order they came, for one of them to end, and
//   the request timeout counts that wait. At most `max_idle_per_origin` idle connections
//   are kept per origin, each for at most `idle_timeout`. Before reuse a connection is
//   checked without blocking: one that the server closed, or that holds unexpected
//   bytes, is dropped.
// - A request is resent at most once, on a new connection, and only when it went out
//   on a reused connection and either (a) it could not be written in full — the server
//   cannot have acted on a request it never received whole — or (b) its method is
//   idempotent (GET, HEAD, OPTIONS, PUT, DELETE) and the connection ended before any
//   byte of the response. A POST whose request was written in full is never resent,
//   even if the connection then closes without a byte: the server may have acted on it
//   (a refresh-token grant may have rotated the token), and only the caller knows
//   whether trying again is safe. It gets a retryable failure instead.
// - Timeouts: `connect` covers the name lookup and the TCP connect, `handshake` the TLS
//   handshake, `request` the whole exchange from the call to the last body byte. The
//   first to pass ends the exchange.
// - The response body is capped; a body over the cap fails the request.
// - Secrets: the request body and header fields are kept in memory that is overwritten
//   when freed, as is the response body and the bytes read from the socket. Result
//   messages name the method, scheme://host:port/path (never the query) and the cause;
//   never a header value or a body.
//
// Limitation: a TLS context (CA file, client certificate) is loaded when its origin is
// first used and kept for the client's lifetime; a renewed CA or client certificate
// file takes effect with a new client.
// Limitation: the host name lookup runs on Asio's resolver thread and cannot be
// interrupted; on timeout the exchange ends, the lookup finishes in the background.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "core/events.hpp"
#include "core/http_response.hpp"

namespace boost::asio {
class io_context;
}

namespace keyturn {

struct HttpTlsOptions {
    // PEM file of the CA certificates to trust; empty for the system's store.
    std::string ca_file;
    // PEM files of a client certificate (with its chain) and its private key, for
    // mutual TLS; both or neither.
    std::string client_cert_file;
    std::string client_key_file;
    // Accepts any certificate from the server, for any name. For tests against
    // self-signed servers only: the client logs a warning when an origin with this
    // setting is first used.
    bool insecure_skip_verify = false;
};

struct HttpRequestOptions {
    Duration connect_timeout = std::chrono::seconds(5);
    Duration handshake_timeout = std::chrono::seconds(5);
    Duration request_timeout = std::chrono::seconds(30);
    // Most response body bytes accepted; one more fails the request.
    std::size_t max_body_bytes = std::size_t{1} << 20;
};

struct HttpRequest {
    std::string method = "GET";
    // An absolute http:// or https:// URL (see parse_http_url). The query may carry
    // secrets: it is sent, never shown.
    std::string url;
    // Sent as given, in order. Host is always set by the client; Content-Length is set
    // from the body; User-Agent is "keyturn" unless given here.
    HttpHeaders headers;
    // Sent with a Content-Length; an empty body is sent only for POST, PUT and PATCH.
    ScrubbedString body;
    HttpTlsOptions tls;
    HttpRequestOptions options;
};

struct HttpClientOptions {
    // A million credentials due at once against one token endpoint open this many
    // connections to it, not a million. At least 1.
    std::size_t max_connections_per_origin = 32;
    std::size_t max_idle_per_origin = 32;
    Duration idle_timeout = std::chrono::seconds(30);
    // Operator messages (a warning for insecure origins, debug lines for resent
    // requests). Called from io threads or from send(); it must not call back in.
    std::function<void(LogLevel level, std::string line)> log;
};

class HttpClient {
  public:
    // `io` must outlive every exchange; it may be run on any number of threads.
    explicit HttpClient(boost::asio::io_context &io, HttpClientOptions options = {});
    // Shuts down (see shutdown()). Results still owed are delivered afterwards on io
    // threads: whatever `done` captures must stay valid until then.
    ~HttpClient();
    HttpClient(const HttpClient &) = delete;
    HttpClient &operator=(const HttpClient &) = delete;

    // Starts an exchange. `done` is called exactly once with the result, as a handler
    // of `io` on whichever thread runs it — never from within send(), even when the
    // request is rejected at once (an invalid URL, a client already shut down). It must
    // not throw.
    //
    // Thread: any, including from within `done` or another handler of `io`.
    // Ownership: the request (its body and header fields) is kept until the exchange
    // ends, then overwritten.
    void send(HttpRequest request, std::function<void(HttpResult result)> done);

    // Ends every exchange in flight with a failure "client shut down" (kind shut_down),
    // closes every idle connection and refuses later requests the same way. Idempotent;
    // any thread. It does not wait: the results arrive on io threads.
    void shutdown();

    // Idle connections currently kept, all origins together.
    std::size_t idle_connections() const;
    // Requests waiting for an origin's exchanges to make room, all origins together.
    std::size_t waiting_requests() const;

    // The shared state behind the client; declared here only so that the
    // implementation's parts can name it.
    class Core;

  private:
    std::shared_ptr<Core> core_;
};

}  // namespace keyturn
